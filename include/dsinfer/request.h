// One generation request and what the engine sends back for it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsinfer/sampling_params.h"

namespace dsinfer {

struct GenerationRequest {
    std::vector<int32_t> prompt;  // token ids, already encoded (chat template applied)
    SamplingParams params;
};

enum class FinishReason {
    none,       // still running
    stop,       // an end-of-sequence or stop token id (the token is not part of the output)
    length,     // max_tokens or the context length
    cancelled,  // cancelled by the caller (client gone, a stop string matched)
    error,      // the engine failed the request (message in TokenEvent::error)
};

const char* finish_reason_name(FinishReason r);

struct TokenLogprob {
    int32_t id = 0;
    float logprob = 0;
};

// One generated token (or the end of the request when finish != none; such an event may carry a
// token too, except for stop tokens, which are never reported as output).
struct TokenEvent {
    bool has_token = false;
    int32_t token = 0;
    float logprob = 0;                // of the sampled token under the model's distribution
    std::vector<TokenLogprob> top;    // the params.logprobs most likely tokens, when asked
    FinishReason finish = FinishReason::none;
    std::string error;
};

}  // namespace dsinfer
