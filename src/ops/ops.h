// The op table: every operation the DeepSeek-V4 forward uses, declared once, device-agnostic.
//
// Conventions (all ops):
// - Pointers are device pointers of the backend that implements the table (host memory for the CPU).
// - Activations are float32, row-major, contiguous unless a stride is given.
// - Weights are views of the checkpoint's stored formats (Weight below); no op ever expands a
//   weight matrix to float in memory: each element is decoded where it is used.
// - Linear convention: W is [n, k] (out, in); y = x · Wᵀ.
// - Math follows dsv4-model.md (section numbers in the comments); float32 everywhere, with the
//   model's quantization steps simulated by the *_quant ops (quantize, then dequantize).
// - Results of a row never depend on the other rows of the same call (batch invariance): every
//   output element is computed with the same summation order whatever m is.
// - What is not here: the model (src/model) still does its bookkeeping on host memory — the
//   compressor's slot updates (memcpy into the streaming state), the window-key gather, the
//   attended-index lists, the MoE row grouping. A device backend either takes those buffers from
//   the host per step or the model grows copy/gather entries here; the math itself is all above.
#pragma once

#include <cstdint>

namespace dsinfer::ops {

// ---- Weight views ----

enum class WeightFormat : uint8_t {
    F32,   // float32 [n, k]
    BF16,  // bfloat16 [n, k]
    FP8,   // e4m3fn bytes [n, k] with a scale per 128x128 tile: [ceil(n/128), ceil(k/128)]
    FP4,   // MXFP4: bytes [n, k/2], element 2j in the low nibble; a scale per 32 along k: [n, k/32]
};
enum class ScaleKind : uint8_t { None, E8M0, F32 };

struct Weight {
    WeightFormat fmt = WeightFormat::F32;
    const void* data = nullptr;
    int64_t n = 0, k = 0;              // logical shape [n, k]
    const void* scale = nullptr;       // FP8/FP4 only
    ScaleKind scale_kind = ScaleKind::None;
    int64_t scale_cols = 0;            // row length of the scale tensor
};

// Activation quantization applied to x before a GEMM (§3.3): per row, per `block` (128) columns,
// s = amax/448 (amax clamped below at 1e-4), rounded up to a power of two when pow2; x ← e4m3(x/s)·s.
struct ActQuant {
    bool enabled = false;
    bool pow2 = true;
};

// RoPE frequencies of one layer (§6.1): rope_dim/2 values θ'_i (YaRN already applied).
struct RopeFreqs {
    const float* freqs = nullptr;
    int64_t rope_dim = 0;
};

struct Backend {
    const char* name;

    // y[m, n1-n0] = x[m, k] · W[n0:n1, :]ᵀ, float32 accumulate. x is read as given (quantize it
    // first with act_quant when the model asks for FP8 activations). ldy = row stride of y.
    void (*linear)(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy);

    // In place FP8 quantize-dequantize per `block` columns of each row (§3.3, §3.4 fp8_sim):
    // amax = max(max|x_blk|, 1e-4); s = amax/448, pow2 ⇒ s = pow2ceil(s); x ← e4m3(clamp(x/s, ±448))·s.
    // cols need not be a multiple of block (the last block is shorter). ld = row stride.
    void (*act_quant)(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2);

    // In place FP4 quantize-dequantize per `block` (32) columns (§3.4 fp4_sim):
    // amax = max(max|x_blk|, 6·2^-126); s = pow2ceil(amax/6); x ← e2m1(clamp(x/s, ±6))·s (nearest even).
    void (*fp4_quant)(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block);

    // In place Hadamard rotation of each row of length n (power of two): x ← x·H_n·n^-1/2 (§3.6).
    void (*hadamard)(float* x, int64_t rows, int64_t n);

    // y[r] = w ⊙ x[r] · (mean(x[r]²) + eps)^-1/2 (w may be null: no weight). y may equal x.
    void (*rmsnorm)(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y);

    // Interleaved-pair RoPE on the last rope_dim of every head (§6.1): x [rows, heads, head_dim];
    // row r rotates by angle pos[r]·θ'_i (float32 product, as the reference); inverse uses −angle.
    void (*rope)(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int64_t* pos, const RopeFreqs& f,
                 bool inverse);

    // mHC pre (§5.1), t tokens: x [t, hc, d]; fn [(2+hc)·hc, hc·d]; scale [3]; base [(2+hc)·hc].
    // Outputs y [t, d] = Σ_i pre_i·x_i, post [t, hc], comb [t, hc, hc] (Sinkhorn, `iters` rounds).
    void (*hc_pre)(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale,
                   const float* base, int iters, float hc_eps, float norm_eps, float* y, float* post, float* comb);

    // mHC post (§5.2): out[t, k] = post[t,k]·f[t] + Σ_j comb[t,j,k]·res[t,j]; f [t, d], res/out [t, hc, d].
    void (*hc_post)(const float* f, const float* res, const float* post, const float* comb, int64_t t, int64_t hc,
                    int64_t d, float* out);

    // mHC head (§5.4): y[t] = Σ_i (σ(m_i·scale[0] + base_i) + hc_eps)·x[t,i], m = (fn·x_flat)·rsqrt.
    void (*hc_head)(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale,
                    const float* base, float hc_eps, float norm_eps, float* y);

    // out[t] = table[ids[t]] as float32 (table: a BF16/F32 Weight [vocab, d]).
    void (*embed)(const Weight& table, const int32_t* ids, int64_t t, float* out);

    // Compressor gated pooling of one entry (§7.2) from the streaming state of the reference layout:
    // kv, score [coff·ratio, coff·d] (score already holds g + ape; −inf for empty slots).
    // overlap (coff = 2): rows [0, ratio) use channels [0, d), rows [ratio, 2·ratio) channels [d, 2d);
    // otherwise rows [0, ratio), channels [0, d). z[c] = Σ_rows softmax_rows(score[·, c])·kv[·, c].
    void (*compress_pool)(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap, float* z);

    // Lightning-indexer scores (§8.4) for t queries: q [t, h, dh], w [t, h], keys [n, dh];
    // scores[i, j] = Σ_h w[i,h]·ReLU(q[i,h]·keys[j]) for j < valid[i], −inf otherwise. scores [t, n].
    void (*index_scores)(const float* q, const float* w, int64_t t, int64_t h, int64_t dh, const float* keys,
                         int64_t n, const int32_t* valid, float* scores);

    // Top-k per row (§8.5): idx [t, k] = the k largest of scores[i, 0:valid[i]] (valid null: n), with
    // the tie behaviour of PyTorch's CPU topk over exactly those candidates (= the reference's decode
    // step; indexer scores do tie exactly when every head's ReLU is zero). Ranking only the valid
    // candidates makes the choice independent of how a prefill is chunked. Slots beyond the
    // candidates, and −inf scores, are −1.
    void (*topk)(const float* scores, int64_t t, int64_t n, const int32_t* valid, int64_t k, int32_t* idx);

    // Sparse attention with a sink (§6.5): q [t, h, d]; keys are rows of kv_a [na, d] (index < na) or
    // kv_b [nb, d] (index − na); idx [t, nk] (−1 = none). For head hh of query i:
    // s_j = (q·key_j)·scale; o = Σ_j exp(s_j − m)·key_j / (Σ_j exp(s_j − m) + exp(sink[hh] − m)),
    // m = max_j s_j. out [t, h, d].
    void (*sparse_attn)(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na,
                        const float* kv_b, const int32_t* idx, int64_t nk, const float* sink, float scale,
                        float* out);

    // MoE routing (§10.1): logits [t, e]; σ = sqrt(softplus(logit)). Selection: hash_ids [t, k] when
    // given (hash layers), else top-k of σ + bias. Weights w = σ_sel / Σ σ_sel · route_scale.
    // ids [t, k] int32, w [t, k].
    void (*moe_route)(const float* logits, int64_t t, int64_t e, const float* bias, const int32_t* hash_ids,
                      int64_t k, float route_scale, int32_t* ids, float* w);

    // SwiGLU with clamp (§10.2): gate, up [rows, n] (up at column offset up_off of the same row
    // stride ld); limit > 0: up ← clamp(up, ±limit), gate ← min(gate, limit);
    // h = SiLU(gate)·up, times row_w[r] when row_w is given. h [rows, n].
    void (*swiglu)(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit,
                   const float* row_w, float* h);
};

// The CPU implementation (always available).
const Backend& cpu_backend();

}  // namespace dsinfer::ops
