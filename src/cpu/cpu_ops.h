// CPU implementations of the op table (ops/ops.h). Declared here so tests can call them directly.
#pragma once

#include "ops/ops.h"

namespace dsinfer::cpu {

float dot(const float* a, const float* b, int64_t k);
// Decodes logical row n of a weight into out[w.k] (float32).
void linear_row_decode(const ops::Weight& w, int64_t n, float* out);
void linear(const float* x, int64_t m, const ops::Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy);
void act_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2);
void fp4_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block);
void hadamard(float* x, int64_t rows, int64_t n);
void rmsnorm(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y);
void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int64_t* pos, const ops::RopeFreqs& f,
          bool inverse);
void hc_pre(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
            int iters, float hc_eps, float norm_eps, float* y, float* post, float* comb);
void hc_post(const float* f, const float* res, const float* post, const float* comb, int64_t t, int64_t hc, int64_t d,
             float* out);
void hc_head(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
             float hc_eps, float norm_eps, float* y);
void embed(const ops::Weight& table, const int32_t* ids, int64_t t, float* out);
void compress_pool(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap, float* z);
void index_scores(const float* q, const float* w, int64_t t, int64_t h, int64_t dh, const float* keys, int64_t n,
                  const int32_t* valid, float* scores);
void topk(const float* scores, int64_t t, int64_t n, const int32_t* valid, int64_t k, int32_t* idx);
void sparse_attn(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                 const int32_t* idx, int64_t nk, const float* sink, float scale, float* out);
void moe_route(const float* logits, int64_t t, int64_t e, const float* bias, const int32_t* hash_ids, int64_t k,
               float route_scale, int32_t* ids, float* w);
void swiglu(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit, const float* row_w,
            float* h);

// The k largest of s[0:n] (k <= n) in the order, and with the tie behaviour, of PyTorch's CPU topk.
void topk_torch_order(const float* s, int64_t n, int64_t k, int32_t* out);

// Sinkhorn split of one token's mixes (§5.1 steps 3-6): mixes [(2+hc)·hc] → pre [hc], post [hc], comb [hc, hc].
void hc_split_sinkhorn(const float* mixes, int64_t hc, const float* scale, const float* base, int iters, float hc_eps,
                       float* pre, float* post, float* comb);

// YaRN-adjusted RoPE frequencies (§6.1), float32 as the reference computes them: rope_dim/2 values.
// original_seq_len == 0 disables YaRN.
void rope_freqs(int64_t rope_dim, double base, int64_t original_seq_len, double factor, double beta_fast,
                double beta_slow, float* out);

}  // namespace dsinfer::cpu
