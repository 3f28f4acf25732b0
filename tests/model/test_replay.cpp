// The engine against DeepSeek's reference goldens on the shipped tiny checkpoint, with the bars of
// the fixtures README: end to end, layer by layer, without quantization simulation, each also with
// chunked prefill. The model is loaded once; cases run in process.
#include <gtest/gtest.h>

#include <string>

#include "model/replay.h"
#include "model/replay_check.h"

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


void run_and_check(bool noquant, bool layerwise, int64_t chunk) {
    test_util::replay_and_check(model(), noquant, layerwise, chunk);
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
    TensorMap out = test_util::tiny_golden(true);
    for (auto& [name, a] : out)
        if (name == "long.prefill.logits")
            for (size_t i = 0; i < a.data.size(); i += 7) a.data[i] += 3.f;
    auto lines = compare_outputs(test_util::tiny_golden(true), out, true, false);
    bool failed = false;
    for (const auto& l : lines)
        if (l.name == "long.prefill.logits") failed = !l.pass;
    EXPECT_TRUE(failed);
    out.erase("short.decode.logits");
    lines = compare_outputs(test_util::tiny_golden(true), out, true, false);
    bool missing_failed = false;
    for (const auto& l : lines)
        if (l.name == "short.decode.logits") missing_failed = !l.pass;
    EXPECT_TRUE(missing_failed);
}
