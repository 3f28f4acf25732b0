// OpenAI chat requests to DeepSeek-V4 prompts, and DeepSeek's streaming parser behind the server's
// OutputParser interface. Every codec shares these: the chat format belongs to the model, not to the
// mapping of text to token ids.
#include <stdexcept>

#include "server/text_codec.h"
#include "text/chat.h"
#include "text/dsml.h"
#include "text/dsml_stream.h"

namespace dsinfer::server {
namespace {

class DsmlParser : public OutputParser {
public:
    explicit DsmlParser(text::StreamParserOptions o) : emit_(o.emit_tool_calls), p_(std::move(o)) {}
    ChatDelta feed(const std::string& t) override { return convert(p_.feed(t)); }
    ChatDelta finish() override { return convert(p_.finish()); }
    // The parser counts the calls it consumed; with tool_choice "none" none of them reach the client.
    int tool_calls_emitted() const override { return emit_ ? p_.tool_call_count() : 0; }

private:
    static ChatDelta convert(const text::ChatDelta& d) {
        ChatDelta o;
        o.reasoning = d.reasoning_content;
        o.content = d.content;
        for (auto& t : d.tool_calls) o.tool_calls.push_back({t.index, t.id, t.name, t.arguments});
        return o;
    }
    bool emit_;
    text::DsmlStreamParser p_;
};

}  // namespace

ChatPlan plan_dsv4_chat(const nlohmann::json& request) {
    ChatPlan plan;
    text::ChatEncoderInput in;
    try {
        in = text::chat_input_from_openai(text::ojson::parse(request.dump()), text::ChatFormat::kDsv4);
        for (auto& m : in.messages)  // tools ride on the leading system message (see chat.h)
            if (!m.tools.empty()) plan.parse_tools = true;
        plan.prompt = text::encode_chat(in.messages, in.options);
    } catch (const text::ChatRequestError& e) {
        throw std::invalid_argument(e.what());
    } catch (const text::DsmlError& e) {
        throw std::invalid_argument(e.what());
    }
    auto popts = in.parser_options(plan.prompt);
    plan.thinking = popts.starts_in_reasoning;
    plan.forced_prefix = in.forced_tool_prefix();
    // required / named tool_choice: the answer starts inside the tool-call block. Without
    // constrained decoding the reasoning cannot be resumed first, so in thinking mode it is closed.
    if (!plan.forced_prefix.empty() && plan.thinking) plan.forced_prefix = "</think>" + plan.forced_prefix;
    plan.prompt += plan.forced_prefix;
    plan.make_parser = [popts] { return std::make_unique<DsmlParser>(popts); };
    return plan;
}

}  // namespace dsinfer::server
