// TextCodec over the byte-level BPE tokenizer of src/text.
#include <stdexcept>

#include "server/text_codec.h"
#include "text/chat.h"
#include "text/detokenizer.h"
#include "text/dsml_stream.h"
#include "text/tokenizer.h"

namespace dsinfer::server {
namespace {

class TokDetokenizer : public Detokenizer {
public:
    explicit TokDetokenizer(const text::Tokenizer& t) : d_(t) {}
    std::string push(int32_t id) override {
        try {
            return d_.push(id);
        } catch (const std::out_of_range&) {
            return {};  // an id the tokenizer does not know (model vocabulary larger than it) has no text
        }
    }
    std::string flush() override { return d_.flush(); }

private:
    text::IncrementalDetokenizer d_;
};

// DeepSeek's lenient streaming parser behind the server's interface.
class DsmlParser : public OutputParser {
public:
    explicit DsmlParser(text::StreamParserOptions o) : p_(std::move(o)) {}
    ChatDelta feed(const std::string& t) override { return convert(p_.feed(t)); }
    ChatDelta finish() override { return convert(p_.finish()); }
    int tool_calls_emitted() const override { return p_.tool_call_count(); }

private:
    static ChatDelta convert(const text::ChatDelta& d) {
        ChatDelta o;
        o.reasoning = d.reasoning_content;
        o.content = d.content;
        for (auto& t : d.tool_calls) o.tool_calls.push_back({t.index, t.id, t.name, t.arguments});
        return o;
    }
    text::DsmlStreamParser p_;
};

class TokenizerCodec : public TextCodec {
public:
    explicit TokenizerCodec(const std::string& path) : t_(text::Tokenizer::load(path)) {}
    std::vector<int32_t> encode(const std::string& s, bool) const override {
        try {
            return t_.encode(s);
        } catch (const std::runtime_error& e) {
            throw std::invalid_argument(e.what());
        }
    }
    std::string render_chat(const nlohmann::json& messages, const ChatOptions& o) const override {
        return render_dsml_chat(messages, o);
    }
    std::optional<ChatPlan> plan_chat(const nlohmann::json& request) const override {
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
    std::unique_ptr<Detokenizer> detokenizer() const override { return std::make_unique<TokDetokenizer>(t_); }
    std::unique_ptr<OutputParser> parser(bool thinking, bool tools) const override {
        return make_dsml_stream_parser(thinking, tools);
    }
    std::string token_text(int32_t id) const override {
        try {
            return std::string(t_.token_bytes(id));
        } catch (const std::out_of_range&) {
            return "<id:" + std::to_string(id) + ">";
        }
    }

private:
    text::Tokenizer t_;
};

}  // namespace

std::unique_ptr<TextCodec> make_tokenizer_codec(const std::string& path) {
    return std::make_unique<TokenizerCodec>(path);
}

}  // namespace dsinfer::server
