// The threaded engine: submissions from many threads, streaming through per-request queues,
// cancellation from the reader's side, refusal and shutdown.
#include <gtest/gtest.h>

#include <thread>

#include "dsinfer/engine.h"
#include "harness.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

static std::vector<int32_t> drain(RequestStream& s, FinishReason* fin) {
    std::vector<int32_t> out;
    TokenEvent ev;
    while (s.next(ev)) {
        if (ev.has_token) out.push_back(ev.token);
        if (ev.finish != FinishReason::none) *fin = ev.finish;
    }
    return out;
}

TEST(Engine, ManyThreadsGetTheirOwnTokens) {
    EngineOptions o;
    o.kv_cache_gb = 0.05;
    o.max_batch_tokens = 32;
    auto engine = Engine::create(std::make_unique<ScriptedRunner>(ScriptedOptions{}), o);
    const int n = 24;
    std::vector<std::vector<int32_t>> got(n);
    std::vector<FinishReason> fin(n, FinishReason::none);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            Status st;
            auto s = engine->submit({make_prompt(5 + i, 900 + i), greedy_params(12)}, &st);
            ASSERT_TRUE(s) << st.message;
            got[i] = drain(*s, &fin[i]);
        });
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) {
        EXPECT_EQ(got[i], run_alone(make_prompt(5 + i, 900 + i), greedy_params(12)).tokens) << i;
        EXPECT_EQ(fin[i], FinishReason::length);
    }
    EngineStats st = engine->stats();
    EXPECT_EQ(st.requests_finished, n);
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.kv_blocks_used, st.kv_blocks_snapshots);
}

TEST(Engine, CancelFromReaderAndShutdown) {
    EngineOptions o;
    o.kv_cache_gb = 0.05;
    ScriptedOptions so;
    so.step_delay_us = 200;  // keeps the long request running while the reader cancels it
    auto engine = Engine::create(std::make_unique<ScriptedRunner>(so), o);
    Status st;
    auto s = engine->submit({make_prompt(8, 1), greedy_params(4000)}, &st);
    ASSERT_TRUE(s) << st.message;
    TokenEvent ev;
    ASSERT_TRUE(s->next(ev));
    EXPECT_TRUE(ev.has_token);
    s->cancel();
    FinishReason fin = FinishReason::none;
    drain(*s, &fin);
    EXPECT_EQ(fin, FinishReason::cancelled);

    auto bad = engine->submit({{}, greedy_params(4)}, &st);
    EXPECT_FALSE(bad);
    EXPECT_EQ(st.code, StatusCode::invalid_argument);

    auto inflight = engine->submit({make_prompt(8, 2), greedy_params(4000)}, &st);
    ASSERT_TRUE(inflight);
    ASSERT_TRUE(inflight->next(ev));
    engine->shutdown();
    drain(*inflight, &fin);
    EXPECT_EQ(fin, FinishReason::error);  // failed cleanly, not left hanging
    // Stats are published after each step; after shutdown (the loop has joined) they are final.
    EXPECT_EQ(engine->stats().requests_cancelled, 1);
    EXPECT_EQ(engine->stats().requests_failed, 1);
    EXPECT_FALSE(engine->submit({make_prompt(8, 3), greedy_params(4)}, &st));
    EXPECT_EQ(st.code, StatusCode::unavailable);
}
