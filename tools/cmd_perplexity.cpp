// dsinfer perplexity: held-out perplexity of a model on a text file, by the rule of docs/default-model.md:
// the whole file is one string, encoded without special tokens; non-overlapping chunks of window-1 ids, each
// run as a fresh sequence after BOS; every id is predicted once.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "core/error.h"
#include "model/dsv4_model.h"
#include "text/tokenizer.h"

namespace {

void usage() {
    std::printf(
        "usage: dsinfer perplexity [--model DIR] --text FILE [--window N] [--max-windows K] [--tokenizer FILE]\n"
        "                          [--threads N] [--no-quant-sim]\n"
        "Perplexity of the model on FILE (read as one string, encoded without special tokens), in\n"
        "non-overlapping windows of N tokens (default 512): BOS + N-1 text tokens, each a fresh sequence.\n"
        "Prints the token count, the mean negative log-likelihood (natural log) and the perplexity.\n"
        "  --model DIR        model folder (default $DSINFER_MODEL, else models/default)\n"
        "  --max-windows K    only the first K windows\n"
        "  --tokenizer FILE   tokenizer.json (default DIR/tokenizer.json)\n");
}

int perplexity_main(int argc, char** argv) {
    std::string model_dir = dsinfer::cli::default_model_dir();
    std::string text_path, tokenizer_path;
    long long window = 512, max_windows = -1;
    dsinfer::ModelOptions mo;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        if (a == "--model") model_dir = value();
        else if (a == "--text") text_path = value();
        else if (a == "--window") window = std::atoll(value().c_str());
        else if (a == "--max-windows") max_windows = std::atoll(value().c_str());
        else if (a == "--tokenizer") tokenizer_path = value();
        else if (a == "--threads") mo.threads = std::atoi(value().c_str());
        else if (a == "--no-quant-sim") mo.quant_sim = false;
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else throw dsinfer::Error("unknown option '" + a + "' (see --help)");
    }
    if (text_path.empty()) throw dsinfer::Error("--text FILE is required (see --help)");
    if (window < 2) throw dsinfer::Error("--window must be at least 2");
    if (tokenizer_path.empty()) tokenizer_path = model_dir + "/tokenizer.json";
    if (!std::filesystem::exists(tokenizer_path))
        throw dsinfer::Error(tokenizer_path + ": no tokenizer (give --tokenizer FILE)");
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw dsinfer::Error(text_path + ": cannot read");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    auto tok = dsinfer::text::Tokenizer::load(tokenizer_path);
    auto model = dsinfer::Dsv4Model::load(model_dir, mo);
    const int64_t vocab = model->config().vocab_size;
    const std::vector<int32_t> ids = tok.encode(text);
    if (ids.empty()) throw dsinfer::Error(text_path + ": no tokens");
    for (int32_t t : ids)
        if (t < 0 || t >= vocab)
            throw dsinfer::Error(tokenizer_path + " gives id " + std::to_string(t) + ", outside the vocabulary of " +
                                 model_dir);
    const int32_t bos = 0;  // DeepSeek's <｜begin▁of▁sentence｜>

    double nll = 0.0;
    int64_t count = 0, windows = 0;
    const int64_t chunk = window - 1;
    std::vector<float> logits;
    for (int64_t start = 0; start < int64_t(ids.size()); start += chunk) {
        if (max_windows >= 0 && windows >= max_windows) break;
        const int64_t n = std::min<int64_t>(chunk, int64_t(ids.size()) - start);
        std::vector<int32_t> w;
        w.reserve(n + 1);
        w.push_back(bos);
        w.insert(w.end(), ids.begin() + start, ids.begin() + start + n);
        auto st = model->new_sequence();
        dsinfer::ForwardItem it;
        it.state = st.get();
        it.tokens = w;
        it.all_logits = true;
        it.logits_out = &logits;
        model->forward(std::span<dsinfer::ForwardItem>(&it, 1));
        for (int64_t p = 0; p < n; ++p) {
            const float* l = logits.data() + p * vocab;
            double mx = l[0];
            for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, double(l[v]));
            double s = 0.0;
            for (int64_t v = 0; v < vocab; ++v) s += std::exp(double(l[v]) - mx);
            nll -= double(l[w[p + 1]]) - mx - std::log(s);
        }
        count += n;
        ++windows;
    }
    const double mean = nll / double(count);
    std::printf("windows %lld\ntokens %lld\nmean_nll %.6f\nperplexity %.4f\n", (long long)windows, (long long)count,
                mean, std::exp(mean));
    return 0;
}

}  // namespace

DSINFER_COMMAND("perplexity", "held-out perplexity of the model on a text file (windows of N tokens after BOS)",
                perplexity_main);
