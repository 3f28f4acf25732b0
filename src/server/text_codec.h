// The server's view of text: chat rendering, tokenization, incremental detokenization and parsing
// of the model's output into reasoning / content / tool calls. The server depends only on this
// interface; the byte-level codec below serves scripted models in tests, and the DeepSeek tokenizer
// + DSML encoder plug in behind the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dsinfer::server {

struct ToolCallDelta {
    int index = 0;
    std::string id;         // set on the first delta of a call
    std::string name;       // set on the first delta of a call
    std::string arguments;  // JSON text (whole, or a piece when streamed)
};

struct ChatDelta {
    std::string reasoning;
    std::string content;
    std::vector<ToolCallDelta> tool_calls;
    bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
};

// Turns the streamed completion text into deltas; never leaks a partial marker as content.
class OutputParser {
public:
    virtual ~OutputParser() = default;
    virtual ChatDelta feed(const std::string& text) = 0;
    virtual ChatDelta finish() = 0;  // end of generation: releases what was held back
    virtual int tool_calls_emitted() const = 0;
};

// Token ids to UTF-8 text, emitting only complete characters.
class Detokenizer {
public:
    virtual ~Detokenizer() = default;
    virtual std::string push(int32_t id) = 0;
    virtual std::string flush() = 0;
};

struct ChatOptions {
    bool thinking = false;
    std::string reasoning_effort;               // "", "low", "medium", "high", "max"
    nlohmann::json tools = nlohmann::json();    // null = no tools in the prompt
};

class TextCodec {
public:
    virtual ~TextCodec() = default;
    // Text to ids; special-token strings become their ids when allow_special.
    virtual std::vector<int32_t> encode(const std::string& text, bool allow_special) const = 0;
    // OpenAI messages to the prompt text (ending with the generation prompt); throws
    // std::invalid_argument naming the offending message.
    virtual std::string render_chat(const nlohmann::json& messages, const ChatOptions& opts) const = 0;
    virtual std::unique_ptr<Detokenizer> detokenizer() const = 0;
    virtual std::unique_ptr<OutputParser> parser(bool thinking, bool parse_tools) const = 0;
    virtual std::string token_text(int32_t id) const = 0;  // for logprobs (may be a partial character)
};

// The stand-in codec: ids 0 = BOS, 1 = EOS, 2..257 = bytes, then the chat special tokens
// (<｜User｜>, <｜Assistant｜>, <think>, </think>). Renders chats in the DSML layout.
std::unique_ptr<TextCodec> make_byte_codec();
constexpr int kByteCodecVocab = 262;
constexpr int32_t kByteBos = 0, kByteEos = 1, kByteUser = 258, kByteAssistant = 259, kByteThink = 260,
                  kByteThinkEnd = 261;

// Renders OpenAI messages in the DSML layout (dsml.md §2-§6: BOS, system (+ tools), <｜User｜> turns,
// assistant turns with DSML tool calls and EOS, tool results as <tool_result> user turns, then the
// generation prompt <｜Assistant｜> + <think> or </think>). A stand-in for the full DSML encoder.
std::string render_dsml_chat(const nlohmann::json& messages, const ChatOptions& opts);

// A codec over a tokenizer.json (the DeepSeek tokenizer): chat rendered by render_dsml_chat,
// special-token strings in the rendered prompt become their ids.
std::unique_ptr<TextCodec> make_tokenizer_codec(const std::string& tokenizer_json);

// The lenient streaming parser of DSML output (reasoning until </think>, content, then a
// <｜DSML｜tool_calls> block of invokes), emitting each tool call whole once its invoke closes.
std::unique_ptr<OutputParser> make_dsml_stream_parser(bool thinking, bool parse_tools);

}  // namespace dsinfer::server
