// The engine against DeepSeek's reference goldens on the shipped tiny checkpoint, with the bars of
// the fixtures README: end to end, layer by layer, without quantization simulation, each also with
// chunked prefill. The model is loaded once; cases run in process.
#include <gtest/gtest.h>

#include <string>

#include "model/replay.h"

using namespace dsinfer;

namespace {

const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

// One thread: the tiny model's ops are too small to gain from threads on a shared CI machine, and
// every output element is computed the same way whatever the thread count (test_batching runs the
// threaded paths against the serial ones).
Dsv4Model& model() {
    static std::unique_ptr<Dsv4Model> m = Dsv4Model::load(kDir, ModelOptions{.quant_sim = true, .threads = 1});
    return *m;
}

const TensorMap& golden(bool noquant) {
    static TensorMap g = read_tensor_map(kDir + "/golden.safetensors");
    static TensorMap gn = read_tensor_map(kDir + "/golden-noquant.safetensors");
    return noquant ? gn : g;
}

void run_and_check(bool noquant, bool layerwise, int64_t chunk) {
    Dsv4Model& m = model();
    m.set_quant_sim(!noquant);
    ReplayOptions ro;
    ro.layerwise = layerwise;
    ro.chunk = chunk;
    const std::string file = kDir + (noquant ? "/golden-noquant.safetensors" : "/golden.safetensors");
    TensorMap out = replay_cases(m, file, ro);
    m.set_quant_sim(true);
    auto lines = compare_outputs(golden(noquant), out, noquant, layerwise);
    std::printf("%s", format_compare(lines).c_str());
    int logits = 0, hidden = 0;
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << " " << l.what << " " << l.v1 << " " << l.v2 << " " << l.message;
        if (l.what == "kl") ++logits;
        if (l.what == "rel_l2" && l.checked) ++hidden;
    }
    EXPECT_EQ(logits, 5);  // long/short prefill+decode, long.mtp
    if (layerwise) {
        EXPECT_EQ(hidden, 8);
    }
}

}  // namespace

TEST(Replay, EndToEnd) { run_and_check(false, false, 0); }
TEST(Replay, EndToEndChunk7) { run_and_check(false, false, 7); }
TEST(Replay, EndToEndChunk64) { run_and_check(false, false, 64); }
TEST(Replay, Layerwise) { run_and_check(false, true, 0); }
TEST(Replay, LayerwiseChunk7) { run_and_check(false, true, 7); }
TEST(Replay, LayerwiseChunk64) { run_and_check(false, true, 64); }
TEST(Replay, NoQuant) { run_and_check(true, false, 0); }
TEST(Replay, NoQuantChunk7) { run_and_check(true, false, 7); }
TEST(Replay, NoQuantChunk64) { run_and_check(true, false, 64); }

// A wrong engine must fail the bars: perturbed logits are rejected.
TEST(Replay, CompareRejectsWrongLogits) {
    TensorMap out = golden(true);
    for (auto& [name, a] : out)
        if (name == "long.prefill.logits")
            for (size_t i = 0; i < a.data.size(); i += 7) a.data[i] += 3.f;
    auto lines = compare_outputs(golden(true), out, true, false);
    bool failed = false;
    for (const auto& l : lines)
        if (l.name == "long.prefill.logits") failed = !l.pass;
    EXPECT_TRUE(failed);
    out.erase("short.decode.logits");
    lines = compare_outputs(golden(true), out, true, false);
    bool missing_failed = false;
    for (const auto& l : lines)
        if (l.name == "short.decode.logits") missing_failed = !l.pass;
    EXPECT_TRUE(missing_failed);
}
