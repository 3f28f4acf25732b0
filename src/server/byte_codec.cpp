// Text <-> ids byte by byte, for models without a tokenizer (see text_codec.h).
#include <algorithm>
#include <string>
#include <string_view>

#include "server/text_codec.h"
#include "text/dsml.h"

namespace dsinfer::server {
namespace {

// The special tokens' strings are the DSML encoder's (text/dsml.h).
const std::string_view kSpecials[] = {text::kUserToken, text::kAssistantToken, text::kThinkStart, text::kThinkEnd};
const std::string_view kBosText = text::kBos;
const std::string_view kEosText = text::kEos;

class ByteDetokenizer : public Detokenizer {
public:
    std::string push(int32_t id) override {
        if (id >= 2 && id < 258) {
            pending_.push_back((char)(id - 2));
        } else {
            pending_ += text_of(id);
        }
        // Emit up to the last complete UTF-8 character.
        size_t n = pending_.size(), cut = n;
        for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
            unsigned char c = (unsigned char)pending_[n - back];
            if ((c & 0xC0) == 0x80) continue;  // continuation byte
            size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
            if (back < len) cut = n - back;
            break;
        }
        std::string out = pending_.substr(0, cut);
        pending_.erase(0, cut);
        return out;
    }
    std::string flush() override {
        std::string out;
        out.swap(pending_);
        return out;
    }
    static std::string text_of(int32_t id) {
        if (id == kByteBos) return std::string(kBosText);
        if (id == kByteEos) return std::string(kEosText);
        if (id >= 258 && id < kByteCodecVocab) return std::string(kSpecials[id - 258]);
        if (id >= 2 && id < 258) return std::string(1, (char)(id - 2));
        return {};
    }

private:
    std::string pending_;
};

class ByteCodec : public TextCodec {
public:
    std::vector<int32_t> encode(const std::string& text, bool allow_special) const override {
        std::vector<int32_t> ids;
        for (size_t i = 0; i < text.size();) {
            bool matched = false;
            if (allow_special) {
                const std::pair<std::string_view, int32_t> sp[] = {{kBosText, kByteBos}, {kEosText, kByteEos},
                                                              {kSpecials[0], kByteUser}, {kSpecials[1], kByteAssistant},
                                                              {kSpecials[2], kByteThink}, {kSpecials[3], kByteThinkEnd}};
                for (auto& [s, id] : sp) {
                    size_t n = s.size();
                    if (text.compare(i, n, s) == 0) {
                        ids.push_back(id);
                        i += n;
                        matched = true;
                        break;
                    }
                }
            }
            if (!matched) ids.push_back(2 + (unsigned char)text[i++]);
        }
        return ids;
    }

    std::unique_ptr<Detokenizer> detokenizer() const override { return std::make_unique<ByteDetokenizer>(); }
    // Ids beyond the byte codec (a real model's vocabulary) have no text; logprobs name them by id.
    std::string token_text(int32_t id) const override {
        if (id < 0 || id >= kByteCodecVocab) return "<id:" + std::to_string(id) + ">";
        return ByteDetokenizer::text_of(id);
    }
};

}  // namespace

std::unique_ptr<TextCodec> make_byte_codec() { return std::make_unique<ByteCodec>(); }

}  // namespace dsinfer::server
