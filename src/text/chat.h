// From request shapes to the DSML encoder's inputs: the OpenAI chat-completions request (messages with
// content parts, tool_calls with JSON-string arguments, tool messages, tools, tool_choice, reasoning and
// thinking switches) and the test-case file form of tests/data/dsml. docs/dsml.md ("OpenAI requests")
// says how each field maps and why.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "text/dsml.h"
#include "text/dsml_stream.h"

namespace dsinfer::text {

// Thrown for a request the encoder cannot take; the message names the offending field
// (e.g. "messages[2].tool_calls[0].function.name: expected a string").
class ChatRequestError : public std::invalid_argument {
  public:
    using std::invalid_argument::invalid_argument;
};

struct ToolChoice {
    enum class Kind { kAuto, kNone, kRequired, kNamed };
    Kind kind = Kind::kAuto;
    std::string name;  // kNamed
};

struct ChatEncoderInput {
    std::vector<ChatMessage> messages;
    std::vector<ChatMessage> context;  // an already-encoded prefix (case files only; see encode_chat)
    EncodeOptions options;
    std::vector<ojson> tools;  // function objects declared to the model
    ToolChoice tool_choice;
    bool parallel_tool_calls = true;

    // For tool_choice required / named: the text that starts the answer with a tool-call block (and, when
    // named, the invoke of that function). Constrained generation forces it right after the reasoning (in
    // chat mode, right at the start of the answer) and feeds it to the parser like generated text.
    std::string forced_tool_prefix() const;
    // Parser options matching this input and the prompt it encodes to.
    StreamParserOptions parser_options(std::string_view prompt) const;
};

// One message in the encoder's JSON form (OpenAI shape plus DeepSeek's keys: reasoning_content or
// reasoning, tools/response_format on system/developer, task, wo_eos or prefix, tool_call_id).
// `where` names the message in errors ("messages[3]").
ChatMessage chat_message_from_json(const ojson& m, const std::string& where);
std::vector<ChatMessage> chat_messages_from_json(const ojson& messages);

// An OpenAI chat-completions request body. `format` picks the model's encoding (and its defaults:
// thinking on for dsv4, off for dsv32). Throws ChatRequestError on an invalid request.
ChatEncoderInput chat_input_from_openai(const ojson& request, ChatFormat format);

// An `encode` (or `parse`) case of tests/data/dsml: format, thinking, drop_thinking, reasoning_effort,
// messages and top-level tools, attached to messages[0] when it is a system/developer message and to a new
// empty system message in front otherwise. An optional `context` (messages already encoded) takes the
// tools instead when present, as the first message of the conversation.
ChatEncoderInput chat_input_from_case(const ojson& case_json);

// True when the prompt leaves the model inside its reasoning (it ends with "<think>").
bool prompt_opens_reasoning(std::string_view prompt);

}  // namespace dsinfer::text
