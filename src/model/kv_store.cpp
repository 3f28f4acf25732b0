#include "model/kv_store.h"

#include <string>

#include "core/error.h"

namespace dsinfer {

KvStore::KvStore(int64_t block_floats, int64_t capacity_blocks, int64_t chunk_blocks)
    : block_floats_(block_floats),
      chunk_blocks_(capacity_blocks > 0 ? capacity_blocks : chunk_blocks),
      bounded_(capacity_blocks > 0),
      chunks_(new float*[kMaxChunks]()) {
    if (block_floats < 1 || chunk_blocks_ < 1 || capacity_blocks < 0 || chunk_blocks_ > INT32_MAX)
        throw Error("KvStore: bad block size or count");
    if (bounded_) {
        // Not value-initialised: pages are committed when a sequence first writes them.
        owned_.emplace_back(new float[size_t(block_floats_ * chunk_blocks_)]);
        chunks_[0] = owned_[0].get();
        capacity_ = chunk_blocks_;
        refs_.assign(size_t(capacity_), 0);
        free_.reserve(size_t(capacity_));
        for (int64_t b = capacity_ - 1; b >= 0; --b) free_.push_back(int32_t(b));
    }
}

int64_t KvStore::capacity() const {
    std::lock_guard lk(mu_);
    return capacity_;
}
int64_t KvStore::used() const {
    std::lock_guard lk(mu_);
    return used_;
}
int64_t KvStore::free() const {
    std::lock_guard lk(mu_);
    return capacity_ - used_;
}

int32_t KvStore::allocate() {
    std::lock_guard lk(mu_);
    if (free_.empty()) {
        if (bounded_)
            throw Error("KV store exhausted: all " + std::to_string(capacity_) + " blocks of " +
                        std::to_string(block_bytes()) + " bytes are in use");
        const int64_t c = capacity_ / chunk_blocks_;
        if (c >= kMaxChunks || capacity_ + chunk_blocks_ > INT32_MAX) throw Error("KV store: too many blocks");
        owned_.emplace_back(new float[size_t(block_floats_ * chunk_blocks_)]);
        chunks_[size_t(c)] = owned_.back().get();
        refs_.resize(size_t(capacity_ + chunk_blocks_), 0);
        for (int64_t b = capacity_ + chunk_blocks_ - 1; b >= capacity_; --b) free_.push_back(int32_t(b));
        capacity_ += chunk_blocks_;
    }
    const int32_t b = free_.back();
    free_.pop_back();
    refs_[size_t(b)] = 1;
    ++used_;
    return b;
}

void KvStore::check(int32_t b) const {
    if (b < 0 || b >= capacity_ || refs_[size_t(b)] <= 0)
        throw Error("KvStore: block " + std::to_string(b) + " is not allocated");
}

void KvStore::retain(int32_t b) {
    std::lock_guard lk(mu_);
    check(b);
    ++refs_[size_t(b)];
}

void KvStore::release(int32_t b) {
    std::lock_guard lk(mu_);
    check(b);
    if (--refs_[size_t(b)] == 0) {
        free_.push_back(b);
        --used_;
    }
}

int32_t KvStore::refcount(int32_t b) const {
    std::lock_guard lk(mu_);
    return b >= 0 && b < capacity_ ? refs_[size_t(b)] : 0;
}

}  // namespace dsinfer
