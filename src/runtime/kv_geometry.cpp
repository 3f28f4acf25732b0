#include "runtime/kv_geometry.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace dsinfer::runtime {

KvGeometry KvGeometry::from_config_json(const std::string& json_text) {
    auto j = nlohmann::json::parse(json_text);
    auto need = [&](const char* key) -> const nlohmann::json& {
        if (!j.contains(key)) throw std::runtime_error(std::string("config.json: missing field '") + key + "'");
        return j.at(key);
    };
    KvGeometry g;
    int n_layers = need("num_hidden_layers").get<int>();
    g.n_mtp = j.value("num_nextn_predict_layers", 0);
    g.window = need("sliding_window").get<int64_t>();
    g.head_dim = need("head_dim").get<int>();
    g.index_head_dim = j.value("index_head_dim", 0);
    g.compress_ratios = need("compress_ratios").get<std::vector<int>>();
    if ((int)g.compress_ratios.size() < n_layers)
        throw std::runtime_error("config.json: compress_ratios has " + std::to_string(g.compress_ratios.size()) +
                                 " entries, num_hidden_layers is " + std::to_string(n_layers));
    // Keep the main layers and as many MTP entries as there are MTP blocks.
    g.compress_ratios.resize(std::min<size_t>(g.compress_ratios.size(), n_layers + g.n_mtp));
    int max_ratio = 1;
    for (int r : g.compress_ratios) max_ratio = std::max(max_ratio, r);
    g.block_tokens = std::max(max_ratio, 16);
    return g;
}

std::vector<KvKindBytes> KvGeometry::kinds() const {
    KvKindBytes window_k{"window", 0, 0}, mtp{"mtp_window", 0, 0}, r4{"compressed_r4", 0, 0},
        idx{"indexer_keys", 0, 0}, r128{"compressed_r128", 0, 0}, state{"compressor_state", 0, 0};
    const int64_t entry = (int64_t)head_dim * kv_value_bytes;
    const int64_t n_main = (int64_t)compress_ratios.size() - n_mtp;
    for (int64_t l = 0; l < (int64_t)compress_ratios.size(); ++l) {
        int r = compress_ratios[l];
        // Every layer (and the MTP block) keeps a ring of the last `window` raw KV entries.
        (l < n_main ? window_k : mtp).fixed_bytes += window * entry;
        if (r == 0) continue;
        const int coff = r == 4 ? 2 : 1;  // overlapping compressor keeps the previous block too
        // Partial-block state: (a, g) pairs in FP32 for coff*r token slots of coff*d channels.
        state.fixed_bytes += (int64_t)coff * r * coff * head_dim * 2 * 4;
        if (r == 4) {
            r4.bytes_per_token += (double)entry / r;
            idx.bytes_per_token += (double)index_head_dim * kv_value_bytes / r;
            state.fixed_bytes += (int64_t)coff * r * coff * index_head_dim * 2 * 4;  // the indexer's compressor
        } else {
            r128.bytes_per_token += (double)entry / r;
        }
    }
    return {window_k, r4, idx, r128, state, mtp};
}

int64_t KvGeometry::fixed_bytes() const {
    int64_t s = 0;
    for (auto& k : kinds()) s += k.fixed_bytes;
    return s;
}

int64_t KvGeometry::block_bytes() const {
    double s = 0;
    for (auto& k : kinds()) s += k.bytes_per_token;
    return (int64_t)std::ceil(s * block_tokens);
}

}  // namespace dsinfer::runtime
