// DeepSeek's strict completion parser (docs/dsml.md §7): reasoning up to "</think>", content up to EOS or
// the tool-call block, the block's exact grammar, and nothing after it but EOS. Malformed text throws.
#include "text/dsml.h"

namespace dsinfer::text {

namespace {

struct Stop {
    size_t index;  // position after the matched stop string (or text size)
    std::string_view before;
    int which;  // index into the stop list, -1 when none matched
};

// The reference's _read_until_stop: the earliest occurrence of any stop string from `index`.
Stop read_until(std::string_view text, size_t index, std::initializer_list<std::string_view> stops) {
    size_t best = std::string_view::npos;
    int which = -1, k = 0;
    size_t best_len = 0;
    for (auto s : stops) {
        size_t p = text.find(s, index);
        if (p != std::string_view::npos && (best == std::string_view::npos || p < best)) {
            best = p;
            which = k;
            best_len = s.size();
        }
        ++k;
    }
    if (which < 0) return {text.size(), text.substr(index), -1};
    return {best + best_len, text.substr(index, best - index), which};
}

// Python's str \s (Unicode whitespace) at the start of `s`: the byte length of one such character, or 0.
size_t whitespace_len(std::string_view s) {
    if (s.empty()) return 0;
    unsigned char c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    auto starts = [&](std::string_view p) { return s.substr(0, p.size()) == p; };
    for (std::string_view p : {"\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf",
                               "\xe2\x81\x9f", "\xe3\x80\x80"})
        if (starts(p)) return p.size();
    if (s.size() >= 3 && c == 0xe2 && (unsigned char)s[1] == 0x80 && (unsigned char)s[2] >= 0x80 &&
        (unsigned char)s[2] <= 0x8a)
        return 3;  // U+2000..U+200A
    return 0;
}

// The reference's Python `$`: end of text, or just before a final "\n".
bool ends_at(std::string_view s, size_t pos) {
    return pos == s.size() || (pos + 1 == s.size() && s[pos] == '\n');
}

// ^\s*name="(.*?)">\n$ (DOTALL)
std::optional<std::string> match_tool_name(std::string_view s) {
    size_t i = 0;
    while (size_t w = whitespace_len(s.substr(i))) i += w;
    // \s* backtracks, but "name=" never starts with whitespace, so the greedy run is the only candidate.
    constexpr std::string_view kName = "name=\"";
    if (s.substr(i, kName.size()) != kName) return std::nullopt;
    i += kName.size();
    for (size_t k = i; k + 3 <= s.size(); ++k)
        if (s.substr(k, 3) == "\">\n" && ends_at(s, k + 3)) return std::string(s.substr(i, k - i));
    return std::nullopt;
}

struct Param {
    std::string name, string_flag, value;
};

// ^ name="(.*?)" string="(true|false)">(.*?)<$ (DOTALL)
std::optional<Param> match_param(std::string_view s) {
    constexpr std::string_view kName = " name=\"";
    if (s.substr(0, kName.size()) != kName) return std::nullopt;
    const size_t i = kName.size();
    // The value runs to a "<" at the end (or before a final "\n"); it must begin after the attributes.
    size_t value_end;
    if (s.size() >= 1 && s.back() == '<')
        value_end = s.size() - 1;
    else if (s.size() >= 2 && s.substr(s.size() - 2) == "<\n")
        value_end = s.size() - 2;
    else
        return std::nullopt;
    for (size_t k = i; k < s.size(); ++k) {
        for (std::string_view flag : {"true", "false"}) {
            std::string attr = "\" string=\"" + std::string(flag) + "\">";
            if (s.substr(k, attr.size()) == attr && k + attr.size() <= value_end)
                return Param{std::string(s.substr(i, k - i)), std::string(flag),
                             std::string(s.substr(k + attr.size(), value_end - k - attr.size()))};
        }
    }
    return std::nullopt;
}

std::string show(std::string_view s) {
    return "'" + std::string(s) + "'";
}

}  // namespace

ParsedMessage parse_completion_strict(std::string_view text, bool thinking, ChatFormat format) {
    const std::string block(tool_block_name(format));
    const std::string start_token = "\n\n<｜DSML｜" + block;
    const std::string end_token = "</｜DSML｜" + block + ">";
    constexpr std::string_view kInvoke = "<｜DSML｜invoke";
    constexpr std::string_view kInvokeEnd = "</｜DSML｜invoke";
    constexpr std::string_view kParam = "<｜DSML｜parameter";
    constexpr std::string_view kParamEnd = "/｜DSML｜parameter";

    ParsedMessage out;
    size_t index = 0;
    if (thinking) {
        Stop r = read_until(text, index, {kThinkEnd, start_token});
        out.reasoning_content = std::string(r.before);
        index = r.index;
        if (r.which != 0) throw DsmlError("Invalid thinking format: missing </think>");
    }
    Stop r = read_until(text, index, {kEos, start_token});
    out.content = std::string(r.before);
    index = r.index;
    int stop = r.which;  // 0: EOS, 1: tool block, -1: none
    if (stop == 1) {
        // parse_tool_calls
        int tc_stop = -1;
        while (index < text.size()) {
            Stop a = read_until(text, index, {kInvoke, end_token});
            index = a.index;
            tc_stop = a.which;
            if (a.before != ">\n") throw DsmlError("Tool call format error: expected '>\\n' but got " + show(a.before));
            if (a.which == 1) break;
            if (a.which < 0) throw DsmlError("Missing special token in tool calls");
            Stop n = read_until(text, index, {kParam, kInvokeEnd});
            index = n.index;
            auto name = match_tool_name(n.before);
            if (!name) throw DsmlError("Tool name format error: " + show(n.before));
            std::vector<Param> params;
            int pstop = n.which;
            while (pstop == 0) {
                Stop p = read_until(text, index, {kParamEnd});
                index = p.index;
                auto kv = match_param(p.before);
                if (!kv) throw DsmlError("Parameter format error: " + show(p.before));
                for (const auto& q : params)
                    if (q.name == kv->name) throw DsmlError("Duplicate parameter name: " + show(kv->name));
                params.push_back(std::move(*kv));
                Stop c = read_until(text, index, {kParam, kInvokeEnd});
                index = c.index;
                pstop = c.which;
                if (c.before != ">\n")
                    throw DsmlError("Parameter format error: expected '>\\n' but got " + show(c.before));
            }
            // decode_dsml_to_arguments: textual assembly, string="false" values spliced in verbatim.
            std::string args = "{";
            for (size_t i = 0; i < params.size(); ++i) {
                if (i) args += ", ";
                args += py_json_string(params[i].name) + ": " +
                        (params[i].string_flag == "true" ? py_json_string(params[i].value) : params[i].value);
            }
            args += "}";
            out.tool_calls.push_back({std::move(*name), std::move(args)});
            tc_stop = pstop;
        }
        (void)tc_stop;
        Stop e = read_until(text, index, {kEos});
        index = e.index;
        stop = e.which < 0 ? -1 : 0;
        if (!e.before.empty()) throw DsmlError("Unexpected content after tool calls: " + show(e.before));
    } else if (stop != 0) {
        throw DsmlError("Invalid format: missing EOS token");
    }
    if (index != text.size() || stop == 1) throw DsmlError("Unexpected content at end");
    for (std::string_view sp : {kBos, kEos, kThinkStart, kThinkEnd, kDsml}) {
        if (out.content.find(sp) != std::string::npos || out.reasoning_content.find(sp) != std::string::npos)
            throw DsmlError("Unexpected special token '" + std::string(sp) + "' in content");
    }
    return out;
}

ojson parsed_message_to_json(const ParsedMessage& m) {
    ojson calls = ojson::array();
    for (const auto& c : m.tool_calls)
        calls.push_back({{"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    return {{"content", m.content}, {"reasoning_content", m.reasoning_content}, {"tool_calls", calls}};
}

}  // namespace dsinfer::text
