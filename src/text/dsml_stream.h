// Lenient, streaming parser of what a DeepSeek-V4 (or V3.2) model writes: fed text piece by piece (as the
// detokenizer produces it), it returns OpenAI-style deltas (reasoning_content, content, tool_calls with
// index, id, name and argument fragments). It never lets DSML markup, "<think>", "</think>" or EOS into
// content, holding back only text that could still be the start of such a tag, and it never splits a
// UTF-8 character. Malformed output degrades instead of failing (docs/dsml.md, "Parsing what the model writes").
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "text/dsml.h"

namespace dsinfer::text {

struct ToolCallDelta {
    int index = 0;
    std::string id;         // set on the first delta of a call only
    std::string name;       // set on the first delta of a call only
    std::string arguments;  // a fragment of the arguments JSON text
};

struct ChatDelta {
    std::string reasoning_content;
    std::string content;
    std::vector<ToolCallDelta> tool_calls;
    bool empty() const { return reasoning_content.empty() && content.empty() && tool_calls.empty(); }
};

struct StreamParserOptions {
    ChatFormat format = ChatFormat::kDsv4;
    // True when the prompt ended with "<think>" (thinking mode): output starts inside the reasoning.
    bool starts_in_reasoning = false;
    // The declared tools (function objects {name, parameters, ...}); their parameter types decide how
    // argument values are written. Without them the parameter's string="true|false" decides.
    std::vector<ojson> tools;
    // False when the request allows no tool calls (no tools, or tool_choice "none"): a tool-call block the
    // model writes anyway is consumed (never shown as content) but yields no calls.
    bool emit_tool_calls = true;
    // Seed for tool-call ids ("call_" + 24 hex digits); 0 takes one from std::random_device.
    uint64_t id_seed = 0;
};

class DsmlStreamParser {
  public:
    explicit DsmlStreamParser(StreamParserOptions options);

    // Feeds the next piece of generated text; returns what can be released now (possibly empty).
    ChatDelta feed(std::string_view text);
    // End of generation: releases what was held back and closes an unfinished tool call (so its arguments
    // are valid JSON). Call once; later feeds are ignored.
    ChatDelta finish();

    bool saw_eos() const { return mode_ == Mode::kDone; }
    int tool_call_count() const { return n_calls_; }
    // finish() found the output cut short: inside the reasoning (no "</think>"), or inside a tool call.
    bool truncated_reasoning() const { return truncated_reasoning_; }
    bool truncated_tool_call() const { return truncated_tool_call_; }

  private:
    enum class Mode { kReasoning, kContent, kBlock, kInvoke, kValue, kAfterBlock, kDone };
    enum class TagResult { kNeedMore, kDone };

    bool step(bool at_end);
    bool step_text(bool at_end);
    bool step_markup(bool at_end);
    bool step_value(bool at_end);
    void emit_text(std::string_view s);
    void release_newlines(size_t drop);
    void open_call(const std::string& name);
    void close_call();
    void begin_param(const std::string& name, bool string_flag);
    void end_param();
    void args(std::string_view s);
    void handle_tag(std::string_view tag);
    std::vector<std::string> declared_types(const std::string& param) const;

    StreamParserOptions opt_;
    std::mt19937_64 rng_;
    Mode mode_;
    std::string_view rest() const { return std::string_view(buf_).substr(pos_); }
    void consume(size_t n) { pos_ += n; }

    std::string buf_;  // input; what precedes pos_ is consumed
    size_t pos_ = 0;
    ChatDelta out_;             // what the current feed()/finish() returns
    size_t held_newlines_ = 0;  // trailing newlines of the text stream, held until we know what follows
    bool content_started_ = false;
    bool finished_ = false;
    int n_calls_ = 0;
    bool call_open_ = false;
    std::string call_name_;
    int params_in_call_ = 0;
    std::vector<std::string> param_names_;
    // current parameter value
    bool value_streamed_ = false;
    bool value_skip_ = false;
    bool value_raw_ = false;       // object/array JSON streamed verbatim
    bool value_raw_seen_ = false;  // ... and something other than whitespace was written
    bool value_string_flag_ = false;
    std::string value_name_;
    std::string value_buf_;
    bool truncated_reasoning_ = false;
    bool truncated_tool_call_ = false;
};

// The result of a whole stream, assembled from its deltas.
struct AssembledToolCall {
    std::string id;
    std::string name;
    std::string arguments;
};
struct AssembledMessage {
    std::string content;
    std::string reasoning_content;
    std::vector<AssembledToolCall> tool_calls;
};
void accumulate(AssembledMessage& into, const ChatDelta& delta);
// The lenient parser over a whole completion (non-streaming responses).
AssembledMessage parse_completion_lenient(std::string_view text, const StreamParserOptions& options);
// {content, reasoning_content, tool_calls: [{type: "function", function: {name, arguments}}]} (no ids, the
// same shape as parsed_message_to_json).
ojson assembled_message_to_json(const AssembledMessage& m);

}  // namespace dsinfer::text
