#include "io/config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsinfer {

using json = nlohmann::json;

namespace {

struct Reader {
    const json& j;
    const std::string& source;

    [[noreturn]] void fail(const std::string& key, const std::string& why) const {
        throw Error(source + ": '" + key + "' " + why);
    }
    const json& need(const json& obj, const std::string& key, const std::string& path) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) fail(path, "is missing");
        return *it;
    }
    template <class T>
    T get(const std::string& key) const {
        return as<T>(need(j, key, key), key);
    }
    template <class T>
    T get_or(const std::string& key, T fallback) const {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return fallback;
        return as<T>(*it, key);
    }
    template <class T>
    T as(const json& v, const std::string& key) const {
        if constexpr (std::is_same_v<T, bool>) {
            if (!v.is_boolean()) fail(key, "must be true or false");
            return v.get<bool>();
        } else if constexpr (std::is_integral_v<T>) {
            if (!v.is_number_integer()) fail(key, "must be an integer");
            return v.get<T>();
        } else if constexpr (std::is_floating_point_v<T>) {
            if (!v.is_number()) fail(key, "must be a number");
            return v.get<T>();
        } else {
            if (!v.is_string()) fail(key, "must be a string");
            return v.get<std::string>();
        }
    }
};

void positive(const Reader& r, const char* key, int64_t v) {
    if (v <= 0) r.fail(key, "must be positive (got " + std::to_string(v) + ")");
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& source) {
    if (!j.is_object()) throw Error(source + ": not a JSON object");
    Reader r{j, source};
    ModelConfig c;
    c.source = source;

    if (j.contains("architectures")) {
        const json& a = j["architectures"];
        if (!a.is_array() || a.empty() || !a[0].is_string()) r.fail("architectures", "must be a list of names");
        c.architecture = a[0].get<std::string>();
    }
    c.model_type = r.get_or<std::string>("model_type", "");
    if (c.architecture != "DeepseekV4ForCausalLM" && c.model_type != "deepseek_v4")
        throw Error(source + ": unsupported model (architectures " +
                    (c.architecture.empty() ? std::string("absent") : c.architecture) + ", model_type " +
                    (c.model_type.empty() ? std::string("absent") : c.model_type) +
                    "): dsinfer runs DeepseekV4ForCausalLM / deepseek_v4 checkpoints");
    if (j.contains("text_config"))
        throw Error(source + ": 'text_config' found: this is a later DeepSeek release (V4.1 layout), not supported");

    c.vocab_size = r.get<int64_t>("vocab_size");
    c.dim = r.get<int64_t>("hidden_size");
    c.n_layers = r.get<int>("num_hidden_layers");
    c.n_mtp_layers = r.get_or<int>("num_nextn_predict_layers", 1);
    c.n_hash_layers = r.get_or<int>("num_hash_layers", 0);
    c.n_heads = r.get<int>("num_attention_heads");
    c.n_kv_heads = r.get_or<int>("num_key_value_heads", 1);
    c.head_dim = r.get<int>("head_dim");
    c.rope_head_dim = r.get<int>("qk_rope_head_dim");
    c.q_lora_rank = r.get<int>("q_lora_rank");
    c.o_lora_rank = r.get<int>("o_lora_rank");
    c.o_groups = r.get<int>("o_groups");
    c.window_size = r.get<int>("sliding_window");
    const json& cr = r.need(j, "compress_ratios", "compress_ratios");
    if (!cr.is_array()) r.fail("compress_ratios", "must be a list");
    for (auto& v : cr) {
        if (!v.is_number_integer()) r.fail("compress_ratios", "must hold integers");
        c.compress_ratios.push_back(v.get<int>());
    }
    c.compress_rope_theta = r.get<double>("compress_rope_theta");
    c.rope_theta = r.get<double>("rope_theta");
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
        const json& rs = j["rope_scaling"];
        if (!rs.is_object()) r.fail("rope_scaling", "must be an object");
        std::string type = rs.value("type", rs.value("rope_type", std::string("yarn")));
        if (type != "yarn") r.fail("rope_scaling.type", "must be \"yarn\" (got \"" + type + "\")");
        Reader rr{rs, source};
        c.rope_factor = rr.get<double>("factor");
        c.original_seq_len = rr.get<int64_t>("original_max_position_embeddings");
        c.beta_fast = rr.get_or<double>("beta_fast", 32);
        c.beta_slow = rr.get_or<double>("beta_slow", 1);
    }
    c.index_n_heads = r.get<int>("index_n_heads");
    c.index_head_dim = r.get<int>("index_head_dim");
    c.index_topk = r.get<int>("index_topk");
    c.n_routed_experts = r.get<int>("n_routed_experts");
    c.n_shared_experts = r.get<int>("n_shared_experts");
    c.n_activated_experts = r.get<int>("num_experts_per_tok");
    c.moe_inter_dim = r.get<int64_t>("moe_intermediate_size");
    c.score_func = r.get_or<std::string>("scoring_func", "sqrtsoftplus");
    c.norm_topk_prob = r.get_or<bool>("norm_topk_prob", true);
    c.route_scale = r.get_or<double>("routed_scaling_factor", 1.0);
    c.swiglu_limit = r.get_or<double>("swiglu_limit", 0.0);
    c.hc_mult = r.get<int>("hc_mult");
    c.hc_sinkhorn_iters = r.get<int>("hc_sinkhorn_iters");
    c.hc_eps = r.get_or<double>("hc_eps", 1e-6);
    c.norm_eps = r.get_or<double>("rms_norm_eps", 1e-6);
    c.max_position_embeddings = r.get_or<int64_t>("max_position_embeddings", 0);
    c.bos_token_id = r.get_or<int>("bos_token_id", 0);
    c.eos_token_id = r.get_or<int>("eos_token_id", 1);
    if (r.get_or<bool>("tie_word_embeddings", false))
        r.fail("tie_word_embeddings", "is true; DeepSeek-V4 keeps separate embed and head");

    if (j.contains("expert_dtype") && !j["expert_dtype"].is_null()) {
        std::string e = r.get<std::string>("expert_dtype");
        c.has_expert_dtype = true;
        if (e == "fp4")
            c.expert_dtype = ExpertDType::FP4;
        else if (e == "fp8")
            c.expert_dtype = ExpertDType::FP8;
        else
            r.fail("expert_dtype", "must be \"fp4\" or \"fp8\" (got \"" + e + "\")");
    }
    if (j.contains("quantization_config") && !j["quantization_config"].is_null()) {
        const json& q = j["quantization_config"];
        if (!q.is_object()) r.fail("quantization_config", "must be an object");
        Reader qr{q, source};
        std::string method = qr.get_or<std::string>("quant_method", "fp8");
        if (method != "fp8") r.fail("quantization_config.quant_method", "must be \"fp8\" (got \"" + method + "\")");
        std::string fmt = qr.get_or<std::string>("fmt", "e4m3");
        if (fmt != "e4m3") r.fail("quantization_config.fmt", "must be \"e4m3\" (got \"" + fmt + "\")");
        if (q.contains("scale_fmt") && !q["scale_fmt"].is_null()) {
            std::string sf = qr.get<std::string>("scale_fmt");
            if (sf != "ue8m0") r.fail("quantization_config.scale_fmt", "must be \"ue8m0\" or absent (got \"" + sf + "\")");
            c.scale_fmt_ue8m0 = true;
        }
        if (q.contains("weight_block_size")) {
            const json& b = q["weight_block_size"];
            if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
                r.fail("quantization_config.weight_block_size", "must be [rows, cols]");
            c.weight_block_size[0] = b[0].get<int>();
            c.weight_block_size[1] = b[1].get<int>();
            if (c.weight_block_size[0] != 128 || c.weight_block_size[1] != 128)
                r.fail("quantization_config.weight_block_size", "must be [128, 128] for DeepSeek-V4");
        }
    }

    // Consistency.
    positive(r, "vocab_size", c.vocab_size);
    positive(r, "hidden_size", c.dim);
    positive(r, "num_hidden_layers", c.n_layers);
    positive(r, "num_attention_heads", c.n_heads);
    positive(r, "head_dim", c.head_dim);
    positive(r, "q_lora_rank", c.q_lora_rank);
    positive(r, "o_lora_rank", c.o_lora_rank);
    positive(r, "o_groups", c.o_groups);
    positive(r, "sliding_window", c.window_size);
    positive(r, "hc_mult", c.hc_mult);
    positive(r, "hc_sinkhorn_iters", c.hc_sinkhorn_iters);
    positive(r, "n_routed_experts", c.n_routed_experts);
    positive(r, "num_experts_per_tok", c.n_activated_experts);
    positive(r, "moe_intermediate_size", c.moe_inter_dim);
    if (c.n_mtp_layers < 0) r.fail("num_nextn_predict_layers", "must not be negative");
    if (c.n_kv_heads != 1) r.fail("num_key_value_heads", "must be 1 (one shared KV head)");
    if (c.rope_head_dim <= 0 || c.rope_head_dim % 2 || c.rope_head_dim > c.head_dim)
        r.fail("qk_rope_head_dim", "must be even and within head_dim");
    if (c.n_heads % c.o_groups) r.fail("o_groups", "must divide num_attention_heads");
    if (c.n_activated_experts > c.n_routed_experts) r.fail("num_experts_per_tok", "exceeds n_routed_experts");
    if (c.n_hash_layers < 0 || c.n_hash_layers > c.n_layers) r.fail("num_hash_layers", "out of range");
    if (c.score_func != "sqrtsoftplus")
        r.fail("scoring_func", "must be \"sqrtsoftplus\" (got \"" + c.score_func + "\")");
    if (int(c.compress_ratios.size()) != c.n_layers + c.n_mtp_layers)
        r.fail("compress_ratios", "has " + std::to_string(c.compress_ratios.size()) + " entries; expected " +
                                      std::to_string(c.n_layers + c.n_mtp_layers) +
                                      " (num_hidden_layers + num_nextn_predict_layers)");
    bool any_ratio4 = false;
    for (int v : c.compress_ratios) {
        if (v != 0 && v != 4 && v != 128)
            r.fail("compress_ratios", "holds " + std::to_string(v) + "; DeepSeek-V4 ratios are 0, 4 and 128");
        any_ratio4 |= v == 4;
    }
    if (any_ratio4) {
        positive(r, "index_n_heads", c.index_n_heads);
        positive(r, "index_head_dim", c.index_head_dim);
        positive(r, "index_topk", c.index_topk);
        if (c.rope_head_dim > c.index_head_dim) r.fail("index_head_dim", "is smaller than qk_rope_head_dim");
        if (c.index_head_dim & (c.index_head_dim - 1)) r.fail("index_head_dim", "must be a power of two (Hadamard)");
    }
    return c;
}

ModelConfig load_model_config(const std::string& dir) {
    std::string path = (std::filesystem::path(dir) / "config.json").string();
    std::ifstream in(path);
    if (!in) throw Error(path + ": cannot open (is '" + dir + "' a model folder?)");
    json j;
    try {
        j = json::parse(in);
    } catch (const std::exception& e) {
        throw Error(path + ": bad JSON: " + e.what());
    }
    return parse_model_config(j, path);
}

}  // namespace dsinfer
