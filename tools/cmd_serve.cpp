// dsinfer serve: the OpenAI-compatible HTTP server.
#include <pthread.h>
#include <signal.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "command.h"
#include "dsinfer/engine.h"
#include "server/openai_server.h"
#include "server/scripted_model.h"
#include "server/text_codec.h"

namespace {

const char* kUsage =
    "usage: dsinfer serve [options]\n"
    "  --model DIR            model directory (default $DSINFER_MODEL, else models/default)\n"
    "  --served-model-name N  the model id clients send (default: the directory's name, links resolved)\n"
    "  --host H               address to bind (default 127.0.0.1; 0.0.0.0 exposes the server)\n"
    "  --port P               port (default 8000; 0 picks a free one)\n"
    "  --api-key K            require 'Authorization: Bearer K' on every route but /health\n"
    "                         (default $DSINFER_API_KEY)\n"
    "  --kv-cache-gb G        memory for the KV cache pool and prefix snapshots (default 4)\n"
    "  --max-model-len N      context length (default: the model's, capped by the KV pool)\n"
    "  --max-batch-tokens N   tokens per engine step: decodes + prefill chunks (default 256)\n"
    "  --max-running N        sequences in flight (default 64)\n"
    "  --max-concurrent N     HTTP requests answered at once, more get 429 (default 256)\n"
    "  --max-body-mb N        request body limit (default 8)\n"
    "  --max-messages N       messages per chat request (default 1024)\n"
    "  --no-prefix-caching    do not keep prefix snapshots\n"
    "  --speculative K        speculative decoding: K draft tokens per step from the model's MTP block,\n"
    "                         verified in the same step (default 0 = off)\n"
    "  --no-sample-summaries  cuda: copy every sampled request's logits row to the host (by default a row's\n"
    "                         1024 most likely tokens come back instead whenever they hold what is kept)\n"
    "  --no-device-draws      cuda: copy the logits row of requests that filter nothing (no top_k, top_p 1,\n"
    "                         min_p 0; by default their token is drawn on the GPU and only its id comes back)\n"
    "  --device D             cpu (default) or cuda (a build with -DDSINFER_CUDA=ON)\n"
    "  --tokenizer FILE       tokenizer.json to use (default: DIR/tokenizer.json when present, else text maps\n"
    "                         to ids byte by byte)\n"
    "  --scripted SPEC        serve a scripted test model (JSON file or inline JSON) instead of --model\n"
    "Prints 'listening on http://HOST:PORT' once ready. SIGTERM/SIGINT: finish in-flight requests, exit 0.\n";

int serve_main(int argc, char** argv) {
    std::string model_dir = dsinfer::cli::default_model_dir();
    std::string scripted, served_name, tokenizer;
    dsinfer::EngineOptions eo;
    dsinfer::server::ServerOptions so;
    if (const char* k = std::getenv("DSINFER_API_KEY")) so.api_key = k;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        auto num = [&]() -> long long {
            std::string v = val();
            char* end = nullptr;
            long long x = std::strtoll(v.c_str(), &end, 10);
            if (v.empty() || *end) throw std::invalid_argument(a + " needs an integer, got '" + v + "'");
            return x;
        };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (a == "--model") model_dir = val();
        else if (a == "--served-model-name") served_name = val();
        else if (a == "--host") so.host = val();
        else if (a == "--port") so.port = (int)num();
        else if (a == "--api-key") so.api_key = val();
        else if (a == "--kv-cache-gb") {
            std::string v = val();
            char* end = nullptr;
            eo.kv_cache_gb = std::strtod(v.c_str(), &end);
            if (v.empty() || *end || !(eo.kv_cache_gb > 0)) throw std::invalid_argument("--kv-cache-gb needs a positive number");
        } else if (a == "--max-model-len") eo.max_model_len = num();
        else if (a == "--max-batch-tokens") eo.max_batch_tokens = (int)num();
        else if (a == "--max-running") eo.max_running = (int)num();
        else if (a == "--max-concurrent") so.max_concurrent = (int)num();
        else if (a == "--max-body-mb") so.max_body_bytes = (size_t)num() << 20;
        else if (a == "--max-messages") so.max_messages = (size_t)num();
        else if (a == "--no-prefix-caching") eo.prefix_caching = false;
        else if (a == "--no-sample-summaries") eo.sample_summaries = false;
        else if (a == "--no-device-draws")
            eo.device_draws = false;
        else if (a == "--device-draws")
            eo.device_draws = true;  // the default
        else if (a == "--speculative") {
            long long k = num();
            if (k < 0 || k > 16) throw std::invalid_argument("--speculative needs a draft count in 0..16");
            eo.speculative = (int)k;
        } else if (a == "--device") {
            eo.device = val();
            if (eo.device != "cpu" && eo.device != "cuda")
                throw std::invalid_argument("--device '" + eo.device + "': expected cpu or cuda");
        }
        else if (a == "--scripted") scripted = val();
        else if (a == "--tokenizer") tokenizer = val();
        else throw std::invalid_argument("unknown option '" + a + "' (see dsinfer serve --help)");
    }
    if (so.port < 0 || so.port > 65535) throw std::invalid_argument("--port must be in 0..65535");

    // Signals go to one thread that waits for them; every other thread (engine, HTTP pool) inherits
    // the blocked mask, so the handler-free shutdown path is the only one.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);

    std::unique_ptr<dsinfer::Engine> engine;
    std::unique_ptr<dsinfer::server::TextCodec> codec;
    auto with_flag = [](const std::exception& e, const dsinfer::EngineOptions& o) {
        std::string m = e.what();
        if (o.speculative > 0 && m.find("speculative") != std::string::npos) return "--speculative: " + m;
        if (m.rfind("device ", 0) == 0) return "--" + m;
        return m;
    };
    if (!scripted.empty()) {
        if (eo.device != "cpu") throw std::invalid_argument("--device: a scripted model runs on the CPU only");
        try {
            engine = dsinfer::Engine::create(dsinfer::server::make_scripted_model(scripted), eo);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(with_flag(e, eo));
        }
        codec = dsinfer::server::make_byte_codec();
        so.model_name = served_name.empty() ? "scripted" : served_name;
    } else {
        try {
            engine = dsinfer::Engine::load(model_dir, eo);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(with_flag(e, eo));
        }
        // The folder's own name, through links (models/default -> tiny-en serves "tiny-en").
        std::error_code ec;
        std::filesystem::path real = std::filesystem::canonical(model_dir, ec);
        if (ec) real = std::filesystem::path(model_dir);
        so.model_name = served_name.empty() ? real.filename().string() : served_name;
        auto gc = std::filesystem::path(model_dir) / "generation_config.json";
        if (std::filesystem::exists(gc)) {
            std::ifstream f(gc);
            so.generation_defaults = nlohmann::json::parse(f, nullptr, false);
            if (so.generation_defaults.is_discarded())
                throw std::runtime_error(gc.string() + ": malformed JSON");
        }
        if (tokenizer.empty() && std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json"))
            tokenizer = (std::filesystem::path(model_dir) / "tokenizer.json").string();
    }
    if (!tokenizer.empty() && scripted.empty()) {
        codec = dsinfer::server::make_tokenizer_codec(tokenizer);
    } else if (!codec) {
        // Without a tokenizer, text maps to ids byte by byte (ids 2..257, chat markers 258..261):
        // enough for models whose vocabulary covers them, like the tiny test model.
        codec = dsinfer::server::make_byte_codec();
        if (engine->info().vocab_size < dsinfer::server::kByteCodecVocab)
            throw std::runtime_error("the model's vocabulary (" + std::to_string(engine->info().vocab_size) +
                                     ") is smaller than the byte codec's (" +
                                     std::to_string(dsinfer::server::kByteCodecVocab) + ")");
        std::fprintf(stderr, "dsinfer serve: note: no tokenizer (--tokenizer); text is mapped to token ids byte by byte\n");
    }
    std::fprintf(stderr, "%s\n", engine->kv_report().c_str());

    dsinfer::server::OpenAIServer server(*engine, *codec, so);
    int port = server.bind();
    std::printf("listening on http://%s:%d\n", so.host.c_str(), port);
    std::fflush(stdout);

    std::atomic<bool> signalled{false};
    std::thread sig_thread([&] {
        int sig = 0;
        sigwait(&sigs, &sig);
        signalled = true;
        std::fprintf(stderr, "dsinfer serve: signal %d, finishing in-flight requests\n", sig);
        server.shutdown();
    });
    server.serve();
    if (!signalled) kill(getpid(), SIGTERM);  // the listener stopped by itself: release the signal thread
    sig_thread.join();
    engine->shutdown();
    std::fprintf(stderr, "dsinfer serve: stopped\n");
    return 0;
}

}  // namespace

DSINFER_COMMAND("serve", "OpenAI-compatible HTTP server (chat, completions, streaming, tools)", serve_main);
