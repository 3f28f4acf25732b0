// The BPE model of a byte-level tokenizer: merges by rank over the bytes of one pre-tokenized word,
// with a thread-safe cache of the results for frequent words.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsinfer::text {

// Open-addressing map from a token-id pair to (merge rank, merged id).
class MergeTable {
public:
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    void reserve(size_t n);
    // Keeps the first (lowest) rank when a pair is given twice, as the merges list is read in order.
    void insert(int32_t a, int32_t b, Merge m);
    const Merge* find(int32_t a, int32_t b) const {
        const uint64_t key = pack(a, b);
        for (size_t i = slot(key);; i = (i + 1) & mask_) {
            const Entry& e = entries_[i];
            if (e.key == key) return &e.merge;
            if (e.key == kEmpty) return nullptr;
        }
    }
    size_t size() const { return size_; }

private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    struct Entry {
        uint64_t key = kEmpty;
        Merge merge{};
    };
    static uint64_t pack(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    size_t slot(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
    std::vector<Entry> entries_;
    size_t mask_ = 0, size_ = 0;
    int shift_ = 64;
};

// Word -> ids cache shared by all threads: 16 shards, each an open-addressing table under its own
// mutex with keys and ids in flat arenas (one hash per lookup, no allocation on a hit). A full
// shard is cleared rather than tracking recency: frequent words come straight back.
class BpeCache {
public:
    static constexpr size_t kMaxWordBytes = 256;
    static uint64_t hash(std::string_view word);
    bool get(std::string_view word, uint64_t h, std::vector<int32_t>& out) const;
    void put(std::string_view word, uint64_t h, const int32_t* ids, size_t n) const;

private:
    struct Slot {
        uint64_t hash = 0;  // 0: empty
        uint32_t key_off = 0, ids_off = 0;
        uint16_t key_len = 0, ids_len = 0;
    };
    struct Shard {
        std::mutex mu;
        std::vector<Slot> slots;
        std::string keys;
        std::vector<int32_t> ids;
        size_t used = 0;
    };
    static constexpr size_t kShards = 16;
    static constexpr size_t kSlots = 8192;  // per shard, at most half of them used
    mutable std::array<Shard, kShards> shards_;
};

struct BpeModel {
    MergeTable merges;
    std::array<int32_t, 256> byte_id{};      // id of the single-byte token, -1 if absent
    std::array<int32_t, 256> fallback_id{};  // id of "<0xXX>" when byte_fallback
    bool byte_fallback = false;
    bool ignore_merges = false;
    int32_t unk_id = -1;
    bool fuse_unk = false;
    // Raw bytes -> id of the model's vocabulary (only used with ignore_merges).
    std::unordered_map<std::string, int32_t> bytes_to_id;
    std::unique_ptr<BpeCache> cache = std::make_unique<BpeCache>();

    // Appends the ids of one pre-tokenized word (raw bytes) to `out`. Thread-safe.
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;

private:
    void merge_small(int32_t* ids, size_t& n) const;
    void merge_heap(int32_t* ids, size_t& n) const;
};

}  // namespace dsinfer::text
