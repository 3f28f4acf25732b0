// Choosing the next token from a row of logits: penalties, temperature, top-k, top-p, min-p, and a
// per-request random stream (so a seeded request gives the same tokens whatever else is batched).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsinfer/request.h"
#include "dsinfer/sampling_params.h"

namespace dsinfer::runtime {

// splitmix64: tiny, portable, and its sequence is fixed by the seed alone.
class Rng {
public:
    explicit Rng(uint64_t seed = 0) : s_(seed) {}
    uint64_t next_u64() {
        uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return (double)(next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)

private:
    uint64_t s_;
};

// What the penalties need to know about a sequence.
struct TokenHistory {
    std::unordered_map<int32_t, int> output_counts;  // generated tokens
    std::unordered_map<int32_t, int> prompt_seen;    // prompt tokens (for repetition_penalty)
    void add_prompt(std::span<const int32_t> ids) {
        for (int32_t t : ids) prompt_seen[t] = 1;
    }
    void add_output(int32_t t) { ++output_counts[t]; }
};

struct SampleResult {
    int32_t token = 0;
    float logprob = 0;               // log-softmax of the raw logits at `token`
    std::vector<TokenLogprob> top;   // the k most likely under the raw logits, when asked
};

bool uses_penalties(const SamplingParams& p);

// Applies presence/frequency/repetition penalties to `logits` in place.
void apply_penalties(std::span<float> logits, const SamplingParams& p, const TokenHistory& h);

// Probabilities after temperature, top-k, top-p and min-p over (already penalised) logits, as
// (token, probability) sorted by probability descending (ties by token id), renormalised.
std::vector<std::pair<int32_t, float>> filtered_distribution(std::span<const float> logits, const SamplingParams& p);

SampleResult sample(std::span<const float> logits, const SamplingParams& p, Rng& rng, const TokenHistory& h);

}  // namespace dsinfer::runtime
