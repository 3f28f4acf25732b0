// The DeepSeek-V4 and V3.2 prompt encoders (docs/dsml.md §3-§6, §10). Each rule follows DeepSeek's
// reference encoder exactly, including its pre-processing order, so unseen conversations encode the same.
#include <algorithm>
#include <map>

#include "text/dsml.h"

namespace dsinfer::text {

namespace {

const std::map<std::string, std::string_view>& task_tokens() {
    static const std::map<std::string, std::string_view> m = {
        {"action", "<｜action｜>"}, {"query", "<｜query｜>"}, {"authority", "<｜authority｜>"},
        {"domain", "<｜domain｜>"}, {"title", "<｜title｜>"}, {"read_url", "<｜read_url｜>"},
    };
    return m;
}

// Reasoning-effort paragraphs put right after BOS in thinking mode.
constexpr std::string_view kEffortAbsoluteMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";
constexpr std::string_view kEffortBeyondMax =
    "Reasoning Effort: Beyond maximum \u2014 exhaustive, relentless, and uncompromising.\n"
    "You MUST reason with the utmost depth and rigor, leaving absolutely nothing to chance: exhaustively "
    "decompose the problem into its most fundamental components, trace every causal chain to its root, and "
    "resolve the underlying cause rather than any surface symptom.\n"
    "Do not stop reasoning until you have independently verified the solution from multiple angles and are "
    "certain that no assumption remains unchecked and no error remains undiscovered.\n\n";

std::string_view effort_prefix(ChatFormat format, const std::optional<std::string>& effort) {
    if (format == ChatFormat::kDsv4_0731) {
        if (!effort || *effort == "low") return "";
        if (*effort == "high") return kEffortAbsoluteMax;
        if (*effort == "max") return kEffortBeyondMax;
        throw DsmlError("invalid reasoning_effort '" + *effort + "' for dsv4-0731 (expected low, high or max)");
    }
    if (!effort || *effort == "high") return "";
    if (*effort == "max") return kEffortAbsoluteMax;
    throw DsmlError("invalid reasoning_effort '" + *effort + "' for dsv4 (expected null, high or max)");
}

std::string response_format_block(const ojson& rf) {
    return "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n" + py_json_dumps(rf);
}

// Python truthiness of the response_format value.
bool has_response_format(const ojson& rf) {
    if (rf.is_null()) return false;
    if (rf.is_object() || rf.is_array() || rf.is_string()) return !rf.empty();
    if (rf.is_boolean()) return rf.get<bool>();
    return true;
}

std::string dsml_join_tool_schemas(const std::vector<ojson>& functions) {
    std::string s;
    for (size_t i = 0; i < functions.size(); ++i) {
        if (i) s += "\n";
        s += py_json_dumps(functions[i]);
    }
    return s;
}

// One tool call's parameter lines: strings raw with string="true", everything else as JSON.
std::string encode_arguments(const ToolCall& tc, ChatFormat format) {
    ojson args;
    try {
        args = ojson::parse(tc.arguments);
    } catch (const ojson::parse_error&) {
        if (format == ChatFormat::kDsv32)
            throw DsmlError("tool call '" + tc.name + "': arguments are not valid JSON: " + tc.arguments);
        // V4 keeps unparsable arguments as one raw string parameter named "arguments".
        args = ojson::object();
        args["arguments"] = tc.arguments;
    }
    if (!args.is_object())
        throw DsmlError("tool call '" + tc.name + "': arguments must be a JSON object, got: " + tc.arguments);
    std::string out;
    bool first = true;
    for (auto it = args.begin(); it != args.end(); ++it) {
        if (!first) out += "\n";
        first = false;
        const bool is_str = it.value().is_string();
        out += "<｜DSML｜parameter name=\"";
        out += it.key();
        out += "\" string=\"";
        out += is_str ? "true" : "false";
        out += "\">";
        out += is_str ? it.value().get_ref<const std::string&>() : py_json_dumps(it.value());
        out += "</｜DSML｜parameter>";
    }
    return out;
}

// ---------------------------------------------------------------- V4

struct Block {
    bool tool_result = false;
    std::string text;  // text block text, or tool result content
    std::optional<std::vector<ContentPart>> parts;
    std::string tool_use_id;
};

struct V4Msg {
    ChatMessage m;
    bool has_blocks = false;  // a user message made by merge_tool_messages
    std::vector<Block> blocks;
};

// merge_tool_messages: tool results and user texts become content blocks of user turns.
std::vector<V4Msg> merge_tool_messages(const std::vector<ChatMessage>& msgs) {
    std::vector<V4Msg> merged;
    for (const auto& msg : msgs) {
        if (msg.role == "tool") {
            Block b;
            b.tool_result = true;
            b.text = msg.content;
            b.parts = msg.content_parts;
            b.tool_use_id = msg.tool_call_id;
            if (!merged.empty() && merged.back().m.role == "user" && merged.back().has_blocks) {
                merged.back().blocks.push_back(std::move(b));
            } else {
                V4Msg u;
                u.m.role = "user";
                u.has_blocks = true;
                u.blocks.push_back(std::move(b));
                merged.push_back(std::move(u));
            }
        } else if (msg.role == "user") {
            Block b;
            b.text = msg.content;
            if (!merged.empty() && merged.back().m.role == "user" && merged.back().has_blocks &&
                !merged.back().m.task) {
                merged.back().blocks.push_back(std::move(b));
            } else {
                V4Msg u;
                u.m.role = "user";
                u.m.content = msg.content;
                u.m.task = msg.task;
                u.m.wo_eos = msg.wo_eos;
                u.has_blocks = true;
                u.blocks.push_back(std::move(b));
                merged.push_back(std::move(u));
            }
        } else {
            V4Msg o;
            o.m = msg;
            merged.push_back(std::move(o));
        }
    }
    return merged;
}

// sort_tool_results_by_call_order: within a user turn with several tool results, put them in the order of
// the latest assistant turn's tool calls (unknown ids sort as position 0; text blocks keep their slots).
void sort_tool_results(std::vector<V4Msg*>& msgs) {
    std::map<std::string, size_t> order;
    for (V4Msg* msg : msgs) {
        if (msg->m.role == "assistant" && !msg->m.tool_calls.empty()) {
            order.clear();
            for (size_t i = 0; i < msg->m.tool_calls.size(); ++i)
                if (!msg->m.tool_calls[i].id.empty()) order[msg->m.tool_calls[i].id] = i;
        } else if (msg->m.role == "user" && msg->has_blocks) {
            std::vector<Block> tools;
            for (const auto& b : msg->blocks)
                if (b.tool_result) tools.push_back(b);
            if (tools.size() > 1 && !order.empty()) {
                auto key = [&](const Block& b) {
                    auto it = order.find(b.tool_use_id);
                    return it == order.end() ? size_t{0} : it->second;
                };
                std::stable_sort(tools.begin(), tools.end(),
                                 [&](const Block& a, const Block& b) { return key(a) < key(b); });
                size_t k = 0;
                for (auto& b : msg->blocks)
                    if (b.tool_result) b = tools[k++];
            }
        }
    }
}

int find_last_user_index(const std::vector<V4Msg>& msgs) {
    for (int i = static_cast<int>(msgs.size()) - 1; i >= 0; --i)
        if (msgs[i].m.role == "user" || msgs[i].m.role == "developer") return i;
    return -1;
}

std::vector<V4Msg> drop_thinking_v4(const std::vector<V4Msg>& msgs) {
    const int last_user = find_last_user_index(msgs);
    std::vector<V4Msg> out;
    for (int i = 0; i < static_cast<int>(msgs.size()); ++i) {
        const auto& role = msgs[i].m.role;
        if (role == "user" || role == "system" || role == "tool" || role == "latest_reminder" ||
            role == "direct_search_results" || i >= last_user) {
            out.push_back(msgs[i]);
        } else if (role == "assistant") {
            V4Msg a = msgs[i];
            a.m.reasoning_content.clear();
            out.push_back(std::move(a));
        }
        // Earlier developer messages (and any other role) are removed.
    }
    return out;
}

std::string render_tool_result(const Block& b) {
    std::string content = b.text;
    if (b.parts) {
        content.clear();
        for (size_t i = 0; i < b.parts->size(); ++i) {
            if (i) content += "\n\n";
            const auto& p = (*b.parts)[i];
            content += p.type == "text" ? p.text : "[Unsupported " + p.type + "]";
        }
    }
    return "<tool_result>" + content + "</tool_result>";
}

std::string render_v4(int index, const std::vector<V4Msg>& msgs, const EncodeOptions& opt, bool drop_thinking) {
    const V4Msg& vm = msgs[index];
    const ChatMessage& msg = vm.m;
    const int last_user = find_last_user_index(msgs);
    std::string prompt;

    std::string_view prefix = effort_prefix(opt.format, opt.reasoning_effort);  // validates in any mode
    if (index == 0 && opt.thinking) prompt += prefix;

    const std::string& role = msg.role;
    if (role == "system") {
        prompt += msg.content;
        if (!msg.tools.empty()) prompt += "\n\n" + render_tools_block(msg.tools, opt.format);
        if (has_response_format(msg.response_format)) prompt += "\n\n" + response_format_block(msg.response_format);
    } else if (role == "developer") {
        if (msg.content.empty()) throw DsmlError("a developer message must have non-empty content");
        prompt += kUserToken;
        prompt += msg.content;
        if (!msg.tools.empty()) prompt += "\n\n" + render_tools_block(msg.tools, opt.format);
        if (has_response_format(msg.response_format)) prompt += "\n\n" + response_format_block(msg.response_format);
    } else if (role == "user") {
        prompt += kUserToken;
        if (vm.has_blocks && !vm.blocks.empty()) {
            for (size_t i = 0; i < vm.blocks.size(); ++i) {
                if (i) prompt += "\n\n";
                prompt += vm.blocks[i].tool_result ? render_tool_result(vm.blocks[i]) : vm.blocks[i].text;
            }
        } else {
            prompt += msg.content;
        }
    } else if (role == "latest_reminder") {
        prompt += kLatestReminderToken;
        prompt += msg.content;
    } else if (role == "assistant") {
        std::string tc = msg.tool_calls.empty() ? "" : render_tool_calls(msg.tool_calls, opt.format);
        const bool prev_has_task = index >= 1 && msgs[index - 1].m.task.has_value();
        std::string thinking_part;
        if (opt.thinking && !prev_has_task && (!drop_thinking || index > last_user))
            thinking_part = msg.reasoning_content + std::string(kThinkEnd);
        prompt += thinking_part + msg.content + tc;
        if (!msg.wo_eos) prompt += kEos;
    } else if (role == "tool") {
        throw DsmlError("internal: tool message reached rendering without being merged");
    } else {
        throw DsmlError("unknown message role '" + role + "'");
    }

    // Transition: the generation prompt after a user turn, unless the next message is not an answer.
    if (index + 1 < static_cast<int>(msgs.size())) {
        const auto& next = msgs[index + 1].m.role;
        if (next != "assistant" && next != "latest_reminder") return prompt;
    }
    if (msg.task) {
        auto it = task_tokens().find(*msg.task);
        if (it == task_tokens().end())
            throw DsmlError("invalid task '" + *msg.task +
                            "' (expected action, query, authority, domain, title or read_url)");
        if (*msg.task != "action") {
            prompt += it->second;
        } else {
            prompt += kAssistantToken;
            prompt += opt.thinking ? kThinkStart : kThinkEnd;
            prompt += it->second;
        }
    } else if (role == "user" || role == "developer") {
        prompt += kAssistantToken;
        if (opt.thinking && (!drop_thinking || index >= last_user))
            prompt += kThinkStart;
        else
            prompt += kThinkEnd;
    }
    return prompt;
}

std::string encode_v4(const std::vector<ChatMessage>& messages, const EncodeOptions& opt,
                      const std::vector<ChatMessage>& context_in) {
    std::vector<V4Msg> msgs = merge_tool_messages(messages);
    {
        // The reference sorts context + merged messages, with the context not yet merged.
        std::vector<V4Msg> raw_context;
        for (const auto& c : context_in) raw_context.push_back(V4Msg{c, false, {}});
        std::vector<V4Msg*> all;
        for (auto& c : raw_context) all.push_back(&c);
        for (auto& m : msgs) all.push_back(&m);
        sort_tool_results(all);
    }
    std::vector<V4Msg> context;
    if (!context_in.empty()) {
        context = merge_tool_messages(context_in);
        std::vector<V4Msg*> all;
        for (auto& c : context) all.push_back(&c);
        sort_tool_results(all);
    }
    std::vector<V4Msg> full = context;
    full.insert(full.end(), msgs.begin(), msgs.end());

    std::string prompt = opt.add_bos && context.empty() ? std::string(kBos) : std::string();

    bool drop = opt.drop_thinking;
    for (const auto& m : full)
        if (!m.m.tools.empty()) drop = false;  // tool conversations keep all reasoning

    size_t num_to_render = msgs.size();
    size_t context_len = context.size();
    if (opt.thinking && drop) {
        full = drop_thinking_v4(full);
        const size_t kept_context = drop_thinking_v4(context).size();
        num_to_render = full.size() - kept_context;
        context_len = full.size() - num_to_render;
    }
    for (size_t i = 0; i < num_to_render; ++i) prompt += render_v4(static_cast<int>(i + context_len), full, opt, drop);
    return prompt;
}

// ---------------------------------------------------------------- V3.2

int find_last_user_index(const std::vector<ChatMessage>& msgs) {
    for (int i = static_cast<int>(msgs.size()) - 1; i >= 0; --i)
        if (msgs[i].role == "user" || msgs[i].role == "developer") return i;
    return -1;
}

std::string render_v32(int index, const std::vector<ChatMessage>& msgs, bool thinking) {
    const ChatMessage& msg = msgs[index];
    const int last_user = find_last_user_index(msgs);
    const auto think_token = [&](bool open) { return std::string(open ? kThinkStart : kThinkEnd); };
    std::string prompt;
    const std::string& role = msg.role;
    if (role == "system") {
        prompt += msg.content;
        if (!msg.tools.empty()) prompt += "\n\n" + render_tools_block(msg.tools, ChatFormat::kDsv32);
        if (has_response_format(msg.response_format)) prompt += "\n\n" + response_format_block(msg.response_format);
    } else if (role == "developer") {
        if (msg.content.empty()) throw DsmlError("a developer message must have non-empty content");
        std::string body;
        if (!msg.tools.empty()) body += "\n\n" + render_tools_block(msg.tools, ChatFormat::kDsv32);
        if (has_response_format(msg.response_format)) body += "\n\n" + response_format_block(msg.response_format);
        body += "\n\n# The user's message is: " + msg.content;
        prompt += std::string(kUserToken) + body + std::string(kAssistantToken);
        prompt += think_token(index == last_user && thinking);
    } else if (role == "user") {
        prompt += std::string(kUserToken) + msg.content + std::string(kAssistantToken);
        prompt += think_token(index == last_user && thinking);
    } else if (role == "tool") {
        int prev = index - 1;
        while (prev >= 0 && msgs[prev].role == "tool") --prev;
        if (prev < 0 || msgs[prev].role != "assistant")
            throw DsmlError("a tool message must follow an assistant message with tool calls (message " +
                            std::to_string(index) + ")");
        const size_t order = static_cast<size_t>(index - prev);
        const size_t n_calls = msgs[prev].tool_calls.size();
        if (n_calls < order)
            throw DsmlError("more tool messages than tool calls of the preceding assistant message (message " +
                            std::to_string(index) + ")");
        if (order == 1) prompt += "\n\n<function_results>";
        std::string content = msg.content;
        if (msg.content_parts) {
            content.clear();
            for (size_t i = 0; i < msg.content_parts->size(); ++i) {
                if (i) content += "\n\n";
                const auto& p = (*msg.content_parts)[i];
                content += p.type == "text" ? p.text : "[Unsupported " + p.type + "]";
            }
        }
        prompt += "\n<result>" + content + "</result>";
        if (order == n_calls) {
            prompt += "\n</function_results>";
            prompt += "\n\n" + think_token(index >= last_user && thinking);
        }
    } else if (role == "assistant") {
        std::string tc = msg.tool_calls.empty() ? "" : render_tool_calls(msg.tool_calls, ChatFormat::kDsv32);
        std::string thinking_part;
        if (thinking && index > last_user) thinking_part = msg.reasoning_content + std::string(kThinkEnd);
        prompt += thinking_part + msg.content + tc + std::string(kEos);
    } else {
        throw DsmlError("unknown message role '" + role + "' for dsv32");
    }
    return prompt;
}

std::string encode_v32(const std::vector<ChatMessage>& messages, const EncodeOptions& opt,
                       const std::vector<ChatMessage>& context) {
    std::vector<ChatMessage> full = context;
    full.insert(full.end(), messages.begin(), messages.end());
    std::string prompt = opt.add_bos && context.empty() ? std::string(kBos) : std::string();
    if (opt.thinking && opt.drop_thinking) {
        const int last_user = find_last_user_index(full);
        std::vector<ChatMessage> kept;
        for (int i = 0; i < static_cast<int>(full.size()); ++i) {
            const auto& role = full[i].role;
            if (role == "user" || role == "system" || role == "tool" || i >= last_user) {
                kept.push_back(full[i]);
            } else if (role == "assistant") {
                ChatMessage a = full[i];
                a.reasoning_content.clear();
                kept.push_back(std::move(a));
            }
        }
        full = std::move(kept);
    }
    for (size_t i = 0; i < messages.size(); ++i) {
        const size_t idx = i + context.size();
        if (idx >= full.size()) throw DsmlError("context and messages do not line up after dropping reasoning");
        prompt += render_v32(static_cast<int>(idx), full, opt.thinking);
    }
    return prompt;
}

}  // namespace

ChatFormat chat_format_from_name(std::string_view name) {
    if (name == "dsv4") return ChatFormat::kDsv4;
    if (name == "dsv4-0731") return ChatFormat::kDsv4_0731;
    if (name == "dsv32") return ChatFormat::kDsv32;
    throw std::invalid_argument("unknown chat format '" + std::string(name) + "' (expected dsv4, dsv4-0731 or dsv32)");
}

const char* chat_format_name(ChatFormat f) {
    switch (f) {
        case ChatFormat::kDsv4:
            return "dsv4";
        case ChatFormat::kDsv4_0731:
            return "dsv4-0731";
        case ChatFormat::kDsv32:
            return "dsv32";
    }
    return "?";
}

std::string_view tool_block_name(ChatFormat f) {
    return f == ChatFormat::kDsv32 ? "function_calls" : "tool_calls";
}

std::string render_tools_block(const std::vector<ojson>& functions, ChatFormat format) {
    const std::string schemas = dsml_join_tool_schemas(functions);
    if (format == ChatFormat::kDsv32) {
        return "## Tools\n\n"
               "You have access to a set of tools you can use to answer the user's question.\n"
               "You can invoke functions by writing a \"<｜DSML｜function_calls>\" block like the following as part "
               "of your reply to the user:\n"
               "<｜DSML｜function_calls>\n"
               "<｜DSML｜invoke name=\"$FUNCTION_NAME\">\n"
               "<｜DSML｜parameter name=\"$PARAMETER_NAME\" "
               "string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
               "...\n"
               "</｜DSML｜invoke>\n"
               "<｜DSML｜invoke name=\"$FUNCTION_NAME2\">\n"
               "...\n"
               "</｜DSML｜invoke>\n"
               "</｜DSML｜function_calls>\n\n"
               "String and scalar parameters should be specified as is without any escaping or quotes, while lists "
               "and objects should use JSON format. The \"string\" attribute should be set to \"true\" for string "
               "type parameters and \"false\" for other types (numbers, booleans, arrays, objects).\n\n"
               "If the thinking_mode is enabled, then after function results you should strongly consider outputting "
               "a thinking block. Here is an example:\n\n"
               "<｜DSML｜function_calls>\n"
               "...\n"
               "</｜DSML｜function_calls>\n\n"
               "<function_results>\n"
               "...\n"
               "</function_results>\n\n"
               "<think>...thinking about results</think>\n\n"
               "Here are the functions available in JSONSchema format:\n"
               "<functions>\n" +
               schemas + "\n</functions>\n";
    }
    return "## Tools\n\n"
           "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a "
           "\"<｜DSML｜tool_calls>\" block like the following:\n\n"
           "<｜DSML｜tool_calls>\n"
           "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
           "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
           "...\n"
           "</｜DSML｜invoke>\n"
           "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
           "...\n"
           "</｜DSML｜invoke>\n"
           "</｜DSML｜tool_calls>\n\n"
           "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
           "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
           "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
           "<think>...</think> BEFORE any tool calls or final response.\n\n"
           "Otherwise, output directly after </think> with tool calls or final response.\n\n"
           "### Available Tool Schemas\n\n" +
           schemas +
           "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";
}

std::string render_tool_calls(const std::vector<ToolCall>& calls, ChatFormat format) {
    const std::string block(tool_block_name(format));
    std::string out = "\n\n<｜DSML｜" + block + ">\n";
    for (size_t i = 0; i < calls.size(); ++i) {
        if (i) out += "\n";
        out += "<｜DSML｜invoke name=\"" + calls[i].name + "\">\n" + encode_arguments(calls[i], format) +
               "\n</｜DSML｜invoke>";
    }
    out += "\n</｜DSML｜" + block + ">";
    return out;
}

std::string encode_chat(const std::vector<ChatMessage>& messages, const EncodeOptions& options,
                        const std::vector<ChatMessage>& context) {
    if (options.format == ChatFormat::kDsv32) return encode_v32(messages, options, context);
    return encode_v4(messages, options, context);
}

}  // namespace dsinfer::text
