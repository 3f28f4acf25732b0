// config.json of a DeepSeek-V4 checkpoint -> ModelConfig (reference ModelArgs names, dsv4-model.md §1).
// Every value comes from the file; keys the model needs and the file lacks are errors, never guessed.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace dsinfer {

enum class ExpertDType { FP4, FP8 };

struct ModelConfig {
    std::string source;  // the file it was read from (for messages)
    std::string architecture;
    std::string model_type;

    int64_t vocab_size = 0;
    int64_t dim = 0;          // hidden_size
    int n_layers = 0;         // num_hidden_layers (main blocks)
    int n_mtp_layers = 0;     // num_nextn_predict_layers
    int n_hash_layers = 0;    // num_hash_layers
    int n_heads = 0;          // num_attention_heads
    int n_kv_heads = 1;       // num_key_value_heads (must be 1)
    int head_dim = 0;         // K = V dim per head
    int rope_head_dim = 0;    // qk_rope_head_dim: the LAST rope_head_dim dims rotate
    int q_lora_rank = 0;
    int o_lora_rank = 0;
    int o_groups = 0;
    int window_size = 0;               // sliding_window
    std::vector<int> compress_ratios;  // n_layers + n_mtp_layers entries (MTP last)
    double compress_rope_theta = 0;
    double rope_theta = 0;
    // YaRN (rope_scaling); rope_factor 1 / original_seq_len 0 disable it.
    double rope_factor = 1;
    int64_t original_seq_len = 0;
    double beta_fast = 32;
    double beta_slow = 1;
    int index_n_heads = 0;
    int index_head_dim = 0;
    int index_topk = 0;
    int n_routed_experts = 0;
    int n_shared_experts = 0;
    int n_activated_experts = 0;  // num_experts_per_tok
    int64_t moe_inter_dim = 0;    // moe_intermediate_size
    std::string score_func;       // "sqrtsoftplus"
    bool norm_topk_prob = true;
    double route_scale = 1;       // routed_scaling_factor
    double swiglu_limit = 0;
    int hc_mult = 0;
    int hc_sinkhorn_iters = 0;
    double hc_eps = 1e-6;
    double norm_eps = 1e-6;       // rms_norm_eps
    int64_t max_position_embeddings = 0;
    int bos_token_id = 0;
    int eos_token_id = 1;

    // Quantization.
    bool has_expert_dtype = false;          // the key is absent in the first Flash release
    ExpertDType expert_dtype = ExpertDType::FP4;
    bool scale_fmt_ue8m0 = false;           // quantization_config.scale_fmt == "ue8m0": pow2 activation scales
    int weight_block_size[2] = {128, 128};  // quantization_config.weight_block_size

    int compress_ratio(int layer) const { return compress_ratios.at(size_t(layer)); }
    bool is_hash_layer(int layer) const { return layer < n_hash_layers; }
    int nope_head_dim() const { return head_dim - rope_head_dim; }
};

// Reads DIR/config.json; throws Error naming the file and the key on anything missing or invalid
// (unknown architecture, wrong types, inconsistent sizes).
ModelConfig load_model_config(const std::string& dir);
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

}  // namespace dsinfer
