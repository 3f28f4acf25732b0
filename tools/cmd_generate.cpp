// dsinfer generate: greedy generation from a prompt, printing token ids as they come and the speed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "core/error.h"
#include "model/dsv4_model.h"
#include "model/generate.h"
#include "model_device.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

void usage() {
    std::printf(
        "usage: dsinfer generate [--model DIR] (--prompt-ids \"0 5 7\" | --prompt TEXT) [--max-tokens N]\n"
        "                        [--no-stop] [--threads N] [--no-quant-sim] [--device cpu|cuda]\n"
        "Greedy generation. The model folder defaults to $DSINFER_MODEL, else models/default.\n"
        "  --prompt-ids IDS  prompt as token ids (space or comma separated)\n"
        "  --prompt TEXT     prompt as text, encoded with the model's tokenizer.json (or --tokenizer);\n"
        "                    without one, the bytes are mapped to ids (a note says so)\n"
        "  --tokenizer FILE  tokenizer.json to use (default: DIR/tokenizer.json when present)\n"
        "  --max-tokens N    tokens to generate (default 32)\n"
        "  --no-stop         keep going after the end-of-sequence token\n"
        "  --speculative     draft one token ahead with the model's MTP block and verify it (same output\n"
        "                    as plain greedy decoding; prints the acceptance rate)\n"
        "  --threads N       CPU threads (default: all)\n"
        "  --no-quant-sim    run without the model's activation quantization steps\n"
        "  --device D        cpu (default) or cuda (builds with -DDSINFER_CUDA=ON)\n");
}

std::vector<int32_t> parse_ids(const std::string& s) {
    std::vector<int32_t> ids;
    std::string tok;
    std::stringstream in(s);
    while (in >> tok) {
        std::stringstream parts(tok);
        std::string p;
        while (std::getline(parts, p, ',')) {
            if (p.empty()) continue;
            char* end = nullptr;
            long v = std::strtol(p.c_str(), &end, 10);
            if (*end || v < 0 || v > 0x7fffffff) throw dsinfer::Error("--prompt-ids: '" + p + "' is not a token id");
            ids.push_back(int32_t(v));
        }
    }
    return ids;
}


int generate_main(int argc, char** argv) {
    std::string model_dir, text, tokenizer_path, device = "cpu";
    model_dir = dsinfer::cli::default_model_dir();
    std::vector<int32_t> prompt;
    bool have_ids = false, have_text = false, stop = true, speculative = false;
    int64_t max_tokens = 32;
    dsinfer::ModelOptions mo;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        if (a == "--model") model_dir = value();
        else if (a == "--prompt-ids") prompt = parse_ids(value()), have_ids = true;
        else if (a == "--prompt") text = value(), have_text = true;
        else if (a == "--tokenizer") tokenizer_path = value();
        else if (a == "--max-tokens") max_tokens = std::atoll(value().c_str());
        else if (a == "--no-stop") stop = false;
        else if (a == "--speculative") speculative = true;
        else if (a == "--threads") mo.threads = std::atoi(value().c_str());
        else if (a == "--no-quant-sim") mo.quant_sim = false;
        else if (a == "--device") device = value();
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else throw dsinfer::Error("unknown option '" + a + "' (see --help)");
    }
    if (have_ids == have_text) throw dsinfer::Error("give exactly one of --prompt-ids and --prompt (see --help)");
    if (max_tokens < 0) throw dsinfer::Error("--max-tokens must be >= 0");

    const auto t_load = Clock::now();
    auto model = dsinfer::Dsv4Model::load(model_dir, mo);
    dsinfer::attach_device(*model, device);
    const auto& cfg = model->config();
    const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
    // The tokenizer: --tokenizer, else the model folder's tokenizer.json. Its ids must fit the model.
    std::optional<dsinfer::text::Tokenizer> tok;
    if (tokenizer_path.empty() && std::filesystem::exists(model_dir + "/tokenizer.json"))
        tokenizer_path = model_dir + "/tokenizer.json";
    if (!tokenizer_path.empty()) {
        tok.emplace(dsinfer::text::Tokenizer::load(tokenizer_path));
        if (int64_t(tok->vocab_size()) > cfg.vocab_size)
            throw dsinfer::Error(tokenizer_path + " has " + std::to_string(tok->vocab_size()) +
                                 " tokens but the model's vocabulary is " + std::to_string(cfg.vocab_size));
    }
    if (have_text) {
        if (tok) {
            // A text prompt starts a document: BOS first, as the chat encoder and training do.
            if (tok->bos_id() >= 0) prompt.push_back(tok->bos_id());
            std::vector<int32_t> ids = tok->encode(text);
            prompt.insert(prompt.end(), ids.begin(), ids.end());
        } else {
            std::fprintf(stderr,
                         "note: %s has no tokenizer.json; the prompt's bytes are used as token ids (byte mod %lld) "
                         "and the output is shown as ids.\n",
                         model_dir.c_str(), (long long)cfg.vocab_size);
            for (unsigned char ch : text) prompt.push_back(int32_t(ch % cfg.vocab_size));
        }
    }
    if (prompt.empty()) throw dsinfer::Error("the prompt is empty");
    for (int32_t t : prompt)
        if (t >= cfg.vocab_size)
            throw dsinfer::Error("token id " + std::to_string(t) + " is outside the vocabulary of " + model_dir + " (" +
                                 std::to_string(cfg.vocab_size) + " tokens)");
    std::fprintf(stderr, "model %s: %d layers, hidden %lld, %d experts; loaded in %.2f s; device %s\n",
                 model_dir.c_str(), cfg.n_layers, (long long)cfg.dim, cfg.n_routed_experts, load_s,
                 model->device_name());

    std::unique_ptr<dsinfer::text::IncrementalDetokenizer> detok;
    if (tok) detok = std::make_unique<dsinfer::text::IncrementalDetokenizer>(*tok);
    if (tok) {
        std::printf("%s", tok->decode(prompt, /*skip_special=*/true).c_str());
    } else {
        std::printf("prompt:");
        for (int32_t t : prompt) std::printf(" %d", t);
        std::printf("\noutput:");
    }
    std::fflush(stdout);
    dsinfer::GreedyOptions go;
    go.max_tokens = max_tokens;
    go.stop_at_eos = stop;
    go.speculative = speculative;
    dsinfer::GreedyStats stats;
    auto on_token = [&](int32_t id) {
        if (detok && id < int32_t(tok->vocab_size()))
            std::printf("%s", detok->push(id).c_str());
        else
            std::printf(" %d", id);
        std::fflush(stdout);
    };
    std::vector<int32_t> out_ids = dsinfer::greedy_generate(*model, prompt, go, on_token, &stats);
    const int64_t generated = int64_t(out_ids.size());
    if (detok) std::printf("%s", detok->flush().c_str());
    if (tok) {
        std::printf("\n\ntoken ids:");
        for (int32_t t : out_ids) std::printf(" %d", t);
    }
    const double prefill_s = stats.prefill_s;
    const double decode_s = stats.decode_s;
    std::printf("\n");
    std::fflush(stdout);
    if (speculative && stats.drafts > 0)
        std::fprintf(stderr, "speculative: %lld of %lld drafts accepted (%.0f%%), %lld main-model steps\n",
                     (long long)stats.accepted, (long long)stats.drafts,
                     100.0 * double(stats.accepted) / double(stats.drafts), (long long)stats.main_steps);
    std::fprintf(stderr, "prefill: %zu tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s)\n",
                 prompt.size(), prefill_s, double(prompt.size()) / std::max(prefill_s, 1e-9), (long long)generated,
                 decode_s, generated > 1 ? double(generated - 1) / std::max(decode_s, 1e-9) : 0.0);
    return 0;
}

}  // namespace

DSINFER_COMMAND("generate", "generate tokens greedily from a prompt", generate_main);
