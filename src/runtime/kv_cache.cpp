#include "runtime/kv_cache.h"

#include "model/kv_store.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace dsinfer::runtime {

BlockPool::BlockPool(const KvGeometry& g, int64_t budget_bytes) {
    const int64_t bb = std::max<int64_t>(1, g.block_bytes());
    init(g, budget_bytes, bb, (g.fixed_bytes() + bb - 1) / bb);
}

BlockPool::BlockPool(const KvGeometry& g, int64_t budget_bytes, ModelRunner& runner) {
    const int64_t bb = std::max<int64_t>(1, g.block_bytes());
    std::shared_ptr<KvStore> store;
    try {
        store = runner.make_kv_store(budget_bytes);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string(e.what()) + " (raise --kv-cache-gb)");
    }
    if (!store) {
        init(g, budget_bytes, bb, (g.fixed_bytes() + bb - 1) / bb);
        return;
    }
    runner_ = &runner;
    store_ = std::move(store);
    init(g, store_->capacity() * store_->block_bytes(), store_->block_bytes(), runner.state_blocks());
}

void BlockPool::init(const KvGeometry& g, int64_t budget_bytes, int64_t block_bytes, int64_t slot_blocks) {
    block_tokens_ = std::max<int64_t>(1, g.block_tokens);
    block_bytes_ = block_bytes;
    slot_blocks_ = slot_blocks;
    total_ = budget_bytes / block_bytes_;
    if (total_ < slot_blocks_ + 1)
        throw std::runtime_error("KV cache budget of " + std::to_string(budget_bytes) +
                                 " bytes is too small: one sequence needs at least " +
                                 std::to_string((slot_blocks_ + 1) * block_bytes_) + " bytes (raise --kv-cache-gb)");
}

int64_t BlockPool::blocks_for(int64_t n) const {
    return slot_blocks_ + (std::max<int64_t>(n, 0) + block_tokens_ - 1) / block_tokens_;
}

int64_t BlockPool::max_tokens_one_sequence() const { return (total_ - slot_blocks_) * block_tokens_; }

int64_t BlockPool::used() const { return store_ ? store_->used() : used_; }

int64_t BlockPool::need(const RunnerState* s, int64_t held, int64_t n_tokens) const {
    if (!store_) return blocks_for(n_tokens) - held;
    if (!s) return blocks_for(n_tokens);
    return s->blocks_needed(n_tokens);
}

bool BlockPool::reserve(std::unique_ptr<RunnerState>& s, int64_t& held, int64_t n_tokens) {
    const int64_t n = need(s.get(), held, n_tokens);
    if (n <= 0) return true;
    if (n > free()) return false;
    if (!store_) {
        used_ += n;
        held += n;
        return true;
    }
    if (!s) s = runner_->new_state();
    s->reserve(n_tokens);
    return true;
}

bool BlockPool::try_allocate(int64_t n) {
    if (store_) throw std::logic_error("BlockPool::try_allocate: blocks of a store come with the states");
    if (n < 0 || n > free()) return false;
    used_ += n;
    return true;
}

void BlockPool::release(int64_t n) {
    if (n < 0 || n > used_) throw std::logic_error("BlockPool::release: releasing more blocks than are used");
    used_ -= n;
}

std::string BlockPool::report(const KvGeometry& g) const {
    std::ostringstream o;
    o << (store_ ? "KV pool (block store): " : "KV pool: ") << total_ << " blocks of " << block_bytes_ << " bytes (" << block_tokens_
      << " tokens each) = " << (double)total_ * block_bytes_ / (1 << 20) << " MiB; per sequence fixed "
      << g.fixed_bytes() << " bytes (" << slot_blocks_ << " blocks);";
    for (auto& k : g.kinds())
        o << " " << k.kind << " " << k.fixed_bytes << " B fixed + " << k.bytes_per_token << " B/token;";
    o << " context that fits: " << max_tokens_one_sequence() << " tokens in one sequence, about "
      << (total_ / (slot_blocks_ + 1)) << " short sequences at once";
    return o.str();
}

uint64_t PrefixCache::hash_tokens(std::span<const int32_t> t) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t x : t) {
        h ^= (uint32_t)x;
        h *= 1099511628211ull;
    }
    return h;
}

PrefixCache::Hit PrefixCache::lookup(std::span<const int32_t> tokens) {
    Hit hit;
    if (granularity_ <= 0 || lru_.empty()) return hit;
    // Hash every boundary prefix in one pass, then try the longest first.
    std::vector<std::pair<int64_t, uint64_t>> bounds;
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < (int64_t)tokens.size() - 1; ++i) {
        h ^= (uint32_t)tokens[i];
        h *= 1099511628211ull;
        if ((i + 1) % granularity_ == 0) bounds.push_back({i + 1, h});
    }
    for (auto b = bounds.rbegin(); b != bounds.rend(); ++b) {
        auto [lo, hi] = index_.equal_range(b->second);
        for (auto it = lo; it != hi; ++it) {
            Entry& e = *it->second;
            if ((int64_t)e.tokens.size() == b->first && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) {
                lru_.splice(lru_.begin(), lru_, it->second);
                if (pool_.physical()) {  // the clone takes its fixed part from the store
                    const int64_t need = e.state->clone_blocks();
                    while (pool_.free() < need && lru_.size() > 1 && evict_one()) {
                    }
                    if (pool_.free() < need) return hit;
                }
                hit.length = b->first;
                hit.state = runner_.clone_state(*e.state);
                return hit;
            }
        }
    }
    return hit;
}

bool PrefixCache::contains(std::span<const int32_t> prefix) const {
    auto [lo, hi] = index_.equal_range(hash_tokens(prefix));
    for (auto it = lo; it != hi; ++it)
        if (it->second->tokens.size() == prefix.size() &&
            std::equal(prefix.begin(), prefix.end(), it->second->tokens.begin()))
            return true;
    return false;
}

bool PrefixCache::insert(std::span<const int32_t> prefix, const RunnerState& state) {
    if (contains(prefix)) return true;
    const bool phys = pool_.physical();
    int64_t need = phys ? state.clone_blocks() : pool_.blocks_for((int64_t)prefix.size());
    while (pool_.free() < need && evict_one()) {
    }
    if (phys) {
        if (pool_.free() < need) return false;
        need = 0;  // the clone's blocks are counted by the store
        dirty_ = true;
    } else if (!pool_.try_allocate(need)) {
        return false;
    }
    Entry e{hash_tokens(prefix), std::vector<int32_t>(prefix.begin(), prefix.end()), runner_.clone_state(state), need};
    lru_.push_front(std::move(e));
    index_.emplace(lru_.front().hash, lru_.begin());
    blocks_ += need;
    return true;
}

bool PrefixCache::evict_one() {
    if (lru_.empty()) return false;
    auto last = std::prev(lru_.end());
    auto [lo, hi] = index_.equal_range(last->hash);
    for (auto it = lo; it != hi; ++it)
        if (it->second == last) {
            index_.erase(it);
            break;
        }
    pool_.release(last->blocks);
    blocks_ -= last->blocks;
    lru_.erase(last);
    dirty_ = pool_.physical();
    return true;
}

int64_t PrefixCache::blocks() const {
    if (!pool_.physical()) return blocks_;
    if (dirty_) {
        std::vector<int32_t> ids;
        for (const auto& e : lru_) e.state->blocks_held(ids);
        std::sort(ids.begin(), ids.end());
        shared_blocks_ = std::unique(ids.begin(), ids.end()) - ids.begin();
        dirty_ = false;
    }
    return shared_blocks_;
}

}  // namespace dsinfer::runtime
