// What one sequence's caches cost in memory, per cache kind, from the model's config
// (dsv4-model.md §9). The KV pool is sized from it: a sequence holds a fixed part (window rings,
// compressor partial-block state, the MTP block's window) plus blocks of `block_tokens` tokens of
// the caches that grow with the context (compressed KV of ratio-4 and ratio-128 layers, indexer keys).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsinfer::runtime {

struct KvKindBytes {
    std::string kind;         // window, compressed_r4, indexer_keys, compressed_r128, compressor_state, mtp_window
    int64_t fixed_bytes = 0;  // per sequence, independent of length (once the window is full)
    double bytes_per_token = 0;  // growth per token of context
};

struct KvGeometry {
    std::vector<int> compress_ratios;  // per main layer, then the MTP block's (last entry), as in config.json
    int n_mtp = 0;                     // MTP blocks present (num_nextn_predict_layers)
    int64_t window = 0;                // sliding_window tokens
    int head_dim = 0;                  // KV entry width (512 for V4)
    int index_head_dim = 0;            // indexer key width (128 for V4)
    int kv_value_bytes = 2;            // bytes per cached KV value (BF16 layout)
    int64_t block_tokens = 128;        // tokens per growth block (largest compress ratio)

    // From a config.json document (text); throws std::runtime_error naming the missing field.
    static KvGeometry from_config_json(const std::string& json_text);

    std::vector<KvKindBytes> kinds() const;
    int64_t fixed_bytes() const;
    int64_t block_bytes() const;  // growth bytes of one block of block_tokens tokens
};

}  // namespace dsinfer::runtime
