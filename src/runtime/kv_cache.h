// The KV cache manager: one pool of fixed-size blocks sized once from the memory budget, shared by
// running sequences and prefix snapshots. A sequence of n tokens holds slot_blocks (its fixed part:
// window rings, compressor partial blocks, MTP window) plus ceil(n / block_tokens) growth blocks.
// With a runner that keeps its caches in a block store (the CPU DeepSeek-V4 model) the pool *is*
// that store: it is created here from the budget, and free/used blocks are the store's physical
// counts; states attach their blocks when the scheduler reserves them, before a step runs. Other
// runners (scripted, a device forward) are accounted by count from KvGeometry.
// Prefix snapshots are clones of a sequence's state at a reusable boundary (with a store they share
// the sequence's complete growth blocks), evicted least-recently-used when running sequences need
// the room.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/kv_geometry.h"
#include "runtime/model_runner.h"

namespace dsinfer::runtime {

class BlockPool {
public:
    // Accounting only.
    BlockPool(const KvGeometry& geometry, int64_t budget_bytes);
    // The runner's block store when it has one (ModelRunner::make_kv_store), else accounting.
    BlockPool(const KvGeometry& geometry, int64_t budget_bytes, ModelRunner& runner);

    bool physical() const { return store_ != nullptr; }

    int64_t total() const { return total_; }
    int64_t used() const;
    int64_t free() const { return total_ - used(); }
    int64_t block_tokens() const { return block_tokens_; }
    int64_t block_bytes() const { return block_bytes_; }
    int64_t slot_blocks() const { return slot_blocks_; }
    // Blocks a sequence of n tokens holds.
    int64_t blocks_for(int64_t n_tokens) const;
    // Longest sequence that fits in the whole pool.
    int64_t max_tokens_one_sequence() const;

    // Blocks a sequence still needs to hold n_tokens tokens: `state` null = not created yet; `held` =
    // blocks accounted to it (accounting mode).
    int64_t need(const RunnerState* state, int64_t held, int64_t n_tokens) const;
    // Gives them if the pool has them (false otherwise, nothing changed): with a store, the state is
    // created when null and its blocks attached; in accounting mode they are added to `held`.
    bool reserve(std::unique_ptr<RunnerState>& state, int64_t& held, int64_t n_tokens);

    // Accounting mode (with a store, blocks come and go with the states).
    bool try_allocate(int64_t n);
    void release(int64_t n);
    std::string report(const KvGeometry& g) const;

private:
    void init(const KvGeometry& g, int64_t budget_bytes, int64_t block_bytes, int64_t slot_blocks);
    int64_t total_ = 0, used_ = 0, block_tokens_ = 1, block_bytes_ = 1, slot_blocks_ = 0;
    ModelRunner* runner_ = nullptr;
    std::shared_ptr<KvStore> store_;
};

// Snapshots of sequence states keyed by their exact token prefix.
class PrefixCache {
public:
    struct Hit {
        int64_t length = 0;  // tokens covered (0 = no hit)
        std::unique_ptr<RunnerState> state;
    };

    PrefixCache(ModelRunner& runner, BlockPool& pool, int64_t granularity)
        : runner_(runner), pool_(pool), granularity_(granularity) {}

    int64_t granularity() const { return granularity_; }
    // The longest snapshot whose tokens are a prefix of `tokens` and shorter than it (at least one
    // token must remain to be computed); returns a private copy of its state.
    Hit lookup(std::span<const int32_t> tokens);
    bool contains(std::span<const int32_t> prefix) const;
    // Stores a copy of `state` (which has consumed exactly `prefix`). Evicts older snapshots if the
    // pool is short; returns false (storing nothing) if it still does not fit.
    bool insert(std::span<const int32_t> prefix, const RunnerState& state);
    // Drops the least recently used snapshot; false if there is none.
    bool evict_one();
    int64_t size() const { return (int64_t)lru_.size(); }
    // Blocks held by snapshots (with a store: blocks at least one snapshot references).
    int64_t blocks() const;

private:
    struct Entry {
        uint64_t hash;
        std::vector<int32_t> tokens;
        std::unique_ptr<RunnerState> state;
        int64_t blocks;
    };
    static uint64_t hash_tokens(std::span<const int32_t> t);

    ModelRunner& runner_;
    BlockPool& pool_;
    int64_t granularity_;
    std::list<Entry> lru_;  // front = most recently used
    std::unordered_multimap<uint64_t, std::list<Entry>::iterator> index_;
    int64_t blocks_ = 0;
    mutable int64_t shared_blocks_ = 0;  // with a store: blocks() cached until the snapshots change
    mutable bool dirty_ = false;
};

}  // namespace dsinfer::runtime
