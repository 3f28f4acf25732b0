// KV cache manager: per-kind accounting from config.json, pool exhaustion, prefix reuse giving the
// same results as computing from scratch.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "harness.h"
#include "runtime/kv_cache.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

static std::string read_file(const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

TEST(KvGeometry, TinyConfigAccounting) {
    KvGeometry g = KvGeometry::from_config_json(read_file(DSINFER_TEST_DATA "/dsv4-tiny-flash/config.json"));
    // Tiny: 4 layers [0, 4, 128, 4] + MTP [0], window 16, head 128, indexer head 64, BF16 entries.
    ASSERT_EQ(g.compress_ratios, (std::vector<int>{0, 4, 128, 4, 0}));
    EXPECT_EQ(g.block_tokens, 128);
    std::map<std::string, KvKindBytes> k;
    for (auto& x : g.kinds()) k[x.kind] = x;
    EXPECT_EQ(k["window"].fixed_bytes, 4 * 16 * 128 * 2);
    EXPECT_EQ(k["mtp_window"].fixed_bytes, 16 * 128 * 2);
    EXPECT_DOUBLE_EQ(k["compressed_r4"].bytes_per_token, 2 * 128 * 2 / 4.0);
    EXPECT_DOUBLE_EQ(k["indexer_keys"].bytes_per_token, 2 * 64 * 2 / 4.0);
    EXPECT_DOUBLE_EQ(k["compressed_r128"].bytes_per_token, 128 * 2 / 128.0);
    // r=4: attention (8 slots x 256 ch) + indexer (8 x 128) pairs; r=128: 128 x 128 pairs; FP32 (a, g).
    EXPECT_EQ(k["compressor_state"].fixed_bytes, 2 * (8 * 256 * 8 + 8 * 128 * 8) + 128 * 128 * 8);
    EXPECT_EQ(g.block_bytes(), 128 * (2 * 64 + 2 * 32 + 2));
}

TEST(KvGeometry, MissingFieldIsNamed) {
    try {
        KvGeometry::from_config_json(R"({"num_hidden_layers": 2})");
        FAIL();
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("sliding_window"), std::string::npos);
    }
}

TEST(BlockPool, SizingAndExhaustion) {
    ScriptedRunner r({});
    KvGeometry g = r.kv_geometry();
    BlockPool p(g, 100 * g.block_bytes() + 5);
    EXPECT_EQ(p.total(), 100);
    EXPECT_EQ(p.blocks_for(1), p.slot_blocks() + 1);
    EXPECT_EQ(p.blocks_for(128), p.slot_blocks() + 1);
    EXPECT_EQ(p.blocks_for(129), p.slot_blocks() + 2);
    EXPECT_EQ(p.max_tokens_one_sequence(), (100 - p.slot_blocks()) * 128);
    EXPECT_TRUE(p.try_allocate(60));
    EXPECT_FALSE(p.try_allocate(41));
    EXPECT_TRUE(p.try_allocate(40));
    EXPECT_EQ(p.free(), 0);
    p.release(100);
    EXPECT_EQ(p.used(), 0);
    EXPECT_THROW(p.release(1), std::logic_error);
    EXPECT_THROW(BlockPool(g, g.block_bytes()), std::runtime_error);
    EXPECT_NE(p.report(g).find("context that fits"), std::string::npos);
}

TEST(PrefixCache, ReuseGivesIdenticalResults) {
    auto base = make_prompt(45, 11);
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 4; ++i) {
        auto p = base;
        p.resize(35 + i);  // shares 35 tokens with the base
        auto tail = make_prompt(6, 200 + i);
        p.insert(p.end(), tail.begin(), tail.end());
        prompts.push_back(p);
    }
    EngineOptions o;
    o.max_batch_tokens = 5;  // snapshots are taken at chunk ends aligned to the boundary
    Harness h(o);            // granularity 8
    uint64_t first = h.submit(base, Harness::greedy(12));
    h.run();
    EXPECT_EQ(h.sched->stats().prefix_snapshots, 4);  // at 8, 16, 32 (powers of two times 8) and 40 (the last boundary)
    std::vector<uint64_t> ids;
    for (auto& p : prompts) ids.push_back(h.submit(p, Harness::greedy(12)));
    h.run();
    // Each reused the 32-token snapshot of... its own longest boundary (32, shared with the base).
    EXPECT_GE(h.sched->stats().prefix_hit_tokens, 4 * 32);
    EXPECT_EQ(h.results[first].tokens, run_alone(base, Harness::greedy(12)).tokens);
    for (size_t i = 0; i < prompts.size(); ++i)
        EXPECT_EQ(h.results[ids[i]].tokens, run_alone(prompts[i], Harness::greedy(12)).tokens) << i;
    // An identical prompt reuses the longest snapshot (40 tokens).
    int64_t before = h.sched->stats().prefix_hit_tokens;
    uint64_t again = h.submit(base, Harness::greedy(12));
    h.run();
    EXPECT_EQ(h.sched->stats().prefix_hit_tokens - before, 40);
    EXPECT_EQ(h.results[again].tokens, h.results[first].tokens);
    // Only snapshots hold blocks now.
    EXPECT_EQ(h.sched->pool().used(), h.sched->stats().kv_blocks_snapshots);
    EXPECT_EQ(h.runner->states_alive(), h.sched->stats().prefix_snapshots);
}

TEST(PrefixCache, SnapshotsAreEvictedBeforeAnythingIsPreempted) {
    ScriptedOptions so;
    ScriptedRunner probe(so);
    KvGeometry g = probe.kv_geometry();
    BlockPool sizing(g, 1 << 30);
    EngineOptions o;
    o.kv_cache_gb = gb_for_blocks(g, 2 * (sizing.slot_blocks() + 1));
    Harness h(o, so);
    for (int i = 0; i < 6; ++i) {
        h.submit(make_prompt(30, 300 + i), Harness::greedy(4));
        h.run();
    }
    // Each finished request left a snapshot while it fit; the pool never overflowed and no running
    // sequence was preempted for a snapshot.
    EXPECT_EQ(h.sched->stats().preemptions, 0);
    EXPECT_LE(h.sched->pool().used(), h.sched->pool().total());
    EXPECT_GE(h.sched->stats().prefix_snapshots, 1);
    for (auto& [id, r] : h.results) EXPECT_EQ(r.finish, FinishReason::length);
}
