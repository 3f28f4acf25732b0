// Row-wise ops: fp4_quant, hadamard, rmsnorm, rope, embed, swiglu.
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

__global__ void fp4_quant_kernel(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block) {
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
    amax = fmaxf(amax, 6.f * 1.17549435e-38f);  // 6·2^-126
    const float s = pow2ceil_dev(amax / 6.f);
    for (int64_t i = lane; i < len; i += 32) {
        const float v = fminf(fmaxf(p[i] / s, -6.f), 6.f);
        p[i] = round_e2m1_dev(v) * s;
    }
}

// One block per row; n ≤ 4096, power of two.
__global__ void hadamard_kernel(float* x, int64_t n) {
    extern __shared__ float v[];
    float* row = x + int64_t(blockIdx.x) * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = row[i];
    __syncthreads();
    for (int64_t h = 1; h < n; h <<= 1) {
        for (int64_t p = threadIdx.x; p < n / 2; p += blockDim.x) {
            const int64_t j = (p / h) * 2 * h + (p % h);
            const float a = v[j], b = v[j + h];
            v[j] = a + b;
            v[j + h] = a - b;
        }
        __syncthreads();
    }
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

__global__ void rmsnorm_kernel(const float* x, int64_t dim, const float* w, float eps, float* y) {
    const float* xr = x + int64_t(blockIdx.x) * dim;
    float* yr = y + int64_t(blockIdx.x) * dim;
    double s = 0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) s += double(xr[i]) * double(xr[i]);
    s = block_sum_double(s);
    const float rs = 1.f / sqrtf(float(s / double(dim)) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w ? w[i] * (xr[i] * rs) : xr[i] * rs;
}

// One block per row; thread i of the first half handles pair i of every head.
__global__ void rope_kernel(float* x, int64_t heads, int64_t head_dim, const int64_t* pos, const float* freqs,
                            int64_t rope_dim, bool inverse) {
    const int64_t r = blockIdx.x, half = rope_dim / 2;
    for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
        const float ang = float(pos[r]) * freqs[i];
        const float c = float(cos(double(ang)));
        float s = float(sin(double(ang)));
        if (inverse) s = -s;
        for (int64_t hh = 0; hh < heads; ++hh) {
            float* v = x + (r * heads + hh) * head_dim + (head_dim - rope_dim);
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

__global__ void embed_kernel(ops::WeightFormat fmt, const void* table, int64_t d, const int32_t* ids, float* out) {
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
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * n) return;
    const int64_t r = i / n, c = i % n;
    float g = gate[r * ld + c], u = up[r * ld + c];
    if (limit > 0.f) {
        u = fminf(fmaxf(u, -limit), limit);
        g = fminf(g, limit);
    }
    float v = g / (1.f + expf(-g)) * u;
    if (row_w) v = row_w[r] * v;
    h[i] = v;
}

}  // namespace

void fp4_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t warps = rows * ceil_div(cols, block);
    fp4_quant_kernel<<<unsigned(ceil_div(warps * 32, 256)), 256, 0, cur_stream()>>>(x, rows, cols, ld, block);
    DSINFER_CUDA_LAUNCH();
}

void hadamard(float* x, int64_t rows, int64_t n) {
    if (rows <= 0) return;
    if (n > 4096 || (n & (n - 1))) fail("hadamard: n must be a power of two ≤ 4096, got " + std::to_string(n));
    hadamard_kernel<<<unsigned(rows), 128, size_t(n) * 4, cur_stream()>>>(x, n);
    DSINFER_CUDA_LAUNCH();
}

void rmsnorm(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y) {
    if (rows <= 0) return;
    rmsnorm_kernel<<<unsigned(rows), 256, 0, cur_stream()>>>(x, dim, w, eps, y);
    DSINFER_CUDA_LAUNCH();
}

void rope(float* x, int64_t rows, int64_t heads, int64_t head_dim, const int64_t* pos, const ops::RopeFreqs& f,
          bool inverse) {
    if (rows <= 0) return;
    rope_kernel<<<unsigned(rows), 64, 0, cur_stream()>>>(x, heads, head_dim, pos, f.freqs, f.rope_dim, inverse);
    DSINFER_CUDA_LAUNCH();
}

void embed(const ops::Weight& table, const int32_t* ids, int64_t t, float* out) {
    if (t <= 0) return;
    if (table.fmt != ops::WeightFormat::BF16 && table.fmt != ops::WeightFormat::F32)
        fail("embed: table must be BF16 or F32");
    embed_kernel<<<unsigned(t), 256, 0, cur_stream()>>>(table.fmt, table.data, table.k, ids, out);
    DSINFER_CUDA_LAUNCH();
}

void swiglu(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit, const float* row_w,
            float* h) {
    if (rows <= 0 || n <= 0) return;
    swiglu_kernel<<<unsigned(ceil_div(rows * n, 256)), 256, 0, cur_stream()>>>(gate, up, ld, rows, n, limit, row_w, h);
    DSINFER_CUDA_LAUNCH();
}

}  // namespace dsinfer::cuda
