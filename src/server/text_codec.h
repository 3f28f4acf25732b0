// The server's view of text: chat encoding, tokenization, incremental detokenization and parsing
// of the model's output into reasoning / content / tool calls. The server depends only on this
// interface. Chat encoding and output parsing are always DeepSeek-V4's (src/text: encode_chat and
// DsmlStreamParser); codecs differ only in how text maps to token ids: the DeepSeek tokenizer, or
// a byte-level mapping for scripted and tiny test models without one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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

// A chat request turned into a prompt by DeepSeek-V4's chat encoder.
struct ChatPlan {
    std::string prompt;         // ends with the generation prompt (and the forced start, if any)
    std::string forced_prefix;  // text the prompt already holds of the answer; fed to the parser first
    bool thinking = false;
    bool parse_tools = false;
    std::function<std::unique_ptr<OutputParser>()> make_parser;
};

// The whole OpenAI chat request (messages, tools, tool_choice, thinking switches, reasoning_effort)
// to a DeepSeek-V4 prompt and a factory of streaming parsers of the answer (src/text/chat.h,
// dsml.h, dsml_stream.h). Throws std::invalid_argument naming the offending field.
ChatPlan plan_dsv4_chat(const nlohmann::json& request);

class TextCodec {
public:
    virtual ~TextCodec() = default;
    // Text to ids; special-token strings become their ids when allow_special.
    virtual std::vector<int32_t> encode(const std::string& text, bool allow_special) const = 0;
    virtual std::unique_ptr<Detokenizer> detokenizer() const = 0;
    virtual std::string token_text(int32_t id) const = 0;  // for logprobs (may be a partial character)
};

// The byte-level codec, for models without a tokenizer (scripted test models, the tiny test model):
// ids 0 = BOS, 1 = EOS, 2..257 = bytes, then the chat special tokens <｜User｜>, <｜Assistant｜>,
// <think>, </think>. Every other string (DSML markup included) is spelled out byte by byte.
std::unique_ptr<TextCodec> make_byte_codec();
constexpr int kByteCodecVocab = 262;
constexpr int32_t kByteBos = 0, kByteEos = 1, kByteUser = 258, kByteAssistant = 259, kByteThink = 260,
                  kByteThinkEnd = 261;

// A codec over a tokenizer.json (the DeepSeek tokenizer); special-token strings in the prompt
// become their ids.
std::unique_ptr<TextCodec> make_tokenizer_codec(const std::string& tokenizer_json);

}  // namespace dsinfer::server
