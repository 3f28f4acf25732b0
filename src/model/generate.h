// Greedy generation on Dsv4Model, plain or speculative with the MTP block (§11): the MTP block drafts
// one token ahead, the main model verifies [token, draft] in one step, and a wrong draft is undone
// with a SequenceMark. Both give exactly the plain greedy output.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "model/dsv4_model.h"

namespace dsinfer {

struct GreedyOptions {
    int64_t max_tokens = 32;
    bool stop_at_eos = true;
    bool speculative = false;
    // Tests: replaces the MTP block's draft (given the tokens so far, returns the draft).
    std::function<int32_t(const std::vector<int32_t>&)> draft_override;
};

struct GreedyStats {
    int64_t drafts = 0, accepted = 0;
    int64_t main_steps = 0;  // forward calls of the main model after the prefill
    double prefill_s = 0, decode_s = 0;
};

// Generates from `prompt` (a fresh sequence); on_token is called with each token as it is decided
// (may be null). Returns the generated tokens.
std::vector<int32_t> greedy_generate(Dsv4Model& model, std::span<const int32_t> prompt, const GreedyOptions& opts,
                                     const std::function<void(int32_t)>& on_token, GreedyStats* stats = nullptr);

}  // namespace dsinfer
