#include "text/tokenizer_bpe.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>

namespace dsinfer::text {

void MergeTable::reserve(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < n * 2) {
        cap *= 2;
        ++bits;
    }
    entries_.assign(cap, Entry{});
    mask_ = cap - 1;
    shift_ = 64 - bits;
    size_ = 0;
}

void MergeTable::insert(int32_t a, int32_t b, Merge m) {
    if ((size_ + 1) * 2 > entries_.size()) {
        std::vector<Entry> old = std::move(entries_);
        reserve(std::max<size_t>(16, old.size()));
        for (const Entry& e : old)
            if (e.key != kEmpty) insert(static_cast<int32_t>(e.key >> 32), static_cast<int32_t>(e.key), e.merge);
    }
    const uint64_t key = pack(a, b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
        Entry& e = entries_[i];
        if (e.key == key) return;  // an earlier merge of the same pair has the lower rank
        if (e.key == kEmpty) {
            e.key = key;
            e.merge = m;
            ++size_;
            return;
        }
    }
}

uint64_t BpeCache::hash(std::string_view word) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ word.size();
    size_t i = 0;
    for (; i + 8 <= word.size(); i += 8) {
        uint64_t w;
        std::memcpy(&w, word.data() + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    std::memcpy(&w, word.data() + i, word.size() - i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h ? h : 1;
}

bool BpeCache::get(std::string_view word, uint64_t h, std::vector<int32_t>& out) const {
    Shard& s = shards_[h >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.slots.empty()) return false;
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
        const Slot& slot = s.slots[i];
        if (slot.hash == 0) return false;
        if (slot.hash == h && slot.key_len == word.size() &&
            std::memcmp(s.keys.data() + slot.key_off, word.data(), word.size()) == 0) {
            out.insert(out.end(), s.ids.begin() + slot.ids_off, s.ids.begin() + slot.ids_off + slot.ids_len);
            return true;
        }
    }
}

void BpeCache::put(std::string_view word, uint64_t h, const int32_t* ids, size_t n) const {
    Shard& s = shards_[h >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.slots.empty() || s.used >= kSlots / 2) {
        s.slots.assign(kSlots, Slot{});
        s.keys.clear();
        s.ids.clear();
        s.used = 0;
    }
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
        Slot& slot = s.slots[i];
        if (slot.hash == h && slot.key_len == word.size() &&
            std::memcmp(s.keys.data() + slot.key_off, word.data(), word.size()) == 0)
            return;  // another thread got here first
        if (slot.hash != 0) continue;
        slot = {h, static_cast<uint32_t>(s.keys.size()), static_cast<uint32_t>(s.ids.size()),
                static_cast<uint16_t>(word.size()), static_cast<uint16_t>(n)};
        s.keys.append(word);
        s.ids.insert(s.ids.end(), ids, ids + n);
        ++s.used;
        return;
    }
}

namespace {
constexpr size_t kSmallWord = 48;  // words up to this many symbols use the quadratic scan
}

void BpeModel::merge_small(int32_t* ids, size_t& n) const {
    // ranks[i] / merged[i]: the merge of the pair (ids[i], ids[i+1]).
    int32_t ranks[kSmallWord], merged[kSmallWord];
    auto look = [&](size_t i) {
        const MergeTable::Merge* m = merges.find(ids[i], ids[i + 1]);
        ranks[i] = m ? m->rank : INT_MAX;
        merged[i] = m ? m->id : -1;
    };
    for (size_t i = 0; i + 1 < n; ++i) look(i);
    while (n > 1) {
        int32_t best = INT_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; ++i)
            if (ranks[i] < best) {  // strict: the leftmost of equal ranks wins
                best = ranks[i];
                bi = i;
            }
        if (best == INT_MAX) break;
        ids[bi] = merged[bi];
        for (size_t i = bi + 1; i + 1 < n; ++i) {
            ids[i] = ids[i + 1];
            ranks[i] = ranks[i + 1];
            merged[i] = merged[i + 1];
        }
        --n;
        if (bi > 0) look(bi - 1);
        if (bi + 1 < n) look(bi);
    }
}

void BpeModel::merge_heap(int32_t* ids, size_t& n) const {
    // Symbols form a linked list over their original positions; the heap holds candidate merges
    // keyed by (rank, position), stale entries are skipped when popped.
    thread_local std::vector<int32_t> prev, next;
    thread_local std::vector<uint64_t> heap;
    prev.resize(n);
    next.resize(n);
    heap.clear();
    for (size_t i = 0; i < n; ++i) {
        prev[i] = static_cast<int32_t>(i) - 1;
        next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    auto push = [&](int32_t pos) {
        if (pos < 0 || next[pos] < 0) return;
        if (const MergeTable::Merge* m = merges.find(ids[pos], ids[next[pos]])) {
            heap.push_back((static_cast<uint64_t>(m->rank) << 32) | static_cast<uint32_t>(pos));
            std::push_heap(heap.begin(), heap.end(), std::greater<>{});
        }
    };
    for (size_t i = 0; i + 1 < n; ++i) {
        if (const MergeTable::Merge* m = merges.find(ids[i], ids[i + 1]))
            heap.push_back((static_cast<uint64_t>(m->rank) << 32) | static_cast<uint32_t>(i));
    }
    std::make_heap(heap.begin(), heap.end(), std::greater<>{});
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
        const uint64_t top = heap.back();
        heap.pop_back();
        const int32_t rank = static_cast<int32_t>(top >> 32);
        const int32_t pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
        if (ids[pos] < 0 || next[pos] < 0) continue;  // merged away, or now the last symbol
        const int32_t right = next[pos];
        const MergeTable::Merge* m = merges.find(ids[pos], ids[right]);
        if (!m || m->rank != rank) continue;  // the pair changed since this entry was pushed
        ids[pos] = m->id;
        ids[right] = -1;
        next[pos] = next[right];
        if (next[right] >= 0) prev[next[right]] = pos;
        push(prev[pos]);
        push(pos);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; ++i)
        if (ids[i] >= 0) ids[k++] = ids[i];
    n = k;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges) {
        auto it = bytes_to_id.find(std::string(word));
        if (it != bytes_to_id.end()) {
            out.push_back(it->second);
            return;
        }
    }
    if (word.size() == 1 && byte_id[static_cast<uint8_t>(word[0])] >= 0) {
        out.push_back(byte_id[static_cast<uint8_t>(word[0])]);
        return;
    }
    const bool cacheable = word.size() <= BpeCache::kMaxWordBytes;
    const uint64_t h = cacheable ? BpeCache::hash(word) : 0;
    if (cacheable && cache->get(word, h, out)) return;

    thread_local std::vector<int32_t> ids;
    ids.clear();
    for (char c : word) {
        const int32_t id = byte_id[static_cast<uint8_t>(c)];
        if (id >= 0) {
            ids.push_back(id);
        } else if (unk_id >= 0) {
            // A byte missing from the alphabet: the unknown token (consecutive ones fused if asked).
            if (!(fuse_unk && !ids.empty() && ids.back() == unk_id)) ids.push_back(unk_id);
        }  // else dropped, as the reference library does without an unknown token
    }
    size_t n = ids.size();
    if (n <= kSmallWord)
        merge_small(ids.data(), n);
    else
        merge_heap(ids.data(), n);
    out.insert(out.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n));
    if (cacheable) cache->put(word, h, ids.data(), n);
}

}  // namespace dsinfer::text
