#include "server/scripted_model.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "runtime/scripted_runner.h"
#include "server/text_codec.h"

namespace dsinfer::server {

std::unique_ptr<runtime::ModelRunner> make_scripted_model(const std::string& spec_arg) {
    std::string text = spec_arg;
    if (text.empty() || text[0] != '{') {
        std::ifstream f(spec_arg);
        if (!f) throw std::runtime_error("--scripted: cannot read '" + spec_arg + "' (give a JSON file or inline JSON)");
        std::stringstream ss;
        ss << f.rdbuf();
        text = ss.str();
    }
    nlohmann::json spec;
    try {
        spec = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("--scripted: malformed JSON: ") + e.what());
    }
    struct Rule {
        std::string when, reply;
    };
    auto rules = std::make_shared<std::vector<Rule>>();
    for (auto& r : spec.value("replies", nlohmann::json::array()))
        rules->push_back({r.at("when").get<std::string>(), r.at("reply").get<std::string>()});
    auto fallback = std::make_shared<std::string>(spec.value("default_reply", std::string("Hello from the scripted model.")));
    std::shared_ptr<TextCodec> codec = make_byte_codec();

    runtime::ScriptedOptions o;
    o.vocab = kByteCodecVocab;
    o.eos = {kByteEos};
    o.max_context = spec.value("max_context", (int64_t)4096);
    o.granularity = spec.value("granularity", (int64_t)16);
    o.step_delay_us = spec.value("step_delay_ms", 0) * 1000;
    // Sharp enough that sampling at temperature 1 still follows the script (other tokens ~1e-15).
    o.peak = spec.value("peak", 40.0f);
    o.next_token = [rules, fallback, codec](std::span<const int32_t> seq) -> int32_t {
        int64_t a = -1, u = -1;
        for (int64_t i = (int64_t)seq.size() - 1; i >= 0; --i) {
            if (a < 0 && seq[i] == kByteAssistant) a = i;
            if (a >= 0 && seq[i] == kByteUser) {
                u = i;
                break;
            }
        }
        if (a < 0 || a + 1 >= (int64_t)seq.size()) {  // plain completion: the alphabet
            int32_t last = seq.back() - 2;
            if (last >= 'a' && last < 'z') return 2 + last + 1;
            return 2 + 'a';
        }
        // The last user turn selects the reply.
        std::string user;
        for (int64_t i = u + 1; i < a; ++i) user += codec->token_text(seq[i]);
        std::string reply = *fallback;
        for (auto& r : *rules)
            if (user.find(r.when) != std::string::npos) {
                reply = r.reply;
                break;
            }
        if (reply == "{{echo}}") reply = "You said: " + user;
        const bool thinking = seq[a + 1] == kByteThink;
        auto cut = reply.find("</think>");
        if (!thinking && cut != std::string::npos) reply = reply.substr(cut + 8);
        if (thinking && cut == std::string::npos) reply = "</think>" + reply;
        // A prompt that already closed the reasoning (tool_choice forcing a call in thinking mode) skips
        // the reply's reasoning: the reply goes on from its "</think>".
        if (thinking && cut != std::string::npos && (int64_t)seq.size() > a + 2 && seq[a + 2] == kByteThinkEnd)
            reply = reply.substr(cut);
        // "{{fail}}" in a reply: the model fails (its step throws) once the text before it is written.
        const auto fail_at = reply.find("{{fail}}");
        if (fail_at != std::string::npos) reply.resize(fail_at);
        std::vector<int32_t> ids = codec->encode(reply, true);
        if (fail_at != std::string::npos && seq.size() - (size_t)(a + 2) >= ids.size())
            throw std::runtime_error("the scripted model failed ({{fail}} in its reply)");
        ids.push_back(kByteEos);
        size_t k = seq.size() - (size_t)(a + 2);
        return k < ids.size() ? ids[k] : 2 + 'x';
    };
    return std::make_unique<runtime::ScriptedRunner>(std::move(o));
}

}  // namespace dsinfer::server
