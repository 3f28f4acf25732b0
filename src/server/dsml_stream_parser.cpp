// Lenient streaming parser of DSML completions (dsml.md §8-9): reasoning until </think> (or until a
// tool-call block starts), then content, then one <｜DSML｜tool_calls> block whose invokes are
// emitted whole as they close. Text that might be the start of a marker is held back, so a marker
// split across tokens never leaks into content.
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

    // Consumes complete invokes; returns false when more text is needed.
    bool parse_tools(ChatDelta& d, bool final) {
        size_t i = 0;
        while (i < buf_.size() && (buf_[i] == '\n' || buf_[i] == ' ' || buf_[i] == '\r' || buf_[i] == '\t')) ++i;
        buf_.erase(0, i);
        if (buf_.compare(0, kToolsEnd.size(), kToolsEnd) == 0) {
            state_ = State::done;
            return true;
        }
        if (buf_.compare(0, kInvokeStart.size(), kInvokeStart) != 0) {
            if (buf_.size() >= kInvokeStart.size() || final) {
                // Not DSML after all: what follows is dropped, like text after a block.
                state_ = State::done;
                return true;
            }
            return false;
        }
        size_t tag_end = buf_.find('>');
        size_t end = buf_.find(kInvokeEnd);
        if (tag_end == std::string::npos || end == std::string::npos) {
            if (final) state_ = State::done;
            return final;
        }
        std::string name = attr(buf_.substr(0, tag_end), "name");
        std::string body = buf_.substr(tag_end + 1, end - tag_end - 1);
        buf_.erase(0, end + kInvokeEnd.size());
        std::string args = "{";
        size_t p = 0;
        bool first = true;
        while ((p = body.find(kParamStart, p)) != std::string::npos) {
            size_t te = body.find('>', p);
            size_t ve = body.find(kParamEnd, p);
            if (te == std::string::npos || ve == std::string::npos || ve < te) break;
            std::string tag = body.substr(p, te - p);
            std::string key = attr(tag, "name");
            std::string value = body.substr(te + 1, ve - te - 1);
            bool is_string = attr(tag, "string") != "false";
            if (!first) args += ", ";
            first = false;
            args += nlohmann::json(key).dump() + ": " + (is_string ? nlohmann::json(value).dump() : value);
            p = ve + kParamEnd.size();
        }
        args += "}";
        ToolCallDelta tc;
        tc.index = n_calls_++;
        tc.id = new_call_id();
        tc.name = name;
        tc.arguments = args;
        d.tool_calls.push_back(std::move(tc));
        return true;
    }

    State state_;
    bool tools_;
    bool strip_leading_newlines_ = false;
    std::string buf_;
    int n_calls_ = 0;
};

}  // namespace

std::unique_ptr<OutputParser> make_dsml_stream_parser(bool thinking, bool parse_tools) {
    return std::make_unique<DsmlStreamParser>(thinking, parse_tools);
}

}  // namespace dsinfer::server
