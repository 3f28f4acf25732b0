#include "model/dsv4_weights.h"

#include <sstream>

#include "core/error.h"

namespace dsinfer {

namespace {

std::string shape_string(const std::vector<int64_t>& s) {
    std::ostringstream o;
    o << "[";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    o << "]";
    return o.str();
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Binder {
public:
    Binder(const Checkpoint& c) : ckpt_(c) {}

    const TensorInfo& get(const std::string& name) const {
        const TensorInfo* t = ckpt_.find(name);
        if (!t) throw Error("checkpoint " + ckpt_.dir() + ": missing tensor '" + name + "'");
        return *t;
    }

    void expect_shape(const TensorInfo& t, const std::vector<int64_t>& shape) const {
        if (t.shape != shape)
            throw Error("checkpoint " + ckpt_.dir() + ": tensor '" + t.name + "' has shape " + shape_string(t.shape) +
                        ", expected " + shape_string(shape) + " (from config.json)");
    }

    [[noreturn]] void bad_dtype(const TensorInfo& t, const std::string& expected) const {
        throw Error("checkpoint " + ckpt_.dir() + ": tensor '" + t.name + "' has dtype " +
                    std::string(dtype_name(t.dtype)) + ", expected " + expected);
    }

    FloatTensor vec(const std::string& name, const std::vector<int64_t>& shape) const {
        const TensorInfo& t = get(name);
        expect_shape(t, shape);
        FloatTensor f;
        f.numel = t.numel();
        if (t.dtype == DType::F32) {
            f.data = reinterpret_cast<const float*>(t.data);
            return f;
        }
        f.owned.resize(size_t(f.numel));
        if (t.dtype == DType::BF16) {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(t.data);
            for (int64_t i = 0; i < f.numel; ++i) f.owned[i] = bf16_to_f32(p[i]);
        } else if (t.dtype == DType::F16) {
            const uint16_t* p = reinterpret_cast<const uint16_t*>(t.data);
            for (int64_t i = 0; i < f.numel; ++i) f.owned[i] = f16_to_f32(p[i]);
        } else {
            bad_dtype(t, "F32, BF16 or F16");
        }
        f.data = f.owned.data();
        return f;
    }

    ops::ScaleKind scale_kind(const TensorInfo& s) const {
        if (s.dtype == DType::F8_E8M0) return ops::ScaleKind::E8M0;
        if (s.dtype == DType::F32) return ops::ScaleKind::F32;
        bad_dtype(s, "F8_E8M0 or F32 (a scale)");
    }

    // A matrix `prefix.weight` of logical shape [n, k] in any supported storage: F8_E4M3 with a
    // 128x128 block scale, I8 packed FP4 with a per-32 E8M0 scale, BF16 or F32.
    ops::Weight matrix(const std::string& prefix, int64_t n, int64_t k, bool allow_fp4 = false) const {
        const TensorInfo& t = get(prefix + ".weight");
        ops::Weight w;
        w.n = n;
        w.k = k;
        w.data = t.data;
        switch (t.dtype) {
            case DType::F8_E4M3: {
                expect_shape(t, {n, k});
                const TensorInfo& s = get(prefix + ".scale");
                expect_shape(s, {cdiv(n, 128), cdiv(k, 128)});
                w.fmt = ops::WeightFormat::FP8;
                w.scale = s.data;
                w.scale_kind = scale_kind(s);
                w.scale_cols = cdiv(k, 128);
                break;
            }
            case DType::I8:
            case DType::U8: {
                if (!allow_fp4) bad_dtype(t, "F8_E4M3, BF16 or F32 (packed FP4 is only for routed experts)");
                if (k % 32) throw Error("checkpoint " + ckpt_.dir() + ": FP4 tensor '" + t.name + "' needs k % 32 == 0");
                expect_shape(t, {n, k / 2});
                const TensorInfo& s = get(prefix + ".scale");
                expect_shape(s, {n, k / 32});
                w.fmt = ops::WeightFormat::FP4;
                w.scale = s.data;
                w.scale_kind = scale_kind(s);
                w.scale_cols = k / 32;
                break;
            }
            case DType::BF16:
                expect_shape(t, {n, k});
                w.fmt = ops::WeightFormat::BF16;
                break;
            case DType::F32:
                expect_shape(t, {n, k});
                w.fmt = ops::WeightFormat::F32;
                break;
            default:
                bad_dtype(t, "F8_E4M3, I8 (FP4), BF16 or F32");
        }
        return w;
    }

    const Checkpoint& ckpt_;
};

void bind_compressor(const Binder& b, const std::string& p, const ModelConfig& c, int ratio, int64_t d,
                     CompressorWeights& cw) {
    cw.ratio = ratio;
    cw.d = d;
    cw.overlap = ratio == 4;
    const int64_t coff = cw.overlap ? 2 : 1;
    cw.wkv = b.matrix(p + "wkv", coff * d, c.dim);
    cw.wgate = b.matrix(p + "wgate", coff * d, c.dim);
    cw.ape = b.vec(p + "ape", {ratio, coff * d});
    cw.norm = b.vec(p + "norm.weight", {d});
}

void bind_block(const Binder& b, const std::string& p, const ModelConfig& c, int layer, bool allow_hash,
                BlockWeights& bw, int* expert_fp4) {
    const int64_t D = c.dim, H = c.n_heads, hd = c.head_dim, hc = c.hc_mult, mix = (2 + hc) * hc;
    bw.layer = layer;
    bw.ratio = c.compress_ratio(layer);
    if (bw.ratio != 0 && bw.ratio != 4 && bw.ratio != 128 && bw.ratio <= 0)
        throw Error("config: compress_ratios[" + std::to_string(layer) + "] = " + std::to_string(bw.ratio) +
                    " is not supported");
    bw.hash = allow_hash && c.is_hash_layer(layer);
    if (H % c.o_groups) throw Error("config: num_attention_heads must be a multiple of o_groups");
    bw.attn_sink = b.vec(p + "attn.attn_sink", {H});
    bw.wq_a = b.matrix(p + "attn.wq_a", c.q_lora_rank, D);
    bw.q_norm = b.vec(p + "attn.q_norm.weight", {c.q_lora_rank});
    bw.wq_b = b.matrix(p + "attn.wq_b", H * hd, c.q_lora_rank);
    bw.wkv = b.matrix(p + "attn.wkv", hd, D);
    bw.kv_norm = b.vec(p + "attn.kv_norm.weight", {hd});
    bw.wo_a = b.matrix(p + "attn.wo_a", int64_t(c.o_groups) * c.o_lora_rank, H * hd / c.o_groups);
    bw.wo_b = b.matrix(p + "attn.wo_b", D, int64_t(c.o_groups) * c.o_lora_rank);
    if (bw.ratio) {
        bw.compressor = std::make_unique<CompressorWeights>();
        bind_compressor(b, p + "attn.compressor.", c, bw.ratio, hd, *bw.compressor);
        if (bw.ratio == 4) {
            bw.indexer = std::make_unique<IndexerWeights>();
            bw.indexer->wq_b = b.matrix(p + "attn.indexer.wq_b", int64_t(c.index_n_heads) * c.index_head_dim,
                                        c.q_lora_rank);
            bw.indexer->weights_proj = b.matrix(p + "attn.indexer.weights_proj", c.index_n_heads, D);
            bind_compressor(b, p + "attn.indexer.compressor.", c, 4, c.index_head_dim, bw.indexer->compressor);
        }
    }
    bw.attn_norm = b.vec(p + "attn_norm.weight", {D});
    bw.ffn_norm = b.vec(p + "ffn_norm.weight", {D});
    bw.hc_attn_fn = b.vec(p + "hc_attn_fn", {mix, hc * D});
    bw.hc_attn_base = b.vec(p + "hc_attn_base", {mix});
    bw.hc_attn_scale = b.vec(p + "hc_attn_scale", {3});
    bw.hc_ffn_fn = b.vec(p + "hc_ffn_fn", {mix, hc * D});
    bw.hc_ffn_base = b.vec(p + "hc_ffn_base", {mix});
    bw.hc_ffn_scale = b.vec(p + "hc_ffn_scale", {3});

    const int64_t E = c.n_routed_experts, I = c.moe_inter_dim, K = c.n_activated_experts;
    bw.gate = b.matrix(p + "ffn.gate", E, D);
    if (bw.hash) {
        const TensorInfo& t = b.get(p + "ffn.gate.tid2eid");
        b.expect_shape(t, {c.vocab_size, K});
        if (t.dtype != DType::I64 && t.dtype != DType::I32) b.bad_dtype(t, "I64 or I32");
        bw.tid2eid = &t;
        if (b.ckpt_.find(p + "ffn.gate.bias"))
            throw Error("checkpoint: unexpected tensor '" + p + "ffn.gate.bias' on hash-routed layer " +
                        std::to_string(layer));
    } else {
        bw.gate_bias = b.vec(p + "ffn.gate.bias", {E});
    }
    bw.experts.resize(size_t(E));
    for (int64_t e = 0; e < E; ++e) {
        const std::string ep = p + "ffn.experts." + std::to_string(e) + ".";
        ExpertWeights& ew = bw.experts[size_t(e)];
        ew.w1 = b.matrix(ep + "w1", I, D, true);
        ew.w3 = b.matrix(ep + "w3", I, D, true);
        ew.w2 = b.matrix(ep + "w2", D, I, true);
        const int fp4 = ew.w1.fmt == ops::WeightFormat::FP4;
        if (ew.w2.fmt != ew.w1.fmt || ew.w3.fmt != ew.w1.fmt)
            throw Error("checkpoint: expert " + ep + " mixes storage formats across w1/w2/w3");
        if (*expert_fp4 < 0) *expert_fp4 = fp4;
        if (*expert_fp4 != fp4)
            throw Error("checkpoint: routed expert '" + ep + "w1.weight' is " + (fp4 ? "FP4" : "not FP4") +
                        " unlike the experts bound before it");
    }
    bw.shared.w1 = b.matrix(p + "ffn.shared_experts.w1", I, D);
    bw.shared.w3 = b.matrix(p + "ffn.shared_experts.w3", I, D);
    bw.shared.w2 = b.matrix(p + "ffn.shared_experts.w2", D, I);
}

}  // namespace

Dsv4Weights bind_dsv4_weights(const Checkpoint& ckpt, const ModelConfig& c) {
    Binder b(ckpt);
    Dsv4Weights w;
    const int64_t D = c.dim, hc = c.hc_mult;
    if (int(c.compress_ratios.size()) != c.n_layers + c.n_mtp_layers)
        throw Error("config: compress_ratios has " + std::to_string(c.compress_ratios.size()) + " entries, expected " +
                    std::to_string(c.n_layers + c.n_mtp_layers) + " (num_hidden_layers + num_nextn_predict_layers)");
    w.embed = b.matrix("embed", c.vocab_size, D);
    if (w.embed.fmt != ops::WeightFormat::BF16 && w.embed.fmt != ops::WeightFormat::F32)
        throw Error("checkpoint: 'embed.weight' must be BF16 or F32");
    w.head = b.matrix("head", c.vocab_size, D);
    w.norm = b.vec("norm.weight", {D});
    w.hc_head_fn = b.vec("hc_head_fn", {hc, hc * D});
    w.hc_head_base = b.vec("hc_head_base", {hc});
    w.hc_head_scale = b.vec("hc_head_scale", {1});
    int expert_fp4 = -1;
    w.layers.resize(size_t(c.n_layers));
    for (int l = 0; l < c.n_layers; ++l)
        bind_block(b, "layers." + std::to_string(l) + ".", c, l, true, w.layers[size_t(l)], &expert_fp4);
    w.mtp.resize(size_t(c.n_mtp_layers));
    for (int i = 0; i < c.n_mtp_layers; ++i) {
        const std::string p = "mtp." + std::to_string(i) + ".";
        MtpWeights& m = w.mtp[size_t(i)];
        bind_block(b, p, c, c.n_layers + i, false, m.block, &expert_fp4);
        m.e_proj = b.matrix(p + "e_proj", D, D);
        m.h_proj = b.matrix(p + "h_proj", D, D);
        m.enorm = b.vec(p + "enorm.weight", {D});
        m.hnorm = b.vec(p + "hnorm.weight", {D});
        m.norm = b.vec(p + "norm.weight", {D});
        m.hc_head_fn = b.vec(p + "hc_head_fn", {hc, hc * D});
        m.hc_head_base = b.vec(p + "hc_head_base", {hc});
        m.hc_head_scale = b.vec(p + "hc_head_scale", {1});
    }
    w.experts_fp4 = expert_fp4 != 0;
    if (c.has_expert_dtype && (c.expert_dtype == ExpertDType::FP4) != w.experts_fp4)
        throw Error("checkpoint " + ckpt.dir() + ": config.json says expert_dtype \"" +
                    (c.expert_dtype == ExpertDType::FP4 ? "fp4" : "fp8") + "\" but the routed experts are stored as " +
                    (w.experts_fp4 ? "packed FP4 (I8)" : "not FP4"));
    return w;
}

}  // namespace dsinfer
