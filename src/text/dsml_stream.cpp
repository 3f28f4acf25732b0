// Lenient streaming parser (see dsml_stream.h and docs/dsml.md, "Parsing what the model writes"). Every decision
// depends only on the text, never on where it was cut into pieces: the parser waits while the unconsumed text could
// still be the start of a tag, so the assembled result is the same for any chunking.
#include "text/dsml_stream.h"

#include <algorithm>
#include <utility>

namespace dsinfer::text {

namespace {

constexpr std::string_view kDsmlOpen = "<｜DSML｜";
constexpr std::string_view kDsmlClose = "</｜DSML｜";
// A DSML tag longer than this without its closing '>' is garbage, not a tag still arriving.
constexpr size_t kMaxTagBytes = 4096;

const std::string_view kMarkers[] = {kThinkEnd, kThinkStart, kEos, kBos, kDsmlClose, kDsmlOpen};

bool is_block_name(std::string_view n) {
    return n == "tool_calls" || n == "function_calls" || n == "calls";
}

bool is_space(char c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

// Bytes at the end of `s` that begin a UTF-8 sequence not yet complete.
size_t incomplete_utf8_tail(std::string_view s) {
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        unsigned char c = s[n - back];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

// `s` with every byte that does not belong to a well-formed UTF-8 sequence replaced by U+FFFD, so deltas
// can always be written as JSON (an incomplete sequence at the end of a piece never reaches here).
std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size();
        for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
        if (ok) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

// Length of the longest suffix of `s` that is a proper prefix of `marker`.
size_t partial_suffix(std::string_view s, std::string_view marker) {
    for (size_t len = std::min(s.size(), marker.size() - 1); len > 0; --len)
        if (s.substr(s.size() - len) == marker.substr(0, len)) return len;
    return 0;
}

struct Tag {
    bool closing = false;
    std::string name;
    std::vector<std::pair<std::string, std::string>> attrs;
    std::string attr(std::string_view key) const {
        for (const auto& [k, v] : attrs)
            if (k == key) return v;
        return {};
    }
    bool has_attr(std::string_view key) const {
        for (const auto& [k, v] : attrs)
            if (k == key) return true;
        return false;
    }
};

// `text` is a whole tag "<｜DSML｜NAME k="v" ...>" or "</｜DSML｜NAME>".
Tag parse_tag(std::string_view text) {
    Tag t;
    t.closing = text.substr(0, kDsmlClose.size()) == kDsmlClose;
    std::string_view body = text.substr(t.closing ? kDsmlClose.size() : kDsmlOpen.size());
    body.remove_suffix(1);  // '>'
    size_t i = 0;
    while (i < body.size() && is_space(body[i])) ++i;
    size_t s = i;
    while (i < body.size() && !is_space(body[i]) && body[i] != '=') ++i;
    t.name = std::string(body.substr(s, i - s));
    while (i < body.size()) {
        while (i < body.size() && is_space(body[i])) ++i;
        s = i;
        while (i < body.size() && !is_space(body[i]) && body[i] != '=') ++i;
        std::string key(body.substr(s, i - s));
        while (i < body.size() && is_space(body[i])) ++i;
        if (i >= body.size() || body[i] != '=') {
            if (key.empty()) ++i;
            continue;
        }
        ++i;
        while (i < body.size() && is_space(body[i])) ++i;
        std::string value;
        if (i < body.size() && body[i] == '"') {
            size_t e = body.find('"', i + 1);
            if (e == std::string_view::npos) e = body.size();
            value = std::string(body.substr(i + 1, e - i - 1));
            i = e + 1;
        } else {
            s = i;
            while (i < body.size() && !is_space(body[i])) ++i;
            value = std::string(body.substr(s, i - s));
        }
        t.attrs.emplace_back(std::move(key), std::move(value));
    }
    return t;
}

// End of a tag starting at buf[0]: the first '>' outside double quotes, or npos.
size_t tag_end(std::string_view buf) {
    bool quoted = false;
    const size_t limit = std::min(buf.size(), kMaxTagBytes);
    for (size_t i = 0; i < limit; ++i) {
        if (buf[i] == '"') quoted = !quoted;
        if (buf[i] == '>' && !quoted) return i;
    }
    // An unbalanced quote must not swallow the rest: fall back to the first '>'.
    if (buf.size() >= kMaxTagBytes) {
        size_t p = buf.substr(0, limit).find('>');
        if (p != std::string_view::npos) return p;
    }
    return std::string_view::npos;
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

bool json_type_matches(const ojson& v, const std::string& type) {
    if (type == "string") return v.is_string();
    if (type == "integer")
        return v.is_number_integer() ||
               (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())));
    if (type == "number") return v.is_number();
    if (type == "boolean") return v.is_boolean();
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    if (type == "null") return v.is_null();
    return false;
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The JSON text of a parameter value that was not streamed as a string.
std::string convert_value(const std::string& raw, bool string_flag, const std::vector<std::string>& types) {
    const std::string t = trim(raw);
    ojson parsed = ojson::parse(t, nullptr, false);
    const bool ok = !parsed.is_discarded();
    auto matches = [&](const ojson& v) {
        if (types.empty()) return true;
        for (const auto& ty : types)
            if (json_type_matches(v, ty)) return true;
        return false;
    };
    if (string_flag) return ok && matches(parsed) ? t : py_json_string(raw);
    if (ok) {
        if (!matches(parsed) && contains(types, "string")) return py_json_string(raw);
        return t;  // the model's JSON text, verbatim as the reference splices it
    }
    // Python literals are a common slip for JSON ones.
    if (t == "True" && (types.empty() || contains(types, "boolean"))) return "true";
    if (t == "False" && (types.empty() || contains(types, "boolean"))) return "false";
    if (t == "None") return "null";
    return py_json_string(raw);
}

}  // namespace

DsmlStreamParser::DsmlStreamParser(StreamParserOptions options)
    : opt_(std::move(options)),
      rng_(opt_.id_seed ? opt_.id_seed : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      mode_(opt_.starts_in_reasoning ? Mode::kReasoning : Mode::kContent) {}

ChatDelta DsmlStreamParser::feed(std::string_view text) {
    if (finished_ || mode_ == Mode::kDone) return {};
    buf_.append(text);
    while (step(false)) {
    }
    buf_.erase(0, pos_);  // keep only what is held back
    pos_ = 0;
    return std::exchange(out_, {});
}

ChatDelta DsmlStreamParser::finish() {
    if (finished_) return {};
    finished_ = true;
    while (step(true)) {
    }
    buf_.clear();
    pos_ = 0;
    switch (mode_) {
        case Mode::kReasoning:
            truncated_reasoning_ = true;
            release_newlines(0);
            break;
        case Mode::kContent:
            release_newlines(0);
            break;
        case Mode::kValue:
            end_param();
            close_call();
            truncated_tool_call_ = true;
            break;
        case Mode::kInvoke:
            close_call();
            truncated_tool_call_ = true;
            break;
        default:
            break;
    }
    return std::exchange(out_, {});
}

bool DsmlStreamParser::step(bool at_end) {
    switch (mode_) {
        case Mode::kDone:
            consume(rest().size());
            return false;
        case Mode::kReasoning:
        case Mode::kContent:
        case Mode::kAfterBlock:
            return step_text(at_end);
        case Mode::kBlock:
        case Mode::kInvoke: {
            const std::string_view b = rest();
            size_t i = 0;
            while (i < b.size() && is_space(b[i])) ++i;
            consume(i);
            if (i == b.size()) return false;
            if (b[i] == '<') return step_markup(at_end);
            // Stray text between tags is dropped.
            const size_t lt = b.find('<', i);
            consume((lt == std::string_view::npos ? b.size() : lt) - i);
            return true;
        }
        case Mode::kValue:
            return step_value(at_end);
    }
    return false;
}

bool DsmlStreamParser::step_text(bool at_end) {
    const std::string_view b = rest();
    if (b.empty()) return false;
    const size_t lt = b.find('<');
    if (lt == std::string_view::npos) {
        const size_t tail = incomplete_utf8_tail(b);
        emit_text(b.substr(0, b.size() - tail));
        consume(at_end ? b.size() : b.size() - tail);  // a broken UTF-8 sequence at the very end is dropped
        return false;
    }
    if (lt > 0) {
        emit_text(b.substr(0, lt));
        consume(lt);
        return true;
    }
    return step_markup(at_end);
}

// buf_ starts with '<': a marker, a DSML tag, the start of one, or a literal '<'.
bool DsmlStreamParser::step_markup(bool at_end) {
    const bool text_mode = mode_ == Mode::kReasoning || mode_ == Mode::kContent || mode_ == Mode::kAfterBlock;
    const std::string_view b = rest();
    for (std::string_view m : kMarkers) {
        if (b.substr(0, m.size()) != m) continue;
        if (m == kDsmlOpen || m == kDsmlClose) {
            size_t e = tag_end(b);
            if (e == std::string_view::npos) {
                if (b.size() < kMaxTagBytes && !at_end) return false;  // the tag is still arriving
                consume(at_end ? b.size() : m.size());                 // not a tag: drop the marker
                return !at_end;
            }
            std::string tag(b.substr(0, e + 1));
            consume(e + 1);
            handle_tag(tag);
            return true;
        }
        consume(m.size());
        if (m == kThinkEnd) {
            if (mode_ == Mode::kReasoning) {
                release_newlines(0);
                mode_ = Mode::kContent;
            }
        } else if (m == kThinkStart) {
            if (mode_ == Mode::kContent && !content_started_) {
                held_newlines_ = 0;
                mode_ = Mode::kReasoning;
            }
        } else if (m == kEos) {
            if (text_mode) release_newlines(0);
            if (mode_ == Mode::kInvoke) {
                close_call();
                truncated_tool_call_ = true;
            }
            mode_ = Mode::kDone;
            consume(rest().size());
        }
        return true;
    }
    bool prefix = false;
    for (std::string_view m : kMarkers)
        if (b.size() < m.size() && m.substr(0, b.size()) == b) prefix = true;
    if (prefix && !at_end) return false;
    if (prefix && b.size() > 1) {  // a tag cut off by the end of the output
        consume(b.size());
        return false;
    }
    if (text_mode) emit_text("<");
    consume(1);
    return true;
}

bool DsmlStreamParser::step_value(bool at_end) {
    const std::string_view b = rest();
    if (b.empty()) return false;
    // A value ends at its closing tag; any other DSML tag or EOS also ends it (a close the model forgot).
    const size_t p = std::min({b.find(kDsmlClose), b.find(kDsmlOpen), b.find(kEos)});
    auto chunk = [&](std::string_view s) {
        if (s.empty()) return;
        if (value_skip_) return;
        if (value_streamed_) {
            std::string q = py_json_string(sanitize_utf8(s));
            args(std::string_view(q).substr(1, q.size() - 2));
        } else if (value_raw_) {
            if (!value_raw_seen_) {  // leading whitespace is left out
                size_t i = 0;
                while (i < s.size() && is_space(s[i])) ++i;
                s.remove_prefix(i);
                if (s.empty()) return;
                value_raw_seen_ = true;
            }
            args(sanitize_utf8(s));
        } else {
            value_buf_.append(sanitize_utf8(s));
        }
    };
    if (p != std::string::npos) {
        chunk(b.substr(0, p));
        consume(p);
        end_param();
        mode_ = Mode::kInvoke;  // the closing tag (or EOS) is handled there
        return true;
    }
    size_t keep = std::max({partial_suffix(b, kDsmlClose), partial_suffix(b, kDsmlOpen), partial_suffix(b, kEos),
                            incomplete_utf8_tail(b)});
    if (at_end && keep == 1 && b.back() == '<') keep = 0;  // a lone '<' is text
    chunk(b.substr(0, b.size() - keep));
    // At the end, a longer fragment of a closing tag or a broken character is dropped.
    consume(at_end ? b.size() : b.size() - keep);
    return false;
}

// Trailing newlines are held back, at most two: they may be the "\n\n" that opens a tool-call block.
void DsmlStreamParser::emit_text(std::string_view s) {
    if (s.empty()) return;
    size_t end = s.size();
    while (end > 0 && s[end - 1] == '\n') --end;
    std::string piece(held_newlines_, '\n');
    piece.append(sanitize_utf8(s.substr(0, end)));
    held_newlines_ = s.size() - end;
    if (end == 0) {
        held_newlines_ += piece.size();
        piece.clear();
    }
    if (held_newlines_ > 2) {
        piece.append(held_newlines_ - 2, '\n');
        held_newlines_ = 2;
    }
    if (mode_ == Mode::kReasoning) {
        out_.reasoning_content += piece;
    } else if (mode_ == Mode::kContent) {
        out_.content += piece;
        for (char c : piece)
            if (!is_space(c)) content_started_ = true;
    }
    // kAfterBlock: text after a tool-call block is dropped.
}

// Releases the held trailing newlines into the current text stream, minus `drop` of them (the "\n\n"
// that separates text from a tool-call block is not part of the text).
void DsmlStreamParser::release_newlines(size_t drop) {
    const size_t n = held_newlines_ - std::min(drop, held_newlines_);
    held_newlines_ = 0;
    if (n == 0) return;
    std::string nl(n, '\n');
    if (mode_ == Mode::kReasoning)
        out_.reasoning_content += nl;
    else if (mode_ == Mode::kContent)
        out_.content += nl;
}

void DsmlStreamParser::args(std::string_view s) {
    if (s.empty() || !opt_.emit_tool_calls) return;
    if (!out_.tool_calls.empty() && out_.tool_calls.back().index == n_calls_ - 1) {
        out_.tool_calls.back().arguments.append(s);
    } else {
        ToolCallDelta d;
        d.index = n_calls_ - 1;
        d.arguments = std::string(s);
        out_.tool_calls.push_back(std::move(d));
    }
}

void DsmlStreamParser::open_call(const std::string& name) {
    ToolCallDelta d;
    d.index = n_calls_++;
    static const char* kHex = "0123456789abcdef";
    d.id = "call_";
    for (int i = 0; i < 24; ++i) d.id.push_back(kHex[rng_() & 15]);
    d.name = sanitize_utf8(name);
    if (opt_.emit_tool_calls) out_.tool_calls.push_back(std::move(d));
    call_open_ = true;
    call_name_ = name;
    params_in_call_ = 0;
    param_names_.clear();
    mode_ = Mode::kInvoke;
}

void DsmlStreamParser::close_call() {
    if (!call_open_) return;
    args(params_in_call_ ? "}" : "{}");
    call_open_ = false;
}

std::vector<std::string> DsmlStreamParser::declared_types(const std::string& param) const {
    std::vector<std::string> types;
    for (const auto& f : opt_.tools) {
        if (!f.is_object() || f.value("name", std::string()) != call_name_) continue;
        auto p = f.find("parameters");
        if (p == f.end() || !p->is_object()) break;
        auto props = p->find("properties");
        if (props == p->end() || !props->is_object()) break;
        auto prop = props->find(param);
        if (prop == props->end() || !prop->is_object()) break;
        auto add = [&](const ojson& schema) {
            if (!schema.is_object()) return;
            auto t = schema.find("type");
            if (t == schema.end()) return;
            if (t->is_string()) types.push_back(t->get<std::string>());
            if (t->is_array())
                for (const auto& x : *t)
                    if (x.is_string()) types.push_back(x.get<std::string>());
        };
        add(*prop);
        for (const char* k : {"anyOf", "oneOf"}) {
            auto alt = prop->find(k);
            if (alt != prop->end() && alt->is_array())
                for (const auto& s : *alt) add(s);
        }
        break;
    }
    return types;
}

void DsmlStreamParser::begin_param(const std::string& name, bool string_flag) {
    mode_ = Mode::kValue;
    value_name_ = name;
    value_string_flag_ = string_flag;
    value_buf_.clear();
    value_streamed_ = false;
    // A parameter without a name, or a repeated one (the first wins), is dropped with its value.
    value_skip_ = name.empty() || contains(param_names_, name);
    if (value_skip_) return;
    param_names_.push_back(name);
    const auto types = declared_types(name);
    value_streamed_ = string_flag && (types.empty() || contains(types, "string"));
    // JSON written for a parameter declared only as object/array is streamed as it comes, like strings.
    value_raw_ = !string_flag && !types.empty() && std::all_of(types.begin(), types.end(), [](const std::string& t) {
        return t == "object" || t == "array";
    });
    value_raw_seen_ = false;
    if (value_streamed_) {
        args((params_in_call_++ ? ", " : "{") + py_json_string(sanitize_utf8(name)) + ": \"");
    } else if (value_raw_) {
        args((params_in_call_++ ? ", " : "{") + py_json_string(sanitize_utf8(name)) + ": ");
    }
}

void DsmlStreamParser::end_param() {
    if (mode_ != Mode::kValue) return;
    if (value_skip_) {
        value_skip_ = false;
        value_buf_.clear();
        return;
    }
    if (value_streamed_) {
        args("\"");
    } else if (value_raw_) {
        if (!value_raw_seen_) args("null");  // nothing was written: keep the arguments valid JSON
    } else {
        args((params_in_call_++ ? ", " : "{") + py_json_string(sanitize_utf8(value_name_)) + ": " +
             convert_value(value_buf_, value_string_flag_, declared_types(value_name_)));
    }
    value_streamed_ = false;
    value_raw_ = false;
    value_name_.clear();
    value_buf_.clear();
}

void DsmlStreamParser::handle_tag(std::string_view text) {
    const Tag tag = parse_tag(text);
    switch (mode_) {
        case Mode::kReasoning:
        case Mode::kContent:
        case Mode::kAfterBlock:
            if (tag.closing) return;  // a stray closing tag is dropped
            if (is_block_name(tag.name)) {
                release_newlines(2);
                mode_ = Mode::kBlock;
            } else if (tag.name == "invoke" && !tag.attr("name").empty()) {
                release_newlines(2);
                open_call(tag.attr("name"));
            }
            return;
        case Mode::kBlock:
            if (!tag.closing && tag.name == "invoke" && !tag.attr("name").empty()) open_call(tag.attr("name"));
            if (tag.closing && is_block_name(tag.name)) mode_ = Mode::kAfterBlock;
            return;
        case Mode::kInvoke:
            if (!tag.closing && tag.name == "parameter") {
                const std::string s = tag.attr("string");
                begin_param(tag.attr("name"), s.empty() ? true : s == "true");
            } else if (!tag.closing && tag.name == "invoke") {
                close_call();
                if (!tag.attr("name").empty())
                    open_call(tag.attr("name"));
                else
                    mode_ = Mode::kBlock;
            } else if (tag.closing && tag.name == "invoke") {
                close_call();
                mode_ = Mode::kBlock;
            } else if (tag.closing && is_block_name(tag.name)) {
                close_call();
                mode_ = Mode::kAfterBlock;
            }
            return;
        default:
            return;
    }
}

void accumulate(AssembledMessage& into, const ChatDelta& d) {
    into.content += d.content;
    into.reasoning_content += d.reasoning_content;
    for (const auto& tc : d.tool_calls) {
        if (tc.index >= static_cast<int>(into.tool_calls.size())) into.tool_calls.resize(tc.index + 1);
        auto& c = into.tool_calls[tc.index];
        if (!tc.id.empty()) c.id = tc.id;
        if (!tc.name.empty()) c.name = tc.name;
        c.arguments += tc.arguments;
    }
}

AssembledMessage parse_completion_lenient(std::string_view text, const StreamParserOptions& options) {
    DsmlStreamParser p(options);
    AssembledMessage m;
    accumulate(m, p.feed(text));
    accumulate(m, p.finish());
    return m;
}

ojson assembled_message_to_json(const AssembledMessage& m) {
    ojson calls = ojson::array();
    for (const auto& c : m.tool_calls)
        calls.push_back({{"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    return {{"content", m.content}, {"reasoning_content", m.reasoning_content}, {"tool_calls", calls}};
}

}  // namespace dsinfer::text
