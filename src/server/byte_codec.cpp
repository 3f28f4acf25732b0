#include <stdexcept>

#include "server/text_codec.h"

namespace dsinfer::server {
namespace {

const char* const kSpecials[] = {"<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"};
const char* const kBosText = "<｜begin▁of▁sentence｜>";
const char* const kEosText = "<｜end▁of▁sentence｜>";

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
        if (id == kByteBos) return kBosText;
        if (id == kByteEos) return kEosText;
        if (id >= 258 && id < kByteCodecVocab) return kSpecials[id - 258];
        if (id >= 2 && id < 258) return std::string(1, (char)(id - 2));
        return {};
    }

private:
    std::string pending_;
};

std::string content_text(const nlohmann::json& c, size_t i) {
    if (c.is_null()) return {};
    if (c.is_string()) return c.get<std::string>();
    if (c.is_array()) {
        std::string s;
        for (auto& part : c) {
            if (!part.is_object() || !part.contains("type"))
                throw std::invalid_argument("messages[" + std::to_string(i) + "].content: parts must be objects with a type");
            if (part["type"] == "text" && part.contains("text") && part["text"].is_string()) {
                if (!s.empty()) s += "\n\n";
                s += part["text"].get<std::string>();
            } else {
                throw std::invalid_argument("messages[" + std::to_string(i) + "].content: unsupported part type " +
                                            part["type"].dump());
            }
        }
        return s;
    }
    throw std::invalid_argument("messages[" + std::to_string(i) + "].content must be a string or an array of parts");
}

class ByteCodec : public TextCodec {
public:
    std::vector<int32_t> encode(const std::string& text, bool allow_special) const override {
        std::vector<int32_t> ids;
        for (size_t i = 0; i < text.size();) {
            bool matched = false;
            if (allow_special) {
                const std::pair<const char*, int32_t> sp[] = {{kBosText, kByteBos}, {kEosText, kByteEos},
                                                              {kSpecials[0], kByteUser}, {kSpecials[1], kByteAssistant},
                                                              {kSpecials[2], kByteThink}, {kSpecials[3], kByteThinkEnd}};
                for (auto& [s, id] : sp) {
                    size_t n = std::char_traits<char>::length(s);
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

    std::string render_chat(const nlohmann::json& messages, const ChatOptions& o) const override {
        return render_dsml_chat(messages, o);
    }

    std::unique_ptr<Detokenizer> detokenizer() const override { return std::make_unique<ByteDetokenizer>(); }
    std::unique_ptr<OutputParser> parser(bool thinking, bool parse_tools) const override {
        return make_dsml_stream_parser(thinking, parse_tools);
    }
    // Ids beyond the byte codec (a real model's vocabulary) have no text; logprobs name them by id.
    std::string token_text(int32_t id) const override {
        if (id < 0 || id >= kByteCodecVocab) return "<id:" + std::to_string(id) + ">";
        return ByteDetokenizer::text_of(id);
    }
};

}  // namespace

std::string render_dsml_chat(const nlohmann::json& messages, const ChatOptions& o) {
    std::string p = kBosText;
    bool tools_done = false;
    auto tools_block = [&]() {
        std::string t = "## Tools\n\nYou have access to these tools:\n";
        for (auto& tool : o.tools) t += tool.dump() + "\n";
        return t;
    };
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        const std::string role = m["role"].get<std::string>();
        if (role == "system" || role == "developer") {
            p += content_text(m.value("content", nlohmann::json()), i);
            if (!o.tools.is_null() && !tools_done) {
                p += "\n\n" + tools_block();
                tools_done = true;
            }
        } else if (role == "user") {
            p += std::string(kSpecials[0]) + content_text(m.value("content", nlohmann::json()), i);
        } else if (role == "tool") {
            p += std::string(kSpecials[0]) + "<tool_result>" + content_text(m.value("content", nlohmann::json()), i) +
                 "</tool_result>";
        } else if (role == "assistant") {
            p += std::string(kSpecials[1]) + kSpecials[3] + content_text(m.value("content", nlohmann::json()), i);
            if (m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty()) {
                p += "\n\n<｜DSML｜tool_calls>\n";
                for (auto& tc : m["tool_calls"]) {
                    const auto& f = tc.at("function");
                    p += "<｜DSML｜invoke name=\"" + f.at("name").get<std::string>() + "\">\n";
                    auto args = nlohmann::json::parse(f.value("arguments", std::string("{}")), nullptr, false);
                    if (args.is_object())
                        for (auto& [k, v] : args.items())
                            p += "<｜DSML｜parameter name=\"" + k + "\" string=\"" + (v.is_string() ? "true" : "false") +
                                 "\">" + (v.is_string() ? v.get<std::string>() : v.dump()) + "</｜DSML｜parameter>\n";
                    p += "</｜DSML｜invoke>\n";
                }
                p += "</｜DSML｜tool_calls>";
            }
            p += kEosText;
        } else {
            throw std::invalid_argument("messages[" + std::to_string(i) + "].role '" + role + "' is not supported");
        }
    }
    if (!o.tools.is_null() && !tools_done) p = std::string(kBosText) + tools_block() + p.substr(std::string(kBosText).size());
    p += std::string(kSpecials[1]) + (o.thinking ? kSpecials[2] : kSpecials[3]);
    return p;
}

std::unique_ptr<TextCodec> make_byte_codec() { return std::make_unique<ByteCodec>(); }

}  // namespace dsinfer::server
