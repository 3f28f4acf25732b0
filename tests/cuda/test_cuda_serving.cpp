// The serving runtime on the GPU forward (label cuda): `serve --device cuda` runs the scheduler over
// make_dsv4_runner(dir, "cuda"); batched greedy requests complete with the tokens they asked for, also
// with speculative decoding (device states are rolled back on the GPU).
#include <gtest/gtest.h>

#include "dsinfer/engine.h"
#include "runtime/dsv4_runner.h"
#include "runtime/scheduler.h"

using namespace dsinfer;
using namespace dsinfer::runtime;

namespace {
const std::string kModel = DSINFER_TEST_DATA "/dsv4-tiny-flash";

// Runs n greedy requests of growing prompt length through a scheduler over the GPU runner; each must
// finish by length with exactly max_tokens tokens, and the pool must end empty.
void run_requests(EngineOptions o, int n, int prompt0, int prompt_step, int max_tokens) {
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
        ASSERT_TRUE(sched.validate({s->tokens, s->params}).ok());
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        ch.push_back(s->out);
        sched.add(std::move(s));
    }
    for (int steps = 0; sched.has_work(); ++steps) {
        ASSERT_LT(steps, 10000);
        sched.step();
    }
    for (auto& c : ch) {
        TokenEvent ev;
        int tokens = 0;
        FinishReason fin = FinishReason::none;
        while (c->next_for(ev, 0) == 1) {
            tokens += ev.has_token;
            if (ev.finish != FinishReason::none) fin = ev.finish;
        }
        EXPECT_EQ(tokens, max_tokens);
        EXPECT_EQ(fin, FinishReason::length);
    }
    EXPECT_EQ(sched.pool().used(), 0);
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
