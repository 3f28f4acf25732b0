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
        auto s = std::make_unique<Sequence>();
        s->id = s->arrival = (uint64_t)i + 1;
        for (int t = 0; t < prompt0 + prompt_step * i; ++t) s->tokens.push_back(2 + (t * 37 + i * 101) % 1000);
        s->params.temperature = 0;
        s->params.max_tokens = max_tokens;
        s->params.ignore_eos = true;
        s->params.logprobs = logprobs;
        EXPECT_TRUE(sched.validate({s->tokens, s->params}).ok());
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        ch.push_back(s->out);
        sched.add(std::move(s));
    }
    for (int steps = 0; sched.has_work() && steps < 10000; ++steps) sched.step();
    EXPECT_FALSE(sched.has_work());
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
std::vector<std::vector<int32_t>> run_sampled(bool summaries, EngineStats* stats) {
    EngineOptions o;
    o.kv_cache_gb = 0.25;
    o.max_batch_tokens = 512;
    o.prefix_caching = false;
    o.sample_summaries = summaries;
    auto runner = make_dsv4_runner(kModel, "cuda");
    Scheduler sched(*runner, o);
    std::vector<std::shared_ptr<OutputChannel>> ch;
    for (int i = 0; i < 12; ++i) {
        auto s = std::make_unique<Sequence>();
        s->id = s->arrival = (uint64_t)i + 1;
        for (int t = 0; t < 10 + 3 * i; ++t) s->tokens.push_back(2 + (t * 53 + i * 89) % 1000);
        s->params.temperature = 0.8f;
        s->params.seed = 4000 + (uint64_t)i;
        switch (i % 4) {
            case 0: s->params.top_k = 40; break;                          // within the summary
            case 1: s->params.top_k = 20, s->params.top_p = 0.9f; break;  // within
            case 2: s->params.top_p = 0.95f; break;                       // within or not, by the row
            case 3: s->params.min_p = 0.1f, s->params.top_k = 200; break; // within
        }
        s->params.max_tokens = 6;
        s->params.ignore_eos = true;
        EXPECT_TRUE(sched.validate({s->tokens, s->params}).ok());
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        ch.push_back(s->out);
        sched.add(std::move(s));
    }
    for (int steps = 0; sched.has_work() && steps < 10000; ++steps) sched.step();
    EXPECT_FALSE(sched.has_work());
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
TEST(CudaServing, SummarySamplingMatchesTheRows) {
    EngineStats with, without;
    const auto a = run_sampled(true, &with);
    const auto b = run_sampled(false, &without);
    EXPECT_EQ(a, b);
    EXPECT_EQ(with.sampled_rows, 12 * 6);
    EXPECT_GE(with.summary_rows, 12 * 6 * 3 / 4);  // top-k cuts within 1024 tokens always serve
    EXPECT_EQ(without.summary_rows, 0);
}
