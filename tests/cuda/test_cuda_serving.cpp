// The serving runtime on the GPU forward (label cuda): `serve --device cuda` runs the scheduler over
// make_dsv4_runner(dir, "cuda"); batched greedy requests complete with the tokens they asked for, also
// with speculative decoding (device states are rolled back on the GPU).
#include <gtest/gtest.h>

#include <cmath>

#include "dsinfer/engine.h"
#include "runtime/dsv4_runner.h"
#include "runtime/scheduler.h"

using namespace dsinfer;
using namespace dsinfer::runtime;

namespace {
const std::string kModel = DSINFER_TEST_DATA "/dsv4-tiny-flash";

// Adds a sequence (validated first) to the scheduler; returns its output channel.
std::shared_ptr<OutputChannel> add_sequence(Scheduler& sched, uint64_t id, std::vector<int32_t> tokens,
                                            const SamplingParams& p) {
    auto s = std::make_unique<Sequence>();
    s->id = s->arrival = id;
    s->tokens = std::move(tokens);
    s->params = p;
    EXPECT_TRUE(sched.validate({s->tokens, s->params}).ok());
    s->out = std::make_shared<OutputChannel>(s->id, nullptr);
    auto out = s->out;
    sched.add(std::move(s));
    return out;
}

// Steps the scheduler until it has no work (at most 10000 steps).
void run_to_end(Scheduler& sched) {
    for (int steps = 0; sched.has_work() && steps < 10000; ++steps) sched.step();
    EXPECT_FALSE(sched.has_work());
}

// Runs n greedy requests of growing prompt length through a scheduler over the GPU runner; each must
// finish by length with exactly max_tokens tokens, and the pool must end empty. With logprobs >= 0 the
// requests ask for log-probabilities, so their rows come to the host (the logits path) instead of the
// device argmax. Returns each request's tokens, and through top1 each token's reported best id.
std::vector<std::vector<int32_t>> run_requests(EngineOptions o, int n, int prompt0, int prompt_step, int max_tokens,
                                               int logprobs = -1, std::vector<std::vector<int32_t>>* top1 = nullptr) {
    auto runner = make_dsv4_runner(kModel, "cuda");
    if (o.speculative) {
        EXPECT_EQ(runner->draft_unavailable(), "");
    }
    Scheduler sched(*runner, o);
    std::vector<std::shared_ptr<OutputChannel>> ch;
    for (int i = 0; i < n; ++i) {
        std::vector<int32_t> tokens;
        for (int t = 0; t < prompt0 + prompt_step * i; ++t) tokens.push_back(2 + (t * 37 + i * 101) % 1000);
        SamplingParams p;
        p.temperature = 0;
        p.max_tokens = max_tokens;
        p.ignore_eos = true;
        p.logprobs = logprobs;
        ch.push_back(add_sequence(sched, (uint64_t)i + 1, std::move(tokens), p));
    }
    run_to_end(sched);
    std::vector<std::vector<int32_t>> out;
    if (top1) top1->clear();
    for (auto& c : ch) {
        TokenEvent ev;
        FinishReason fin = FinishReason::none;
        out.emplace_back();
        if (top1) top1->emplace_back();
        while (c->next_for(ev, 0) == 1) {
            if (ev.has_token) {
                out.back().push_back(ev.token);
                if (logprobs >= 0) {
                    EXPECT_TRUE(ev.logprob <= 0.0f && std::isfinite(ev.logprob)) << ev.logprob;
                    EXPECT_EQ(ev.top.size(), size_t(logprobs));
                    if (top1 && !ev.top.empty()) top1->back().push_back(ev.top[0].id);
                }
            }
            if (ev.finish != FinishReason::none) fin = ev.finish;
        }
        EXPECT_EQ(out.back().size(), size_t(max_tokens));
        EXPECT_EQ(fin, FinishReason::length);
    }
    EXPECT_EQ(sched.pool().used(), 0);
    return out;
}

}  // namespace

TEST(CudaServing, BatchedGreedyRequestsRunOnTheGpu) {
    EngineOptions o;
    o.kv_cache_gb = 0.25;
    o.max_batch_tokens = 48;
    run_requests(o, 4, 30, 11, 6);
}

// Speculative decoding on the GPU forward (device rollback): requests complete with the tokens they
// asked for, and the pool ends empty.
TEST(CudaServing, SpeculativeRunsOnTheGpu) {
    EngineOptions o;
    o.kv_cache_gb = 0.25;
    o.max_batch_tokens = 48;
    o.speculative = 2;
    run_requests(o, 3, 20, 9, 9);
}

// Greedy requests that ask for logprobs take the logits path (every row copied to the host, straight
// into the scheduler's rows, side by side from 8 rows on) and pick on the host; the same requests
// without logprobs take the device argmax. Same batches, same logits: the same tokens, and each
// token is the best id its logprobs report.
TEST(CudaServing, LogitsPathMatchesDeviceArgmax) {
    EngineOptions o;
    o.kv_cache_gb = 0.25;
    o.max_batch_tokens = 512;
    o.prefix_caching = false;
    const auto picked = run_requests(o, 10, 12, 3, 5);
    std::vector<std::vector<int32_t>> top1;
    const auto with_logprobs = run_requests(o, 10, 12, 3, 5, 2, &top1);
    EXPECT_EQ(with_logprobs, picked);
    EXPECT_EQ(top1, with_logprobs);
}

namespace {
// Sampled requests (seeded, so each one's tokens are fixed by its rows) through the scheduler over the
// GPU runner; returns each one's tokens and the scheduler's stats.
std::vector<std::vector<int32_t>> run_sampled(bool summaries, EngineStats* stats, bool draws = false) {
    EngineOptions o;
    o.kv_cache_gb = 0.25;
    o.max_batch_tokens = 512;
    o.prefix_caching = false;
    o.sample_summaries = summaries;
    o.device_draws = draws;
    auto runner = make_dsv4_runner(kModel, "cuda");
    Scheduler sched(*runner, o);
    std::vector<std::shared_ptr<OutputChannel>> ch;
    for (int i = 0; i < 15; ++i) {
        std::vector<int32_t> tokens;
        for (int t = 0; t < 10 + 3 * i; ++t) tokens.push_back(2 + (t * 53 + i * 89) % 1000);
        SamplingParams p;
        p.temperature = 0.8f;
        p.seed = 4000 + (uint64_t)i;
        switch (i % 5) {
            case 0: p.top_k = 40; break;                  // within the summary
            case 1: p.top_k = 20, p.top_p = 0.9f; break;  // within
            case 2: p.top_p = 0.95f; break;               // within or not, by the row
            case 3: p.min_p = 0.1f, p.top_k = 200; break; // within
            case 4: p.temperature = 1.0f; break;          // nothing filtered: the row, or a device draw
        }
        p.max_tokens = 6;
        p.ignore_eos = true;
        ch.push_back(add_sequence(sched, (uint64_t)i + 1, std::move(tokens), p));
    }
    run_to_end(sched);
    std::vector<std::vector<int32_t>> out;
    for (auto& c : ch) {
        TokenEvent ev;
        out.emplace_back();
        while (c->next_for(ev, 0) == 1)
            if (ev.has_token) out.back().push_back(ev.token);
        EXPECT_EQ(out.back().size(), 6u);
    }
    *stats = sched.stats();
    return out;
}
}  // namespace

// Sampled requests drawn from the rows' device summaries (cuda::sample_summary: 1024 tokens and the
// row's total weight come back instead of the row) get the tokens the whole rows give.
// Requests that filter nothing drawn on the device (device_draws: only the id comes back) get the
// tokens the rows give too.
TEST(CudaServing, SummarySamplingMatchesTheRows) {
    EngineStats with, without, draws;
    const auto a = run_sampled(true, &with);
    const auto b = run_sampled(false, &without);
    const auto c = run_sampled(true, &draws, true);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, c);
    EXPECT_EQ(with.sampled_rows, 15 * 6);
    EXPECT_GE(with.summary_rows, 15 * 6 * 3 / 5);  // top-k cuts within 1024 tokens always serve
    EXPECT_GE(draws.summary_rows, with.summary_rows + 15 * 6 / 5);  // and every draw
    EXPECT_EQ(without.summary_rows, 0);
}
