// The op table of the CUDA backend.
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

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
void topk(const float* scores, int64_t t, int64_t n, int64_t k, int32_t* idx);
void sparse_attn(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                 const int32_t* idx, int64_t nk, const float* sink, float scale, float* out);
void moe_route(const float* logits, int64_t t, int64_t e, const float* bias, const int32_t* hash_ids, int64_t k,
               float route_scale, int32_t* ids, float* w);

const ops::Backend& backend() {
    static const ops::Backend b = {
        "cuda",     cuda::linear,   cuda::act_quant,     cuda::fp4_quant, cuda::hadamard,    cuda::rmsnorm,
        cuda::rope, cuda::hc_pre,   cuda::hc_post,       cuda::hc_head,   cuda::embed,       cuda::compress_pool,
        cuda::index_scores, cuda::topk, cuda::sparse_attn, cuda::moe_route, cuda::swiglu,
    };
    return b;
}

}  // namespace dsinfer::cuda
