// Lenient streaming parser of DSML completions (dsml.md §8-9): reasoning until </think> (or until a
// tool-call block starts), then content, then one <｜DSML｜tool_calls> block whose invokes are
// emitted whole as they close. Text that might be the start of a marker is held back, so a marker
// split across tokens never leaks into content.
#include <cstdio>
#include <random>

#include "server/text_codec.h"

namespace dsinfer::server {
namespace {

const std::string kThinkEnd = "</think>";
const std::string kToolsStart = "<｜DSML｜tool_calls>";
const std::string kToolsEnd = "</｜DSML｜tool_calls>";
const std::string kInvokeStart = "<｜DSML｜invoke";
const std::string kInvokeEnd = "</｜DSML｜invoke>";
const std::string kParamStart = "<｜DSML｜parameter";
const std::string kParamEnd = "</｜DSML｜parameter>";

// Length of the longest suffix of s that is a proper prefix of marker.
size_t partial_suffix(const std::string& s, const std::string& marker) {
    for (size_t k = std::min(marker.size() - 1, s.size()); k > 0; --k)
        if (s.compare(s.size() - k, k, marker, 0, k) == 0) return k;
    return 0;
}

std::string new_call_id() {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    static const char* hex = "0123456789abcdef";
    std::string id = "call_";
    for (int i = 0; i < 24; ++i) id += hex[rng() % 16];
    return id;
}

std::string attr(const std::string& tag, const std::string& name) {
    auto p = tag.find(name + "=\"");
    if (p == std::string::npos) return {};
    p += name.size() + 2;
    auto e = tag.find('"', p);
    return e == std::string::npos ? std::string() : tag.substr(p, e - p);
}

class DsmlStreamParser : public OutputParser {
public:
    DsmlStreamParser(bool thinking, bool tools) : state_(thinking ? State::reasoning : State::content), tools_(tools) {}

    ChatDelta feed(const std::string& text) override {
        buf_ += text;
        ChatDelta d;
        process(d, false);
        return d;
    }
    ChatDelta finish() override {
        ChatDelta d;
        process(d, true);
        return d;
    }
    int tool_calls_emitted() const override { return n_calls_; }

private:
    enum class State { reasoning, content, tools, done };

    void emit_text(ChatDelta& d, const std::string& s) {
        if (s.empty()) return;
        (state_ == State::reasoning ? d.reasoning : d.content) += s;
    }

    void process(ChatDelta& d, bool final) {
        for (;;) {
            if (state_ == State::done) {
                buf_.clear();
                return;
            }
            if (state_ == State::tools) {
                if (!parse_tools(d, final)) return;
                continue;
            }
            // reasoning or content: look for the markers that end this part.
            size_t think = state_ == State::reasoning ? buf_.find(kThinkEnd) : std::string::npos;
            size_t tool = tools_ ? buf_.find(kToolsStart) : std::string::npos;
            size_t stray = state_ == State::content ? buf_.find(kThinkEnd) : std::string::npos;
            if (stray != std::string::npos && (tool == std::string::npos || stray < tool)) {
                emit_text(d, buf_.substr(0, stray));  // an extra </think> in content is dropped
                buf_.erase(0, stray + kThinkEnd.size());
                continue;
            }
            if (think != std::string::npos && (tool == std::string::npos || think < tool)) {
                emit_text(d, buf_.substr(0, think));
                buf_.erase(0, think + kThinkEnd.size());
                state_ = State::content;
                strip_leading_newlines_ = true;
                continue;
            }
            if (tool != std::string::npos) {
                std::string before = buf_.substr(0, tool);
                while (!before.empty() && (before.back() == '\n' || before.back() == ' ')) before.pop_back();
                emit_text(d, before);
                buf_.erase(0, tool + kToolsStart.size());
                state_ = State::tools;
                continue;
            }
            size_t hold = 0;
            if (!final) {
                if (state_ == State::reasoning) hold = std::max(hold, partial_suffix(buf_, kThinkEnd));
                if (state_ == State::content) hold = std::max(hold, partial_suffix(buf_, kThinkEnd));
                if (tools_) {
                    hold = std::max(hold, partial_suffix(buf_, kToolsStart));
                    // Trailing newlines may be the separator before a tool block.
                    size_t nl = buf_.size() - hold;
                    while (nl > 0 && buf_[nl - 1] == '\n') --nl;
                    hold = buf_.size() - nl;
                }
            }
            std::string out = buf_.substr(0, buf_.size() - hold);
            buf_.erase(0, buf_.size() - hold);
            if (strip_leading_newlines_) {
                size_t k = 0;
                while (k < out.size() && out[k] == '\n') ++k;
                out.erase(0, k);
                if (!out.empty()) strip_leading_newlines_ = false;
            }
            emit_text(d, out);
            return;
        }
    }

    // JSON string escaping of a piece of a value (bytes >= 0x80 pass through, so a character split
    // across pieces is whole again once the pieces are joined).
    static std::string escape(const std::string& v) {
        std::string o;
        for (unsigned char ch : v) {
            switch (ch) {
                case '"': o += "\\\""; break;
                case '\\': o += "\\\\"; break;
                case '\n': o += "\\n"; break;
                case '\r': o += "\\r"; break;
                case '\t': o += "\\t"; break;
                default:
                    if (ch < 0x20) {
                        char buf[8];
                        std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                        o += buf;
                    } else {
                        o += (char)ch;
                    }
            }
        }
        return o;
    }

    void emit_args(ChatDelta& d, const std::string& piece) {
        if (piece.empty()) return;
        if (!d.tool_calls.empty() && d.tool_calls.back().index == n_calls_ - 1) {
            d.tool_calls.back().arguments += piece;
        } else {
            ToolCallDelta tc;
            tc.index = n_calls_ - 1;
            tc.arguments = piece;
            d.tool_calls.push_back(std::move(tc));
        }
    }

    // Tool-call block, streamed: an invoke's opening tag gives a delta with id and name, then its
    // arguments follow as JSON text pieces ({"key": "escaped string" or raw value, ...}) as the
    // parameter values arrive. Returns false when more text is needed.
    bool parse_tools(ChatDelta& d, bool final) {
        if (in_param_) {
            size_t end = buf_.find(kParamEnd);
            size_t avail = end != std::string::npos ? end : buf_.size() - (final ? 0 : partial_suffix(buf_, kParamEnd));
            std::string v = buf_.substr(0, avail);
            emit_args(d, param_is_string_ ? escape(v) : v);
            buf_.erase(0, avail);
            if (end == std::string::npos) {
                if (final) {
                    in_param_ = false;
                    state_ = State::done;  // truncated: the arguments stay as far as they got
                    return true;
                }
                return false;
            }
            buf_.erase(0, kParamEnd.size());
            if (param_is_string_) emit_args(d, "\"");
            in_param_ = false;
            return true;
        }
        size_t i = 0;
        while (i < buf_.size() && (buf_[i] == '\n' || buf_[i] == ' ' || buf_[i] == '\r' || buf_[i] == '\t')) ++i;
        buf_.erase(0, i);
        auto starts = [&](const std::string& m) { return buf_.compare(0, m.size(), m) == 0; };
        auto maybe = [&](const std::string& m) {  // buf_ is a proper prefix of m
            return buf_.size() < m.size() && m.compare(0, buf_.size(), buf_) == 0;
        };
        if (in_invoke_) {
            if (starts(kInvokeEnd)) {
                buf_.erase(0, kInvokeEnd.size());
                emit_args(d, params_ ? "}" : "{}");
                in_invoke_ = false;
                return true;
            }
            if (starts(kParamStart)) {
                size_t te = buf_.find('>');
                if (te == std::string::npos) {
                    if (final) state_ = State::done;
                    return final;
                }
                std::string tag = buf_.substr(0, te);
                buf_.erase(0, te + 1);
                param_is_string_ = attr(tag, "string") != "false";
                emit_args(d, std::string(params_ ? ", " : "{") + nlohmann::json(attr(tag, "name")).dump() + ": " +
                                 (param_is_string_ ? "\"" : ""));
                ++params_;
                in_param_ = true;
                return true;
            }
            if (buf_.empty() || ((maybe(kInvokeEnd) || maybe(kParamStart)) && !final)) return false;
            state_ = State::done;  // not DSML: the rest is dropped, like text after a block
            return true;
        }
        if (starts(kToolsEnd)) {
            state_ = State::done;
            return true;
        }
        if (starts(kInvokeStart)) {
            size_t te = buf_.find('>');
            if (te == std::string::npos) {
                if (final) state_ = State::done;
                return final;
            }
            ToolCallDelta tc;
            tc.index = n_calls_++;
            tc.id = new_call_id();
            tc.name = attr(buf_.substr(0, te), "name");
            buf_.erase(0, te + 1);
            d.tool_calls.push_back(std::move(tc));
            in_invoke_ = true;
            params_ = 0;
            return true;
        }
        if (buf_.empty() || ((maybe(kToolsEnd) || maybe(kInvokeStart)) && !final)) return false;
        state_ = State::done;
        return true;
    }

    State state_;
    bool tools_;
    bool in_invoke_ = false, in_param_ = false, param_is_string_ = true;
    int params_ = 0;
    bool strip_leading_newlines_ = false;
    std::string buf_;
    int n_calls_ = 0;
};

}  // namespace

std::unique_ptr<OutputParser> make_dsml_stream_parser(bool thinking, bool parse_tools) {
    return std::make_unique<DsmlStreamParser>(thinking, parse_tools);
}

}  // namespace dsinfer::server
