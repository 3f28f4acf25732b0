// The scheduler over the real DeepSeek-V4 forward with its physical block store: the pool is the
// store, prefix snapshots share growth blocks, and every block is back when nothing runs.
#include <gtest/gtest.h>

#include "harness.h"
#include "model/kv_store.h"
#include "runtime/dsv4_runner.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

TEST(KvStoreServing, PoolIsTheStoreAndSnapshotsShareBlocks) {
    auto runner = make_dsv4_runner(DSINFER_TEST_DATA "/dsv4-tiny-flash");
    const KvGeometry g = runner->kv_geometry();
    EngineOptions o;
    o.max_batch_tokens = 512;
    o.kv_cache_gb = 0.05;
    Scheduler sched(*runner, o);
    const BlockPool& pool = sched.pool();
    ASSERT_TRUE(pool.physical());
    // The store's blocks are the accounting's: block_tokens positions of every growing cache.
    EXPECT_EQ(pool.block_bytes(), g.block_bytes());
    EXPECT_EQ(pool.total(), (int64_t)(0.05 * (1 << 30)) / g.block_bytes());
    EXPECT_NE(sched.pool().report(g).find("block store"), std::string::npos);
    const int64_t fixed = pool.slot_blocks();
    EXPECT_GE(fixed, (g.fixed_bytes() + g.block_bytes() - 1) / g.block_bytes());

    auto run = [&](std::vector<int32_t> prompt, int n) {
        auto s = std::make_unique<Sequence>();
        static uint64_t id = 1;
        s->id = s->arrival = id++;
        s->tokens = std::move(prompt);
        s->params = greedy_params(n);
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        auto out = s->out;
        sched.add(std::move(s));
        while (sched.has_work()) sched.step();
        std::vector<int32_t> toks;
        TokenEvent ev;
        while (out->next_for(ev, 0) == 1)
            if (ev.has_token) toks.push_back(ev.token);
        return toks;
    };
    auto prompt = make_prompt(300, 91, 1024);
    auto first = run(prompt, 3);
    // Snapshots at 128 and 256 tokens: two fixed parts, and growth blocks 0 (shared by both) and 1.
    EXPECT_EQ(sched.stats().prefix_snapshots, 2);
    EXPECT_EQ(pool.used(), 2 * fixed + 2);
    EXPECT_EQ(sched.stats().kv_blocks_snapshots, 2 * fixed + 2);
    auto again = run(prompt, 3);
    EXPECT_EQ(again, first);
    EXPECT_EQ(sched.stats().prefix_hit_tokens, 256);
    EXPECT_EQ(pool.used(), 2 * fixed + 2);  // the finished sequence gave its blocks back
    // Without snapshots the store is empty.
    EngineOptions np = o;
    np.prefix_caching = false;
    auto runner2 = make_dsv4_runner(DSINFER_TEST_DATA "/dsv4-tiny-flash");
    Scheduler s2(*runner2, np);
    auto seq = std::make_unique<Sequence>();
    seq->id = seq->arrival = 1;
    seq->tokens = prompt;
    seq->params = greedy_params(3);
    seq->out = std::make_shared<OutputChannel>(1, nullptr);
    auto out = seq->out;
    s2.add(std::move(seq));
    int64_t peak = 0;
    while (s2.has_work()) {
        s2.step();
        peak = std::max(peak, s2.pool().used());
    }
    EXPECT_EQ(peak, fixed + 3);  // 303 tokens: three growth blocks
    EXPECT_EQ(s2.pool().used(), 0);
    std::vector<int32_t> toks;
    TokenEvent ev;
    while (out->next_for(ev, 0) == 1)
        if (ev.has_token) toks.push_back(ev.token);
    EXPECT_EQ(toks, first);
}
