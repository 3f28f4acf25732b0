// The fixtures README's replay bars applied to one run of the engine on the shipped tiny checkpoint:
// shared by the CPU replay tests (tests/model) and the GPU ones (tests/cuda).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "model/replay.h"

namespace dsinfer::test_util {

inline const std::string& tiny_dir() {
    static const std::string dir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";
    return dir;
}

inline const TensorMap& tiny_golden(bool noquant) {
    static TensorMap g = read_tensor_map(tiny_dir() + "/golden.safetensors");
    static TensorMap gn = read_tensor_map(tiny_dir() + "/golden-noquant.safetensors");
    return noquant ? gn : g;
}

// Replays every golden case on `m` (quantization simulation off for noquant, layer inputs from the
// golden for layerwise, prefill in chunks of `chunk` tokens when > 0) and asserts the bars: every
// logits tensor (5) and, layerwise, every layer's hidden states (8) checked and passing.
inline void replay_and_check(Dsv4Model& m, bool noquant, bool layerwise, int64_t chunk) {
    m.set_quant_sim(!noquant);
    ReplayOptions ro;
    ro.layerwise = layerwise;
    ro.chunk = chunk;
    const std::string file = tiny_dir() + (noquant ? "/golden-noquant.safetensors" : "/golden.safetensors");
    TensorMap out = replay_cases(m, file, ro);
    m.set_quant_sim(true);
    auto lines = compare_outputs(tiny_golden(noquant), out, noquant, layerwise);
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

}  // namespace dsinfer::test_util
