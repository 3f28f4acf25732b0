#include "server/openai_server.h"

#include <dirent.h>
#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <set>

#include "runtime/stop_strings.h"
#include "server/metrics.h"

namespace dsinfer::server {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// An OpenAI-style error, thrown by validation and turned into {"error": {...}} with its status.
struct ApiError {
    int status;
    std::string message, type = "invalid_request_error", param, code;
};

// Generated text may hold invalid UTF-8 (a model can emit any byte); it is replaced, never fatal.
std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void set_error(httplib::Response& res, const ApiError& e) {
    json err = {{"message", e.message},
                {"type", e.type},
                {"param", e.param.empty() ? json() : json(e.param)},
                {"code", e.code.empty() ? json() : json(e.code)}};
    res.status = e.status;
    res.set_content(dump_json(json{{"error", err}}), "application/json");
}

ApiError bad_field(const std::string& field, const std::string& msg, const std::string& code = "invalid_value") {
    return ApiError{400, msg, "invalid_request_error", field, code};
}

// The socket of the connection a request came on: the one whose local and peer addresses are the
// request's (cpp-httplib 0.11 does not hand handlers their socket). -1 if none matches.
std::string numeric_host(const sockaddr_storage& a, socklen_t len, int* port) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo((const sockaddr*)&a, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
        return {};
    *port = std::atoi(serv);
    return host;
}

int connection_socket(const httplib::Request& req) {
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int found = -1;
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        const int fd = std::atoi(e->d_name);
        if (fd == dirfd(d)) continue;
        sockaddr_storage la{}, ra{};
        socklen_t ll = sizeof(la), rl = sizeof(ra);
        if (getsockname(fd, (sockaddr*)&la, &ll) != 0 || getpeername(fd, (sockaddr*)&ra, &rl) != 0) continue;
        int lp = -1, rp = -1;
        std::string lh = numeric_host(la, ll, &lp), rh = numeric_host(ra, rl, &rp);
        if (lp == req.local_port && rp == req.remote_port && lh == req.local_addr && rh == req.remote_addr) {
            found = fd;
            break;
        }
    }
    closedir(d);
    return found;
}

// False once the peer has closed the connection (or reset it). Bytes waiting to be read (a pipelined
// request) count as alive; they are left in place.
bool peer_connected(int fd) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return true;
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

std::string random_id(const char* prefix) {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char* hex = "0123456789abcdef";
    std::string id = prefix;
    for (int i = 0; i < 24; ++i) id += hex[rng() % 16];
    return id;
}

// Typed field access with errors naming the field.
struct Fields {
    const json& b;
    const json* get(const char* k) const {
        auto it = b.find(k);
        return it == b.end() || it->is_null() ? nullptr : &*it;
    }
    std::optional<double> number(const char* k, double lo, double hi) const {
        auto v = get(k);
        if (!v) return std::nullopt;
        if (!v->is_number()) throw bad_field(k, std::string("'") + k + "' must be a number", "invalid_type");
        double x = v->get<double>();
        if (!(x >= lo && x <= hi))
            throw bad_field(k, std::string("'") + k + "' must be between " + std::to_string(lo) + " and " +
                                   std::to_string(hi) + ", got " + v->dump());
        return x;
    }
    std::optional<int64_t> integer(const char* k, int64_t lo, int64_t hi) const {
        auto v = get(k);
        if (!v) return std::nullopt;
        if (!v->is_number_integer() && !(v->is_number_float() && v->get<double>() == std::floor(v->get<double>())))
            throw bad_field(k, std::string("'") + k + "' must be an integer", "invalid_type");
        double x = v->get<double>();
        if (x < (double)lo || x > (double)hi)
            throw bad_field(k, std::string("'") + k + "' must be between " + std::to_string(lo) + " and " +
                                   std::to_string(hi) + ", got " + v->dump());
        return (int64_t)x;
    }
    std::optional<bool> boolean(const char* k) const {
        auto v = get(k);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) throw bad_field(k, std::string("'") + k + "' must be a boolean", "invalid_type");
        return v->get<bool>();
    }
    std::optional<std::string> string(const char* k) const {
        auto v = get(k);
        if (!v) return std::nullopt;
        if (!v->is_string()) throw bad_field(k, std::string("'") + k + "' must be a string", "invalid_type");
        return v->get<std::string>();
    }
    const json* object(const char* k) const {
        auto v = get(k);
        if (v && !v->is_object()) throw bad_field(k, std::string("'") + k + "' must be an object", "invalid_type");
        return v;
    }
};

// One generation (one of n choices) and the text processing of its tokens.
struct Choice {
    int index = 0;
    std::shared_ptr<RequestStream> stream;
    std::unique_ptr<Detokenizer> detok;
    std::unique_ptr<OutputParser> parser;  // chat only
    runtime::StopStringMatcher stop;
    int completion_tokens = 0;
    bool finished = false, stop_matched = false;
    std::string finish_reason, error;
    json logprobs = json::array();  // entries not yet sent
    ChatDelta prefix_delta;         // what the forced start of the answer (tool_choice) parsed to
    // Whole-response accumulators.
    std::string text, reasoning;
    std::vector<ToolCallDelta> calls;

    explicit Choice(std::vector<std::string> stops) : stop(std::move(stops)) {}
};

struct Parsed {
    bool chat = true, stream = false, include_usage = false;
    int n = 1;
    SamplingParams params;
    std::vector<std::string> stop;
    bool logprobs = false;
    int top_logprobs = 0;
    bool thinking = false, parse_tools = false;
    std::vector<int32_t> prompt;
    std::string forced_prefix;  // generation text the prompt already contains (tool_choice)
    std::function<std::unique_ptr<OutputParser>()> make_parser;  // from the chat plan
};

}  // namespace

struct OpenAIServer::Impl {
    Engine& engine;
    const TextCodec& codec;
    ServerOptions opts;
    httplib::Server svr;
    Metrics metrics;
    std::atomic<bool> draining{false};
    std::mutex mu;
    std::condition_variable cv;
    std::set<std::shared_ptr<RequestStream>> active;
    int64_t created = std::time(nullptr);

    Impl(Engine& e, const TextCodec& c, ServerOptions o) : engine(e), codec(c), opts(std::move(o)) { routes(); }

    // ---- request bookkeeping ----
    struct InFlight {
        Impl* s;
        explicit InFlight(Impl* s_) : s(s_) { ++s->metrics.in_flight; }
        ~InFlight() {
            {
                std::lock_guard lk(s->mu);
                --s->metrics.in_flight;
            }
            s->cv.notify_all();
        }
    };
    void track(const std::shared_ptr<RequestStream>& st) {
        std::lock_guard lk(mu);
        active.insert(st);
    }
    void untrack(const std::shared_ptr<RequestStream>& st) {
        std::lock_guard lk(mu);
        active.erase(st);
    }

    void routes() {
        svr.new_task_queue = [this] { return new httplib::ThreadPool((size_t)opts.max_concurrent + 8); };
        svr.set_payload_max_length(opts.max_body_bytes);
        svr.set_keep_alive_timeout(5);
        svr.set_tcp_nodelay(true);  // SSE chunks are small; do not let Nagle hold them back
        svr.set_read_timeout(30);
        svr.set_write_timeout(30);
        svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (!opts.api_key.empty() && req.path != "/health") {
                std::string auth = req.get_header_value("Authorization");
                if (auth != "Bearer " + opts.api_key) {
                    set_error(res, {401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                                    "invalid_request_error", "", "invalid_api_key"});
                    metrics.count_request(req.path, 401);
                    return httplib::Server::HandlerResponse::Handled;
                }
            }
            if (req.method == "POST" && draining) {
                set_error(res, {503, "the server is shutting down", "service_unavailable", "", "shutting_down"});
                return httplib::Server::HandlerResponse::Handled;
            }
            if (req.method == "POST" && metrics.in_flight.load() >= opts.max_concurrent) {
                set_error(res, {429,
                                "too many concurrent requests (limit " + std::to_string(opts.max_concurrent) +
                                    "); retry later",
                                "rate_limit_error", "", "too_many_requests"});
                metrics.count_request(req.path, 429);
                return httplib::Server::HandlerResponse::Handled;
            }
            return httplib::Server::HandlerResponse::Unhandled;
        });
        svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;
            if (res.status == 413)
                set_error(res, {413, "request body exceeds " + std::to_string(opts.max_body_bytes) + " bytes",
                                "invalid_request_error", "", "request_too_large"});
            else if (res.status == 404)
                set_error(res, {404, "no route " + req.method + " " + req.path, "invalid_request_error", "",
                                "unknown_url"});
            else
                set_error(res, {res.status, "HTTP error " + std::to_string(res.status), "invalid_request_error", "",
                                ""});
            metrics.count_request(req.path, res.status);
        });
        svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            set_error(res, {500, what, "server_error", "", ""});
        });
        svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(json{{"status", draining ? "draining" : "ok"}}.dump(), "application/json");
        });
        svr.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
            json m = {{"id", opts.model_name},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", "dsinfer"},
                      {"max_model_len", engine.info().max_model_len}};
            res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
            metrics.count_request(req.path, 200);
        });
        svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics.render(engine.stats()), "text/plain; version=0.0.4");
        });
        svr.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, true); });
        svr.Post("/v1/completions",
                 [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, false); });
    }

    // ---- parsing and validation ----
    Parsed parse(const json& body, bool chat) {
        if (!body.is_object()) throw ApiError{400, "the request body must be a JSON object", "invalid_request_error", "", "invalid_type"};
        Fields f{body};
        Parsed p;
        p.chat = chat;
        auto model = f.string("model");
        if (!model) throw bad_field("model", "'model' is required", "missing_required_parameter");
        if (*model != opts.model_name)
            throw ApiError{404, "The model '" + *model + "' does not exist; this server serves '" + opts.model_name + "'",
                           "invalid_request_error", "model", "model_not_found"};
        p.stream = f.boolean("stream").value_or(false);
        if (auto so = f.object("stream_options")) {
            Fields sf{*so};
            p.include_usage = sf.boolean("include_usage").value_or(false);
        }
        p.n = (int)f.integer("n", 1, opts.max_n).value_or(1);
        // Sampling: request, else generation_config.json, else OpenAI defaults.
        Fields def{opts.generation_defaults};
        auto& sp = p.params;
        sp.temperature = (float)f.number("temperature", 0, 2).value_or(def.number("temperature", 0, 100).value_or(1.0));
        sp.top_p = (float)f.number("top_p", 0, 1).value_or(def.number("top_p", 0, 1).value_or(1.0));
        if (sp.top_p <= 0) throw bad_field("top_p", "'top_p' must be greater than 0");
        sp.top_k = (int)f.integer("top_k", -1, 1 << 30).value_or(def.integer("top_k", -1, 1 << 30).value_or(0));
        sp.min_p = (float)f.number("min_p", 0, 1).value_or(0.0);
        sp.presence_penalty = (float)f.number("presence_penalty", -2, 2).value_or(0.0);
        sp.frequency_penalty = (float)f.number("frequency_penalty", -2, 2).value_or(0.0);
        sp.repetition_penalty = (float)f.number("repetition_penalty", 1e-6, 100).value_or(1.0);
        if (auto s = f.integer("seed", INT64_MIN, INT64_MAX)) sp.seed = (uint64_t)*s;
        auto mt = f.integer("max_completion_tokens", INT64_MIN, INT64_MAX);
        if (!mt) mt = f.integer("max_tokens", INT64_MIN, INT64_MAX);
        if (mt) {
            if (*mt < 1)
                throw bad_field(f.get("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                                "max_tokens must be at least 1, got " + std::to_string(*mt));
            sp.max_tokens = (int)std::min<int64_t>(*mt, 1 << 30);
        } else if (!chat) {
            sp.max_tokens = 16;  // the OpenAI default of /v1/completions
        }
        sp.ignore_eos = f.boolean("ignore_eos").value_or(false);
        if (auto st = f.get("stop")) {
            if (st->is_string()) p.stop.push_back(st->get<std::string>());
            else if (st->is_array()) {
                for (auto& s : *st) {
                    if (!s.is_string()) throw bad_field("stop", "'stop' must be a string or an array of strings", "invalid_type");
                    p.stop.push_back(s.get<std::string>());
                }
            } else throw bad_field("stop", "'stop' must be a string or an array of strings", "invalid_type");
            if (p.stop.size() > 16) throw bad_field("stop", "at most 16 stop strings");
        }
        if (auto st = f.get("stop_token_ids")) {
            if (!st->is_array()) throw bad_field("stop_token_ids", "'stop_token_ids' must be an array of integers", "invalid_type");
            for (auto& t : *st) {
                if (!t.is_number_integer()) throw bad_field("stop_token_ids", "'stop_token_ids' must be an array of integers", "invalid_type");
                sp.stop_token_ids.push_back(t.get<int32_t>());
            }
        }
        if (chat) {
            p.logprobs = f.boolean("logprobs").value_or(false);
            p.top_logprobs = (int)f.integer("top_logprobs", 0, 20).value_or(0);
            if (p.top_logprobs > 0 && !p.logprobs)
                throw bad_field("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        } else if (auto lp = f.integer("logprobs", 0, 20)) {
            p.logprobs = true;
            p.top_logprobs = (int)*lp;
        }
        sp.logprobs = p.logprobs ? p.top_logprobs : -1;

        if (chat) {
            auto msgs = f.get("messages");
            if (!msgs) throw bad_field("messages", "'messages' is required", "missing_required_parameter");
            if (!msgs->is_array()) throw bad_field("messages", "'messages' must be an array", "invalid_type");
            if (msgs->empty()) throw bad_field("messages", "'messages' must not be empty");
            if (msgs->size() > opts.max_messages)
                throw bad_field("messages", "too many messages: " + std::to_string(msgs->size()) + " (limit " +
                                                std::to_string(opts.max_messages) + ")");
            static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool", "latest_reminder"};
            for (size_t i = 0; i < msgs->size(); ++i) {
                const json& m = (*msgs)[i];
                std::string where = "messages[" + std::to_string(i) + "]";
                if (!m.is_object()) throw bad_field(where, where + " must be an object", "invalid_type");
                if (!m.contains("role") || !m["role"].is_string() || !roles.count(m["role"].get<std::string>()))
                    throw bad_field(where + ".role", where + ".role must be one of system, developer, user, assistant, tool, latest_reminder");
                if (m.contains("content") && !m["content"].is_null() && !m["content"].is_string() && !m["content"].is_array())
                    throw bad_field(where + ".content", where + ".content must be a string or an array", "invalid_type");
            }
            // DeepSeek-V4's chat encoder (src/text) turns the whole request into the prompt.
            ChatPlan plan;
            try {
                plan = plan_dsv4_chat(body);
                p.prompt = codec.encode(plan.prompt, true);
            } catch (const std::invalid_argument& e) {
                std::string m = e.what();  // "field.path: what is wrong"
                auto colon = m.find(": ");
                throw bad_field(colon != std::string::npos && m.find(' ') > colon ? m.substr(0, colon) : "messages", m);
            }
            p.thinking = plan.thinking;
            p.parse_tools = plan.parse_tools;
            p.forced_prefix = plan.forced_prefix;
            p.make_parser = plan.make_parser;
        } else {
            auto pr = f.get("prompt");
            if (!pr) throw bad_field("prompt", "'prompt' is required", "missing_required_parameter");
            if (pr->is_string()) {
                p.prompt = codec.encode(pr->get<std::string>(), false);
            } else if (pr->is_array() && pr->size() == 1 && (*pr)[0].is_string()) {
                p.prompt = codec.encode((*pr)[0].get<std::string>(), false);
            } else if (pr->is_array() && !pr->empty() && std::all_of(pr->begin(), pr->end(), [](auto& x) { return x.is_number_integer(); })) {
                for (auto& x : *pr) p.prompt.push_back(x.get<int32_t>());
            } else {
                throw bad_field("prompt", "'prompt' must be a string, a one-string array, or an array of token ids", "invalid_type");
            }
            if (p.prompt.empty()) throw bad_field("prompt", "'prompt' must not be empty");
        }
        return p;
    }

    // ---- generation ----
    std::vector<std::unique_ptr<Choice>> start(const Parsed& p) {
        std::vector<std::unique_ptr<Choice>> choices;
        for (int i = 0; i < p.n; ++i) {
            GenerationRequest gr{p.prompt, p.params};
            if (p.params.seed && i > 0) gr.params.seed = *p.params.seed + (uint64_t)i;
            Status st;
            auto stream = engine.submit(std::move(gr), &st);
            if (!stream) {
                for (auto& c : choices) {
                    c->stream->cancel();
                    untrack(c->stream);
                }
                if (st.code == StatusCode::resource_exhausted)
                    throw ApiError{400, st.message, "invalid_request_error", p.chat ? "messages" : "prompt",
                                   "context_length_exceeded"};
                if (st.code == StatusCode::unavailable) throw ApiError{503, st.message, "service_unavailable", "", ""};
                throw ApiError{400, st.message, "invalid_request_error", p.chat ? "messages" : "prompt", "invalid_prompt"};
            }
            auto c = std::make_unique<Choice>(p.stop);
            c->index = i;
            c->stream = stream;
            c->detok = codec.detokenizer();
            if (p.chat) {
                c->parser = p.make_parser();
                if (!p.forced_prefix.empty()) {
                    // The forced start opens the call (and names it when tool_choice names it).
                    c->prefix_delta = c->parser->feed(p.forced_prefix);
                    c->reasoning += c->prefix_delta.reasoning;
                    c->text += c->prefix_delta.content;
                    for (auto& t : c->prefix_delta.tool_calls) c->calls.push_back(t);
                }
            }
            track(stream);
            choices.push_back(std::move(c));
        }
        metrics.prompt_tokens += p.prompt.size() * (size_t)p.n;
        return choices;
    }

    json logprob_entry(const TokenEvent& ev) const {
        auto bytes = [](const std::string& s) {
            json b = json::array();
            for (unsigned char ch : s) b.push_back((int)ch);
            return b;
        };
        std::string t = codec.token_text(ev.token);
        json top = json::array();
        for (auto& x : ev.top) {
            std::string tt = codec.token_text(x.id);
            top.push_back({{"token", tt}, {"logprob", x.logprob}, {"bytes", bytes(tt)}});
        }
        return {{"token", t}, {"logprob", ev.logprob}, {"bytes", bytes(t)}, {"top_logprobs", top}};
    }

    // Applies one engine event to a choice; returns the delta to send (chat) / text (in delta.content).
    ChatDelta apply(Choice& c, const TokenEvent& ev, const Parsed& p) {
        ChatDelta d;
        std::string text;
        if (ev.has_token && !c.stop_matched) {
            ++c.completion_tokens;
            if (p.logprobs) c.logprobs.push_back(logprob_entry(ev));
            text = c.stop.feed(c.detok->push(ev.token));
            if (c.stop.matched()) {
                c.stop_matched = true;
                c.stream->cancel();  // frees the slot; the remaining events end with cancelled
            }
        }
        if (ev.finish != FinishReason::none) {
            c.finished = true;
            if (!c.stop_matched) text += c.stop.feed(c.detok->flush()) + c.stop.flush();
            if (c.stop_matched) c.finish_reason = "stop";
            else if (ev.finish == FinishReason::stop) c.finish_reason = "stop";
            else if (ev.finish == FinishReason::length) c.finish_reason = "length";
            else if (ev.finish == FinishReason::cancelled) c.finish_reason = "stop";
            else {
                c.finish_reason = "error";
                c.error = ev.error;
            }
        }
        if (c.parser) {
            if (!text.empty()) d = c.parser->feed(text);
            if (c.finished) {
                ChatDelta tail = c.parser->finish();
                d.reasoning += tail.reasoning;
                d.content += tail.content;
                for (auto& t : tail.tool_calls) d.tool_calls.push_back(t);
                if (c.parser->tool_calls_emitted() > 0 && c.finish_reason == "stop") c.finish_reason = "tool_calls";
            }
        } else {
            d.content = text;
        }
        c.reasoning += d.reasoning;
        c.text += d.content;
        for (auto& t : d.tool_calls) {  // arguments arrive in pieces after the delta that names the call
            if (t.index >= (int)c.calls.size()) c.calls.push_back(t);
            else c.calls[t.index].arguments += t.arguments;
        }
        metrics.completion_tokens += ev.has_token ? 1 : 0;
        return d;
    }

    json usage(const Parsed& p, const std::vector<std::unique_ptr<Choice>>& cs) const {
        int64_t comp = 0;
        for (auto& c : cs) comp += c->completion_tokens;
        int64_t pt = (int64_t)p.prompt.size();
        return {{"prompt_tokens", pt}, {"completion_tokens", comp}, {"total_tokens", pt + comp}};
    }

    void generate(const httplib::Request& req, httplib::Response& res, bool chat) {
        const auto t0 = Clock::now();
        auto inflight = std::make_shared<InFlight>(this);
        const std::string route = req.path;
        Parsed p;
        std::vector<std::unique_ptr<Choice>> choices;
        try {
            json body;
            try {
                body = json::parse(req.body);
            } catch (const json::parse_error& e) {
                throw ApiError{400, std::string("malformed JSON body: ") + e.what(), "invalid_request_error", "",
                               "invalid_json"};
            }
            p = parse(body, chat);
            choices = start(p);
        } catch (const ApiError& e) {
            set_error(res, e);
            metrics.count_request(route, e.status);
            return;
        }
        const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
        const std::string object = chat ? "chat.completion" : "text_completion";

        if (!p.stream) {
            // The handler waits for the whole answer itself, so its status reflects the outcome: 200
            // with the body, or an error status when the generation fails. Nothing is written while
            // waiting; a client that has gone is noticed by peeking at the connection's socket.
            struct Cleanup {
                Impl* s;
                std::vector<std::unique_ptr<Choice>>& cs;
                ~Cleanup() {
                    for (auto& c : cs) {
                        if (!c->finished) c->stream->cancel();
                        s->untrack(c->stream);
                    }
                }
            } cleanup{this, choices};
            const int fd = connection_socket(req);
            bool first = true, gone = false;
            auto last_probe = Clock::now();
            for (auto& c : choices) {
                TokenEvent ev;
                while (!gone) {
                    int r = c->stream->next_for(ev, 100);
                    if (r < 0) break;
                    if (fd >= 0 && Clock::now() - last_probe >= std::chrono::milliseconds(250)) {
                        last_probe = Clock::now();
                        if (!peer_connected(fd)) gone = true;
                    }
                    if (r == 0) continue;
                    if (ev.has_token && first) {
                        metrics.ttft.observe(std::chrono::duration<double>(Clock::now() - t0).count());
                        first = false;
                    }
                    apply(*c, ev, p);
                }
            }
            if (gone) {
                ++metrics.client_disconnects;
                for (auto& c : choices) c->stream->cancel();
                // Nobody reads this answer; 499 (client closed request) is what the logs show.
                set_error(res, {499, "the client closed the connection", "invalid_request_error", "", "client_closed"});
                metrics.count_request(route, 499);
                return;
            }
            metrics.e2e.observe(std::chrono::duration<double>(Clock::now() - t0).count());
            for (auto& c : choices)
                if (c->finish_reason == "error") {
                    const bool shutting = c->error.find("shutting down") != std::string::npos;
                    ApiError e{shutting ? 503 : 500, "generation failed: " + c->error,
                               shutting ? "service_unavailable" : "server_error", "", ""};
                    set_error(res, e);
                    metrics.count_request(route, e.status);
                    return;
                }
            res.set_content(dump_json(whole_response(p, choices, id, object, chat)), "application/json");
            metrics.count_request(route, 200);
            return;
        }
        metrics.count_request(route, 200);

        // Streaming: choices one after another (their tokens are produced concurrently by the engine).
        auto state = std::make_shared<std::vector<std::unique_ptr<Choice>>>(std::move(choices));
        auto pp = std::make_shared<Parsed>(std::move(p));
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, state, pp, id, object, t0, chat](size_t, httplib::DataSink& sink) {
                auto last_write = Clock::now();
                auto send = [&](const json& j) {
                    std::string s = "data: " + dump_json(j) + "\n\n";
                    last_write = Clock::now();
                    return sink.write(s.data(), s.size());
                };
                auto chunk = [&](json choices_arr) {
                    json j = {{"id", id}, {"object", chat ? "chat.completion.chunk" : object}, {"created", std::time(nullptr)},
                              {"model", opts.model_name}, {"choices", std::move(choices_arr)}};
                    if (pp->include_usage) j["usage"] = nullptr;
                    return j;
                };
                auto abort_all = [&] {
                    ++metrics.client_disconnects;
                    for (auto& c : *state) c->stream->cancel();
                    return false;
                };
                bool first_token = true;
                auto last = Clock::now();
                for (auto& cp : *state) {
                    Choice& c = *cp;
                    if (chat) {
                        json role = {{"role", "assistant"}, {"content", ""}};
                        if (!c.text.empty()) role["content"] = c.text;
                        if (!send(chunk(json::array({{{"index", c.index}, {"delta", role}, {"logprobs", nullptr}, {"finish_reason", nullptr}}}))))
                            return abort_all();
                        if (!c.prefix_delta.tool_calls.empty()) {
                            json delta = {{"tool_calls", tool_calls_json(c.prefix_delta.tool_calls)}};
                            if (!send(chunk(json::array({{{"index", c.index}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}}))))
                                return abort_all();
                        }
                    }
                    TokenEvent ev;
                    for (;;) {
                        int r = c.stream->next_for(ev, 500);
                        if (r < 0) break;
                        if (Clock::now() - last_write >= std::chrono::milliseconds(500)) {
                            // Nothing sent for a while (queued, or tokens without text yet): probe the
                            // connection with an SSE comment, so a client that has gone is noticed.
                            static const char ping[] = ": ping\n\n";
                            last_write = Clock::now();
                            if (!sink.write(ping, sizeof(ping) - 1)) return abort_all();
                        }
                        if (r == 0) continue;
                        auto now = Clock::now();
                        if (ev.has_token) {
                            if (first_token) metrics.ttft.observe(std::chrono::duration<double>(now - t0).count());
                            else metrics.itl.observe(std::chrono::duration<double>(now - last).count());
                            first_token = false;
                            last = now;
                        }
                        ChatDelta d = apply(c, ev, *pp);
                        if (c.finished && c.finish_reason == "error") {
                            json err = {{"error", {{"message", "generation failed: " + c.error}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}};
                            send(err);
                            untrack(c.stream);
                            sink.done();
                            return true;
                        }
                        if (!d.empty() || (pp->logprobs && !c.logprobs.empty())) {
                            json ch = {{"index", c.index}, {"finish_reason", nullptr}};
                            if (chat) {
                                json delta = json::object();
                                if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
                                if (!d.content.empty()) delta["content"] = d.content;
                                if (!d.tool_calls.empty()) delta["tool_calls"] = tool_calls_json(d.tool_calls);
                                ch["delta"] = delta;
                                ch["logprobs"] = pp->logprobs ? json{{"content", c.logprobs}} : json();
                            } else {
                                ch["text"] = d.content;
                                ch["logprobs"] = pp->logprobs ? completion_logprobs(c.logprobs) : json();
                            }
                            c.logprobs = json::array();
                            if (!send(chunk(json::array({ch})))) return abort_all();
                        }
                        if (c.finished) {
                            json ch = {{"index", c.index}, {"finish_reason", c.finish_reason}, {"logprobs", nullptr}};
                            if (chat) ch["delta"] = json::object();
                            else ch["text"] = "";
                            if (!send(chunk(json::array({ch})))) return abort_all();
                        }
                    }
                    untrack(c.stream);
                }
                metrics.e2e.observe(std::chrono::duration<double>(Clock::now() - t0).count());
                if (pp->include_usage) {
                    json j = chunk(json::array());
                    j["usage"] = usage(*pp, *state);
                    if (!send(j)) return abort_all();
                }
                static const char done[] = "data: [DONE]\n\n";
                if (!sink.write(done, sizeof(done) - 1)) return abort_all();
                sink.done();
                return true;
            },
            [this, state, inflight](bool) {
                // Whatever happened to the connection, no generation outlives its response.
                for (auto& c : *state) {
                    if (!c->finished) c->stream->cancel();
                    untrack(c->stream);
                }
            });
    }

    json whole_response(const Parsed& p, const std::vector<std::unique_ptr<Choice>>& choices, const std::string& id,
                        const std::string& object, bool chat) const {
        json out = {{"id", id}, {"object", object}, {"created", std::time(nullptr)}, {"model", opts.model_name}};
        json arr = json::array();
        for (auto& c : choices) {
            json ch = {{"index", c->index}, {"finish_reason", c->finish_reason}};
            if (chat) {
                json msg = {{"role", "assistant"}, {"content", c->text.empty() && !c->calls.empty() ? json() : json(c->text)}};
                if (p.thinking) msg["reasoning_content"] = c->reasoning;
                if (!c->calls.empty()) {
                    json tcs = json::array();
                    for (auto& t : c->calls)
                        tcs.push_back({{"id", t.id}, {"type", "function"}, {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
                    msg["tool_calls"] = tcs;
                }
                ch["message"] = msg;
                ch["logprobs"] = p.logprobs ? json{{"content", c->logprobs}} : json();
            } else {
                ch["text"] = c->text;
                ch["logprobs"] = p.logprobs ? completion_logprobs(c->logprobs) : json();
            }
            arr.push_back(ch);
        }
        out["choices"] = arr;
        out["usage"] = usage(p, choices);
        return out;
    }

    static json tool_calls_json(const std::vector<ToolCallDelta>& calls) {
        json tcs = json::array();
        for (auto& t : calls) {
            json tc = {{"index", t.index}, {"function", {{"arguments", t.arguments}}}};
            if (!t.id.empty()) {  // the first delta of a call names it
                tc["id"] = t.id;
                tc["type"] = "function";
                tc["function"]["name"] = t.name;
            }
            tcs.push_back(tc);
        }
        return tcs;
    }

    static json completion_logprobs(const json& entries) {
        json tokens = json::array(), lps = json::array(), tops = json::array();
        for (auto& e : entries) {
            tokens.push_back(e["token"]);
            lps.push_back(e["logprob"]);
            json t = json::object();
            for (auto& x : e["top_logprobs"]) t[x["token"].get<std::string>()] = x["logprob"];
            tops.push_back(t);
        }
        return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    }
};

OpenAIServer::OpenAIServer(Engine& engine, const TextCodec& codec, ServerOptions opts)
    : impl_(std::make_unique<Impl>(engine, codec, std::move(opts))) {}

OpenAIServer::~OpenAIServer() = default;

int OpenAIServer::bind() {
    int port = impl_->opts.port;
    if (port == 0) {
        port = impl_->svr.bind_to_any_port(impl_->opts.host);
        if (port < 0) throw std::runtime_error("cannot bind " + impl_->opts.host + " on any port");
    } else if (!impl_->svr.bind_to_port(impl_->opts.host, port)) {
        throw std::runtime_error("cannot bind " + impl_->opts.host + ":" + std::to_string(port) +
                                 " (in use, or not an address of this machine)");
    }
    return port;
}

void OpenAIServer::serve() { impl_->svr.listen_after_bind(); }

void OpenAIServer::shutdown() {
    Impl& s = *impl_;
    s.draining = true;
    std::unique_lock lk(s.mu);
    auto idle = [&] { return s.metrics.in_flight.load() == 0; };
    if (!s.cv.wait_for(lk, std::chrono::seconds(s.opts.drain_timeout_s), idle)) {
        for (auto& st : s.active) st->cancel();
        s.cv.wait_for(lk, std::chrono::seconds(5), idle);
    }
    lk.unlock();
    s.svr.stop();
}

}  // namespace dsinfer::server
