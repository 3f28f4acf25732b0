// Row-wise ops: fp4_quant, hadamard, rmsnorm, rope, embed, swiglu; rmsnorm_act_quant (fused, beyond the
// op table).
#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

namespace {

// Round to nearest, ties to even, on the e2m1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}, saturating at 6.
__device__ __forceinline__ float round_e2m1_dev(float v) {
    const float a = fabsf(v);
    float r;
    if (a <= 0.25f) r = 0.f;
    else if (a < 0.75f) r = 0.5f;
    else if (a <= 1.25f) r = 1.f;
    else if (a < 1.75f) r = 1.5f;
    else if (a <= 2.5f) r = 2.f;
    else if (a < 3.5f) r = 3.f;
    else if (a <= 5.f) r = 4.f;
    else r = 6.f;
    return copysignf(r, v);
}

// fp4_quant's scale for a block of absolute maximum amax, and one element's quantize-dequantize.
__device__ __forceinline__ float fp4_scale_dev(float amax) {
    return pow2ceil_dev(fmaxf(amax, 6.f * 1.17549435e-38f) / 6.f);  // amax floored at 6·2^-126
}
__device__ __forceinline__ float fp4_qdq_dev(float v, float s) {
    return round_e2m1_dev(fminf(fmaxf(v / s, -6.f), 6.f)) * s;
}

__global__ void fp4_quant_kernel(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block) {
    pdl_wait();
    pdl_release();
    const int64_t nb = (cols + block - 1) / block;
    const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp_id >= rows * nb) return;
    const int64_t r = warp_id / nb, b = warp_id % nb;
    float* p = x + r * ld + b * block;
    const int64_t len = min(block, cols - b * block);
    float amax = 0.f;
    for (int64_t i = lane; i < len; i += 32) amax = fmaxf(amax, fabsf(p[i]));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = fp4_scale_dev(amax);
    for (int64_t i = lane; i < len; i += 32) p[i] = fp4_qdq_dev(p[i], s);
}

// The unnormalized Walsh-Hadamard butterflies over v[0, n) in shared memory, the block's threads
// sharing each stage (the same sums whatever the thread count); ends synchronized.
__device__ __forceinline__ void hadamard_butterflies(float* v, int64_t n) {
    for (int64_t h = 1; h < n; h <<= 1) {
        for (int64_t p = threadIdx.x; p < n / 2; p += blockDim.x) {
            const int64_t j = (p / h) * 2 * h + (p % h);
            const float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
        }
        __syncthreads();
    }
}

// One block per row; n ≤ 4096, power of two.
__global__ void hadamard_kernel(float* x, int64_t n) {
    pdl_wait();
    pdl_release();
    extern __shared__ float v[];
    float* row = x + int64_t(blockIdx.x) * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = row[i];
    __syncthreads();
    hadamard_butterflies(v, n);
    const float norm = 1.f / sqrtf(float(n));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) row[i] = v[i] * norm;
}

// Sum of squares in double (as the CPU), block-wide; result broadcast to all threads.
__device__ double block_sum_double(double s) {
    __shared__ double red[32];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < int(blockDim.x >> 5) ? red[lane] : 0.0;
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) red[0] = s;
    }
    __syncthreads();
    return red[0];
}

// The float4 norm kernels' shared first half: thread i loads float4s i + j·blockDim of the row into v
// and the block returns 1 / rms (sum of squares in double, as the CPU). Both kernels run this same code,
// which is what makes rmsnorm_quant_kernel's norm bitwise rmsnorm_vec4_kernel's.
constexpr int kRmsMaxPerThread = 4;  // dim ≤ 16384 at 1024 threads
__device__ __forceinline__ float row_inv_rms_vec4(const float4* xr, int64_t n4, int64_t dim, float eps,
                                                  float4 (&v)[kRmsMaxPerThread]) {
    double s = 0;
#pragma unroll
    for (int j = 0; j < kRmsMaxPerThread; ++j) {
        const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
        if (i < n4) {
            v[j] = xr[i];
            s += double(v[j].x) * double(v[j].x);
            s += double(v[j].y) * double(v[j].y);
            s += double(v[j].z) * double(v[j].z);
            s += double(v[j].w) * double(v[j].w);
        }
    }
    s = block_sum_double(s);
    return 1.f / sqrtf(float(s / double(dim)) + eps);
}

// One float4 of a normalized row: v · rs, then times the weight's float4 i when there is a weight (the
// norm kernels' shared second half).
__device__ __forceinline__ float4 normed_vec4(float4 v, float rs, const float4* w4, int64_t i) {
    float4 o{v.x * rs, v.y * rs, v.z * rs, v.w * rs};
    if (w4) {
        const float4 ww = w4[i];
        o = float4{ww.x * o.x, ww.y * o.y, ww.z * o.z, ww.w * o.w};
    }
    return o;
}

// One block per row. Decode (few rows) launches 1024 threads with float4 loads so a 4096-wide row is one
// load per thread; the old 256-thread scalar loop left a single SM walking the row serially.
__global__ void __launch_bounds__(1024)
    rmsnorm_vec4_kernel(const float* x, int64_t dim, const float* w, float eps, float* y) {
    pdl_wait();
    pdl_release();
    const float4* xr = reinterpret_cast<const float4*>(x + int64_t(blockIdx.x) * dim);
    float4* yr = reinterpret_cast<float4*>(y + int64_t(blockIdx.x) * dim);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    const int64_t n4 = dim / 4;
    float4 v[kRmsMaxPerThread];
    const float rs = row_inv_rms_vec4(xr, n4, dim, eps, v);
#pragma unroll
    for (int j = 0; j < kRmsMaxPerThread; ++j) {
        const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
        if (i < n4) yr[i] = normed_vec4(v[j], rs, w4, i);
    }
}

__global__ void rmsnorm_kernel(const float* x, int64_t dim, const float* w, float eps, float* y) {
    pdl_wait();
    pdl_release();
    const float* xr = x + int64_t(blockIdx.x) * dim;
    float* yr = y + int64_t(blockIdx.x) * dim;
    double s = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) s += double(xr[i]) * double(xr[i]);
    s = block_sum_double(s);
    const float rs = 1.f / sqrtf(float(s / double(dim)) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w ? w[i] * (xr[i] * rs) : xr[i] * rs;
}

// rmsnorm_vec4_kernel followed by act_quant_kernel's quantize-dequantize of the normalized row, in one
// pass: the same code for the norm (same threads, same sums), then per quantization block of b4 float4s
// (b4 a power of two ≤ 32). Thread i's j-th float4 is element i + j·blockDim with blockDim a multiple of
// 32, so float4 index mod 32 = lane: a block is b4 consecutive lanes of one warp, reduced by shuffles.
// amax is a max (order-free) and each element gets act_quant's exact expression, so yq is bitwise
// act_quant(rmsnorm(x)). y (optional) gets the plain norm; y or yq may be x (not each other).
__global__ void __launch_bounds__(1024) rmsnorm_quant_kernel(const float* x, int64_t dim, const float* w, float eps,
                                                             float* y, float* yq, int b4, bool pow2) {
    pdl_wait();
    pdl_release();
    const float4* xr = reinterpret_cast<const float4*>(x + int64_t(blockIdx.x) * dim);
    float4* yr = y ? reinterpret_cast<float4*>(y + int64_t(blockIdx.x) * dim) : nullptr;
    float4* qr = reinterpret_cast<float4*>(yq + int64_t(blockIdx.x) * dim);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    const int64_t n4 = dim / 4;
    float4 v[kRmsMaxPerThread];
    const float rs = row_inv_rms_vec4(xr, n4, dim, eps, v);
#pragma unroll
    for (int j = 0; j < kRmsMaxPerThread; ++j) {
        if (int64_t(j) * blockDim.x >= n4) break;  // block-uniform: every lane of a warp reaches the shuffles
        const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
        const bool live = i < n4;
        float4 o{0.f, 0.f, 0.f, 0.f};
        if (live) {
            o = normed_vec4(v[j], rs, w4, i);
            if (yr) yr[i] = o;
        }
        float amax = fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w)));
        for (int off = b4 / 2; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        const float sc = e4m3_scale_dev(amax, pow2);
        if (live)
            qr[i] = float4{e4m3_qdq_dev(o.x, sc), e4m3_qdq_dev(o.y, sc), e4m3_qdq_dev(o.z, sc), e4m3_qdq_dev(o.w, sc)};
    }
}

// Block (row, head group): the first rope_dim / 2 threads compute the pair angles' cos and sin once
// (in double, as the CPU op), then every thread rotates one (head, pair) of the group's
// kRopeHeads heads. The earlier one-block-per-row kernel walked all heads serially: 30 µs for the
// 64 query heads of a decode token on an H100, now one pass.
constexpr int kRopeThreads = 256;

constexpr int kRopeMaxHalf = kRopeThreads;

__global__ void __launch_bounds__(kRopeThreads)
    rope_kernel(float* x, int64_t heads, int64_t head_dim, const int64_t* pos, const float* freqs, int64_t rope_dim,
                bool inverse, int heads_per_block) {
    pdl_wait();
    pdl_release();
    __shared__ float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
    const int64_t r = blockIdx.x, half = rope_dim / 2;
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) rope_cos_sin(pos[r], freqs[i], inverse, cs[i], sn[i]);
    __syncthreads();
    const int64_t h0 = int64_t(blockIdx.y) * heads_per_block, h1 = min(heads, h0 + heads_per_block);
    for (int64_t e = threadIdx.x; e < (h1 - h0) * half; e += blockDim.x) {
        const int64_t hh = h0 + e / half, i = e % half;
        float* v = x + (r * heads + hh) * head_dim + (head_dim - rope_dim);
        rope_rotate(v[2 * i], v[2 * i + 1], cs[i], sn[i]);
    }
}

__global__ void embed_kernel(ops::WeightFormat fmt, const void* table, int64_t d, const int32_t* ids, float* out) {
    pdl_wait();
    pdl_release();
    const int64_t t = blockIdx.x;
    const int64_t row = ids[t];
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float v;
        if (fmt == ops::WeightFormat::BF16)
            v = __uint_as_float(uint32_t(static_cast<const uint16_t*>(table)[row * d + c]) << 16);
        else
            v = static_cast<const float*>(table)[row * d + c];
        out[t * d + c] = v;
    }
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit,
                              const float* row_w, float* h) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    h[i] = swiglu_dev(gate, up, ld, i / n, i % n, limit, row_w);
}

// swiglu_kernel then act_quant_kernel over the result, in one pass: one warp per (row, quantization
// block of ≤ 128 columns), lane l holding columns l, l + 32, ... of the block (act_quant's layout).
constexpr int kSwigluQuantMaxPerLane = 4;
__global__ void swiglu_quant_kernel(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n,
                                    float limit, const float* row_w, float* h, int64_t block, bool pow2) {
    pdl_wait();
    pdl_release();
    const int64_t nb = (n + block - 1) / block;
    const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp_id >= rows * nb) return;
    const int64_t r = warp_id / nb, c0 = (warp_id % nb) * block;
    const int64_t len = min(block, n - c0);
    float v[kSwigluQuantMaxPerLane];
    float amax = 0.f;
#pragma unroll
    for (int j = 0; j < kSwigluQuantMaxPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        v[j] = i < len ? swiglu_dev(gate, up, ld, r, c0 + i, limit, row_w) : 0.f;
        amax = fmaxf(amax, fabsf(v[j]));
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = e4m3_scale_dev(amax, pow2);
#pragma unroll
    for (int j = 0; j < kSwigluQuantMaxPerLane; ++j) {
        const int64_t i = lane + 32 * j;
        if (i < len) h[r * n + c0 + i] = e4m3_qdq_dev(v[j], s);
    }
}

// head_post_kernel's settings (HeadPost, as the kernel reads them).
struct HeadPostArgs {
    const float* norm_w;  // with norm: the weight, or null
    float eps;
    int norm, hadamard, quant;  // quant: 0 none, 1 e4m3 (act_quant) over the first qcols, 2 e2m1 (fp4_quant)
    const int64_t* pos;         // rope positions per group of `heads` rows (null: no rope)
    const float* freqs;
    int rope_dim, inverse, qb4, pow2;
    int64_t heads, qcols;
};

// rmsnorm, rope, Hadamard and a quantization of one row (a head vector) in one pass, each step as its
// own kernel computes it: thread i holds float4s i + j·blockDim (rmsnorm_vec4_kernel's layout, same
// thread count, so the same sums); rope rotates the pairs of the last rope_dim columns with
// rope_kernel's angles; the Hadamard runs hadamard_kernel's butterflies in shared memory; the
// quantization blocks are groups of lanes reduced by shuffles (max is order-free).
// One row x in place (RoPE at position p when `rope`); hsh: dim floats of shared memory (Hadamard).
__device__ __forceinline__ void head_post_row(float* x, int64_t dim, const HeadPostArgs& a, bool rope, int64_t p,
                                              float* hsh) {
    float4* xr = reinterpret_cast<float4*>(x);
    const int64_t n4 = dim / 4;
    float4 v[kRmsMaxPerThread];
    if (a.norm) {
        const float rs = row_inv_rms_vec4(xr, n4, dim, a.eps, v);
        const float4* w4 = reinterpret_cast<const float4*>(a.norm_w);
#pragma unroll
        for (int j = 0; j < kRmsMaxPerThread; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i < n4) v[j] = normed_vec4(v[j], rs, w4, i);
        }
    } else {
#pragma unroll
        for (int j = 0; j < kRmsMaxPerThread; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i < n4) v[j] = xr[i];
        }
    }
    if (rope) {
        const int64_t first = dim - a.rope_dim;
#pragma unroll
        for (int j = 0; j < kRmsMaxPerThread; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i < n4 && 4 * i >= first) {
                const int64_t pr = (4 * i - first) / 2;
                float c, s;
                rope_cos_sin(p, a.freqs[pr], a.inverse, c, s);
                rope_rotate(v[j].x, v[j].y, c, s);
                rope_cos_sin(p, a.freqs[pr + 1], a.inverse, c, s);
                rope_rotate(v[j].z, v[j].w, c, s);
            }
        }
    }
    if (a.hadamard) {
        float4* s4 = reinterpret_cast<float4*>(hsh);
#pragma unroll
        for (int j = 0; j < kRmsMaxPerThread; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i < n4) s4[i] = v[j];
        }
        __syncthreads();
        hadamard_butterflies(hsh, dim);
        const float norm = 1.f / sqrtf(float(dim));
#pragma unroll
        for (int j = 0; j < kRmsMaxPerThread; ++j) {
            const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
            if (i < n4) {
                const float4 t = s4[i];
                v[j] = float4{t.x * norm, t.y * norm, t.z * norm, t.w * norm};
            }
        }
    }
#pragma unroll
    for (int j = 0; j < kRmsMaxPerThread; ++j) {
        if (int64_t(j) * blockDim.x >= n4) break;  // block-uniform: every lane of a warp reaches the shuffles
        const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
        const bool live = i < n4;
        float4 o = live ? v[j] : float4{0.f, 0.f, 0.f, 0.f};
        if (a.quant) {
            float amax = fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w)));
            for (int off = a.qb4 / 2; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
            if (a.quant == 1 && 4 * i < a.qcols) {
                const float sc = e4m3_scale_dev(amax, a.pow2);
                o = float4{e4m3_qdq_dev(o.x, sc), e4m3_qdq_dev(o.y, sc), e4m3_qdq_dev(o.z, sc), e4m3_qdq_dev(o.w, sc)};
            } else if (a.quant == 2) {
                const float sc = fp4_scale_dev(amax);
                o = float4{fp4_qdq_dev(o.x, sc), fp4_qdq_dev(o.y, sc), fp4_qdq_dev(o.z, sc), fp4_qdq_dev(o.w, sc)};
            }
        }
        if (live) xr[i] = o;
    }
}

__global__ void __launch_bounds__(1024) head_post_kernel(float* x, int64_t dim, HeadPostArgs a) {
    pdl_wait();
    pdl_release();
    extern __shared__ float hsh[];
    const int64_t r = blockIdx.x;
    head_post_row(x + r * dim, dim, a, a.pos != nullptr, a.pos ? a.pos[r / a.heads] : 0, hsh);
}

bool aligned16(const float* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

}  // namespace

void fp4_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t warps = rows * ceil_div(cols, block);
    launch_pdl(fp4_quant_kernel, unsigned(ceil_div(warps * 32, 256)), 256, 0, x, rows, cols, ld, block);
    DSINFER_CUDA_LAUNCH();
}

void hadamard(float* x, int64_t rows, int64_t n) {
    if (rows <= 0) return;
    if (n > 4096 || (n & (n - 1))) fail("hadamard: n must be a power of two ≤ 4096, got " + std::to_string(n));
    launch_pdl(hadamard_kernel, unsigned(rows), 128, size_t(n) * 4, x, n);
    DSINFER_CUDA_LAUNCH();
}

void rmsnorm(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y) {
    if (rows <= 0) return;
    const bool aligned = dim % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(y) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
    if (!legacy_decode_kernels() && aligned && dim <= 4 * 4 * 1024) {
        // Enough threads for one float4 per thread where the row allows (up to 1024), at least a warp.
        const int64_t n4 = dim / 4;
        const int threads = int(std::min<int64_t>(1024, std::max<int64_t>(32, (n4 + 31) / 32 * 32)));
        launch_pdl(rmsnorm_vec4_kernel, unsigned(rows), threads, 0, x, dim, w, eps, y);
    } else {
        launch_pdl(rmsnorm_kernel, unsigned(rows), 256, 0, x, dim, w, eps, y);
    }
    DSINFER_CUDA_LAUNCH();
}

void rmsnorm_act_quant(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y, float* yq,
                       int64_t block, bool pow2) {
    if (rows <= 0 || dim <= 0) return;
    const int64_t b4 = block / 4;
    const bool fused = !legacy_decode_kernels() && dim % 4 == 0 && dim <= 4 * 4 * 1024 && block % 4 == 0 && b4 >= 1 &&
                       b4 <= 32 && (b4 & (b4 - 1)) == 0 && aligned16(x) && aligned16(yq) && aligned16(w) &&
                       aligned16(y);
    if (!fused) {  // the two ops (rmsnorm picks its kernel as it always does)
        float* dst = y ? y : yq;
        rmsnorm(x, rows, dim, w, eps, dst);
        if (yq != dst)
            act_quant_copy(dst, yq, rows, dim, block, pow2);
        else
            act_quant(yq, rows, dim, dim, block, pow2);
        return;
    }
    // The thread count rmsnorm() uses for this width, so the sums are rmsnorm's.
    const int64_t n4 = dim / 4;
    const int threads = int(std::min<int64_t>(1024, std::max<int64_t>(32, (n4 + 31) / 32 * 32)));
    launch_pdl(rmsnorm_quant_kernel, unsigned(rows), threads, 0, x, dim, w, eps, y, yq, int(b4), pow2);
    DSINFER_CUDA_LAUNCH();
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int64_t* pos, const ops::RopeFreqs& f,
          bool inverse) {
    if (rows <= 0 || heads <= 0) return;
    const int64_t half = f.rope_dim / 2;
    if (half > kRopeMaxHalf) fail("rope: rope_dim above " + std::to_string(2 * kRopeMaxHalf));
    const int hpb = int(std::max<int64_t>(1, kRopeThreads / std::max<int64_t>(half, 1)));
    const dim3 grid{unsigned(rows), unsigned(ceil_div(heads, hpb))};
    launch_pdl(rope_kernel, grid, kRopeThreads, 0, x, heads, head_dim, pos, f.freqs, f.rope_dim, inverse, hpb);
    DSINFER_CUDA_LAUNCH();
}

void embed(const ops::Weight& table, const int32_t* ids, int64_t t, float* out) {
    if (t <= 0) return;
    if (table.fmt != ops::WeightFormat::BF16 && table.fmt != ops::WeightFormat::F32)
        fail("embed: table must be BF16 or F32");
    launch_pdl(embed_kernel, unsigned(t), 256, 0, table.fmt, table.data, table.k, ids, out);
    DSINFER_CUDA_LAUNCH();
}

void swiglu(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit, const float* row_w,
            float* h) {
    if (rows <= 0 || n <= 0) return;
    launch_pdl(swiglu_kernel, unsigned(ceil_div(rows * n, 256)), 256, 0, gate, up, ld, rows, n, limit, row_w, h);
    DSINFER_CUDA_LAUNCH();
}

void swiglu_act_quant(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit,
                      const float* row_w, float* h, int64_t block, bool pow2) {
    if (rows <= 0 || n <= 0) return;
    if (block < 1 || block > 32 * kSwigluQuantMaxPerLane) {
        swiglu(gate, up, ld, rows, n, limit, row_w, h);
        act_quant(h, rows, n, n, block, pow2);
        return;
    }
    const int64_t warps = rows * ceil_div(n, block);
    launch_pdl(swiglu_quant_kernel, unsigned(ceil_div(warps * 32, 256)), 256, 0, gate, up, ld, rows, n, limit, row_w, h,
               block, pow2);
    DSINFER_CUDA_LAUNCH();
}

namespace {
// head_post_kernel's arguments and thread count for these settings; false when the fused kernel does
// not handle them (x: the row data, for its alignment).
bool head_post_args(const float* x, int64_t rows, int64_t dim, const HeadPost& p, bool rope, HeadPostArgs& a,
                    int& threads) {
    const int64_t qb4 = p.qblock / 4;
    const bool rope_ok = !rope || (p.rope_dim % 4 == 0 && p.rope_dim <= dim && p.heads >= 1 && rows % p.heads == 0);
    const bool had_ok = !p.hadamard || ((dim & (dim - 1)) == 0 && dim <= 4096);
    const bool quant_ok =
        p.quant == HeadPost::Quant::None ||
        (p.qblock % 4 == 0 && qb4 >= 1 && qb4 <= 32 && (qb4 & (qb4 - 1)) == 0 &&
         (p.quant == HeadPost::Quant::Fp4 ? p.qblock == 32 : p.qcols % p.qblock == 0 && p.qcols <= dim));
    if (legacy_decode_kernels() || dim % 4 != 0 || dim > 4 * 4 * 1024 || !aligned16(x) || !aligned16(p.norm_w) ||
        !rope_ok || !had_ok || !quant_ok)
        return false;
    a = HeadPostArgs{};
    a.norm_w = p.norm_w;
    a.eps = p.eps;
    a.norm = p.norm;
    a.hadamard = p.hadamard;
    a.quant = p.quant == HeadPost::Quant::E4m3 ? 1 : p.quant == HeadPost::Quant::Fp4 ? 2 : 0;
    a.pos = p.pos;
    a.freqs = p.freqs;
    a.rope_dim = int(p.rope_dim);
    a.inverse = p.inverse;
    a.qb4 = int(qb4);
    a.pow2 = p.pow2;
    a.heads = p.heads;
    a.qcols = p.qcols;
    // rmsnorm()'s thread count for this width, so the sums are rmsnorm's.
    const int64_t n4 = dim / 4;
    threads = int(std::min<int64_t>(1024, std::max<int64_t>(32, (n4 + 31) / 32 * 32)));
    return true;
}

// One block per job: the pooled entry, the overlap state's shift, then the entry's head_post.
__global__ void __launch_bounds__(1024)
    compress_finish_kernel(const CompressJob* jobs, int64_t ratio, int64_t d, bool overlap, bool rope, HeadPostArgs a) {
    pdl_wait();
    pdl_release();
    extern __shared__ float hsh[];
    const CompressJob jb = jobs[blockIdx.x];
    if (!jb.out) return;  // the sequence completes no block this step (the whole block leaves)
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) jb.out[c] = pool_col(jb.kv, jb.score, ratio, d, overlap, c);
    __syncthreads();  // the state's first half is read; the entry's columns are visible to the block
    if (overlap) {
        const int64_t n = ratio * 2 * d;  // rows [ratio, 2·ratio) of width 2d move to rows [0, ratio)
        for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
            jb.kv[e] = jb.kv[n + e];
            jb.score[e] = jb.score[n + e];
        }
    }
    head_post_row(jb.out, d, a, rope, jb.pos, hsh);
}
}  // namespace

void head_post(float* x, int64_t rows, int64_t dim, const HeadPost& p, bool fused_ok) {
    if (rows <= 0 || dim <= 0) return;
    HeadPostArgs a;
    int threads = 0;
    if (!fused_ok || !head_post_args(x, rows, dim, p, p.pos != nullptr, a, threads)) {
        // the ops one by one, in the same order
        if (p.norm) rmsnorm(x, rows, dim, p.norm_w, p.eps, x);
        if (p.pos) rope(x, rows / p.heads, p.heads, dim, p.pos, ops::RopeFreqs{p.freqs, p.rope_dim}, p.inverse);
        if (p.hadamard) hadamard(x, rows, dim);
        if (p.quant == HeadPost::Quant::E4m3) act_quant(x, rows, p.qcols, dim, p.qblock, p.pow2);
        if (p.quant == HeadPost::Quant::Fp4) fp4_quant(x, rows, dim, dim, p.qblock);
        return;
    }
    launch_pdl(head_post_kernel, unsigned(rows), threads, p.hadamard ? size_t(dim) * 4 : 0, x, dim, a);
    DSINFER_CUDA_LAUNCH();
}

bool compress_finish(const CompressJob* jobs_dev, int64_t njobs, int64_t ratio, int64_t d, bool overlap,
                     const HeadPost& p, bool rope) {
    HeadPostArgs a;
    int threads = 0;
    // Entries are d-float rows of 16-byte aligned caches (d % 4 == 0): a dummy row pointer checks the rest.
    alignas(16) static const float aligned_row[4] = {};
    if (njobs > 65535 || !head_post_args(aligned_row, 1, d, p, rope, a, threads)) return false;
    if (njobs <= 0) return true;
    launch_pdl(compress_finish_kernel, unsigned(njobs), threads, p.hadamard ? size_t(d) * 4 : 0, jobs_dev, ratio, d,
               overlap, rope, a);
    DSINFER_CUDA_LAUNCH();
    return true;
}

}  // namespace dsinfer::cuda
