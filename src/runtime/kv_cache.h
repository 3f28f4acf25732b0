// The KV cache manager: one pool of fixed-size blocks sized once from the memory budget, shared by
// running sequences and prefix snapshots. A sequence of n tokens holds slot_blocks (its fixed part:
// window rings, compressor partial blocks, MTP window) plus ceil(n / block_tokens) growth blocks.
// Prefix snapshots are copies of a sequence's whole state at a reusable boundary, charged the same
// way and evicted least-recently-used when running sequences need the room.
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
    BlockPool(const KvGeometry& geometry, int64_t budget_bytes);

    int64_t total() const { return total_; }
    int64_t used() const { return used_; }
    int64_t free() const { return total_ - used_; }
    int64_t block_tokens() const { return block_tokens_; }
    int64_t block_bytes() const { return block_bytes_; }
    int64_t slot_blocks() const { return slot_blocks_; }
    // Blocks a sequence of n tokens holds.
    int64_t blocks_for(int64_t n_tokens) const;
    // Longest sequence that fits in the whole pool.
    int64_t max_tokens_one_sequence() const;

    bool try_allocate(int64_t n);
    void release(int64_t n);
    std::string report(const KvGeometry& g) const;

private:
    int64_t total_ = 0, used_ = 0, block_tokens_ = 1, block_bytes_ = 1, slot_blocks_ = 0;
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
    int64_t blocks() const { return blocks_; }

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
};

}  // namespace dsinfer::runtime
