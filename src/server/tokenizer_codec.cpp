// TextCodec over the byte-level BPE tokenizer of src/text.
#include <stdexcept>

#include "server/text_codec.h"
#include "text/detokenizer.h"
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
