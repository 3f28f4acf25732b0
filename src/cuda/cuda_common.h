// Internal helpers of the CUDA backend (included by .cu files only).
#pragma once

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

#include "ops/ops.h"

namespace dsinfer::cuda {

[[noreturn]] void fail(const std::string& what);
inline void check(cudaError_t e, const char* expr, const char* file, int line) {
    if (e != cudaSuccess)
        fail(std::string("CUDA error ") + cudaGetErrorString(e) + " in " + expr + " at " + file + ":" +
             std::to_string(line));
}
#define DSINFER_CUDA_CHECK(x) ::dsinfer::cuda::check((x), #x, __FILE__, __LINE__)
#define DSINFER_CUDA_LAUNCH() ::dsinfer::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

cudaStream_t cur_stream();

// Streaming multiprocessors of the current device (read once); launches size their grids by it.
int sm_count();

// DSINFER_CUDA_LEGACY_DECODE=1 selects the earlier decode kernels for hc_pre's finish and rmsnorm, so
// bench_cuda can show before/after on one card in one run. Read once.
bool legacy_decode_kernels();

// Programmatic dependent launch (Hopper). A kernel started with launch_pdl() may begin while the
// kernel before it on the stream is still running: everything it does before pdl_wait() must touch
// only memory no earlier kernel writes (weights, kernel parameters). pdl_wait() returns once the
// previous kernel has finished and its writes are visible; pdl_release() lets the next kernel start
// early. Every kernel given to launch_pdl() calls pdl_wait() before its first read of activations
// and its first write. DSINFER_CUDA_PDL=0 turns the attribute off (plain stream order; pdl_wait()
// and pdl_release() are then no-ops). Read once.
bool pdl_enabled();
#ifdef __CUDACC__
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cur_stream();
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    DSINFER_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

#ifdef __CUDACC__
// Column c of a compressor's pooled entry (§7.1): softmax over the block's rows of score (overlap: the
// first `ratio` rows from columns [0, d), the next from [d, 2d)), the weighted sum of kv. Shared by the
// kernels that pool, with the roundings spelled out so they agree bit for bit.
__device__ __forceinline__ float pool_col(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap,
                                          int64_t c) {
    const int64_t coff = overlap ? 2 : 1, width = coff * d, nrows = coff * ratio;
    float m = -INFINITY;
    for (int64_t r = 0; r < nrows; ++r) {
        const int64_t col = (overlap && r >= ratio) ? d + c : c;
        m = fmaxf(m, score[r * width + col]);
    }
    float s = 0.f;
    for (int64_t r = 0; r < nrows; ++r) {
        const int64_t col = (overlap && r >= ratio) ? d + c : c;
        s = __fadd_rn(s, expf(__fsub_rn(score[r * width + col], m)));
    }
    float acc = 0.f;
    for (int64_t r = 0; r < nrows; ++r) {
        const int64_t col = (overlap && r >= ratio) ? d + c : c;
        const float w = __fdiv_rn(expf(__fsub_rn(score[r * width + col], m)), s);
        if (w != 0.f) acc = __fmaf_rn(kv[r * width + col], w, acc);
    }
    return acc;
}
#endif

#ifdef __CUDACC__
// One element of hc_post (§5): out[tt, k, c] = post[tt, k]·f + Σ_j comb[tt, j, k]·res[tt, j, c], f the
// layer output f[tt, c]. Shared by every kernel that computes it, so they all round alike.
__device__ __forceinline__ float hc_post_elem(float f, const float* res, const float* post, const float* comb,
                                              int64_t tt, int64_t hc, int64_t d, int64_t k, int64_t c) {
    const float* ci = comb + tt * hc * hc;
    const float* ri = res + tt * hc * d;
    float s = 0.f;
    for (int64_t j = 0; j < hc; ++j) s += ci[j * hc + k] * ri[j * d + c];
    return post[tt * hc + k] * f + s;
}
// One RoPE pair's rotation, shared by every kernel that applies RoPE. The roundings are spelled out
// (one product rounded, then a fused multiply-add) so that no kernel's compiler may contract them
// differently: every kernel gets bitwise the same pair.
__device__ __forceinline__ void rope_rotate(float& x0, float& x1, float c, float s) {
    const float a = x0, b = x1;
    x0 = __fmaf_rn(a, c, -__fmul_rn(b, s));
    x1 = __fmaf_rn(a, s, __fmul_rn(b, c));
}
// The pair angle's cosine and sine as rope_kernel computes them (in double; sine negated for the inverse).
__device__ __forceinline__ void rope_cos_sin(int64_t pos, float freq, bool inverse, float& c, float& s) {
    const float ang = float(pos) * freq;
    c = float(cos(double(ang)));
    const float sv = float(sin(double(ang)));
    s = inverse ? -sv : sv;
}
#endif

// 0 on the main stream, the lane between side_begin(lane) and side_end(): which set of scratch
// buffers (and other per-stream device state) ops use.
int scratch_lane();
// A buffer that captured CUDA graphs may use was reallocated: scratch_generation() moves on.
void scratch_moved();

// Growable device scratch buffers, one per slot (never shrunk; reallocation synchronizes).
enum ScratchSlot : int {
    kScratchActQ = 0,     // FP8 activations for tensor-core GEMMs
    kScratchActS,         // their scales
    kScratchWeightQ,      // FP4 → FP8 re-encoded weights
    kScratchWeightS,      // their scales
    kScratchLtWork,       // cuBLASLt workspace
    kScratchAttn,         // split-K attention partials
    kScratchLtOut,        // cuBLASLt output when it cannot write y directly
    kScratchMoeGu,        // MoE gate/up [pairs, 2·inter]
    kScratchMoeH,         // MoE hidden [pairs, inter]
    kScratchMoeY,         // MoE per-pair outputs [pairs, d]
    kScratchMoeX,         // MoE gathered inputs [pairs, d]
    kScratchMoeIdx,       // MoE jobs / permutation
    kScratchFlag,         // 'x was not on the FP8 grid' flag of the tensor-core path
    kScratchGemvPart,     // split-k partial sums of the GEMV kernels
    kScratchHc,           // hc_pre partial mixes (decode)
    kScratchTopkTie,      // topk's per-row 'tie at the k-th score' flags
    kScratchBf16W,        // weights expanded to bf16 (gemm_bf16.cu)
    kScratchBf16X,        // activations split into three bf16 terms
    kScratchBf16Out,      // the three terms' GEMM results
    kScratchCount
};
void* scratch(int slot, size_t bytes);

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A process-wide switch's mode: what was set (≥ 0), else (read once) 0 or 1 if the environment
// variable starts with '0' or '1', else `dflt`.
inline int mode_or_env(std::atomic<int>& mode, const char* var, int dflt = 1) {
    int m = mode.load();
    if (m < 0) {
        const char* v = std::getenv(var);
        m = (v && (v[0] == '0' || v[0] == '1')) ? v[0] - '0' : dflt;
        mode = m;
    }
    return m;
}

// ---- Device-side decoding of stored formats ----
__device__ __forceinline__ float e8m0_dev(uint8_t b) {
    return b == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(uint32_t(b) << 23);
}
__device__ __forceinline__ float scale_dev(const void* s, ops::ScaleKind kind, int64_t idx) {
    if (kind == ops::ScaleKind::E8M0) return e8m0_dev(static_cast<const uint8_t*>(s)[idx]);
    return static_cast<const float*>(s)[idx];
}
__device__ __forceinline__ float pow2ceil_dev(float x) {
    uint32_t u = __float_as_uint(x);
    uint32_t e = (u >> 23) & 0xffu;
    if (u & 0x7fffffu) e += 1;
    return __uint_as_float(e << 23);
}
// act_quant's scale for a block of absolute maximum amax, and one element's FP8 (e4m3)
// quantize-dequantize: shared by every kernel that act_quant's, so they all round alike.
__device__ __forceinline__ float e4m3_scale_dev(float amax, bool pow2) {
    const float s = fmaxf(amax, 1e-4f) / 448.f;
    return pow2 ? pow2ceil_dev(s) : s;
}
__device__ __forceinline__ float e4m3_qdq_dev(float v, float s) {
    const float q = fminf(fmaxf(v / s, -448.f), 448.f);
    const __half_raw h = __nv_cvt_fp8_to_halfraw(__nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3), __NV_E4M3);
    return __half2float(__half(h)) * s;
}

// One GEMV problem of a grouped launch: y[0, r] = x[0, :]·W[r, :] (linear.cu).
struct GemvJob {
    const float* x;  // [m, ldx]
    const void* w;   // weight data (row 0 = logical row 0)
    const void* s;   // weight scale
    float* y;        // [m, ldy]; column r for weight row n0 + r
    int64_t n0 = 0;  // first weight row of this job, added to the launch's n0 (grouped wo_a)
};
void gemv_grouped(const ops::Weight& like, int64_t n_rows, const GemvJob* jobs_dev, int64_t njobs, int64_t ldx,
                  int64_t ldy);
bool gemv_grouped_ok(const ops::Weight& like);
// Same format, shape and scale layout (weights that one grouped launch may stream together).
bool same_layout(const ops::Weight& a, const ops::Weight& b);

// The tensor-core GEMV (gemv_mma.cu; declared with the rest in cuda_backend.h) over a device job
// array (routed experts); false, launching nothing, when it does not apply.
bool mma_gemv_grouped(const ops::Weight& like, int64_t n_rows, const GemvJob* jobs_dev, int64_t njobs);

// One routed expert's weights as the device expert table holds them (moe.cu).
struct ExpertPtrs {
    const void *w1, *s1, *w3, *s3, *w2, *s2;
};
// One SwiGLU output (row r, column c): clamp at limit (> 0), silu(gate) · up, times row_w[r] when set.
// Shared by every kernel that computes it, so they all round alike.
__device__ __forceinline__ float swiglu_dev(const float* gate, const float* up, int64_t ld, int64_t r, int64_t c,
                                            float limit, const float* row_w) {
    float g = gate[r * ld + c], u = up[r * ld + c];
    if (limit > 0.f) {
        u = fminf(fmaxf(u, -limit), limit);
        g = fminf(g, limit);
    }
    float v = g / (1.f + expf(-g)) * u;
    if (row_w) v = row_w[r] * v;
    return v;
}
// The decode routed experts on the tensor-core GEMV with their job tables built inside the GEMV launches
// (gemv_mma.cu): `up` computes gu[p] = [x[p / k]·w1ᵀ | x[p / k]·w3ᵀ] of every (token, slot) pair p of
// expert ids[p]; `down` computes y[p] = h[p]·w2ᵀ with h[p] = act_quant(swiglu(gu[p]) · rw[p]) (128-blocks,
// power-of-two scales) formed while x is staged — the values swiglu_act_quant would write. false,
// launching nothing, when the path does not apply (then use build_jobs + mma_gemv_grouped).
bool mma_moe_ok(const ops::Weight& w1, const ops::Weight& w2, int64_t inter);
void mma_moe_up(const ops::Weight& w1, const ExpertPtrs* ex, const int32_t* ids, int64_t pairs, int64_t k,
                const float* x, int64_t inter, float* gu);
void mma_moe_down(const ops::Weight& w2, const ExpertPtrs* ex, const int32_t* ids, int64_t pairs, int64_t inter,
                  const float* gu, float limit, const float* rw, float* y);

// Drops the float32 copy of a weight's scales that the tensor-core path caches (keyed by pointer).
void forget_weight_scales(const void* scale);

// cuBLASLt, shared by linear's FP8 path and the BF16 path (linear.cu): one matmul D = op(A)·op(B)
// (alpha 1, beta 0, C = D) with the best heuristic algorithm for its descriptors, cached under `key`
// (kind: 0 block-scaled FP8, 1 BF16; m, n, k, ld of D), workspace from the scratch. Returns false,
// running nothing, when cuBLASLt has no algorithm.
struct LtKey {
    int kind;
    int64_t m, n, k, ld;
};
// The descriptors of D [n, m] (column-major, leading dimension ld, float32) = A·Bᵀ for A [n, k] and
// B [m, k] row-major of type ab (TRANSA = T, TRANSB = N), float32 compute; freed with the object.
struct LtDescs {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    LtDescs(cudaDataType_t ab, int64_t n, int64_t m, int64_t k, int64_t ld);
    ~LtDescs();
    LtDescs(const LtDescs&) = delete;
    LtDescs& operator=(const LtDescs&) = delete;
};
bool lt_matmul_cached(const LtKey& key, const LtDescs& ds, const void* pa, const void* pb, void* pd);

// BF16 tensor-core linear with float32 accuracy (gemm_bf16.cu). bf16_linear returns false, doing
// nothing, when the weight cannot be expanded to bf16 exactly or cuBLASLt has no algorithm.
bool bf16_linear_ok(const ops::Weight& w);
bool bf16_linear(const float* x, int64_t m, const ops::Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy);

// Linear op entry points (linear.cu) used by other files.
void linear(const float* x, int64_t m, const ops::Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy);
void act_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2);
void swiglu(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit, const float* row_w,
            float* h);
// The other op table entries (backend.cu lists them all).
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

}  // namespace dsinfer::cuda
