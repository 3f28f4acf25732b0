// Choosing the next token from a row of logits: penalties, temperature, top-k, top-p, min-p, and a
// per-request random stream (so a seeded request gives the same tokens whatever else is batched).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "dsinfer/request.h"
#include "dsinfer/sampling_params.h"
#include "model/row_summary.h"

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
    void remove_output(int32_t t) {
        auto it = output_counts.find(t);
        if (it != output_counts.end() && --it->second == 0) output_counts.erase(it);
    }
};

struct SampleResult {
    int32_t token = 0;
    float logprob = 0;               // log-softmax of the raw logits at `token`
    std::vector<TokenLogprob> top;   // the k most likely under the raw logits, when asked
};

bool uses_penalties(const SamplingParams& p);

// The first index of the row's maximum (what greedy sampling picks; 0 for a row without one).
int32_t first_max(std::span<const float> logits);

// Applies presence/frequency/repetition penalties to `logits` in place.
void apply_penalties(std::span<float> logits, const SamplingParams& p, const TokenHistory& h);

// Probabilities after temperature, top-k, top-p and min-p over (already penalised) logits, as
// (token, probability) sorted by probability descending (ties by token id), renormalised.
std::vector<std::pair<int32_t, float>> filtered_distribution(std::span<const float> logits, const SamplingParams& p);

SampleResult sample(std::span<const float> logits, const SamplingParams& p, Rng& rng, const TokenHistory& h);
// The draw sample() makes from a filtered distribution (one uniform, the kept tokens in order).
int32_t draw_filtered(const std::vector<std::pair<int32_t, float>>& dist, Rng& rng);
// The draw sample() makes when nothing is filtered, for its uniform u in [0, 1): the first token (id
// order) whose running sum of weights exp((l - max) / T) passes u · z (z summed as exp_row sums it;
// whole chunks of 256 stepped over by their float-lane sums, the one u falls in walked token by token
// in double; the last token with weight if rounding leaves u past the end). cuda::draw_rows is the
// device pass, the same token.
int32_t draw_whole_row(std::span<const float> logits, float temperature, double u);
// Whether a row for these parameters is drawn over its whole softmax (nothing filtered: no top-k below
// the vocabulary, top_p 1, min_p 0) with nothing else read from it (not greedy, no penalties, no
// logprobs): the draw a device pass can make from a uniform drawn beforehand (SummaryRequest::draw).
bool whole_row_draw_can_serve(const SamplingParams& p, int64_t vocab);

// The reference summary (RowSummary, model/row_summary.h), computed on the host (the weights and z
// exactly as the sampler computes them; cuda::sample_summary is the device pass, the same ids and
// weights bit for bit).
RowSummary summarize_row(std::span<const float> logits, float temperature, size_t cap);
// filtered_distribution from a summary alone (penalties already applied to the row it summarizes):
// the same result whenever the kept tokens are among the summary's, nullopt when they may not be
// (or when nothing is filtered: that draw needs the whole row).
std::optional<std::vector<std::pair<int32_t, float>>> filtered_from_summary(const RowSummary& s,
                                                                            const SamplingParams& p);

// Whether a row for these parameters can be sampled from its summary (filtered_from_summary, then
// draw_filtered: the token sample() draws): not greedy, no penalties, no logprobs (those read the
// row), and some filter (top-k, top-p or min-p; a draw over the whole softmax needs the row).
bool summary_can_serve(const SamplingParams& p);

// A row asked for with a SummaryRequest (model/row_summary.h), and the token drawn after the forward.
// `kept`: the kept distribution, found from the summary when it serves.
using KeptDistribution = std::optional<std::vector<std::pair<int32_t, float>>>;
// Fills q for a row of a request with these parameters: a summary where summary_can_serve (with
// summaries), else a device draw where whole_row_draw_can_serve (with draws: its uniform is taken from
// rng now, as sample() would after the forward). False, and q cleared, when neither applies. kept and
// p must outlive the forward.
bool prepare_row_request(SummaryRequest& q, const SamplingParams& p, int64_t vocab, bool summaries, bool draws, Rng& rng,
                         KeptDistribution* kept);
// The token of a row after the forward: the device draw's token, the draw from the summary's kept
// distribution, else sample() over the row; the same token in every case. `row` (its logits) is read
// only when the forward neither summarized nor drew it, and may be empty otherwise. Throws when a device
// draw returned no token of the vocabulary [0, vocab).
SampleResult finish_row(std::span<const float> row, int64_t vocab, const SamplingParams& p, Rng& rng,
                        const TokenHistory& h, const SummaryRequest& q, const KeptDistribution& kept);

// fn(0) … fn(n − 1): the rows of a step, on up to 16 threads when there are enough of them to pay
// (from 8 on; sampling a 129k row takes 0.1-0.7 ms). Rethrows the first exception a call threw.
void for_each_row(size_t n, const std::function<void(size_t)>& fn);

// ---- speculative decoding ----
// Greedy parameters: the token is the argmax (lowest id on ties) of the penalised logits.
bool is_greedy(const SamplingParams& p);
int32_t greedy_token(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h);
// The distribution sample() draws from (penalties, temperature, top-k, top-p, min-p), dense over the
// vocabulary. Not for greedy parameters.
std::vector<float> sampling_probs(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h);
// A draw from a dense distribution (the last token with mass if rounding leaves u past the total).
int32_t draw(std::span<const float> probs, Rng& rng);
// Speculative sampling at one position: `draft` was drawn from q; it is kept with probability
// min(1, p[draft] / q[draft]); otherwise returns a draw from normalize(max(0, p - q)). The result is
// distributed as p. Sets *accepted.
int32_t accept_or_resample(std::span<const float> p, std::span<const float> q, int32_t draft, Rng& rng, bool* accepted);
// The log-probabilities sample() reports for `token` (raw logits; the top p.logprobs ones too).
void fill_logprobs(std::span<const float> raw, const SamplingParams& p, SampleResult& r);

}  // namespace dsinfer::runtime
