// DeepSeek-V4 / V3.2 chat format ("DSML"): prompt encoding and strict parsing of what the model writes.
//
// The encoder reproduces DeepSeek's reference encoder (encoding_dsv4.py / encoding_dsv32.py) byte for byte:
// the same pre-processing (tool results merged into user turns and sorted by call order, earlier reasoning
// dropped unless tools are declared), the same templates and the same JSON text (Python json.dumps style:
// ", " / ": " separators, key order kept, non-ASCII kept). The strict parser follows DeepSeek's
// parse_message_from_completion_text: it accepts only well-formed output and throws DsmlError otherwise.
// The lenient streaming parser lives in dsml_stream.h; the OpenAI request conversion in chat.h.
// docs/dsml.md describes the format and every rule.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dsinfer::text {

using ojson = nlohmann::ordered_json;

// The special token strings of the encoding (all "｜" are U+FF5C, "▁" is U+2581).
inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUserToken = "<｜User｜>";
inline constexpr std::string_view kAssistantToken = "<｜Assistant｜>";
inline constexpr std::string_view kLatestReminderToken = "<｜latest_reminder｜>";
inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";
inline constexpr std::string_view kDsml = "｜DSML｜";

// Which encoder: V4 as released (April 2026), V4 with the three-level reasoning-effort table of the
// 0731 refresh, or V3.2 (tool block `function_calls`, tool results after the assistant turn).
enum class ChatFormat { kDsv4, kDsv4_0731, kDsv32 };

// "dsv4", "dsv4-0731", "dsv32"; throws std::invalid_argument on anything else.
ChatFormat chat_format_from_name(std::string_view name);
const char* chat_format_name(ChatFormat f);
// The name of the tool-call block: "tool_calls" (V4) or "function_calls" (V3.2).
std::string_view tool_block_name(ChatFormat f);

class DsmlError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// One tool call of an assistant message, as OpenAI sends it: `arguments` is JSON text.
struct ToolCall {
    std::string id;
    std::string name;
    std::string arguments;
};

// A part of a list-valued tool-message content (the encoder renders non-text parts as "[Unsupported TYPE]").
struct ContentPart {
    std::string type;
    std::string text;
};

// A message as the reference encoder takes it (OpenAI shape plus DeepSeek's extra keys). Absent and null
// content are both the empty string: the reference treats them alike everywhere.
struct ChatMessage {
    std::string role;  // system, user, assistant, tool, developer, latest_reminder
    std::string content;
    std::optional<std::vector<ContentPart>> content_parts;  // tool messages whose content was a list
    std::string reasoning_content;                          // assistant
    std::vector<ToolCall> tool_calls;                       // assistant
    std::vector<ojson> tools;         // system/developer: function objects ({name, description, parameters})
    ojson response_format;            // system/developer: rendered as JSON when not null/empty
    std::string tool_call_id;         // tool
    std::optional<std::string> task;  // quick-instruction task: action query authority domain title read_url
    bool wo_eos = false;              // assistant: leave the turn open (no EOS) so the model continues it
};

struct EncodeOptions {
    ChatFormat format = ChatFormat::kDsv4;
    bool thinking = false;      // thinking_mode "thinking" (true) or "chat"
    bool drop_thinking = true;  // drop reasoning of turns before the last user message (V4: off when tools)
    std::optional<std::string> reasoning_effort;  // dsv4: null/"high"/"max"; dsv4-0731: "low"/"high"/"max"
    bool add_bos = true;
};

// Encodes `messages` into the prompt string. `context`, when given, is an already-encoded prefix: only
// `messages` are rendered (without BOS), with the rules applied to context + messages. Throws DsmlError
// on input the reference rejects (unknown role, empty developer message, bad task, bad effort, ...).
std::string encode_chat(const std::vector<ChatMessage>& messages, const EncodeOptions& options,
                        const std::vector<ChatMessage>& context = {});

// The tools section the encoder appends to a system/developer message (without the leading "\n\n").
std::string render_tools_block(const std::vector<ojson>& functions, ChatFormat format);

// The DSML text of one assistant turn's tool calls, starting with the "\n\n" separator.
std::string render_tool_calls(const std::vector<ToolCall>& calls, ChatFormat format);

// Python json.dumps(value, ensure_ascii=False) with its default separators ", " and ": ".
std::string py_json_dumps(const ojson& value);
// The JSON string literal of `s` as Python writes it (ensure_ascii=False).
std::string py_json_string(std::string_view s);

// A parsed assistant turn.
struct ParsedToolCall {
    std::string name;
    std::string arguments;  // JSON text
};
struct ParsedMessage {
    std::string content;
    std::string reasoning_content;
    std::vector<ParsedToolCall> tool_calls;
};

// DeepSeek's strict parser: `text` is what the model generated after the prompt (after "<think>" when
// `thinking`, after "</think>" otherwise), normally ending in EOS. Arguments are assembled as the
// reference does (string="false" values spliced in verbatim). Throws DsmlError on malformed text.
ParsedMessage parse_completion_strict(std::string_view text, bool thinking, ChatFormat format);

// {content, reasoning_content, tool_calls: [{type: "function", function: {name, arguments}}]}.
ojson parsed_message_to_json(const ParsedMessage& m);

}  // namespace dsinfer::text
