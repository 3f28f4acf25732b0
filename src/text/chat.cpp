// Request shapes -> DSML encoder inputs (see chat.h and docs/dsml.md "OpenAI requests").
#include "text/chat.h"

#include <algorithm>
#include <set>

namespace dsinfer::text {

namespace {

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw ChatRequestError(where + ": " + what);
}

const char* type_name(const ojson& v) {
    switch (v.type()) {
        case ojson::value_t::null:
            return "null";
        case ojson::value_t::boolean:
            return "a boolean";
        case ojson::value_t::string:
            return "a string";
        case ojson::value_t::array:
            return "an array";
        case ojson::value_t::object:
            return "an object";
        default:
            return "a number";
    }
}

std::string get_string(const ojson& obj, const char* key, const std::string& where, bool required) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        if (required) fail(where + "." + key, "missing");
        return {};
    }
    if (!it->is_string()) fail(where + "." + key, std::string("expected a string, got ") + type_name(*it));
    return it->get<std::string>();
}

bool get_bool(const ojson& obj, const char* key, const std::string& where, bool dflt) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail(where + "." + key, std::string("expected a boolean, got ") + type_name(*it));
    return it->get<bool>();
}

// The function object of an OpenAI tool {type: "function", function: {name, description, parameters}}.
ojson function_of_tool(const ojson& tool, const std::string& where) {
    if (!tool.is_object()) fail(where, std::string("expected a tool object, got ") + type_name(tool));
    auto type = tool.find("type");
    if (type != tool.end() && !(type->is_string() && type->get<std::string>() == "function"))
        fail(where + ".type", "only \"function\" tools are supported");
    auto fn = tool.find("function");
    if (fn == tool.end() || !fn->is_object()) fail(where + ".function", "missing or not an object");
    if (get_string(*fn, "name", where + ".function", true).empty()) fail(where + ".function.name", "empty");
    auto params = fn->find("parameters");
    if (params != fn->end() && !params->is_null() && !params->is_object())
        fail(where + ".function.parameters", "expected a JSON Schema object");
    return *fn;
}

// Content parts [{type: "text", text}] -> text joined by "\n"; any other part is refused (text-only model).
std::string join_text_parts(const ojson& parts, const std::string& where) {
    std::string out;
    for (size_t i = 0; i < parts.size(); ++i) {
        const std::string w = where + "[" + std::to_string(i) + "]";
        const ojson& p = parts[i];
        if (p.is_string()) {  // lenient: a bare string part
            if (i) out += "\n";
            out += p.get<std::string>();
            continue;
        }
        if (!p.is_object()) fail(w, std::string("expected a content part object, got ") + type_name(p));
        const std::string type = get_string(p, "type", w, true);
        if (type != "text" && type != "input_text")
            fail(w + ".type", "unsupported content part type '" + type + "' (this model takes text only)");
        if (i) out += "\n";
        out += get_string(p, "text", w, true);
    }
    return out;
}

}  // namespace

ChatMessage chat_message_from_json(const ojson& m, const std::string& where) {
    if (!m.is_object()) fail(where, std::string("expected a message object, got ") + type_name(m));
    ChatMessage msg;
    msg.role = get_string(m, "role", where, true);

    auto content = m.find("content");
    if (content != m.end() && !content->is_null()) {
        if (content->is_string()) {
            msg.content = content->get<std::string>();
        } else if (content->is_array()) {
            if (msg.role == "tool") {
                // Tool results keep their parts: the encoder joins text parts and marks the others.
                std::vector<ContentPart> parts;
                for (size_t i = 0; i < content->size(); ++i) {
                    const ojson& p = (*content)[i];
                    const std::string w = where + ".content[" + std::to_string(i) + "]";
                    if (p.is_string()) {
                        parts.push_back({"text", p.get<std::string>()});
                        continue;
                    }
                    if (!p.is_object()) fail(w, std::string("expected a content part object, got ") + type_name(p));
                    ContentPart cp{get_string(p, "type", w, true), {}};
                    if (cp.type == "input_text") cp.type = "text";
                    if (cp.type == "text") cp.text = get_string(p, "text", w, true);
                    parts.push_back(std::move(cp));
                }
                msg.content_parts = std::move(parts);
            } else {
                msg.content = join_text_parts(*content, where + ".content");
            }
        } else {
            fail(where + ".content", std::string("expected a string or an array of parts, got ") + type_name(*content));
        }
    }

    msg.reasoning_content = get_string(m, "reasoning_content", where, false);
    if (msg.reasoning_content.empty()) msg.reasoning_content = get_string(m, "reasoning", where, false);

    auto calls = m.find("tool_calls");
    if (calls != m.end() && !calls->is_null()) {
        if (!calls->is_array()) fail(where + ".tool_calls", std::string("expected an array, got ") + type_name(*calls));
        for (size_t i = 0; i < calls->size(); ++i) {
            const std::string w = where + ".tool_calls[" + std::to_string(i) + "]";
            const ojson& c = (*calls)[i];
            if (!c.is_object()) fail(w, std::string("expected a tool call object, got ") + type_name(c));
            auto fn = c.find("function");
            if (fn == c.end() || !fn->is_object()) fail(w + ".function", "missing or not an object");
            ToolCall tc;
            tc.id = get_string(c, "id", w, false);
            if (tc.id.empty()) tc.id = get_string(*fn, "id", w + ".function", false);
            tc.name = get_string(*fn, "name", w + ".function", true);
            auto a = fn->find("arguments");
            if (a == fn->end() || a->is_null())
                tc.arguments = "{}";
            else if (a->is_string())
                tc.arguments = a->get<std::string>();
            else
                tc.arguments = py_json_dumps(*a);  // already-parsed arguments
            msg.tool_calls.push_back(std::move(tc));
        }
    }

    auto tools = m.find("tools");
    if (tools != m.end() && !tools->is_null()) {
        if (!tools->is_array()) fail(where + ".tools", std::string("expected an array, got ") + type_name(*tools));
        for (size_t i = 0; i < tools->size(); ++i)
            msg.tools.push_back(function_of_tool((*tools)[i], where + ".tools[" + std::to_string(i) + "]"));
    }
    if (auto rf = m.find("response_format"); rf != m.end()) msg.response_format = *rf;
    msg.tool_call_id = get_string(m, "tool_call_id", where, false);
    if (auto t = m.find("task"); t != m.end() && !t->is_null()) msg.task = get_string(m, "task", where, true);
    msg.wo_eos = get_bool(m, "wo_eos", where, false) || get_bool(m, "prefix", where, false);
    return msg;
}

std::vector<ChatMessage> chat_messages_from_json(const ojson& messages) {
    if (!messages.is_array()) fail("messages", std::string("expected an array, got ") + type_name(messages));
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < messages.size(); ++i)
        out.push_back(chat_message_from_json(messages[i], "messages[" + std::to_string(i) + "]"));
    return out;
}

namespace {

// Puts tools / response_format on the leading system or developer message, inserting an empty system
// message when there is none: the layout of DeepSeek's own tests ("{system}\n\n## Tools...").
ChatMessage& leading_system(std::vector<ChatMessage>& msgs) {
    if (msgs.empty() || (msgs[0].role != "system" && msgs[0].role != "developer")) {
        ChatMessage sys;
        sys.role = "system";
        msgs.insert(msgs.begin(), std::move(sys));
    }
    return msgs[0];
}

}  // namespace

ChatEncoderInput chat_input_from_case(const ojson& c) {
    if (!c.is_object()) throw ChatRequestError("case: expected a JSON object");
    ChatEncoderInput in;
    in.options.format = chat_format_from_name(get_string(c, "format", "case", true));
    in.options.thinking = get_bool(c, "thinking", "case", false);
    in.options.drop_thinking = get_bool(c, "drop_thinking", "case", true);
    if (auto e = c.find("reasoning_effort"); e != c.end() && !e->is_null())
        in.options.reasoning_effort = get_string(c, "reasoning_effort", "case", true);
    auto msgs = c.find("messages");
    if (msgs == c.end()) throw ChatRequestError("case.messages: missing");
    in.messages = chat_messages_from_json(*msgs);
    if (auto ctx = c.find("context"); ctx != c.end() && !ctx->is_null()) in.context = chat_messages_from_json(*ctx);
    auto tools = c.find("tools");
    if (tools != c.end() && !tools->is_null()) {
        if (!tools->is_array()) fail("case.tools", "expected an array");
        for (size_t i = 0; i < tools->size(); ++i)
            in.tools.push_back(function_of_tool((*tools)[i], "tools[" + std::to_string(i) + "]"));
        if (!in.tools.empty()) leading_system(in.context.empty() ? in.messages : in.context).tools = in.tools;
    }
    return in;
}

ChatEncoderInput chat_input_from_openai(const ojson& req, ChatFormat format) {
    if (!req.is_object()) throw ChatRequestError("request: expected a JSON object");
    ChatEncoderInput in;
    in.options.format = format;

    auto msgs = req.find("messages");
    if (msgs == req.end()) fail("messages", "missing");
    if (!msgs->is_array() || msgs->empty()) fail("messages", "expected a non-empty array");
    in.messages = chat_messages_from_json(*msgs);

    static const std::set<std::string> kRoles = {"system", "developer", "user", "assistant", "tool", "latest_reminder"};
    std::vector<std::string> open_call_ids;  // ids of the latest assistant's tool calls
    bool after_calls = false;
    for (size_t i = 0; i < in.messages.size(); ++i) {
        ChatMessage& m = in.messages[i];
        const std::string w = "messages[" + std::to_string(i) + "]";
        if (!kRoles.count(m.role)) fail(w + ".role", "unsupported role '" + m.role + "'");
        if (format == ChatFormat::kDsv32 && m.role == "latest_reminder")
            fail(w + ".role", "latest_reminder is not part of the DeepSeek-V3.2 format");
        if (m.role == "developer" && m.content.empty()) fail(w + ".content", "a developer message needs content");
        static const std::set<std::string> kTasks = {"action", "query", "authority", "domain", "title", "read_url"};
        if (m.task && !kTasks.count(*m.task)) fail(w + ".task", "unknown task '" + *m.task + "'");
        if (m.wo_eos && (m.role != "assistant" || i + 1 != in.messages.size()))
            fail(w, "only the last message, an assistant message, can be a prefix to continue");
        if (m.role == "assistant") {
            open_call_ids.clear();
            for (auto& tc : m.tool_calls) {
                // Clients send "" for a call without arguments; the model writes it as an empty invoke.
                if (tc.arguments.find_first_not_of(" \t\r\n") == std::string::npos) tc.arguments = "{}";
                ojson a = ojson::parse(tc.arguments, nullptr, false);
                if (!a.is_discarded() && !a.is_object())
                    fail(w + ".tool_calls", "arguments of '" + tc.name + "' must be a JSON object");
                if (a.is_discarded() && format == ChatFormat::kDsv32)
                    fail(w + ".tool_calls", "arguments of '" + tc.name + "' are not valid JSON");
                if (!tc.id.empty()) open_call_ids.push_back(tc.id);
            }
            after_calls = !m.tool_calls.empty();
        } else if (m.role == "tool") {
            if (!after_calls) fail(w, "a tool message must follow an assistant message with tool_calls");
            if (m.tool_call_id.empty()) fail(w + ".tool_call_id", "missing");
            if (std::find(open_call_ids.begin(), open_call_ids.end(), m.tool_call_id) == open_call_ids.end())
                fail(w + ".tool_call_id",
                     "'" + m.tool_call_id + "' does not match a tool call of the preceding assistant message");
        } else {
            after_calls = false;
        }
    }

    // Tools and tool_choice.
    auto tools = req.find("tools");
    if (tools != req.end() && !tools->is_null()) {
        if (!tools->is_array()) fail("tools", std::string("expected an array, got ") + type_name(*tools));
        std::set<std::string> names;
        for (size_t i = 0; i < tools->size(); ++i) {
            ojson fn = function_of_tool((*tools)[i], "tools[" + std::to_string(i) + "]");
            if (!names.insert(fn["name"].get<std::string>()).second)
                fail("tools[" + std::to_string(i) + "].function.name", "duplicate tool name");
            in.tools.push_back(std::move(fn));
        }
    }
    in.tool_choice.kind = in.tools.empty() ? ToolChoice::Kind::kNone : ToolChoice::Kind::kAuto;
    if (auto tc = req.find("tool_choice"); tc != req.end() && !tc->is_null()) {
        if (tc->is_string()) {
            const std::string s = tc->get<std::string>();
            if (s == "none")
                in.tool_choice.kind = ToolChoice::Kind::kNone;
            else if (s == "auto")
                in.tool_choice.kind = ToolChoice::Kind::kAuto;
            else if (s == "required")
                in.tool_choice.kind = ToolChoice::Kind::kRequired;
            else
                fail("tool_choice", "expected \"none\", \"auto\", \"required\" or a named function, got '" + s + "'");
        } else if (tc->is_object()) {
            auto fn = tc->find("function");
            if (fn == tc->end() || !fn->is_object()) fail("tool_choice.function", "missing or not an object");
            in.tool_choice.kind = ToolChoice::Kind::kNamed;
            in.tool_choice.name = get_string(*fn, "name", "tool_choice.function", true);
        } else {
            fail("tool_choice", std::string("expected a string or an object, got ") + type_name(*tc));
        }
        if ((in.tool_choice.kind == ToolChoice::Kind::kRequired || in.tool_choice.kind == ToolChoice::Kind::kNamed) &&
            in.tools.empty())
            fail("tool_choice", "requires tools");
    }
    if (in.tool_choice.kind == ToolChoice::Kind::kNamed) {
        // The model is shown only the function it must call.
        std::vector<ojson> only;
        for (auto& f : in.tools)
            if (f["name"] == in.tool_choice.name) only.push_back(f);
        if (only.empty()) fail("tool_choice.function.name", "'" + in.tool_choice.name + "' is not among the tools");
        in.tools = std::move(only);
    }
    if (in.tool_choice.kind == ToolChoice::Kind::kNone) in.tools.clear();  // nothing to call, nothing declared
    in.parallel_tool_calls = get_bool(req, "parallel_tool_calls", "request", true);
    if (!in.tools.empty()) leading_system(in.messages).tools = in.tools;

    // response_format: rendered into the system prompt the way the model was trained to read it.
    if (auto rf = req.find("response_format"); rf != req.end() && !rf->is_null()) {
        if (!rf->is_object()) fail("response_format", "expected an object");
        const std::string type = get_string(*rf, "type", "response_format", true);
        if (type != "text" && type != "json_object" && type != "json_schema")
            fail("response_format.type", "expected text, json_object or json_schema, got '" + type + "'");
        if (type == "json_schema" && !rf->contains("json_schema")) fail("response_format.json_schema", "missing");
        if (type != "text") leading_system(in.messages).response_format = *rf;
    }

    // Thinking mode: on by default for V4 (as DeepSeek's API), off for V3.2.
    bool thinking = format != ChatFormat::kDsv32;
    bool drop_thinking = true;
    if (auto t = req.find("thinking"); t != req.end() && !t->is_null()) {
        if (t->is_boolean())
            thinking = t->get<bool>();
        else if (t->is_object())
            thinking = get_string(*t, "type", "thinking", true) != "disabled";
        else
            fail("thinking", "expected {\"type\": \"enabled\"|\"disabled\"} or a boolean");
    }
    if (auto k = req.find("chat_template_kwargs"); k != req.end() && !k->is_null()) {
        if (!k->is_object()) fail("chat_template_kwargs", "expected an object");
        if (k->contains("thinking")) thinking = get_bool(*k, "thinking", "chat_template_kwargs", thinking);
        if (k->contains("enable_thinking"))
            thinking = get_bool(*k, "enable_thinking", "chat_template_kwargs", thinking);
        drop_thinking = get_bool(*k, "drop_thinking", "chat_template_kwargs", true);
    }
    std::optional<std::string> effort;
    if (auto e = req.find("reasoning_effort"); e != req.end() && !e->is_null()) {
        const std::string v = get_string(req, "reasoning_effort", "request", true);
        const bool v0731 = format == ChatFormat::kDsv4_0731;
        if (v == "none")
            thinking = false;
        else if (v == "minimal" || v == "low" || v == "medium")
            effort = v0731 ? std::optional<std::string>("low") : std::nullopt;
        else if (v == "high")
            effort = "high";
        else if (v == "xhigh" || v == "max")
            effort = "max";
        else
            fail("reasoning_effort", "expected none, minimal, low, medium, high, xhigh or max, got '" + v + "'");
    }
    in.options.thinking = thinking;
    in.options.drop_thinking = drop_thinking;
    if (format != ChatFormat::kDsv32) in.options.reasoning_effort = effort;
    return in;
}

std::string ChatEncoderInput::forced_tool_prefix() const {
    if (tool_choice.kind != ToolChoice::Kind::kRequired && tool_choice.kind != ToolChoice::Kind::kNamed) return {};
    std::string s = "\n\n<｜DSML｜" + std::string(tool_block_name(options.format)) + ">\n";
    if (tool_choice.kind == ToolChoice::Kind::kNamed) s += "<｜DSML｜invoke name=\"" + tool_choice.name + "\">\n";
    return s;
}

StreamParserOptions ChatEncoderInput::parser_options(std::string_view prompt) const {
    StreamParserOptions o;
    o.format = options.format;
    o.starts_in_reasoning = prompt_opens_reasoning(prompt);
    o.tools = tools;
    o.emit_tool_calls = tool_choice.kind != ToolChoice::Kind::kNone;
    return o;
}

bool prompt_opens_reasoning(std::string_view prompt) {
    return prompt.size() >= kThinkStart.size() && prompt.substr(prompt.size() - kThinkStart.size()) == kThinkStart;
}

}  // namespace dsinfer::text
