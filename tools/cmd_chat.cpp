// dsinfer chat: an interactive chat in the terminal over the engine (no HTTP). Each line typed is a
// user turn; the reply streams as it is generated (reasoning dimmed when thinking is on).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "command.h"
#include "dsinfer/engine.h"
#include "server/scripted_model.h"
#include "server/text_codec.h"

namespace {

const char* kUsage =
    "usage: dsinfer chat [--model DIR] [--tokenizer FILE] [--system TEXT] [--thinking] [--max-tokens N]\n"
    "                    [--temperature T] [--seed S] [--kv-cache-gb G] [--device cpu|cuda] [--speculative K]\n"
    "                    [--scripted SPEC]\n"
    "Type a message and press enter; an empty line or end of input quits; /reset clears the history.\n";

int chat_main(int argc, char** argv) {
    std::string model_dir = dsinfer::cli::default_model_dir();
    std::string tokenizer, scripted, system;
    bool thinking = false;
    dsinfer::SamplingParams sp;
    sp.temperature = 0.6f;
    sp.max_tokens = 512;
    dsinfer::EngineOptions eo;
    eo.kv_cache_gb = 1;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (a == "--model") model_dir = val();
        else if (a == "--tokenizer") tokenizer = val();
        else if (a == "--scripted") scripted = val();
        else if (a == "--system") system = val();
        else if (a == "--thinking") thinking = true;
        else if (a == "--max-tokens") sp.max_tokens = std::stoi(val());
        else if (a == "--temperature") sp.temperature = std::stof(val());
        else if (a == "--seed") sp.seed = std::stoull(val());
        else if (a == "--kv-cache-gb") eo.kv_cache_gb = std::stod(val());
        else if (a == "--device") eo.device = val();
        else if (a == "--speculative") eo.speculative = std::stoi(val());
        else throw std::invalid_argument("unknown option '" + a + "' (see dsinfer chat --help)");
    }
    std::unique_ptr<dsinfer::Engine> engine;
    std::unique_ptr<dsinfer::server::TextCodec> codec;
    if (!scripted.empty()) {
        engine = dsinfer::Engine::create(dsinfer::server::make_scripted_model(scripted), eo);
        codec = dsinfer::server::make_byte_codec();
    } else {
        engine = dsinfer::Engine::load(model_dir, eo);
        if (tokenizer.empty() && std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json"))
            tokenizer = (std::filesystem::path(model_dir) / "tokenizer.json").string();
        codec = tokenizer.empty() ? dsinfer::server::make_byte_codec() : dsinfer::server::make_tokenizer_codec(tokenizer);
    }
    const bool tty = isatty(STDOUT_FILENO);
    nlohmann::json messages = nlohmann::json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    std::string line;
    for (;;) {
        if (tty) std::fputs("> ", stdout), std::fflush(stdout);
        if (!std::getline(std::cin, line) || line.empty()) break;
        if (line == "/reset") {
            messages = nlohmann::json::array();
            if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
            continue;
        }
        messages.push_back({{"role", "user"}, {"content", line}});
        // DeepSeek-V4's chat encoder (src/text), whatever maps the text to ids.
        nlohmann::json req = {{"messages", messages}, {"chat_template_kwargs", {{"thinking", thinking}}}};
        dsinfer::server::ChatPlan plan;
        try {
            plan = dsinfer::server::plan_dsv4_chat(req);
        } catch (const std::invalid_argument& e) {
            std::fprintf(stderr, "dsinfer chat: %s\n", e.what());
            messages.erase(messages.end() - 1);
            continue;
        }
        dsinfer::Status st;
        auto stream = engine->submit({codec->encode(plan.prompt, true), sp}, &st);
        if (!stream) {
            std::fprintf(stderr, "dsinfer chat: %s\n", st.message.c_str());
            messages.erase(messages.end() - 1);
            continue;
        }
        auto detok = codec->detokenizer();
        auto parser = plan.make_parser();
        std::string answer;
        bool in_reasoning = false;
        auto show = [&](const dsinfer::server::ChatDelta& d) {
            if (!d.reasoning.empty()) {
                if (!in_reasoning && tty) std::fputs("\x1b[2m", stdout);
                in_reasoning = true;
                std::fputs(d.reasoning.c_str(), stdout);
            }
            if (!d.content.empty()) {
                if (in_reasoning) std::fputs(tty ? "\x1b[0m\n" : "\n", stdout);
                in_reasoning = false;
                std::fputs(d.content.c_str(), stdout);
                answer += d.content;
            }
            std::fflush(stdout);
        };
        dsinfer::TokenEvent ev;
        while (stream->next(ev)) {
            if (ev.has_token) show(parser->feed(detok->push(ev.token)));
            if (ev.finish == dsinfer::FinishReason::error) std::fprintf(stderr, "\ndsinfer chat: %s\n", ev.error.c_str());
        }
        show(parser->feed(detok->flush()));
        show(parser->finish());
        if (in_reasoning && tty) std::fputs("\x1b[0m", stdout);
        std::fputs("\n", stdout);
        messages.push_back({{"role", "assistant"}, {"content", answer}});
    }
    engine->shutdown();
    return 0;
}

}  // namespace

DSINFER_COMMAND("chat", "interactive chat in the terminal (streams the reply; --thinking shows reasoning)", chat_main);
