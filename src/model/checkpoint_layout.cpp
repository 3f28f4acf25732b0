#include "model/checkpoint_layout.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "core/error.h"

namespace dsinfer {

namespace {

// Float tensors may be stored BF16 or F32 (the first is the published dtype).
const std::vector<DType> kFloat = {DType::BF16, DType::F32};
const std::vector<DType> kFloat32 = {DType::F32, DType::BF16};
const std::vector<DType> kScale = {DType::F8_E8M0, DType::F32};
const std::vector<DType> kIndex = {DType::I64, DType::I32};

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

struct CensusBuilder {
    const ModelConfig& c;
    ExpertDType experts;
    std::vector<TensorSpec> out;
    int block = -1;
    int expert = -1;

    void add(std::string name, std::vector<DType> dtypes, std::vector<int64_t> shape, TensorKind kind) {
        TensorSpec s;
        s.name = std::move(name);
        s.dtypes = std::move(dtypes);
        s.shape = std::move(shape);
        s.kind = kind;
        s.block = block;
        s.expert = expert;
        out.push_back(std::move(s));
    }
    void flt(const std::string& name, std::vector<int64_t> shape) {
        add(name, kFloat, std::move(shape), TensorKind::Float);
    }
    void f32(const std::string& name, std::vector<int64_t> shape) {
        add(name, kFloat32, std::move(shape), TensorKind::Float);
    }
    // FP8 e4m3 [n, k] with 128x128 block scales (§2.3).
    void fp8(const std::string& prefix, int64_t n, int64_t k) {
        add(prefix + ".weight", {DType::F8_E4M3}, {n, k}, TensorKind::FP8);
        add(prefix + ".scale", kScale, {ceil_div(n, c.weight_block_size[0]), ceil_div(k, c.weight_block_size[1])},
            TensorKind::Scale);
    }
    // MXFP4 logical [n, k]: I8 [n, k/2], scale [n, k/32] (§2.3, §3.5).
    void fp4(const std::string& prefix, int64_t n, int64_t k) {
        add(prefix + ".weight", {DType::I8}, {n, k / 2}, TensorKind::FP4);
        add(prefix + ".scale", kScale, {n, k / 32}, TensorKind::Scale);
    }
    void expert_matrix(const std::string& prefix, int64_t n, int64_t k) {
        if (experts == ExpertDType::FP4)
            fp4(prefix, n, k);
        else
            fp8(prefix, n, k);
    }

    void hc_head(const std::string& p) {
        int64_t hc = c.hc_mult;
        f32(p + "hc_head_fn", {hc, hc * c.dim});
        f32(p + "hc_head_base", {hc});
        f32(p + "hc_head_scale", {1});
    }

    // One transformer block (main layer or MTP block) with the given compress ratio.
    void transformer_block(const std::string& p, int ratio, bool hash) {
        const int64_t D = c.dim, hc = c.hc_mult, mix = (2 + hc) * hc, H = c.n_heads, hd = c.head_dim;
        flt(p + "attn_norm.weight", {D});
        flt(p + "ffn_norm.weight", {D});
        for (const char* s : {"attn", "ffn"}) {
            f32(p + "hc_" + s + "_fn", {mix, hc * D});
            f32(p + "hc_" + s + "_base", {mix});
            f32(p + "hc_" + s + "_scale", {3});
        }
        const std::string a = p + "attn.";
        f32(a + "attn_sink", {H});
        flt(a + "q_norm.weight", {c.q_lora_rank});
        flt(a + "kv_norm.weight", {hd});
        fp8(a + "wq_a", c.q_lora_rank, D);
        fp8(a + "wq_b", H * hd, c.q_lora_rank);
        fp8(a + "wkv", hd, D);
        fp8(a + "wo_a", int64_t(c.o_groups) * c.o_lora_rank, (H / c.o_groups) * hd);
        fp8(a + "wo_b", D, int64_t(c.o_groups) * c.o_lora_rank);
        if (ratio != 0) {
            const int64_t coff = ratio == 4 ? 2 : 1;
            flt(a + "compressor.wkv.weight", {coff * hd, D});
            flt(a + "compressor.wgate.weight", {coff * hd, D});
            f32(a + "compressor.ape", {ratio, coff * hd});
            flt(a + "compressor.norm.weight", {hd});
        }
        if (ratio == 4) {
            const int64_t ih = c.index_n_heads, id = c.index_head_dim;
            fp8(a + "indexer.wq_b", ih * id, c.q_lora_rank);
            flt(a + "indexer.weights_proj.weight", {ih, D});
            flt(a + "indexer.compressor.wkv.weight", {2 * id, D});
            flt(a + "indexer.compressor.wgate.weight", {2 * id, D});
            f32(a + "indexer.compressor.ape", {4, 2 * id});
            flt(a + "indexer.compressor.norm.weight", {id});
        }
        const std::string f = p + "ffn.";
        const int64_t E = c.n_routed_experts, I = c.moe_inter_dim;
        flt(f + "gate.weight", {E, D});
        if (hash)
            add(f + "gate.tid2eid", kIndex, {c.vocab_size, c.n_activated_experts}, TensorKind::Index);
        else
            f32(f + "gate.bias", {E});
        if (c.n_shared_experts > 0) {
            const int64_t Is = I * c.n_shared_experts;
            fp8(f + "shared_experts.w1", Is, D);
            fp8(f + "shared_experts.w2", D, Is);
            fp8(f + "shared_experts.w3", Is, D);
        }
        for (int e = 0; e < E; ++e) {
            expert = e;
            const std::string x = f + "experts." + std::to_string(e) + ".";
            expert_matrix(x + "w1", I, D);
            expert_matrix(x + "w2", D, I);
            expert_matrix(x + "w3", I, D);
        }
        expert = -1;
    }

    void build() {
        const int64_t D = c.dim, V = c.vocab_size;
        block = -1;
        flt("embed.weight", {V, D});
        flt("head.weight", {V, D});
        flt("norm.weight", {D});
        hc_head("");
        for (int l = 0; l < c.n_layers; ++l) {
            block = l;
            transformer_block("layers." + std::to_string(l) + ".", c.compress_ratio(l), c.is_hash_layer(l));
        }
        for (int m = 0; m < c.n_mtp_layers; ++m) {
            block = c.n_layers + m;
            const std::string p = "mtp." + std::to_string(m) + ".";
            // The MTP block is never hash-routed (it has gate.bias, no tid2eid; §1.3).
            transformer_block(p, c.compress_ratio(c.n_layers + m), false);
            fp8(p + "e_proj", D, D);
            fp8(p + "h_proj", D, D);
            flt(p + "enorm.weight", {D});
            flt(p + "hnorm.weight", {D});
            flt(p + "norm.weight", {D});
            hc_head(p);
        }
    }
};

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

std::string dtypes_str(const std::vector<DType>& d) {
    std::string s;
    for (size_t i = 0; i < d.size(); ++i) {
        if (i) s += " or ";
        s += dtype_name(d[i]);
    }
    return s;
}

void count(CheckpointSummary& s, const ModelConfig& cfg, const TensorSpec& spec, DType dtype, uint64_t nbytes) {
    s.n_tensors++;
    s.bytes_total += nbytes;
    s.bytes_by_dtype[dtype] += nbytes;
    s.bytes_by_kind[spec.kind] += nbytes;
    if (spec.kind == TensorKind::Scale) s.scale_dtypes[dtype]++;
    uint64_t p = uint64_t(spec.logical_params());
    s.params_total += p;
    if (spec.block >= cfg.n_layers) {
        s.params_mtp += p;
        return;
    }
    s.params_main += p;
    if (spec.expert < 0)
        s.params_active += p;
    else if (spec.expert < cfg.n_activated_experts)
        s.params_active += p;  // experts are all the same size: top-k of them count
}

}  // namespace

int64_t TensorSpec::logical_params() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    switch (kind) {
        case TensorKind::FP4:
            return 2 * n;
        case TensorKind::Scale:
        case TensorKind::Index:
            return 0;
        default:
            return n;
    }
}

std::string tensor_kind_name(TensorKind k) {
    switch (k) {
        case TensorKind::Float:
            return "float (BF16/F32)";
        case TensorKind::FP8:
            return "FP8 e4m3";
        case TensorKind::FP4:
            return "FP4 e2m1 (packed)";
        case TensorKind::Scale:
            return "scales";
        case TensorKind::Index:
            return "tid2eid";
    }
    return "?";
}

std::vector<TensorSpec> checkpoint_census(const ModelConfig& cfg, ExpertDType experts) {
    if (int(cfg.compress_ratios.size()) != cfg.n_layers + cfg.n_mtp_layers)
        throw Error(cfg.source + ": 'compress_ratios' has " + std::to_string(cfg.compress_ratios.size()) +
                    " entries; expected " + std::to_string(cfg.n_layers + cfg.n_mtp_layers));
    if (experts == ExpertDType::FP4 && cfg.moe_inter_dim % 32)
        throw Error(cfg.source + ": 'moe_intermediate_size' " + std::to_string(cfg.moe_inter_dim) +
                    " is not a multiple of 32 (FP4 experts need whole 32-element scale blocks)");
    if (experts == ExpertDType::FP4 && cfg.dim % 32)
        throw Error(cfg.source + ": 'hidden_size' " + std::to_string(cfg.dim) +
                    " is not a multiple of 32 (FP4 experts need whole 32-element scale blocks)");
    CensusBuilder b{cfg, experts, {}};
    b.build();
    return std::move(b.out);
}

ExpertDType detect_expert_dtype(const ModelConfig& cfg, const Checkpoint& ck) {
    const std::string probe = (cfg.n_layers > 0 ? "layers.0." : "mtp.0.") + std::string("ffn.experts.0.w1.weight");
    const TensorInfo* t = ck.find(probe);
    if (!t)
        throw Error(ck.dir() + ": missing tensor '" + probe + "' (routed expert; I8 packed FP4 or F8_E4M3 expected)");
    ExpertDType found;
    if (t->dtype == DType::I8)
        found = ExpertDType::FP4;
    else if (t->dtype == DType::F8_E4M3)
        found = ExpertDType::FP8;
    else
        throw Error(t->file + ": tensor '" + probe + "' has dtype " + std::string(dtype_name(t->dtype)) +
                    "; routed experts are I8 (packed FP4) or F8_E4M3 (FP8)");
    if (cfg.has_expert_dtype && cfg.expert_dtype != found)
        throw Error(cfg.source + ": 'expert_dtype' is \"" + (cfg.expert_dtype == ExpertDType::FP4 ? "fp4" : "fp8") +
                    "\" but " + t->file + " stores '" + probe + "' as " + std::string(dtype_name(t->dtype)) +
                    (found == ExpertDType::FP4 ? " (FP4)" : " (FP8)"));
    return found;
}

CheckpointSummary validate_checkpoint(const ModelConfig& cfg, const Checkpoint& ck) {
    CheckpointSummary s;
    s.expert_dtype = detect_expert_dtype(cfg, ck);
    s.expert_dtype_from_config = cfg.has_expert_dtype;
    std::vector<TensorSpec> census = checkpoint_census(cfg, s.expert_dtype);

    std::vector<std::string> problems;
    size_t n_problems = 0;
    auto problem = [&](std::string msg) {
        if (problems.size() < 8) problems.push_back(std::move(msg));
        n_problems++;
    };
    std::unordered_map<std::string_view, const TensorSpec*> expected;
    expected.reserve(census.size() * 2);
    for (const TensorSpec& spec : census) {
        expected.emplace(spec.name, &spec);
        const TensorInfo* t = ck.find(spec.name);
        if (!t) {
            problem(ck.dir() + ": missing tensor '" + spec.name + "' (expected " + dtypes_str(spec.dtypes) + " " +
                    shape_str(spec.shape) + ")");
            continue;
        }
        bool dtype_ok = std::find(spec.dtypes.begin(), spec.dtypes.end(), t->dtype) != spec.dtypes.end();
        if (!dtype_ok || t->shape != spec.shape) {
            problem(t->file + ": tensor '" + spec.name + "' is " + std::string(dtype_name(t->dtype)) + " " +
                    shape_str(t->shape) + "; expected " + dtypes_str(spec.dtypes) + " " + shape_str(spec.shape) +
                    (!dtype_ok ? " (wrong dtype)" : " (wrong shape)"));
            continue;
        }
        count(s, cfg, spec, t->dtype, t->nbytes);
    }
    for (auto& [name, t] : ck.tensors())
        if (!expected.count(name))
            problem(t.file + ": unexpected tensor '" + name + "' " + std::string(dtype_name(t.dtype)) + " " +
                    t.shape_str() + " (not part of a DeepSeek-V4 checkpoint with this config.json)");
    if (n_problems) {
        std::string msg = problems[0];
        if (n_problems > 1) {
            msg += "\n  (" + std::to_string(n_problems) + " problems in all against " + cfg.source +
                   (n_problems > problems.size() ? "; more of them:)" : "; the others:)");
            for (size_t i = 1; i < problems.size(); ++i) msg += "\n  " + problems[i];
        }
        throw Error(msg);
    }
    return s;
}

CheckpointSummary census_summary(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype) {
    CheckpointSummary s;
    s.expert_dtype = experts;
    s.expert_dtype_from_config = cfg.has_expert_dtype;
    for (const TensorSpec& spec : checkpoint_census(cfg, experts)) {
        DType d = spec.kind == TensorKind::Scale ? scale_dtype : spec.dtypes[0];
        int64_t n = 1;
        for (int64_t x : spec.shape) n *= x;
        count(s, cfg, spec, d, uint64_t(n) * dtype_size(d));
    }
    return s;
}

KvMemory kv_memory(const ModelConfig& cfg, bool include_mtp) {
    KvMemory m;
    const uint64_t hd = uint64_t(cfg.head_dim), id = uint64_t(cfg.index_head_dim), W = uint64_t(cfg.window_size);
    const uint64_t nope = hd - uint64_t(cfg.rope_head_dim);
    // Packed KV vector: FP8 nope dims, BF16 rope dims, one UE8M0 scale per 64 nope dims, padded to 8 bytes.
    const uint64_t packed_vec = (nope + 2 * uint64_t(cfg.rope_head_dim) + (nope + 63) / 64 + 7) / 8 * 8;
    const uint64_t packed_ikey = id + 4;  // FP8 key + f32 scale
    const int blocks = cfg.n_layers + (include_mtp ? cfg.n_mtp_layers : 0);
    for (int l = 0; l < blocks; ++l) {
        const uint64_t r = uint64_t(cfg.compress_ratio(l));
        m.f32_fixed += W * hd * 4;
        m.packed_fixed += W * packed_vec;
        if (r == 0) continue;
        const uint64_t coff = r == 4 ? 2 : 1;
        const uint64_t entries = (1024 + r - 1) / r;
        // Compressor state: kv and score rows [coff·r, coff·hd] f32 (the reference's streaming state).
        uint64_t state = 2 * (coff * r) * (coff * hd) * 4;
        m.f32_per_1k += entries * hd * 4;
        m.packed_per_1k += entries * packed_vec;
        if (r == 4) {
            state += 2 * (2 * 4) * (2 * id) * 4;
            m.f32_per_1k += entries * id * 4;
            m.packed_per_1k += entries * packed_ikey;
        }
        m.f32_fixed += state;
        m.packed_fixed += state;
    }
    return m;
}

double weight_bytes_per_step(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype, int batch,
                             const Checkpoint* ck) {
    const double E = cfg.n_routed_experts, k = cfg.n_activated_experts;
    // Distinct experts per layer over `batch` tokens, relative to the k of one token.
    const double expert_factor = batch <= 1 ? 1.0 : E * (1.0 - std::pow(1.0 - k / E, double(batch))) / k;
    double total = 0;
    for (const TensorSpec& spec : checkpoint_census(cfg, experts)) {
        if (spec.block >= cfg.n_layers) continue;  // MTP not run in plain decode
        if (spec.expert >= cfg.n_activated_experts) continue;
        DType d = spec.kind == TensorKind::Scale ? scale_dtype : spec.dtypes[0];
        int64_t n = 1;
        for (int64_t x : spec.shape) n *= x;
        double bytes = double(n) * double(dtype_size(d));
        if (ck)
            if (const TensorInfo* t = ck->find(spec.name)) bytes = double(t->nbytes);
        // One row of the embedding and of tid2eid per sequence.
        if (spec.name == "embed.weight" || spec.kind == TensorKind::Index)
            bytes = bytes / double(cfg.vocab_size) * std::max(batch, 1);
        if (spec.expert >= 0) bytes *= expert_factor;
        total += bytes;
    }
    return total;
}

uint64_t weight_bytes_per_token(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype, const Checkpoint* ck) {
    return uint64_t(std::llround(weight_bytes_per_step(cfg, experts, scale_dtype, 1, ck)));
}

std::vector<float> read_f32(const TensorInfo& t) {
    size_t n = size_t(t.numel());
    std::vector<float> out(n);
    switch (t.dtype) {
        case DType::F32:
            std::memcpy(out.data(), t.data, n * 4);
            break;
        case DType::BF16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, t.data + 2 * i, 2);
                out[i] = bf16_to_f32(h);
            }
            break;
        case DType::F16:
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, t.data + 2 * i, 2);
                out[i] = f16_to_f32(h);
            }
            break;
        default:
            throw Error(t.file + ": tensor '" + t.name + "' is " + std::string(dtype_name(t.dtype)) +
                        "; expected BF16, F16 or F32");
    }
    return out;
}

}  // namespace dsinfer
