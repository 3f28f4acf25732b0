// The engine on the default model (models/tiny-en): it computes the model the trainer trained.
// - replay of the trainer's goldens (tests/data/tiny-en/golden.safetensors, float32 trainer forward on the exported
//   checkpoint) with the fixtures' end-to-end bars, whole prefill and chunked;
// - `dsinfer perplexity` on the held-out text within 1% of the trainer's figure (tests/data/tiny-en/expected.json),
//   on the first windows (the whole file is the benchmark-sized run described in docs/default-model.md).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/replay.h"

using namespace dsinfer;

namespace {

const std::string kData = std::string(DSINFER_TEST_DATA) + "/tiny-en";
const std::string kModel = std::string(DSINFER_TEST_DATA) + "/../../models/tiny-en";

Dsv4Model& model() {
    static std::unique_ptr<Dsv4Model> m = Dsv4Model::load(kModel, ModelOptions{});
    return *m;
}

nlohmann::json expected() {
    std::ifstream f(kData + "/expected.json");
    return nlohmann::json::parse(f);
}

void replay_and_check(int64_t chunk) {
    ReplayOptions ro;
    ro.chunk = chunk;
    const std::string file = kData + "/golden.safetensors";
    TensorMap out = replay_cases(model(), file, ro);
    auto lines = compare_outputs(read_tensor_map(file), out, false, false);
    std::printf("%s", format_compare(lines).c_str());
    int logits = 0;
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " " << l.what << " " << l.v1 << " " << l.v2 << " " << l.message;
        if (l.what == "kl") ++logits;
    }
    EXPECT_EQ(logits, 4);  // long/short prefill and MTP
}

int run(const std::string& args, std::string* out) {
    std::string cmd = std::string(DSINFER_BINARY) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, p)) out->append(buf, n);
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// "key value" lines of the command's output
double field(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + " ", 0) == 0) return std::stod(line.substr(key.size() + 1));
    return NAN;
}

}  // namespace

TEST(TinyEn, ReplayPrefill) { replay_and_check(0); }
TEST(TinyEn, ReplayChunk37) { replay_and_check(37); }

TEST(TinyEn, PerplexityMatchesTrainer) {
    const auto e = expected()["first_windows"];
    const int windows = e["windows"].get<int>();
    std::string out;
    ASSERT_EQ(run("perplexity --model " + kModel + " --text " + kData + "/heldout.txt --window " +
                      std::to_string(e["window"].get<int>()) + " --max-windows " + std::to_string(windows),
                  &out),
              0)
        << out;
    std::printf("%s", out.c_str());
    EXPECT_EQ(field(out, "windows"), windows) << out;
    EXPECT_EQ(field(out, "tokens"), e["tokens"].get<double>()) << out;
    const double ppl = field(out, "perplexity"), want = e["perplexity"].get<double>();
    EXPECT_NEAR(ppl, want, 0.01 * want) << out;
    // and clearly better than the unigram model of the training tokens on the same text
    EXPECT_LT(ppl, 0.2 * expected()["unigram_perplexity"].get<double>());
}

TEST(TinyEn, PerplexityRejectsMissingText) {
    std::string out;
    EXPECT_NE(run("perplexity --model " + kModel + " --text /nonexistent/heldout.txt", &out), 0);
    EXPECT_NE(out.find("/nonexistent/heldout.txt"), std::string::npos) << out;
}
