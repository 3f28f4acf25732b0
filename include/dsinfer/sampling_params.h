// How the next token is chosen, per request (the OpenAI fields plus top_k, min_p and
// repetition_penalty as vLLM accepts them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsinfer {

struct SamplingParams {
    float temperature = 1.0f;         // 0 = greedy (argmax; ties go to the lowest id)
    float top_p = 1.0f;               // (0, 1]: keep the smallest set of tokens whose mass reaches top_p
    int top_k = 0;                    // 0 or -1 = off
    float min_p = 0.0f;               // [0, 1]: drop tokens below min_p * p(most likely)
    float presence_penalty = 0.0f;    // [-2, 2], subtracted once from the logit of every token already generated
    float frequency_penalty = 0.0f;   // [-2, 2], subtracted per occurrence in the generated tokens
    float repetition_penalty = 1.0f;  // > 0: logits of tokens seen in prompt or output are divided (if > 0)
                                      // or multiplied (if < 0) by it
    std::optional<uint64_t> seed;     // same seed => same tokens, whatever else runs in the batch
    int max_tokens = -1;              // -1 = up to the context length
    std::vector<int32_t> stop_token_ids;  // finish (reason stop) when one of these is sampled
    bool ignore_eos = false;
    int logprobs = -1;  // -1 = none; k >= 0 = logprob of the sampled token plus the k most likely
};

}  // namespace dsinfer
