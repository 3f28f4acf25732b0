// linear on BF16 tensor cores with float32 accuracy (batched decode and exact prefill).
//
// y = x·Wᵀ computed as one cuBLASLt BF16 GEMM with float32 accumulation, made exact to float32
// precision by two facts:
// - W in bf16 is exact: an e4m3 value times a power-of-two block scale, an e2m1 value times an E8M0
//   scale, and a bf16 weight are all bf16 numbers. FP8 weights whose F32 scales are not all powers
//   of two are refused (the caller falls back to the float32 paths).
// - x is split into three bf16 terms, x = hi + mid + lo, exactly (8 + 8 + 8 significant bits cover
//   float32's 24): the GEMM runs on the stacked [3m, k] activations, so W is read once, and the three
//   partial results are summed in float32 (smallest first). Every product is exact; only the
//   order of the float32 sums differs from the CPU (as on the GEMV path).
// Weights are expanded to bf16 into a scratch buffer per call (only the rows asked for): about 5
// bytes of traffic per FP8 weight instead of 1, still far below the ALU-bound GEMV for m ≥ 4 and the
// float32 tiled GEMM for prefill (docs/cuda.md has the figures).
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

namespace {

std::atomic<bool> g_bf16_gemm{true};

__device__ __forceinline__ float e4m3_to_f32(uint8_t b) {
    // e4m3: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7f/0xff are NaN (never in weights).
    const uint32_t s = uint32_t(b & 0x80) << 24, e = (b >> 3) & 0xf, m = b & 7;
    if (e == 0) return __uint_as_float(s) + (s ? -1.f : 1.f) * float(m) * 0.001953125f;  // m · 2^-9
    return __uint_as_float(s | ((e + 120) << 23) | (m << 20));
}

// e2m1 {0, .5, 1, 1.5, 2, 3, 4, 6} by bits (no table: a local array would live in local memory).
__device__ __forceinline__ float e2m1_to_f32(uint32_t code) {
    const uint32_t e = (code >> 1) & 3, m = code & 1;
    const uint32_t mag = e ? ((e + 126) << 23) | (m << 22) : (m ? 126u << 23 : 0u);
    return __uint_as_float(mag | ((code & 8) << 28));
}

__device__ __forceinline__ uint16_t bf16_bits_exact(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));  // exact by construction (see the file comment)
}

// Weight rows [n0, n0 + nn) of an FP8 / FP4 weight → bf16 [nn, k], scale folded in. One thread per 8
// consecutive elements of a row.
__global__ void expand_weight_kernel(const uint8_t* w, WeightFormat fmt, const void* scale, ScaleKind sk,
                                     int64_t scale_cols, int64_t n0, int64_t nn, int64_t k, uint16_t* out) {
    pdl_wait();
    pdl_release();
    const int64_t groups = k / 8;
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= nn * groups) return;
    const int64_t r = i / groups, c = (i % groups) * 8, n = n0 + r;
    float v[8];
    if (fmt == WeightFormat::FP8) {
        const float s = scale_dev(scale, sk, (n / 128) * scale_cols + c / 128);
        const uint2 q = *reinterpret_cast<const uint2*>(w + n * k + c);
        const uint32_t words[2] = {q.x, q.y};
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = e4m3_to_f32(uint8_t(words[j / 4] >> (8 * (j % 4)))) * s;
    } else {
        const float s = scale_dev(scale, sk, n * scale_cols + c / 32);
        const uint32_t q = *reinterpret_cast<const uint32_t*>(w + n * (k / 2) + c / 2);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = e2m1_to_f32(q >> (4 * j)) * s;
    }
    uint4 o;
    o.x = uint32_t(bf16_bits_exact(v[0])) | uint32_t(bf16_bits_exact(v[1])) << 16;
    o.y = uint32_t(bf16_bits_exact(v[2])) | uint32_t(bf16_bits_exact(v[3])) << 16;
    o.z = uint32_t(bf16_bits_exact(v[4])) | uint32_t(bf16_bits_exact(v[5])) << 16;
    o.w = uint32_t(bf16_bits_exact(v[6])) | uint32_t(bf16_bits_exact(v[7])) << 16;
    *reinterpret_cast<uint4*>(out + r * k + c) = o;
}

// x [m, ldx] float32 → [3m, k] bf16: rows [0, m) hi, [m, 2m) mid, [2m, 3m) lo, x = hi + mid + lo.
__global__ void split_x_kernel(const float* x, int64_t m, int64_t k, int64_t ldx, __nv_bfloat16* out) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= m * k) return;
    const int64_t r = i / k, c = i % k;
    const float v = x[r * ldx + c];
    const __nv_bfloat16 hi = __float2bfloat16_rn(v);
    const float r1 = v - __bfloat162float(hi);
    const __nv_bfloat16 mid = __float2bfloat16_rn(r1);
    const float r2 = r1 - __bfloat162float(mid);
    out[i] = hi;
    out[m * k + i] = mid;
    out[2 * m * k + i] = __float2bfloat16_rn(r2);
}

// y[r, j] = (D[2m + r, j] + D[m + r, j]) + D[r, j]; D is [3m, nn] row-major.
__global__ void sum_terms_kernel(const float* d, int64_t m, int64_t nn, float* y, int64_t ldy) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= m * nn) return;
    const int64_t r = i / nn, j = i % nn;
    y[r * ldy + j] = (d[(2 * m + r) * nn + j] + d[(m + r) * nn + j]) + d[r * nn + j];
}

// 1 in *flag when some F32 scale is not a power of two (or not finite and positive).
__global__ void scales_pow2_kernel(const float* s, int64_t n, int* flag) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const uint32_t u = __float_as_uint(s[i]);
    const uint32_t e = (u >> 23) & 0xffu;
    if ((u & 0x807fffffu) != 0 || e == 0 || e == 0xff) atomicOr(flag, 1);
}

struct State {
    std::mutex mu;
    std::map<const void*, bool> pow2;  // F32 scale pointer → all powers of two
};
State& state() {
    static State s;
    return s;
}

bool scales_pow2(const Weight& w) {
    if (w.scale_kind == ScaleKind::E8M0) return true;
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.pow2.find(w.scale);
    if (it != s.pow2.end()) return it->second;
    const int64_t n = w.fmt == WeightFormat::FP8 ? ceil_div(w.n, 128) * w.scale_cols : w.n * w.scale_cols;
    int* flag = static_cast<int*>(dmalloc(4));
    DSINFER_CUDA_CHECK(cudaMemsetAsync(flag, 0, 4, cur_stream()));
    launch_pdl(scales_pow2_kernel, unsigned(ceil_div(n, 256)), 256, 0, static_cast<const float*>(w.scale), n, flag);
    DSINFER_CUDA_LAUNCH();
    int h = 0;
    d2h(&h, flag, 4);
    dfree(flag);
    return s.pow2.emplace(w.scale, h == 0).first->second;
}

// D[m3, nn] (row-major) = X[m3, k]·Wᵀ, W [nn, k] bf16 row-major. False when cuBLASLt has no algorithm.
bool matmul(const uint16_t* wb, const __nv_bfloat16* xb, int64_t nn, int64_t m3, int64_t k, float* d) {
    const LtDescs ds(CUDA_R_16BF, nn, m3, k, nn);
    return lt_matmul_cached(LtKey{1, m3, nn, k, nn}, ds, wb, xb, d);
}

}  // namespace

void set_bf16_gemm(bool on) { g_bf16_gemm = on; }
bool bf16_gemm() { return g_bf16_gemm; }

bool bf16_linear_ok(const Weight& w) {
    if (!g_bf16_gemm || w.k % 8) return false;
    switch (w.fmt) {
        case WeightFormat::BF16: return true;
        case WeightFormat::FP4: return w.k % 32 == 0 && scales_pow2(w);
        case WeightFormat::FP8: return scales_pow2(w);
        default: return false;
    }
}

bool bf16_linear(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t nn = n1 - n0, k = w.k;
    if (nn <= 0 || m <= 0) return true;
    if (!bf16_linear_ok(w)) return false;
    cudaStream_t st = cur_stream();
    const uint16_t* wb;
    if (w.fmt == WeightFormat::BF16) {
        wb = static_cast<const uint16_t*>(w.data) + n0 * k;
        if (reinterpret_cast<uintptr_t>(wb) % 16) return false;
    } else {
        uint16_t* e = static_cast<uint16_t*>(scratch(kScratchBf16W, size_t(nn * k) * 2));
        launch_pdl(expand_weight_kernel, unsigned(ceil_div(nn * (k / 8), 256)), 256, 0,
                   static_cast<const uint8_t*>(w.data), w.fmt, w.scale, w.scale_kind, w.scale_cols, n0, nn, k, e);
        DSINFER_CUDA_LAUNCH();
        wb = e;
    }
    __nv_bfloat16* xb = static_cast<__nv_bfloat16*>(scratch(kScratchBf16X, size_t(3 * m * k) * 2));
    launch_pdl(split_x_kernel, unsigned(ceil_div(m * k, 256)), 256, 0, x, m, k, k, xb);
    DSINFER_CUDA_LAUNCH();
    float* d = static_cast<float*>(scratch(kScratchBf16Out, size_t(3 * m * nn) * 4));
    if (!matmul(wb, xb, nn, 3 * m, k, d)) return false;
    launch_pdl(sum_terms_kernel, unsigned(ceil_div(m * nn, 256)), 256, 0, d, m, nn, y, ldy);
    DSINFER_CUDA_LAUNCH();
    return true;
}

}  // namespace dsinfer::cuda
