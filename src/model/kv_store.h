// A store of fixed-size cache blocks: one arena, a free list and a reference count per block. The
// model keeps every per-sequence cache in blocks of a store, addressed through the sequence's block
// tables (dsv4_model.h); sequences share immutable blocks by reference (prefix snapshots, clones).
// Bounded (serving): every block is allocated once, from a byte budget, and allocate() throws Error
// when none is free. Growable (CLI tools, tests): more blocks are added in chunks on demand.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace dsinfer {

class KvStore {
public:
    // capacity_blocks > 0: bounded, all blocks allocated now; 0: growable, chunk_blocks at a time.
    KvStore(int64_t block_floats, int64_t capacity_blocks, int64_t chunk_blocks = 64);
    KvStore(const KvStore&) = delete;
    KvStore& operator=(const KvStore&) = delete;

    int64_t block_floats() const { return block_floats_; }
    int64_t block_bytes() const { return block_floats_ * int64_t(sizeof(float)); }
    bool bounded() const { return bounded_; }
    int64_t capacity() const;  // blocks that exist (bounded: all there will ever be)
    int64_t used() const;      // blocks with a reference
    int64_t free() const;      // capacity() - used()

    // A block with reference count 1 (contents undefined). Throws Error when a bounded store is full.
    int32_t allocate();
    void retain(int32_t b);
    void release(int32_t b);  // the block is free again when its count reaches 0
    int32_t refcount(int32_t b) const;
    float* data(int32_t b) const { return chunks_[size_t(b / chunk_blocks_)] + (b % chunk_blocks_) * block_floats_; }

private:
    void check(int32_t b) const;
    static constexpr int64_t kMaxChunks = 1 << 14;
    int64_t block_floats_, chunk_blocks_;
    bool bounded_;
    mutable std::mutex mu_;
    // Fixed-size table of chunk pointers: data() needs no lock (it never moves).
    std::unique_ptr<float*[]> chunks_;
    std::vector<std::unique_ptr<float[]>> owned_;
    std::vector<int32_t> refs_, free_;
    int64_t capacity_ = 0, used_ = 0;
};

}  // namespace dsinfer
