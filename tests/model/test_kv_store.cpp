// The block store (allocate, free, reference counts, exhaustion, growth) and the model's paged
// sequence state over it: clones share complete growth blocks and copy the rest, writes into a shared
// block copy it first, a bounded store that runs out refuses the step and leaves the state intact, and
// every block comes back when the sequences are gone. Results stay bitwise those of computing from
// scratch (tests/model/test_batching.cpp checks batching, chunking and rollback over the same state).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/dsv4_model.h"
#include "model/kv_store.h"

using namespace dsinfer;

TEST(KvStore, AllocateReleaseRefcount) {
    KvStore s(16, 4);
    EXPECT_TRUE(s.bounded());
    EXPECT_EQ(s.capacity(), 4);
    EXPECT_EQ(s.block_bytes(), 64);
    std::set<int32_t> ids;
    for (int i = 0; i < 4; ++i) ids.insert(s.allocate());
    EXPECT_EQ(ids.size(), 4u);
    EXPECT_EQ(s.used(), 4);
    EXPECT_EQ(s.free(), 0);
    // Distinct blocks do not overlap.
    for (int32_t b : ids) std::fill(s.data(b), s.data(b) + 16, float(b));
    for (int32_t b : ids)
        for (int i = 0; i < 16; ++i) ASSERT_EQ(s.data(b)[i], float(b));
    try {
        s.allocate();
        FAIL() << "a full bounded store must refuse";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exhausted"), std::string::npos) << e.what();
    }
    const int32_t b = *ids.begin();
    s.retain(b);
    EXPECT_EQ(s.refcount(b), 2);
    s.release(b);
    EXPECT_EQ(s.used(), 4);  // still referenced once
    s.release(b);
    EXPECT_EQ(s.refcount(b), 0);
    EXPECT_EQ(s.free(), 1);
    EXPECT_EQ(s.allocate(), b);  // the freed block is handed out again
    for (int32_t x : ids) s.release(x);
    EXPECT_EQ(s.used(), 0);
    EXPECT_THROW(s.release(b), Error);  // double free
    EXPECT_THROW(s.retain(99), Error);
}

TEST(KvStore, GrowableAddsChunks) {
    KvStore s(8, 0, 3);
    EXPECT_FALSE(s.bounded());
    EXPECT_EQ(s.capacity(), 0);
    std::vector<int32_t> ids;
    for (int i = 0; i < 7; ++i) ids.push_back(s.allocate());
    EXPECT_EQ(s.capacity(), 9);  // three chunks of three
    for (int32_t b : ids) std::fill(s.data(b), s.data(b) + 8, float(b) + 0.5f);
    for (int32_t b : ids) EXPECT_EQ(s.data(b)[7], float(b) + 0.5f);
    for (int32_t b : ids) s.release(b);
    EXPECT_EQ(s.used(), 0);
}

namespace {

const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

std::unique_ptr<Dsv4Model> load() { return Dsv4Model::load(kDir, ModelOptions{}); }

std::vector<int32_t> tokens(int n, unsigned seed, int vocab) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % unsigned(vocab));
    return t;
}

std::vector<float> feed(Dsv4Model& m, SequenceState& s, std::span<const int32_t> t) {
    std::vector<float> logits;
    ForwardItem it;
    it.state = &s;
    it.tokens = t;
    it.all_logits = true;
    it.logits_out = &logits;
    m.forward(std::span<ForwardItem>(&it, 1));
    return logits;
}

}  // namespace

TEST(PagedState, LayoutMatchesTheRuntimeAccounting) {
    auto m = load();
    const KvLayout& L = m->kv_layout();
    // Tiny: layers [0, 4, 128, 4], head 128, indexer head 64; a growth block holds 128 positions of
    // every compressed cache: 2 x (32 entries + 32 indexer keys) + 1 ratio-128 entry.
    EXPECT_EQ(L.block_tokens, 128);
    EXPECT_EQ(L.block_floats, 2 * (32 * 128 + 32 * 64) + 128);
    // The fixed part: every window ring and compressor state, rows never straddling blocks.
    int64_t fixed = 0;
    for (const auto& r : L.regions) fixed += r.width * r.rows;
    EXPECT_EQ(fixed, 5 * 16 * 128 + 2 * 2 * (8 * 256 + 8 * 128) + 2 * 128 * 128);
    EXPECT_GE(L.fixed_blocks * L.block_floats, fixed);
    EXPECT_LT((L.fixed_blocks - 1) * L.block_floats, fixed + L.block_floats);
    auto s = m->new_sequence();
    EXPECT_EQ(int64_t(s->fixed.size()), L.fixed_blocks);
    EXPECT_TRUE(s->growth.empty());
}

TEST(PagedState, CloneAtABlockBoundarySharesBlocks) {
    auto m = load();
    const int V = int(m->config().vocab_size);
    auto t = tokens(300, 21, V);
    const std::shared_ptr<KvStore> store = m->kv_store();
    auto ref = m->new_sequence();
    auto ref_logits = feed(*m, *ref, t);  // from scratch, in one go
    {
        auto a = m->new_sequence();
        feed(*m, *a, std::span<const int32_t>(t.data(), 256));
        ASSERT_EQ(a->growth.size(), 2u);
        const int64_t used = store->used();
        auto b = a->clone();
        // Only the fixed part was taken from the store: both complete growth blocks are shared.
        EXPECT_EQ(store->used() - used, m->kv_layout().fixed_blocks);
        EXPECT_EQ(b->growth, a->growth);
        EXPECT_EQ(b->clone_blocks(), m->kv_layout().fixed_blocks);
        EXPECT_EQ(b->blocks_needed(300), 1);  // one new block; nothing shared is written
        for (int32_t g : a->growth) EXPECT_EQ(store->refcount(g), 2);
        auto la = feed(*m, *a, std::span<const int32_t>(t.data() + 256, 44));
        auto lb = feed(*m, *b, std::span<const int32_t>(t.data() + 256, 44));
        EXPECT_EQ(la, lb);
        EXPECT_EQ(la, std::vector<float>(ref_logits.end() - 44 * V, ref_logits.end()));
        EXPECT_EQ(a->growth[0], b->growth[0]);  // still shared after both went on
        EXPECT_NE(a->growth[2], b->growth[2]);
        EXPECT_EQ(a->cache_copy(1).ckv, ref->cache_copy(1).ckv);
        EXPECT_EQ(b->cache_copy(2).ckv, ref->cache_copy(2).ckv);
        EXPECT_EQ(b->cache_copy(3).ikeys, ref->cache_copy(3).ikeys);
    }
    {
        // Inside a block: the partial block is shared too, and copied by the first write into it.
        auto a = m->new_sequence();
        feed(*m, *a, std::span<const int32_t>(t.data(), 200));
        auto b = a->clone();
        EXPECT_EQ(b->growth, a->growth);
        EXPECT_EQ(b->blocks_needed(201), 1);  // copy on write of block 1
        auto lb = feed(*m, *b, std::span<const int32_t>(t.data() + 200, 100));
        EXPECT_NE(b->growth[1], a->growth[1]);
        EXPECT_EQ(b->growth[0], a->growth[0]);
        EXPECT_EQ(store->refcount(a->growth[1]), 1);
        auto la = feed(*m, *a, std::span<const int32_t>(t.data() + 200, 100));
        EXPECT_EQ(la, lb);
        EXPECT_EQ(la, std::vector<float>(ref_logits.end() - 100 * V, ref_logits.end()));
    }
    ref.reset();
    EXPECT_EQ(store->used(), 0);  // every block came back
}

TEST(PagedState, BoundedStoreRefusesAStepAndStaysIntact) {
    auto m = load();
    const int V = int(m->config().vocab_size);
    auto t = tokens(256, 22, V);
    auto ref = m->new_sequence();
    auto ref_logits = feed(*m, *ref, t);
    const KvLayout& L = m->kv_layout();
    EXPECT_THROW(m->make_kv_store(L.fixed_blocks * L.block_bytes()), Error);
    auto store = m->make_kv_store((L.fixed_blocks + 1) * L.block_bytes() + 7);  // one sequence, 128 tokens
    EXPECT_TRUE(store->bounded());
    EXPECT_EQ(store->capacity(), L.fixed_blocks + 1);
    auto s = m->new_sequence();
    EXPECT_EQ(s->store, store);
    EXPECT_THROW(m->new_sequence(), Error);  // no room for a second fixed part
    feed(*m, *s, std::span<const int32_t>(t.data(), 100));
    EXPECT_EQ(s->blocks_needed(200), 1);
    try {
        feed(*m, *s, std::span<const int32_t>(t.data() + 100, 100));  // crosses into block 1
        FAIL() << "the step must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("exhausted"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s->position(), 100);
    // What still fits goes on exactly as from scratch.
    auto l = feed(*m, *s, std::span<const int32_t>(t.data() + 100, 28));
    EXPECT_EQ(l, std::vector<float>(ref_logits.begin() + 100 * V, ref_logits.begin() + 128 * V));
    EXPECT_EQ(store->free(), 0);
    s.reset();
    EXPECT_EQ(store->used(), 0);
}
