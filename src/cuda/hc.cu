// Manifold-constrained hyper-connections (§5): hc_pre (RMS-scaled mixes + Sinkhorn + weighted
// stream sum, fused in one kernel per token), hc_post, hc_head.
#include <atomic>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

namespace {

constexpr int kMaxHc = 4;
constexpr int kHcThreads = 256;

__device__ __forceinline__ float sigmoid_dev(float x) { return 1.f / (1.f + expf(-x)); }

// §5.1 steps 3-6 for one token on one thread; kept only as the DSINFER_CUDA_LEGACY_DECODE baseline.
__device__ void split_sinkhorn(const float* mixes, int hc, const float* scale, const float* base, int iters,
                               float hc_eps, float* pre, float* post, float* c) {
    for (int i = 0; i < hc; ++i) pre[i] = sigmoid_dev(mixes[i] * scale[0] + base[i]) + hc_eps;
    for (int i = 0; i < hc; ++i) post[i] = 2.f * sigmoid_dev(mixes[hc + i] * scale[1] + base[hc + i]);
    for (int j = 0; j < hc * hc; ++j) c[j] = mixes[2 * hc + j] * scale[2] + base[2 * hc + j];
    for (int j = 0; j < hc; ++j) {
        float* row = c + j * hc;
        float m = row[0];
        for (int k = 1; k < hc; ++k) m = fmaxf(m, row[k]);
        float s = 0.f;
        for (int k = 0; k < hc; ++k) s += (row[k] = expf(row[k] - m));
        for (int k = 0; k < hc; ++k) row[k] = row[k] / s + hc_eps;
    }
    auto col_norm = [&] {
        for (int k = 0; k < hc; ++k) {
            float s = 0.f;
            for (int j = 0; j < hc; ++j) s += c[j * hc + k];
            for (int j = 0; j < hc; ++j) c[j * hc + k] /= (s + hc_eps);
        }
    };
    auto row_norm = [&] {
        for (int j = 0; j < hc; ++j) {
            float s = 0.f;
            for (int k = 0; k < hc; ++k) s += c[j * hc + k];
            for (int k = 0; k < hc; ++k) c[j * hc + k] /= (s + hc_eps);
        }
    };
    col_norm();
    for (int it = 1; it < iters; ++it) {
        row_norm();
        col_norm();
    }
}

// pre_i of §5.1 step 3, the one expression every hc_pre kernel uses (so all agree bitwise).
__device__ __forceinline__ float pre_weight(const float* mixes, const float* scale, const float* base, float hc_eps,
                                            int i) {
    return sigmoid_dev(mixes[i] * scale[0] + base[i]) + hc_eps;
}

// §5.1 steps 3-6 for one token on one warp: lane j·HC + k holds c[j][k] (lanes past HC² mirror lower
// ones). One thread doing it serially was ~30 µs: 20 Sinkhorn iterations are ~650 IEEE divisions, each
// a dependent call of the division routine. Here a row or column normalisation is HC shuffles plus one
// division per lane. Every sum runs in the CPU's order (s = 0, then += element 0, 1, ...) and each
// element gets the same division, so the results are identical to the one-thread version.
template <int HC>
__device__ void split_sinkhorn_warp(const float* mixes, const float* scale, const float* base, int iters,
                                    float hc_eps, float* pre, float* post, float* comb) {
    const int lane = threadIdx.x & 31;
    const int e = lane % (HC * HC), j = e / HC, k = e % HC;
    if (lane < HC) {
        pre[lane] = pre_weight(mixes, scale, base, hc_eps, lane);
        post[lane] = 2.f * sigmoid_dev(mixes[HC + lane] * scale[1] + base[HC + lane]);
    }
    float c = mixes[2 * HC + e] * scale[2] + base[2 * HC + e];
    float m = __shfl_sync(0xffffffffu, c, j * HC);
#pragma unroll
    for (int q = 1; q < HC; ++q) m = fmaxf(m, __shfl_sync(0xffffffffu, c, j * HC + q));
    c = expf(c - m);
    auto row_sum = [&] {
        float s = 0.f;
#pragma unroll
        for (int q = 0; q < HC; ++q) s += __shfl_sync(0xffffffffu, c, j * HC + q);
        return s;
    };
    auto col_sum = [&] {
        float s = 0.f;
#pragma unroll
        for (int q = 0; q < HC; ++q) s += __shfl_sync(0xffffffffu, c, q * HC + k);
        return s;
    };
    c = c / row_sum() + hc_eps;
    c /= (col_sum() + hc_eps);
    for (int it = 1; it < iters; ++it) {
        c /= (row_sum() + hc_eps);
        c /= (col_sum() + hc_eps);
    }
    if (lane < HC * HC) comb[lane] = c;
}

// Block-wide: sum of squares (double) and `mix` dot products fn[j]·x (float), one token per block.
template <int MIX>
__device__ void mixes_and_rms(const float* xi, int64_t width, const float* fn, float norm_eps, float* mixes_out,
                              float* rs_out) {
    float acc[MIX];
#pragma unroll
    for (int j = 0; j < MIX; ++j) acc[j] = 0.f;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        const float v = xi[i];
        ss += double(v) * double(v);
#pragma unroll
        for (int j = 0; j < MIX; ++j) acc[j] += fn[j * width + i] * v;
    }
    __shared__ float red[kHcThreads / 32][MIX];
    __shared__ double red_ss[kHcThreads / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < MIX; ++j)
        for (int off = 16; off > 0; off >>= 1) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < MIX; ++j) red[warp][j] = acc[j];
        red_ss[warp] = ss;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0;
        for (int w = 0; w < kHcThreads / 32; ++w) s += red_ss[w];
        *rs_out = 1.f / sqrtf(float(s / double(width)) + norm_eps);
    }
    __syncthreads();
    if (threadIdx.x < MIX) {
        float s = 0.f;
        for (int w = 0; w < kHcThreads / 32; ++w) s += red[w][threadIdx.x];
        mixes_out[threadIdx.x] = s * *rs_out;
    }
    __syncthreads();
}

template <int HC>
__global__ void __launch_bounds__(kHcThreads) hc_pre_kernel(const float* x, int64_t d, const float* fn,
                                                            const float* scale, const float* base, int iters,
                                                            float hc_eps, float norm_eps, float* y, float* post,
                                                            float* comb) {
    pdl_wait();
    pdl_release();
    constexpr int MIX = (2 + HC) * HC;
    const int64_t t = blockIdx.x, width = HC * d;
    const float* xi = x + t * width;
    __shared__ float mixes[MIX], pre[HC], rs;
    mixes_and_rms<MIX>(xi, width, fn, norm_eps, mixes, &rs);
    if (threadIdx.x < 32)
        split_sinkhorn_warp<HC>(mixes, scale, base, iters, hc_eps, pre, post + t * HC, comb + t * HC * HC);
    __syncthreads();
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float s = 0.f;
#pragma unroll
        for (int h = 0; h < HC; ++h) s += pre[h] * xi[h * d + c];
        y[t * d + c] = s;
    }
}

template <int HC>
__global__ void __launch_bounds__(kHcThreads) hc_head_kernel(const float* x, int64_t d, const float* fn,
                                                             const float* scale, const float* base, float hc_eps,
                                                             float norm_eps, float* y) {
    pdl_wait();
    pdl_release();
    const int64_t t = blockIdx.x, width = HC * d;
    const float* xi = x + t * width;
    __shared__ float mixes[HC], pre[HC], rs;
    mixes_and_rms<HC>(xi, width, fn, norm_eps, mixes, &rs);
    if (threadIdx.x < HC) pre[threadIdx.x] = sigmoid_dev(mixes[threadIdx.x] * scale[0] + base[threadIdx.x]) + hc_eps;
    __syncthreads();
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float s = 0.f;
#pragma unroll
        for (int h = 0; h < HC; ++h) s += pre[h] * xi[h * d + c];
        y[t * d + c] = s;
    }
}

// Decode variant of hc_pre: the 24 dot products over hc·d (1.5 MB of fn for Flash) are split over
// kHcSplit blocks per token so the read is spread over many SMs; a second kernel finishes per token.
constexpr int kHcSplit = 64;

// The hc_post that produces x, folded into hc_partial_kernel (f null: x is read as given).
struct HcPostIn {
    const float *f, *res, *post, *comb;
    int64_t hc, d;
};

// With pin.f set, x is first computed as hc_post(pin) element by element (and written: the finish
// kernel and the layer's residual read it), then used as read before.
template <int MIX>
__global__ void __launch_bounds__(kHcThreads)
    hc_partial_kernel(float* x, int64_t width, const float* fn, float* part, double* part_ss, HcPostIn pin) {
    pdl_wait();
    pdl_release();
    const int64_t t = blockIdx.x;
    const int sidx = blockIdx.y;
    const int64_t chunk = (width + kHcSplit - 1) / kHcSplit;
    const int64_t i0 = sidx * chunk, i1 = min(width, i0 + chunk);
    float* xi = x + t * width;
    float acc[MIX];
#pragma unroll
    for (int j = 0; j < MIX; ++j) acc[j] = 0.f;
    double ss = 0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        float v;
        if (pin.f) {
            v = hc_post_elem(pin.f[t * pin.d + i % pin.d], pin.res, pin.post, pin.comb, t, pin.hc, pin.d, i / pin.d,
                             i % pin.d);
            xi[i] = v;
        } else {
            v = xi[i];
        }
        ss += double(v) * double(v);
#pragma unroll
        for (int j = 0; j < MIX; ++j) acc[j] += fn[j * width + i] * v;
    }
    __shared__ float red[kHcThreads / 32][MIX];
    __shared__ double red_ss[kHcThreads / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < MIX; ++j)
        for (int off = 16; off > 0; off >>= 1) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < MIX; ++j) red[warp][j] = acc[j];
        red_ss[warp] = ss;
    }
    __syncthreads();
    if (threadIdx.x < MIX) {
        float s = 0.f;
        for (int w = 0; w < kHcThreads / 32; ++w) s += red[w][threadIdx.x];
        part[(t * kHcSplit + sidx) * MIX + threadIdx.x] = s;
    }
    if (threadIdx.x == 0) {
        double s = 0;
        for (int w = 0; w < kHcThreads / 32; ++w) s += red_ss[w];
        part_ss[t * kHcSplit + sidx] = s;
    }
}

// Σ_b part[(t·kHcSplit + b)·MIX + j] in ascending b (the order every finish sums in), with all
// kHcSplit loads issued before the first add: a loop that loads one partial per add waits for each
// load in turn (≈ 8 µs per finish on an H200 under ncu).
template <int MIX>
__device__ __forceinline__ float sum_partials(const float* part, int64_t t, int j) {
    float v[kHcSplit];
#pragma unroll
    for (int b = 0; b < kHcSplit; ++b) v[b] = part[(t * kHcSplit + b) * MIX + j];
    float s = 0.f;
#pragma unroll
    for (int b = 0; b < kHcSplit; ++b) s += v[b];
    return s;
}

template <int HC>
__global__ void __launch_bounds__(kHcThreads) hc_finish_kernel(const float* x, int64_t d, const float* part,
                                                               const double* part_ss, const float* scale,
                                                               const float* base, int iters, float hc_eps,
                                                               float norm_eps, float* y, float* post, float* comb,
                                                               bool legacy) {
    pdl_wait();
    pdl_release();
    constexpr int MIX = (2 + HC) * HC;
    const int64_t t = blockIdx.x, width = HC * d;
    const float* xi = x + t * width;
    __shared__ float mixes[MIX], pre[HC];
    __shared__ float rs;
    if (legacy) {
        if (threadIdx.x == 0) {
            double s = 0;
            for (int b = 0; b < kHcSplit; ++b) s += part_ss[t * kHcSplit + b];
            rs = 1.f / sqrtf(float(s / double(width)) + norm_eps);
        }
    } else if (threadIdx.x < 32) {  // one warp: kHcSplit / 32 partials per lane, then a shuffle tree
        double s = 0;
        for (int b = threadIdx.x; b < kHcSplit; b += 32) s += part_ss[t * kHcSplit + b];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (threadIdx.x == 0) rs = 1.f / sqrtf(float(s / double(width)) + norm_eps);
    }
    __syncthreads();
    if (threadIdx.x < MIX) mixes[threadIdx.x] = sum_partials<MIX>(part, t, threadIdx.x) * rs;
    __syncthreads();
    if (legacy) {
        if (threadIdx.x == 0) {
            float c[HC * HC], po[HC];
            split_sinkhorn(mixes, HC, scale, base, iters, hc_eps, pre, po, c);
            for (int i = 0; i < HC; ++i) post[t * HC + i] = po[i];
            for (int i = 0; i < HC * HC; ++i) comb[t * HC * HC + i] = c[i];
        }
    } else if (threadIdx.x < 32) {
        split_sinkhorn_warp<HC>(mixes, scale, base, iters, hc_eps, pre, post + t * HC, comb + t * HC * HC);
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float s = 0.f;
#pragma unroll
        for (int h = 0; h < HC; ++h) s += pre[h] * xi[h * d + c];
        y[t * d + c] = s;
    }
}

// Decode finish over many blocks: grid (t, ceil(d / kHcThreads) + 1). Block y < ny writes columns
// [y·kHcThreads, (y+1)·kHcThreads) of the weighted stream sum; it recomputes rs and the HC pre
// weights from the partials itself (no inter-block sync), with the same reductions in the same order
// as the last block, so every block holds bitwise the same pre. Block y = ny runs the Sinkhorn warp
// (post, comb). Each y element is s = 0, s += pre_h·x_h for h = 0..HC-1, as in hc_finish_kernel.
// MIX = HC is hc_head's finish (partials of its HC mixes only): no Sinkhorn block, grid (t, ny); the
// one-block-per-token hc_head kernel took 40 µs per decode token under ncu. part: kFinishAll (the
// above), kFinishColumns (grid (t, ny): the column blocks only), kFinishSinkhorn (grid (t, 1): the
// Sinkhorn block only, launched on a side lane).
enum HcFinishPart : int { kFinishAll = 0, kFinishColumns = 1, kFinishSinkhorn = 2 };
template <int HC, int MIX>
__global__ void __launch_bounds__(kHcThreads)
    hc_finish_wide_kernel(const float* x, int64_t d, const float* part, const double* part_ss, const float* scale,
                          const float* base, int iters, float hc_eps, float norm_eps, float* y, float* post,
                          float* comb, int which) {
    pdl_wait();
    pdl_release();
    const int64_t t = blockIdx.x, width = HC * d;
    const bool sinkhorn_block =
        MIX > HC && (which == kFinishSinkhorn || (which == kFinishAll && blockIdx.y == gridDim.y - 1));
    __shared__ float mixes[MIX], raw[MIX], pre[HC];
    __shared__ float rs;
    static_assert(kHcThreads >= 32 + MIX, "the mix sums run on the warps after the first");
    const int nmix = sinkhorn_block ? MIX : HC;  // the column blocks need only the HC pre mixes
    if (threadIdx.x < 32) {  // rs exactly as hc_finish_kernel (non-legacy) computes it
        double s = 0;
        for (int b = threadIdx.x; b < kHcSplit; b += 32) s += part_ss[t * kHcSplit + b];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (threadIdx.x == 0) rs = 1.f / sqrtf(float(s / double(width)) + norm_eps);
    } else if (int(threadIdx.x) - 32 < nmix) {  // meanwhile, the mixes' sums on the next warp(s)
        raw[threadIdx.x - 32] = sum_partials<MIX>(part, t, int(threadIdx.x) - 32);
    }
    __syncthreads();
    if (threadIdx.x < nmix) mixes[threadIdx.x] = raw[threadIdx.x] * rs;
    __syncthreads();
    if constexpr (MIX > HC) {
        if (sinkhorn_block) {
            if (threadIdx.x < 32)
                split_sinkhorn_warp<HC>(mixes, scale, base, iters, hc_eps, pre, post + t * HC, comb + t * HC * HC);
            return;
        }
    }
    if (threadIdx.x < HC) pre[threadIdx.x] = pre_weight(mixes, scale, base, hc_eps, threadIdx.x);
    __syncthreads();
    const int64_t c = int64_t(blockIdx.y) * kHcThreads + threadIdx.x;
    if (c >= d) return;
    const float* xi = x + t * width;
    float s = 0.f;
#pragma unroll
    for (int h = 0; h < HC; ++h) s += pre[h] * xi[h * d + c];
    y[t * d + c] = s;
}

__global__ void hc_post_kernel(const float* f, const float* res, const float* post, const float* comb, int64_t t,
                               int64_t hc, int64_t d, float* out) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= t * hc * d) return;
    const int64_t c = i % d, k = (i / d) % hc, tt = i / (d * hc);
    out[i] = hc_post_elem(f[tt * d + c], res, post, comb, tt, hc, d, k, c);
}

}  // namespace

namespace {
std::atomic<bool> g_one_block_hc_finish{false};
bool one_block_hc_finish() { return g_one_block_hc_finish; }
std::atomic<bool> g_sinkhorn_aside{false};
}  // namespace

void set_one_block_hc_finish(bool on) { g_one_block_hc_finish = on; }
void set_hc_sinkhorn_aside(bool on) {
    g_sinkhorn_aside = on;
}
bool hc_sinkhorn_aside() {
    return g_sinkhorn_aside;
}

namespace {
// hc_pre, computing x as hc_post(pin) first when pin.f is set: inside the partials kernel at decode
// sizes (t ≤ 32), as its own launch above them.
void hc_pre_impl(const HcPostIn& pin, float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale,
                 const float* base, int iters, float hc_eps, float norm_eps, float* y, float* post, float* comb) {
    if (t <= 0) return;
    if (hc != kMaxHc) fail("hc_pre: only hc_mult = 4 is built, got " + std::to_string(hc));
    if (t <= 32) {
        constexpr int kMix = 24;
        float* part = static_cast<float*>(scratch(kScratchHc, size_t(t * kHcSplit) * (kMix * 4 + 8)));
        double* part_ss = reinterpret_cast<double*>(part + t * kHcSplit * kMix);
        const dim3 grid{unsigned(t), unsigned(kHcSplit)};
        launch_pdl(hc_partial_kernel<kMix>, grid, kHcThreads, 0, x, hc * d, fn, part, part_ss, pin);
        DSINFER_CUDA_LAUNCH();
        if (legacy_decode_kernels() || one_block_hc_finish()) {
            launch_pdl(hc_finish_kernel<4>, unsigned(t), kHcThreads, 0, x, d, part, part_ss, scale, base, iters, hc_eps,
                       norm_eps, y, post, comb, legacy_decode_kernels());
        } else if (g_sinkhorn_aside && scratch_lane() == 0) {
            // The Sinkhorn on its lane first (it forks after the partials), then the columns on the main
            // stream; the partials stay untouched until the caller's join (the next writer of this
            // scratch is the next hc_pre, after it).
            side_begin(kSinkhornLane);
            launch_pdl(hc_finish_wide_kernel<4, kMix>, dim3{unsigned(t), 1u}, kHcThreads, 0, x, d, part, part_ss, scale,
                       base, iters, hc_eps, norm_eps, y, post, comb, int(kFinishSinkhorn));
            DSINFER_CUDA_LAUNCH();
            side_end();
            const dim3 fgrid{unsigned(t), unsigned(ceil_div(d, kHcThreads))};
            launch_pdl(hc_finish_wide_kernel<4, kMix>, fgrid, kHcThreads, 0, x, d, part, part_ss, scale, base, iters,
                       hc_eps, norm_eps, y, post, comb, int(kFinishColumns));
        } else {
            const dim3 fgrid{unsigned(t), unsigned(ceil_div(d, kHcThreads) + 1)};
            launch_pdl(hc_finish_wide_kernel<4, kMix>, fgrid, kHcThreads, 0, x, d, part, part_ss, scale, base, iters,
                       hc_eps, norm_eps, y, post, comb, int(kFinishAll));
        }
        DSINFER_CUDA_LAUNCH();
        return;
    }
    if (pin.f) hc_post(pin.f, pin.res, pin.post, pin.comb, t, hc, d, x);  // above decode sizes: the two ops
    launch_pdl(hc_pre_kernel<4>, unsigned(t), kHcThreads, 0, x, d, fn, scale, base, iters, hc_eps, norm_eps, y, post,
               comb);
    DSINFER_CUDA_LAUNCH();
}
}  // namespace

void hc_pre(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
            int iters, float hc_eps, float norm_eps, float* y, float* post, float* comb) {
    // x is only read when no hc_post is folded in.
    hc_pre_impl(HcPostIn{}, const_cast<float*>(x), t, hc, d, fn, scale, base, iters, hc_eps, norm_eps, y, post, comb);
}

void hc_post_pre(const float* f, const float* res, const float* post_in, const float* comb_in, int64_t t, int64_t hc,
                 int64_t d, float* out, const float* fn, const float* scale, const float* base, int iters, float hc_eps,
                 float norm_eps, float* y, float* post, float* comb) {
    hc_pre_impl(HcPostIn{f, res, post_in, comb_in, hc, d}, out, t, hc, d, fn, scale, base, iters, hc_eps, norm_eps, y,
                post, comb);
}

void hc_head(const float* x, int64_t t, int64_t hc, int64_t d, const float* fn, const float* scale, const float* base,
             float hc_eps, float norm_eps, float* y) {
    if (t <= 0) return;
    if (hc != kMaxHc) fail("hc_head: only hc_mult = 4 is built, got " + std::to_string(hc));
    if (t <= 32 && !legacy_decode_kernels()) {
        float* part = static_cast<float*>(scratch(kScratchHc, size_t(t * kHcSplit) * (kMaxHc * 4 + 8)));
        double* part_ss = reinterpret_cast<double*>(part + t * kHcSplit * kMaxHc);
        launch_pdl(hc_partial_kernel<kMaxHc>, dim3{unsigned(t), unsigned(kHcSplit)}, kHcThreads, 0,
                   const_cast<float*>(x), hc * d, fn, part, part_ss, HcPostIn{});
        DSINFER_CUDA_LAUNCH();
        launch_pdl(hc_finish_wide_kernel<kMaxHc, kMaxHc>, dim3{unsigned(t), unsigned(ceil_div(d, kHcThreads))},
                   kHcThreads, 0, x, d, part, part_ss, scale, base, 0, hc_eps, norm_eps, y, nullptr, nullptr,
                   int(kFinishColumns));
        DSINFER_CUDA_LAUNCH();
        return;
    }
    launch_pdl(hc_head_kernel<4>, unsigned(t), kHcThreads, 0, x, d, fn, scale, base, hc_eps, norm_eps, y);
    DSINFER_CUDA_LAUNCH();
}

void hc_post(const float* f, const float* res, const float* post, const float* comb, int64_t t, int64_t hc, int64_t d,
             float* out) {
    if (t <= 0) return;
    launch_pdl(hc_post_kernel, unsigned(ceil_div(t * hc * d, 256)), 256, 0, f, res, post, comb, t, hc, d, out);
    DSINFER_CUDA_LAUNCH();
}

}  // namespace dsinfer::cuda
