// linear (y = x·Wᵀ with W in its stored format) and activation quantization on the GPU.
//
// Three paths:
// - m ≤ kGemvMaxRows (decode): weight-streaming GEMV kernels. Each warp streams one weight row (or a
//   128-aligned slice of it, split-K) with 16-byte loads, decodes FP8/FP4/BF16 in registers and
//   accumulates x·w in float32: exact float32 math, bound by HBM bandwidth.
// - FP8/FP4 weights, larger m (prefill): FP8 tensor cores through cuBLASLt's Hopper block scaling
//   (weights 128x128 F32 scales, activations 1x128 F32 scales). x is re-quantized per 1x128 with
//   power-of-two scales (lossless for act_quant'ed x). FP4 weights are first re-encoded to FP8 with
//   one scale per 128x128 tile (the official lossless FP4→FP8 conversion, §3.5).
// - everything else (BF16/F32 weights with larger m, shapes cuBLASLt refuses, or every weight when
//   set_fp8_tensor_cores(false)): a tiled float32 GEMM that decodes weights into shared memory.
#include <cublasLt.h>
#include <cuda_fp8.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

// ---------------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float2 fp8x2_to_float2(uint16_t two) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two), __NV_E4M3);
    return __half22float2(__half2(h));
}

__device__ __forceinline__ float bf16_dev(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

__device__ __forceinline__ float e4m3_dev(uint8_t b) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
    return __half2float(__half(h));
}

__device__ __forceinline__ float e2m1_dev(uint32_t code) {
    const float mags[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
    const float m = mags[code & 7];
    return (code & 8) ? -m : m;
}

struct WeightDev {
    WeightFormat fmt;
    const void* data;
    int64_t k;
    const void* scale;
    ScaleKind sk;
    int64_t scale_cols;
};

// Element (n, kk) of a weight, float32 (slow path).
__device__ float weight_elem(const WeightDev& w, int64_t n, int64_t kk) {
    switch (w.fmt) {
        case WeightFormat::F32: return static_cast<const float*>(w.data)[n * w.k + kk];
        case WeightFormat::BF16: return bf16_dev(static_cast<const uint16_t*>(w.data)[n * w.k + kk]);
        case WeightFormat::FP8:
            return e4m3_dev(static_cast<const uint8_t*>(w.data)[n * w.k + kk]) *
                   scale_dev(w.scale, w.sk, (n / 128) * w.scale_cols + kk / 128);
        case WeightFormat::FP4: {
            const uint8_t b = static_cast<const uint8_t*>(w.data)[n * (w.k / 2) + kk / 2];
            return e2m1_dev((kk & 1) ? (b >> 4) : (b & 0xf)) * scale_dev(w.scale, w.sk, n * w.scale_cols + kk / 32);
        }
    }
    return 0.f;
}

// ---------------------------------------------------------------------------------------------
// GEMV: up to MT activation rows against a stream of weight rows.
// ---------------------------------------------------------------------------------------------

struct GemvParams {
    int64_t m, k, n_rows, n0, ldx, ldy, scale_cols, kchunk;
    ScaleKind sk;
    int splits;
    float* partial;      // [jobs, splits, m, n_rows] when splits > 1
    unsigned* counters;  // [jobs, row blocks] arrival counters (zero between launches)
    bool prefetch;       // prefetch the block's weight slice to L2 before staging x (gemv_prefetch())
    bool persistent;     // grid sized to the resident blocks, each looping over row blocks
};

template <int FMT>
struct Epl;  // elements of k each lane decodes from one 16-byte load
template <>
struct Epl<int(WeightFormat::FP8)> {
    static constexpr int v = 16, num = 1, den = 1;
};
template <>
struct Epl<int(WeightFormat::FP4)> {
    static constexpr int v = 32, num = 1, den = 2;
};
template <>
struct Epl<int(WeightFormat::BF16)> {
    static constexpr int v = 8, num = 2, den = 1;
};
template <>
struct Epl<int(WeightFormat::F32)> {
    static constexpr int v = 4, num = 4, den = 1;
};

constexpr int kGemvThreads = 256;
constexpr int kGemvWarps = kGemvThreads / 32;
constexpr int kRowsPerWarp = 2;
constexpr int kRowsPerBlock = kGemvWarps * kRowsPerWarp;
constexpr int kGemvUnroll = 2;
constexpr int kGemvMaxMt = 4;
constexpr int64_t kGemvSmem = 64 * 1024;

__device__ __forceinline__ float2 half2_bits_to_float2(uint32_t bits) {
    __half2_raw r;
    r.x = uint16_t(bits & 0xffffu);
    r.y = uint16_t(bits >> 16);
    return __half22float2(__half2(r));
}

// Which element of its group of 8 decode8 puts at w8[j]: the natural order, except FP4 (pairs of
// codes 1 5, 0 4, 3 7, 2 6). Callers read x in the same order.
template <int FMT>
__device__ __forceinline__ constexpr int dec_pos(int j) {
    if constexpr (FMT == int(WeightFormat::FP4)) return ((j >> 2) << 1) + (((j >> 1) & 1) ? 0 : 1) + ((j & 1) << 2);
    return j;
}

// Decodes the 8 weights of group g (0 ≤ g < EPL/8) of a 16-byte load into w8 (order: dec_pos).
template <int FMT>
__device__ __forceinline__ void decode8(const uint4& q, int g, float (&w8)[8]) {
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    if constexpr (FMT == int(WeightFormat::FP8)) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const uint32_t wd = words[g * 2 + j];
            const float2 a = fp8x2_to_float2(uint16_t(wd & 0xffff)), b = fp8x2_to_float2(uint16_t(wd >> 16));
            w8[j * 4 + 0] = a.x, w8[j * 4 + 1] = a.y, w8[j * 4 + 2] = b.x, w8[j * 4 + 3] = b.y;
        }
    } else if constexpr (FMT == int(WeightFormat::FP4)) {
        // Straight to half2 pairs: a code's magnitude picks the high byte of its half (the low byte of
        // every e2m1 value's half is zero) from an 8-entry __byte_perm table, the sign bit is moved to
        // bit 15 or 31. Pairs are codes (1, 5), (0, 4), (3, 7), (2, 6) of the word: dec_pos() below.
        const uint32_t wd = words[g];
        constexpr uint32_t kLo = 0x3E3C3800u;  // high bytes of the halves of 0, 0.5, 1, 1.5
        constexpr uint32_t kHi = 0x46444240u;  // of 2, 3, 4, 6
        const uint32_t p02 = __byte_perm(wd, 0u, 0x0020u), p13 = __byte_perm(wd, 0u, 0x0031u);
        const float2 a = half2_bits_to_float2(__byte_perm(kLo, kHi, p02 & 0x7070u) | ((wd << 8) & 0x80008000u));
        const float2 b = half2_bits_to_float2(__byte_perm(kLo, kHi, (p02 << 4) & 0x7070u) | ((wd << 12) & 0x80008000u));
        const float2 c = half2_bits_to_float2(__byte_perm(kLo, kHi, p13 & 0x7070u) | (wd & 0x80008000u));
        const float2 d = half2_bits_to_float2(__byte_perm(kLo, kHi, (p13 << 4) & 0x7070u) | ((wd << 4) & 0x80008000u));
        w8[0] = a.x, w8[1] = a.y, w8[2] = b.x, w8[3] = b.y, w8[4] = c.x, w8[5] = c.y, w8[6] = d.x, w8[7] = d.y;
    } else if constexpr (FMT == int(WeightFormat::BF16)) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            w8[2 * j] = bf16_dev(uint16_t(words[j] & 0xffff));
            w8[2 * j + 1] = bf16_dev(uint16_t(words[j] >> 16));
        }
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) w8[j] = __uint_as_float(words[j]);
#pragma unroll
        for (int j = 4; j < 8; ++j) w8[j] = 0.f;
    }
}

// Up to kMaxInlineJobs jobs passed by value in the kernel parameters (no device job array: the
// grouped wo_a and shared w1/w3 launches). Job 0 is the job of a plain linear().
constexpr int kMaxInlineJobs = 8;
struct GemvJobList {
    GemvJob j[kMaxInlineJobs];
};
static_assert(kMaxInlineJobs >= kMaxLinearGroups, "linear_groups needs one inline job per group");

// One block: row blocks of RPW·kGemvWarps weight rows (RPW per warp; blockIdx.x, + gridDim.x, ...) × one
// k chunk (split s = blockIdx.y) × one job (blockIdx.z). The chunk of x (up to MT rows) is staged in
// shared memory once per block, transposed so that lane
// i's element j of a 16-byte weight load sits at j·(kchunk/EPL) + i: conflict-free reads.
// A row's sum depends only on kchunk (lane and unroll order within a chunk, then chunks in split
// order), not on RPW, the unroll or the job count: every RPW gives bitwise the same y.
// RPW = 8 unrolls once instead of twice (8 loads in flight per lane either way), which keeps the
// FP8/FP4 single-row kernels at 128 registers (ptxas -v, nvcc 13.0): two resident blocks per SM,
// so one block's x staging overlaps the other's weight stream. The launch bounds ask for two resident
// blocks per SM (≤ 128 registers; without them nvcc 13.0 gives the 4-row FP8 variant 188 registers,
// one block per SM), except for the 4-row FP4 variant, which would spill 300 bytes.
template <int FMT, int MT, int RPW = kRowsPerWarp>
__global__ void __launch_bounds__(kGemvThreads, (FMT == int(WeightFormat::FP4) && MT == 4) ? 1 : 2)
    gemv_kernel(GemvParams p, GemvJobList inl, const GemvJob* jobs) {
    pdl_wait();
    pdl_release();
    constexpr int UNR = RPW >= 8 ? 1 : kGemvUnroll;
    constexpr int EPL = Epl<FMT>::v;
    constexpr int GROUPS = EPL >= 8 ? EPL / 8 : 1;
    constexpr int RPB = kGemvWarps * RPW;
    extern __shared__ float xs[];
    const int64_t job_i = blockIdx.z;
    const GemvJob job = jobs ? jobs[job_i] : inl.j[job_i];
    const int64_t jn0 = p.n0 + job.n0;
    const int s = blockIdx.y;
    const int64_t k0 = int64_t(s) * p.kchunk, klen = min(p.kchunk, p.k - k0);
    const int64_t stride = p.kchunk / EPL;
    if (p.prefetch) {
        // Each block first stages its x chunk (up to 64 KB of L2 reads, behind a barrier) and only then
        // asks HBM for weights. Asking the L2 for this warp's weight bytes first lets the HBM latency
        // overlap the staging; the loads below then hit L2.
        const int64_t pr0 = int64_t(blockIdx.x) * RPB + (threadIdx.x >> 5) * RPW;
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr) {
            if (pr0 + rr >= p.n_rows) break;
            const uint8_t* wr = static_cast<const uint8_t*>(job.w) +
                                ((jn0 + pr0 + rr) * p.k + k0) * Epl<FMT>::num / Epl<FMT>::den;
            for (int64_t kk = int64_t(threadIdx.x & 31) * EPL; kk < klen; kk += int64_t(32) * EPL)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(wr + kk * Epl<FMT>::num / Epl<FMT>::den));
        }
    }
    {  // 32-bit indices: the chunk is at most kGemvSmem / 4 floats
        const int kc = int(p.kchunk), kln = int(klen), st = int(stride);
        for (int e = threadIdx.x; e < MT * kc; e += blockDim.x) {
            const int mi = MT == 1 ? 0 : e / kc;
            const int kl = MT == 1 ? e : e - mi * kc;
            const float v = (mi < p.m && kl < kln) ? job.x[mi * p.ldx + k0 + kl] : 0.f;
            xs[mi * kc + (kl % EPL) * st + kl / EPL] = v;
        }
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Row blocks rb = blockIdx.x, + gridDim.x, ...: x is staged once per block and reused for every row
    // block the block takes (the launch sizes the grid to the resident blocks).
    const int64_t nrb = (p.n_rows + RPB - 1) / RPB;
    for (int64_t rb = blockIdx.x; rb < nrb; rb += gridDim.x) {
        const int64_t r0 = rb * RPB + warp * RPW;
        float acc[RPW][MT];
        const uint8_t* wrow[RPW];
        bool live[RPW];
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr) {
            live[rr] = r0 + rr < p.n_rows;
            wrow[rr] = static_cast<const uint8_t*>(job.w) + (jn0 + r0 + rr) * p.k * Epl<FMT>::num / Epl<FMT>::den;
#pragma unroll
            for (int mi = 0; mi < MT; ++mi) acc[rr][mi] = 0.f;
        }
        for (int64_t kb = int64_t(lane) * EPL; kb < klen; kb += int64_t(32) * EPL * UNR) {
            uint4 q[UNR][RPW];
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
                const int64_t kk = kb + int64_t(u) * 32 * EPL;
#pragma unroll
                for (int rr = 0; rr < RPW; ++rr)
                    if (kk < klen && live[rr])
                        q[u][rr] =
                            __ldg(reinterpret_cast<const uint4*>(wrow[rr] + (k0 + kk) * Epl<FMT>::num / Epl<FMT>::den));
            }
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
                const int64_t kk = kb + int64_t(u) * 32 * EPL;
                if (kk >= klen) break;
                const int64_t xb = kk / EPL;
                float part[RPW][MT];
#pragma unroll
                for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
                    for (int mi = 0; mi < MT; ++mi) part[rr][mi] = 0.f;
#pragma unroll
                for (int g = 0; g < GROUPS; ++g) {
                    constexpr int NJ = EPL >= 8 ? 8 : EPL;
                    float xv[MT][NJ];
#pragma unroll
                    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
                        for (int j = 0; j < NJ; ++j)
                            xv[mi][j] = xs[mi * p.kchunk + (g * 8 + dec_pos<FMT>(j)) * stride + xb];
#pragma unroll
                    for (int rr = 0; rr < RPW; ++rr) {
                        if (!live[rr]) continue;
                        float w8[8];
                        decode8<FMT>(q[u][rr], g, w8);
#pragma unroll
                        for (int mi = 0; mi < MT; ++mi)
#pragma unroll
                            for (int j = 0; j < NJ; ++j) part[rr][mi] += xv[mi][j] * w8[j];
                    }
                }
#pragma unroll
                for (int rr = 0; rr < RPW; ++rr) {
                    if (!live[rr]) continue;
                    float sc = 1.f;
                    const int64_t n = jn0 + r0 + rr, kg = k0 + kk;
                    if constexpr (FMT == int(WeightFormat::FP8))
                        sc = scale_dev(job.s, p.sk, (n / 128) * p.scale_cols + kg / 128);
                    if constexpr (FMT == int(WeightFormat::FP4))
                        sc = scale_dev(job.s, p.sk, n * p.scale_cols + kg / 32);
#pragma unroll
                    for (int mi = 0; mi < MT; ++mi) acc[rr][mi] += part[rr][mi] * sc;
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
            for (int mi = 0; mi < MT; ++mi)
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) acc[rr][mi] += __shfl_xor_sync(0xffffffffu, acc[rr][mi], off);
        if (lane == 0) {
#pragma unroll
            for (int rr = 0; rr < RPW; ++rr) {
                if (!live[rr]) continue;
                const int64_t r = r0 + rr;
#pragma unroll
                for (int mi = 0; mi < MT; ++mi) {
                    if (mi >= p.m) break;
                    if (p.splits == 1)
                        job.y[mi * p.ldy + r] = acc[rr][mi];
                    else
                        p.partial[((job_i * p.splits + s) * p.m + mi) * p.n_rows + r] = acc[rr][mi];
                }
            }
        }
        if (p.splits == 1) continue;
        // Split k: the last block of this row block to finish sums the partials in split order
        // (deterministic) and resets the counter for the next launch.
        __shared__ bool last;
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned* ctr = p.counters + job_i * nrb + rb;
            last = atomicAdd(ctr, 1u) == unsigned(p.splits - 1);
            if (last) *ctr = 0;
        }
        __syncthreads();
        if (!last) continue;
        __threadfence();
        for (int e = threadIdx.x; e < RPB * MT; e += blockDim.x) {
            const int64_t r = rb * RPB + e / MT;
            const int mi = e % MT;
            if (r >= p.n_rows || mi >= p.m) continue;
            float sum = 0.f;
            for (int sp = 0; sp < p.splits; ++sp)
                sum += __ldcg(&p.partial[((job_i * p.splits + sp) * p.m + mi) * p.n_rows + r]);
            job.y[mi * p.ldy + r] = sum;
        }
    }
}

// Zeroed arrival counters for split-k GEMVs (grown on demand; the kernels leave them at zero). One
// set per scratch lane: GEMVs on the main and the side streams may run at the same time.
unsigned* gemv_counters(size_t n) {
    static unsigned* ctrs[kLanes] = {};
    static size_t haves[kLanes] = {};
    unsigned*& ctr = ctrs[scratch_lane()];
    size_t& have = haves[scratch_lane()];
    if (n > have) {
        if (ctr) {
            DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
            DSINFER_CUDA_CHECK(cudaFree(ctr));
        }
        have = std::max(n, size_t(1) << 16);
        scratch_moved();  // graphs captured with the old counters are stale
        DSINFER_CUDA_CHECK(cudaMalloc(&ctr, have * sizeof(unsigned)));
        DSINFER_CUDA_CHECK(cudaMemsetAsync(ctr, 0, have * sizeof(unsigned), cur_stream()));
    }
    return ctr;
}

// DSINFER_CUDA_GEMV_PREFETCH=1 turns the L2 prefetch of weight slices on (off by default: measured
// in docs/benchmarks.md). Read once.
bool gemv_prefetch() {
    static const bool on = [] {
        const char* v = std::getenv("DSINFER_CUDA_GEMV_PREFETCH");
        return v && v[0] && v[0] != '0';
    }();
    return on;
}

int gemv_epl(WeightFormat f) {
    switch (f) {
        case WeightFormat::FP8: return 16;
        case WeightFormat::FP4: return 32;
        case WeightFormat::BF16: return 8;
        case WeightFormat::F32: return 4;
    }
    return 0;
}

// Whether the GEMV kernels can stream this weight (16-byte aligned rows, whole lane chunks).
bool gemv_ok(const Weight& w, const float* x, int64_t ldx) {
    const int epl = gemv_epl(w.fmt);
    const int64_t row_bytes = w.fmt == WeightFormat::FP4 ? w.k / 2 : w.fmt == WeightFormat::FP8 ? w.k : w.fmt == WeightFormat::BF16 ? w.k * 2 : w.k * 4;
    return w.k % epl == 0 && row_bytes % 16 == 0 && (reinterpret_cast<uintptr_t>(w.data) % 16) == 0;
}

// Weight rows per warp of single-row plain linears on the multi-row kernel: DSINFER_CUDA_GEMV_RPW
// (2, 4 or 8; default 4: 8 loads in flight a lane; H100, bench_cuda: FP4 [2048 x 4096] 8.4 µs
// against 11.8 with 2, wo_b 22.3 against 23.2). Results are bitwise the same for every value. Read once.
int single_rpw() {
    static const int r = [] {
        const char* v = std::getenv("DSINFER_CUDA_GEMV_RPW");
        const int x = v ? std::atoi(v) : 4;
        return (x == 2 || x == 8) ? x : 4;
    }();
    return r;
}

// jobs: jobs of the launch (sizes the split-k scratch); split_jobs: the job count the k split is chosen
// for (default: jobs). linear_groups/linear_pair pass 1 so each job is split exactly as linear()
// splits it alone, which keeps its numbers bitwise those of linear().
GemvParams gemv_params(const Weight& w, int64_t m, int64_t n_rows, int64_t n0, int64_t ldx, int64_t ldy,
                       int64_t jobs, int64_t split_jobs = -1) {
    GemvParams p{};
    p.m = m;
    p.k = w.k;
    p.n_rows = n_rows;
    p.n0 = n0;
    p.ldx = ldx;
    p.ldy = ldy;
    p.scale_cols = w.scale_cols;
    p.sk = w.scale_kind;
    // Split k when there are too few row blocks to fill the GPU (about two blocks per SM), and
    // whenever the staged x chunk would not fit in shared memory.
    const int64_t mt = m <= 1 ? 1 : m <= 2 ? 2 : 4;
    const int64_t kb128 = ceil_div(w.k, 128);
    const int64_t base_blocks = ceil_div(n_rows, kRowsPerBlock) * (split_jobs >= 0 ? split_jobs : jobs);
    int64_t splits = 1;
    while (splits < 16 && splits * 2 <= kb128 &&
           (base_blocks * splits < 2 * sm_count() || mt * ceil_div(kb128, splits) * 128 * 4 > kGemvSmem))
        splits *= 2;
    p.kchunk = ceil_div(kb128, splits) * 128;
    p.splits = int(ceil_div(w.k, p.kchunk));
    p.partial = nullptr;
    p.counters = nullptr;
    p.prefetch = gemv_prefetch();
    if (p.splits > 1) {
        p.partial = static_cast<float*>(scratch(kScratchGemvPart, size_t(jobs * p.splits * m * n_rows) * 4));
        p.counters = gemv_counters(size_t(jobs * ceil_div(n_rows, kRowsPerBlock)));
    }
    return p;
}

template <int FMT, int MT, int RPW>
void launch_gemv_rpw(const GemvParams& p, const GemvJobList& inl, const GemvJob* jobs, int64_t njobs) {
    const size_t smem = size_t(MT * p.kchunk) * 4;
    static bool attr = false;
    if (!attr) {
        DSINFER_CUDA_CHECK(cudaFuncSetAttribute(gemv_kernel<FMT, MT, RPW>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(kGemvSmem)));
        attr = true;
    }
    if (smem > size_t(kGemvSmem)) fail("gemv: x chunk does not fit in shared memory");
    if (!jobs && njobs > kMaxInlineJobs) fail("gemv: more inline jobs than kMaxInlineJobs");
    // Persistent: two resident blocks per SM in all (the kernels are built for two), each looping over
    // row blocks, so x is staged once per block. Otherwise one block per row block.
    const int64_t nrb = ceil_div(p.n_rows, int64_t(kGemvWarps) * RPW);
    const int64_t gx =
        p.persistent ? std::min(nrb, std::max<int64_t>(1, ceil_div(2 * int64_t(sm_count()), p.splits * njobs))) : nrb;
    const dim3 grid{unsigned(gx), unsigned(p.splits), unsigned(njobs)};
    launch_pdl(gemv_kernel<FMT, MT, RPW>, grid, kGemvThreads, smem, p, inl, jobs);
    DSINFER_CUDA_LAUNCH();
}

// rpw: weight rows per warp. Only the grouped FP8/FP4 single-row launches (the MoE decode path) are
// built with 4 or 8; everything else runs kRowsPerWarp (2).
template <int FMT, int MT>
void launch_gemv_mt(const GemvParams& p, const GemvJobList& inl, const GemvJob* jobs, int64_t njobs, int rpw) {
    if constexpr (MT == 1 && (FMT == int(WeightFormat::FP8) || FMT == int(WeightFormat::FP4))) {
        if (rpw == 8) return launch_gemv_rpw<FMT, 1, 8>(p, inl, jobs, njobs);
        if (rpw == 4) return launch_gemv_rpw<FMT, 1, 4>(p, inl, jobs, njobs);
    }
    launch_gemv_rpw<FMT, MT, kRowsPerWarp>(p, inl, jobs, njobs);
}

template <int FMT>
void launch_gemv_fmt(const GemvParams& p, const GemvJobList& inl, const GemvJob* jobs, int64_t njobs, int rpw) {
    if (p.m <= 1) launch_gemv_mt<FMT, 1>(p, inl, jobs, njobs, rpw);
    else if (p.m <= 2) launch_gemv_mt<FMT, 2>(p, inl, jobs, njobs, rpw);
    else launch_gemv_mt<FMT, 4>(p, inl, jobs, njobs, rpw);
}

void launch_gemv(WeightFormat f, const GemvParams& p, const GemvJobList& inl, const GemvJob* jobs, int64_t njobs,
                 int rpw = kRowsPerWarp) {
    switch (f) {
        case WeightFormat::FP8: launch_gemv_fmt<int(WeightFormat::FP8)>(p, inl, jobs, njobs, rpw); break;
        case WeightFormat::FP4: launch_gemv_fmt<int(WeightFormat::FP4)>(p, inl, jobs, njobs, rpw); break;
        case WeightFormat::BF16: launch_gemv_fmt<int(WeightFormat::BF16)>(p, inl, jobs, njobs, rpw); break;
        case WeightFormat::F32: launch_gemv_fmt<int(WeightFormat::F32)>(p, inl, jobs, njobs, rpw); break;
    }
}

GemvJobList one_job(const GemvJob& j) {
    GemvJobList l{};
    l.j[0] = j;
    return l;
}

// ---------------------------------------------------------------------------------------------
// Single-row GEMV with x held in registers (the m = 1 decode path: "slice GEMV").
// ---------------------------------------------------------------------------------------------
// k is cut into slices of kSliceK = 1024 elements. One warp holds one slice of x in registers (32
// floats a lane) and streams weight rows against it, four 16-byte loads a lane per round (R rows).
// The S = ceil(k / 1024) warps of a group work on the same rows; their per-row partial sums meet in
// shared memory and are added in slice order. Row chunks go to the groups of the whole grid in
// contiguous runs (at most one round more for some groups: no wave tail, no split-k counters);
// the chunks of grouped launches run job after job, x reloaded only when a job's x differs. The
// next round's weights are loaded before the current round is reduced, and the first round's
// before waiting for the previous kernel (programmatic dependent launch, inline jobs only: a
// device job array is written by the kernel before).
// A row's sum: per lane load by load, elements in order, times the load's scale; lanes by xor
// butterfly; slices in order. It depends only on k, not on the grid, the job count or the round.

constexpr int kSliceK = 1024;
constexpr int kSliceMaxK = 16 * kSliceK;

template <int FMT>
struct SliceFmt {
    static constexpr int EPL = Epl<FMT>::v;         // elements per 16-byte load
    static constexpr int KL = 32 / EPL;             // loads a lane per row (32 elements a lane)
    static constexpr int R = KL >= 4 ? 1 : 4 / KL;  // rows a round: FP8 2, FP4 4, BF16 1, F32 1
};

struct SliceParams {
    int64_t k, n_rows, n0, scale_cols;
    int64_t chunks_per_job, chunks;  // ceil(n_rows / R); njobs · that
    ScaleKind sk;
    int slices;  // ceil(k / kSliceK)
};

// The chunks of group gi (of G): start, start + stride, ... (count of them). With at least as many
// groups as jobs, each job gets G / njobs groups, which take its chunks in turn: at any time the
// grid reads one contiguous stretch of each job's rows, and a group never changes x. Otherwise
// (many jobs: batched MoE pairs) each group takes a contiguous run of the job-major chunk list.
__device__ __forceinline__ void slice_span(const SliceParams& p, int64_t G, int64_t gi, int64_t& start, int64_t& stride,
                                           int64_t& count) {
    const int64_t njobs = p.chunks / p.chunks_per_job;
    if (njobs <= G) {
        const int64_t gj = G / njobs, job = gi / gj, w = gi % gj;
        start = job * p.chunks_per_job + w;
        stride = gj;
        count = (job < njobs && w < p.chunks_per_job) ? (p.chunks_per_job - w + gj - 1) / gj : 0;
    } else {
        const int64_t per = p.chunks / G, rem = p.chunks % G;
        start = gi * per + (gi < rem ? gi : rem);
        stride = 1;
        count = per + (gi < rem ? 1 : 0);
    }
}

template <int FMT, int WARPS>
__global__ void __launch_bounds__(WARPS * 32, 16 / WARPS)
    slice_gemv_kernel(SliceParams p, GemvJobList inl, const GemvJob* jobs) {
    using F = SliceFmt<FMT>;
    constexpr int EPL = F::EPL, KL = F::KL, R = F::R;
    constexpr int NUM = Epl<FMT>::num, DEN = Epl<FMT>::den;
    constexpr int NJ = EPL >= 8 ? 8 : EPL;
    constexpr int GROUPS = EPL >= 8 ? EPL / 8 : 1;
    __shared__ float red[2][WARPS][R];
    __shared__ float* dst[2][WARPS][R];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int S = p.slices, GB = WARPS / S;
    const int g = warp / S, s = warp % S;
    const int64_t G = int64_t(gridDim.x) * GB;
    int64_t start = 0, stride = 1, count = 0, rounds = 0;
    for (int g2 = 0; g2 < GB; ++g2) {  // every group's run of chunks; the block runs the longest
        int64_t st, sd, ct;
        slice_span(p, G, int64_t(blockIdx.x) * GB + g2, st, sd, ct);
        if (g2 == g) start = st, stride = sd, count = ct;
        rounds = ct > rounds ? ct : rounds;
    }
    const int64_t row_bytes = p.k * NUM / DEN;

    // Loads the weights (and their scales) of chunk c for this warp's slice.
    auto load = [&](const GemvJob& job, int64_t c, uint4(&q)[R][KL], float(&sc)[R][KL]) {
        const int64_t r0 = (c % p.chunks_per_job) * R;
#pragma unroll
        for (int rr = 0; rr < R; ++rr) {
            const int64_t n = p.n0 + job.n0 + r0 + rr;
            const bool row_ok = r0 + rr < p.n_rows;
#pragma unroll
            for (int j = 0; j < KL; ++j) {
                const int64_t e0 = int64_t(s) * kSliceK + j * 32 * EPL + lane * EPL;
                if (row_ok && e0 < p.k) {
                    q[rr][j] = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(job.w) + n * row_bytes +
                                                                    e0 * NUM / DEN));
                    if constexpr (FMT == int(WeightFormat::FP8))
                        sc[rr][j] = scale_dev(job.s, p.sk, (n / 128) * p.scale_cols + e0 / 128);
                    else if constexpr (FMT == int(WeightFormat::FP4))
                        sc[rr][j] = scale_dev(job.s, p.sk, n * p.scale_cols + e0 / 32);
                    else
                        sc[rr][j] = 1.f;
                } else {
                    q[rr][j] = make_uint4(0u, 0u, 0u, 0u);
                    sc[rr][j] = 0.f;
                }
            }
        }
    };
    float xr[KL][EPL];
    auto load_x = [&](const float* x) {
        const bool vec = (reinterpret_cast<uintptr_t>(x) & 15) == 0;
#pragma unroll
        for (int j = 0; j < KL; ++j) {
            const int64_t e0 = int64_t(s) * kSliceK + j * 32 * EPL + lane * EPL;
            if (e0 < p.k) {
                if (vec) {
#pragma unroll
                    for (int e = 0; e < EPL; e += 4) {
                        const float4 v = __ldcg(reinterpret_cast<const float4*>(x + e0 + e));
                        xr[j][e] = v.x, xr[j][e + 1] = v.y, xr[j][e + 2] = v.z, xr[j][e + 3] = v.w;
                    }
                } else {
#pragma unroll
                    for (int e = 0; e < EPL; ++e) xr[j][e] = __ldcg(x + e0 + e);
                }
            } else {
#pragma unroll
                for (int e = 0; e < EPL; ++e) xr[j][e] = 0.f;
            }
        }
    };
    auto job_at = [&](int64_t ji) { return jobs ? jobs[ji] : inl.j[ji]; };

    uint4 q[R][KL];
    float sc[R][KL];
    GemvJob job{};
    int64_t job_i = -1;
    if (count > 0 && !jobs) {  // weights only: safe before the previous kernel has finished
        job_i = start / p.chunks_per_job;
        job = inl.j[job_i];
        load(job, start, q, sc);
    }
    pdl_wait();
    pdl_release();
    const float* xcur = nullptr;
    if (count > 0) {
        if (jobs) {
            job_i = start / p.chunks_per_job;
            job = jobs[job_i];
            load(job, start, q, sc);
        }
        xcur = job.x;
        load_x(xcur);
    }
    for (int64_t t = 0; t < rounds; ++t) {
        const bool has = t < count, has_next = t + 1 < count;
        uint4 qn[R][KL];
        float scn[R][KL];
        GemvJob jn = job;
        int64_t jn_i = job_i;
        if (has_next) {
            const int64_t c = start + (t + 1) * stride;
            jn_i = c / p.chunks_per_job;
            if (jn_i != job_i) jn = job_at(jn_i);
            load(jn, c, qn, scn);
        }
        float part[R];
#pragma unroll
        for (int rr = 0; rr < R; ++rr) {
            part[rr] = 0.f;
            if (!has) continue;  // warp-uniform
#pragma unroll
            for (int j = 0; j < KL; ++j) {
                float a = 0.f;
#pragma unroll
                for (int gq = 0; gq < GROUPS; ++gq) {
                    float w8[8];
                    decode8<FMT>(q[rr][j], gq, w8);
#pragma unroll
                    for (int e = 0; e < NJ; ++e) a += xr[j][gq * 8 + dec_pos<FMT>(e)] * w8[e];
                }
                part[rr] += a * sc[rr][j];
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) part[rr] += __shfl_xor_sync(0xffffffffu, part[rr], off);
        }
        const int buf = int(t & 1);
        if (lane == 0 && g < GB) {
            const int64_t r0 = has ? ((start + t * stride) % p.chunks_per_job) * R : 0;
#pragma unroll
            for (int rr = 0; rr < R; ++rr) {
                red[buf][warp][rr] = part[rr];
                if (s == 0) dst[buf][g][rr] = (has && r0 + rr < p.n_rows) ? job.y + r0 + rr : nullptr;
            }
        }
        __syncthreads();
        if (int(threadIdx.x) < GB * R) {
            const int g2 = threadIdx.x / R, rr = threadIdx.x % R;
            float* d = dst[buf][g2][rr];
            if (d) {
                float sum = red[buf][g2 * S][rr];
                for (int s2 = 1; s2 < S; ++s2) sum += red[buf][g2 * S + s2][rr];
                *d = sum;
            }
        }
        if (has_next) {
            if (jn_i != job_i) {
                job = jn;
                job_i = jn_i;
                if (job.x != xcur) {
                    xcur = job.x;
                    load_x(xcur);
                }
            }
#pragma unroll
            for (int rr = 0; rr < R; ++rr)
#pragma unroll
                for (int j = 0; j < KL; ++j) q[rr][j] = qn[rr][j], sc[rr][j] = scn[rr][j];
        }
    }
}

template <int FMT, int WARPS>
void launch_slice_w(const SliceParams& p, const GemvJobList& inl, const GemvJob* jobs) {
    static const int per_sm = [] {
        int b = 0;
        DSINFER_CUDA_CHECK(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, slice_gemv_kernel<FMT, WARPS>, WARPS * 32, 0));
        return b > 0 ? b : 1;
    }();
    const int64_t gb = WARPS / p.slices;
    const int64_t grid = std::min<int64_t>(ceil_div(p.chunks, gb), int64_t(sm_count()) * per_sm);
    launch_pdl(slice_gemv_kernel<FMT, WARPS>, dim3(unsigned(grid)), dim3(WARPS * 32), 0, p, inl, jobs);
}

template <int FMT>
void launch_slice_fmt(const SliceParams& p, const GemvJobList& inl, const GemvJob* jobs) {
    if (p.slices <= 8)
        launch_slice_w<FMT, 8>(p, inl, jobs);
    else
        launch_slice_w<FMT, 16>(p, inl, jobs);
}

// Which single-row launches take the slice GEMV. DSINFER_CUDA_SLICE_GEMV: 0 none, all every launch
// it can run; unset, the cases where it measured faster than the multi-row kernel (H100,
// docs/benchmarks.md): FP8 and BF16 weights with 3072 < k ≤ 7168 (four to seven slices), x passed
// inline, and few rounds a group. Read once.
std::atomic<int> g_slice_mode{-1};
int slice_mode() {
    static const int env = [] {
        const char* v = std::getenv("DSINFER_CUDA_SLICE_GEMV");
        if (v && v[0] == '0') return 0;
        if (v && std::strcmp(v, "all") == 0) return 2;
        return 1;
    }();
    const int m = g_slice_mode.load();
    return m >= 0 ? m : env;
}

int slice_rows(WeightFormat f) {
    switch (f) {
        case WeightFormat::FP8:
            return SliceFmt<int(WeightFormat::FP8)>::R;
        case WeightFormat::FP4:
            return SliceFmt<int(WeightFormat::FP4)>::R;
        case WeightFormat::BF16:
            return SliceFmt<int(WeightFormat::BF16)>::R;
        case WeightFormat::F32:
            return SliceFmt<int(WeightFormat::F32)>::R;
    }
    return 1;
}

bool slice_use(const Weight& w, int64_t rows_total, bool device_jobs) {
    const int mode = slice_mode();
    if (mode == 0 || w.fmt == WeightFormat::F32 || w.k > kSliceMaxK || !gemv_ok(w, nullptr, w.k)) return false;
    if (mode == 2) return true;
    const int64_t slices = ceil_div(w.k, kSliceK);
    if (device_jobs || w.fmt == WeightFormat::FP4 || slices < 4 || slices > 7) return false;
    const int64_t warps = slices <= 8 ? 8 : 16, groups = int64_t(sm_count()) * (16 / warps) * (warps / slices);
    return ceil_div(ceil_div(rows_total, slice_rows(w.fmt)), groups) <= 16;
}

// y = x·W[n0 + job.n0 + r]ᵀ for r < n_rows, one row of x per job.
void launch_slice(const Weight& w, int64_t n_rows, int64_t n0, const GemvJobList& inl, const GemvJob* jobs,
                  int64_t njobs) {
    if (!jobs && njobs > kMaxInlineJobs) fail("slice gemv: more inline jobs than kMaxInlineJobs");
    SliceParams p{};
    p.k = w.k;
    p.n_rows = n_rows;
    p.n0 = n0;
    p.scale_cols = w.scale_cols;
    p.sk = w.scale_kind;
    p.slices = int(ceil_div(w.k, kSliceK));
    p.chunks_per_job = ceil_div(n_rows, slice_rows(w.fmt));
    p.chunks = p.chunks_per_job * njobs;
    if (p.chunks <= 0) return;
    switch (w.fmt) {
        case WeightFormat::FP8:
            launch_slice_fmt<int(WeightFormat::FP8)>(p, inl, jobs);
            break;
        case WeightFormat::FP4:
            launch_slice_fmt<int(WeightFormat::FP4)>(p, inl, jobs);
            break;
        case WeightFormat::BF16:
            launch_slice_fmt<int(WeightFormat::BF16)>(p, inl, jobs);
            break;
        case WeightFormat::F32:
            launch_slice_fmt<int(WeightFormat::F32)>(p, inl, jobs);
            break;
    }
}

// ---------------------------------------------------------------------------------------------
// Tiled float32 GEMM with weights decoded into shared memory (any format, any shape).
// ---------------------------------------------------------------------------------------------

constexpr int kTileM = 64, kTileN = 64, kTileK = 32;

// only_if: when given, the kernel does nothing unless *only_if != 0 (exact fallback of the
// tensor-core path, decided on the device). Blocks walk the tiles (n-tile fastest) with a stride of
// the grid, which launch_tiled caps: a fallback that finds nothing to do then costs a few waves of
// blocks instead of one block per tile (65536 for an 8192-token wq_b).
__global__ void __launch_bounds__(256) tiled_kernel(const float* x, int64_t m, WeightDev w, int64_t n0, int64_t nn,
                                                    float* y, int64_t ldy, const int* only_if) {
    pdl_wait();
    pdl_release();
    if (only_if && *only_if == 0) return;
    __shared__ float xs[kTileK][kTileM];
    __shared__ float ws[kTileK][kTileN];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t ntn = (nn + kTileN - 1) / kTileN, ntiles = ntn * ((m + kTileM - 1) / kTileM);
    for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
        const int64_t mb = (t / ntn) * kTileM, nb = (t % ntn) * kTileN;
        float acc[4][4] = {};
        for (int64_t k0 = 0; k0 < w.k; k0 += kTileK) {
            for (int i = threadIdx.x; i < kTileM * kTileK; i += 256) {
                const int row = i / kTileK, kk = i % kTileK;
                const int64_t gm = mb + row, gk = k0 + kk;
                xs[kk][row] = (gm < m && gk < w.k) ? x[gm * w.k + gk] : 0.f;
                const int64_t gn = nb + row;
                ws[kk][row] = (gn < nn && gk < w.k) ? weight_elem(w, n0 + gn, gk) : 0.f;
            }
            __syncthreads();
#pragma unroll 8
            for (int kk = 0; kk < kTileK; ++kk) {
                const float4 a = *reinterpret_cast<const float4*>(&xs[kk][ty * 4]);
                const float4 b = *reinterpret_cast<const float4*>(&ws[kk][tx * 4]);
                const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int64_t gm = mb + ty * 4 + i;
            if (gm >= m) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int64_t gn = nb + tx * 4 + j;
                if (gn < nn) y[gm * ldy + gn] = acc[i][j];
            }
        }
    }
}

WeightDev to_dev(const Weight& w) { return WeightDev{w.fmt, w.data, w.k, w.scale, w.scale_kind, w.scale_cols}; }

void launch_tiled(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy,
                  const int* only_if = nullptr) {
    const int64_t nn = n1 - n0;
    const int64_t tiles = ceil_div(nn, kTileN) * ceil_div(m, kTileM);
    const unsigned grid = unsigned(std::min<int64_t>(tiles, int64_t(sm_count()) * 8));  // 8: 256 threads, 16 KB
    launch_pdl(tiled_kernel, dim3(grid), 256, 0, x, m, to_dev(w), n0, nn, y, ldy, only_if);
    DSINFER_CUDA_LAUNCH();
}

// ---------------------------------------------------------------------------------------------
// FP8 tensor-core path (cuBLASLt block scaling)
// ---------------------------------------------------------------------------------------------

// x [m, k] f32 → q [mpad, k] e4m3 and s [k/128, mpad] f32 (scales of one k block contiguous over
// rows, the layout cuBLASLt's VEC128 mode wants for a non-transposed B). One warp per (row, block).
// Sets *lossy when some x is not exactly q·s (x was not act_quant'ed with pow2 scales).
__global__ void quant_fp8_kernel(const float* x, int64_t m, int64_t mpad, int64_t k, uint8_t* q, float* s,
                                 int* lossy) {
    pdl_wait();
    pdl_release();
    const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    const int64_t nkb = k / 128;
    if (warp_id >= mpad * nkb) return;
    const int64_t row = warp_id / nkb, kb = warp_id % nkb;
    uint32_t packed = 0;
    float sc = 1.f;
    if (row < m) {
        const float4 v = *reinterpret_cast<const float4*>(x + row * k + kb * 128 + lane * 4);
        float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        sc = pow2ceil_dev(fmaxf(amax, 1e-4f) / 448.f);
        const float in[4] = {v.x, v.y, v.z, v.w};
        bool exact = true;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const __nv_fp8_storage_t b = __nv_cvt_float_to_fp8(in[j] / sc, __NV_SATFINITE, __NV_E4M3);
            packed |= uint32_t(b) << (8 * j);
            exact = exact && (e4m3_dev(b) * sc == in[j]);
        }
        if (!__all_sync(0xffffffffu, exact) && lane == 0) atomicOr(lossy, 1);
    }
    *reinterpret_cast<uint32_t*>(q + row * k + kb * 128 + lane * 4) = packed;
    if (lane == 0) s[kb * mpad + row] = sc;
}

// Weight scales → float32 [ceil(n/128), l4] (row stride padded to a multiple of 4 blocks).
__global__ void scale_to_f32_kernel(const void* src, ScaleKind sk, int64_t rows, int64_t cols, int64_t src_cols,
                                    int64_t l4, float* dst) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * l4) return;
    const int64_t r = i / l4, c = i % l4;
    dst[i] = c < cols ? scale_dev(src, sk, r * src_cols + c) : 1.f;
}

// FP4 rows [n0, n0 + nn) → e4m3 [nn, k] plus one F32 scale per 128x128 tile [ceil(nn/128), l4]: per tile
// S = max(per-32 scales)/2^6, element = e4m3(e2m1 · s/S) (exact while s/S ≥ 2^-8; §3.5).
__global__ void fp4_to_fp8_kernel(const uint8_t* w, const void* ws, ScaleKind sk, int64_t scale_cols, int64_t n0,
                                  int64_t nn, int64_t k, int64_t l4, uint8_t* q, float* qs) {
    pdl_wait();
    pdl_release();
    const int64_t tile_r = blockIdx.x, kb = blockIdx.y;
    const int t = threadIdx.x;  // 128 threads: one row of the tile each
    const int64_t r = tile_r * 128 + t;
    const bool live = r < nn;
    float s4[4] = {0.f, 0.f, 0.f, 0.f};
    float smax = 0.f;
    if (live) {
        for (int c = 0; c < 4; ++c) {
            s4[c] = scale_dev(ws, sk, (n0 + r) * scale_cols + kb * 4 + c);
            smax = fmaxf(smax, s4[c]);
        }
    }
    __shared__ float red[4];
    for (int off = 16; off > 0; off >>= 1) smax = fmaxf(smax, __shfl_xor_sync(0xffffffffu, smax, off));
    if ((t & 31) == 0) red[t >> 5] = smax;
    __syncthreads();
    const float tmax = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    const float S = tmax > 0.f ? tmax * (1.f / 64.f) : 1.f;
    if (t == 0) qs[tile_r * l4 + kb] = S;
    if (!live) return;
    const uint8_t* src = w + (n0 + r) * (k / 2) + kb * 64;
    uint8_t* dst = q + r * k + kb * 128;
    for (int c = 0; c < 4; ++c) {
        const float ratio = s4[c] / S;
        for (int j = 0; j < 16; j += 4) {
            const uint32_t word = *reinterpret_cast<const uint32_t*>(src + c * 16 + j);
            uint32_t out0 = 0, out1 = 0;
            for (int e = 0; e < 8; ++e) {
                const float v = e2m1_dev((word >> (4 * e)) & 0xf) * ratio;
                const uint32_t b = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
                if (e < 4) out0 |= b << (8 * e);
                else out1 |= b << (8 * (e - 4));
            }
            *reinterpret_cast<uint32_t*>(dst + c * 32 + j * 2) = out0;
            *reinterpret_cast<uint32_t*>(dst + c * 32 + j * 2 + 4) = out1;
        }
    }
}

struct Lt {
    cublasLtHandle_t handle = nullptr;
    std::mutex mu;
    // Converted F32 weight scales, keyed by (scale pointer, n, k).
    std::map<std::tuple<const void*, int64_t, int64_t>, float*> scales;
    // Best heuristic algorithm per LtKey; ok = false when cuBLASLt has none.
    struct Algo {
        bool ok = false;
        cublasLtMatmulAlgo_t algo{};
    };
    std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t>, Algo> algos;
};
Lt& lt() {
    static Lt l;
    if (!l.handle && cublasLtCreate(&l.handle) != CUBLAS_STATUS_SUCCESS) fail("cublasLtCreate failed");
    return l;
}

constexpr size_t kLtWorkspace = 32u << 20;

}  // namespace

#define LT_CHECK(x)                                                                                  \
    do {                                                                                             \
        cublasStatus_t st_ = (x);                                                                    \
        if (st_ != CUBLAS_STATUS_SUCCESS) fail(std::string("cuBLASLt: ") + #x + " -> " + std::to_string(int(st_))); \
    } while (0)

LtDescs::LtDescs(cudaDataType_t ab, int64_t n, int64_t m, int64_t k, int64_t ld) {
    LT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
    LT_CHECK(cublasLtMatrixLayoutCreate(&a, ab, uint64_t(k), uint64_t(n), k));
    LT_CHECK(cublasLtMatrixLayoutCreate(&b, ab, uint64_t(k), uint64_t(m), k));
    LT_CHECK(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, uint64_t(n), uint64_t(m), ld));
}

LtDescs::~LtDescs() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
}

bool lt_matmul_cached(const LtKey& key, const LtDescs& ds, const void* pa, const void* pb, void* pd) {
    cublasLtMatmulDesc_t op = ds.op;
    cublasLtMatrixLayout_t a = ds.a, b = ds.b, d = ds.d;
    Lt& l = lt();
    Lt::Algo* algo;
    {
        std::lock_guard<std::mutex> lock(l.mu);
        const auto k = std::make_tuple(key.kind, key.m, key.n, key.k, key.ld);
        auto it = l.algos.find(k);
        if (it == l.algos.end()) {
            Lt::Algo found;
            cublasLtMatmulPreference_t pref = nullptr;
            if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) fail("cublasLtMatmulPreferenceCreate");
            const size_t ws = kLtWorkspace;
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
            cublasLtMatmulHeuristicResult_t res[1];
            int count = 0;
            const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(l.handle, op, a, b, d, d, pref, 1, res, &count);
            cublasLtMatmulPreferenceDestroy(pref);
            if (st == CUBLAS_STATUS_SUCCESS && count > 0) {
                found.ok = true;
                found.algo = res[0].algo;
            }
            it = l.algos.emplace(k, found).first;
        }
        algo = &it->second;
    }
    if (!algo->ok) return false;
    const float alpha = 1.f, beta = 0.f;
    void* work = scratch(kScratchLtWork, kLtWorkspace);
    const cublasStatus_t st =
        cublasLtMatmul(l.handle, op, &alpha, pa, a, pb, b, &beta, pd, d, pd, d, &algo->algo, work, kLtWorkspace,
                       cur_stream());
    if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt: cublasLtMatmul -> " + std::to_string(int(st)));
    return true;
}

namespace {


// D[nn, mpad] (col-major, ld ldd) = W[nn, k]·Xᵀ with W e4m3 [nn, k] row-major (scales [.., l4]) and
// X e4m3 [mpad, k] (scales [k/128, mpad]). Returns false when cuBLASLt has no algorithm.
bool lt_matmul(const uint8_t* wq, const float* wscale, const uint8_t* xq, const float* xscale, int64_t nn,
               int64_t mpad, int64_t k, float* d, int64_t ldd) {
    LtDescs ds(CUDA_R_8F_E4M3, nn, mpad, k, ldd);
    const cublasLtMatmulMatrixScale_t amode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
    const cublasLtMatmulMatrixScale_t bmode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    LT_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &amode, sizeof(amode)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bmode, sizeof(bmode)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale, sizeof(wscale)));
    LT_CHECK(cublasLtMatmulDescSetAttribute(ds.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xscale, sizeof(xscale)));
    if (lt_matmul_cached(LtKey{0, mpad, nn, k, ldd}, ds, wq, xq, d)) return true;
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true))
        std::fprintf(stderr, "cuda: cuBLASLt has no block-scaled FP8 algorithm for m=%lld n=%lld k=%lld; using the "
                             "float32 tiled GEMM\n",
                     (long long)mpad, (long long)nn, (long long)k);
    return false;
}

const float* cached_scale_f32(const Weight& w) {
    Lt& l = lt();
    std::lock_guard<std::mutex> lock(l.mu);
    auto key = std::make_tuple(w.scale, w.n, w.k);
    auto it = l.scales.find(key);
    if (it != l.scales.end()) return it->second;
    const int64_t rows = ceil_div(w.n, 128), cols = ceil_div(w.k, 128), l4 = ceil_div(cols, 4) * 4;
    float* dst = static_cast<float*>(dmalloc(size_t(rows * l4) * 4));
    launch_pdl(scale_to_f32_kernel, unsigned(ceil_div(rows * l4, 256)), 256, 0, w.scale, w.scale_kind, rows, cols,
               w.scale_cols, l4, dst);
    DSINFER_CUDA_LAUNCH();
    l.scales.emplace(key, dst);
    return dst;
}

}  // namespace

void forget_weight_scales(const void* scale) {
    Lt& l = lt();
    std::lock_guard<std::mutex> lock(l.mu);
    for (auto it = l.scales.begin(); it != l.scales.end();) {
        if (std::get<0>(it->first) == scale) {
            cudaFree(it->second);
            it = l.scales.erase(it);
        } else {
            ++it;
        }
    }
}

namespace {

bool lt_linear(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t nn = n1 - n0, k = w.k;
    if (k % 128 || n0 % 128 || nn % 16 || (reinterpret_cast<uintptr_t>(x) % 16)) return false;
    const int64_t mpad = ceil_div(m, 16) * 16, nkb = k / 128, l4 = ceil_div(nkb, 4) * 4;
    uint8_t* xq = static_cast<uint8_t*>(scratch(kScratchActQ, size_t(mpad * k)));
    float* xs = static_cast<float*>(scratch(kScratchActS, size_t(nkb * mpad) * 4));
    const uint8_t* wq;
    const float* wsc;
    if (w.fmt == WeightFormat::FP8) {
        wq = static_cast<const uint8_t*>(w.data) + n0 * k;
        wsc = cached_scale_f32(w) + (n0 / 128) * l4;
    } else {
        uint8_t* q = static_cast<uint8_t*>(scratch(kScratchWeightQ, size_t(nn * k)));
        float* qs = static_cast<float*>(scratch(kScratchWeightS, size_t(ceil_div(nn, 128) * l4) * 4));
        dim3 grid(unsigned(ceil_div(nn, 128)), unsigned(nkb));
        launch_pdl(fp4_to_fp8_kernel, grid, 128, 0, static_cast<const uint8_t*>(w.data), w.scale, w.scale_kind,
                   w.scale_cols, n0, nn, k, l4, q, qs);
        DSINFER_CUDA_LAUNCH();
        wq = q;
        wsc = qs;
    }
    int* lossy = static_cast<int*>(scratch(kScratchFlag, 4));
    DSINFER_CUDA_CHECK(cudaMemsetAsync(lossy, 0, 4, cur_stream()));
    const int64_t warps = mpad * nkb;
    launch_pdl(quant_fp8_kernel, unsigned(ceil_div(warps * 32, 256)), 256, 0, x, m, mpad, k, xq, xs, lossy);
    DSINFER_CUDA_LAUNCH();
    const bool direct = (m == mpad) && ldy % 4 == 0 && (reinterpret_cast<uintptr_t>(y) % 16) == 0;
    if (direct) {
        if (!lt_matmul(wq, wsc, xq, xs, nn, mpad, k, y, ldy)) return false;
    } else {
        float* tmp = static_cast<float*>(scratch(kScratchLtOut, size_t(mpad * nn) * 4));
        if (!lt_matmul(wq, wsc, xq, xs, nn, mpad, k, tmp, nn)) return false;
        DSINFER_CUDA_CHECK(cudaMemcpy2DAsync(y, size_t(ldy) * 4, tmp, size_t(nn) * 4, size_t(nn) * 4, size_t(m),
                                             cudaMemcpyDeviceToDevice, cur_stream()));
    }
    // x off the FP8 grid (e.g. wo_a, which the model feeds unquantized): redo exactly in float32.
    launch_tiled(x, m, w, n0, n1, y, ldy, lossy);
    return true;
}

}  // namespace

bool lt_gemm_only(const Weight& w, int64_t m, float* y) {
    if (w.fmt != WeightFormat::FP8 || w.k % 128 || w.n % 16) return false;
    const int64_t mpad = ceil_div(m, 16) * 16, nkb = w.k / 128;
    const uint8_t* xq = static_cast<const uint8_t*>(scratch(kScratchActQ, size_t(mpad * w.k)));
    const float* xs = static_cast<const float*>(scratch(kScratchActS, size_t(nkb * mpad) * 4));
    return lt_matmul(static_cast<const uint8_t*>(w.data), cached_scale_f32(w), xq, xs, w.n, mpad, w.k, y, w.n);
}

namespace {

// ---------------------------------------------------------------------------------------------
// act_quant (in place FP8 quantize-dequantize per block)
// ---------------------------------------------------------------------------------------------

// Reads src (x itself, or a copy's source with the same row stride) and writes x.
__global__ void act_quant_kernel(const float* src, float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block,
                                 bool pow2) {
    pdl_wait();
    pdl_release();
    const int64_t nb = (cols + block - 1) / block;
    const int64_t warp_id = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp_id >= rows * nb) return;
    const int64_t r = warp_id / nb, b = warp_id % nb;
    const float* sp = src + r * ld + b * block;
    float* p = x + r * ld + b * block;
    const int64_t len = min(block, cols - b * block);
    float amax = 0.f;
    for (int64_t i = lane; i < len; i += 32) amax = fmaxf(amax, fabsf(sp[i]));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float s = e4m3_scale_dev(amax, pow2);
    for (int64_t i = lane; i < len; i += 32) p[i] = e4m3_qdq_dev(sp[i], s);
}

}  // namespace

namespace {
void launch_act_quant(const float* src, float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2) {
    if (rows <= 0 || cols <= 0) return;
    const int64_t warps = rows * ceil_div(cols, block);
    launch_pdl(act_quant_kernel, unsigned(ceil_div(warps * 32, 256)), 256, 0, src, x, rows, cols, ld, block, pow2);
    DSINFER_CUDA_LAUNCH();
}
}  // namespace

void act_quant(float* x, int64_t rows, int64_t cols, int64_t ld, int64_t block, bool pow2) {
    launch_act_quant(x, x, rows, cols, ld, block, pow2);
}

void act_quant_copy(const float* x, float* y, int64_t rows, int64_t cols, int64_t block, bool pow2) {
    launch_act_quant(x, y, rows, cols, cols, block, pow2);
}

namespace {
std::atomic<bool> g_fp8_tensor_cores{true};
std::atomic<int> g_grouped_rpw{0};  // rows per warp of the grouped (MoE decode) GEMVs; 0: by job count
}  // namespace

void set_fp8_tensor_cores(bool on) { g_fp8_tensor_cores = on; }
namespace {
std::atomic<int64_t> g_bf16_min_rows{0};
// From how many rows the BF16 path beats the weight-streaming GEMV (H100, bench_cuda --paths): its
// fixed cost is expanding the weight to bf16 (none for BF16 weights).
int64_t bf16_min_rows(WeightFormat f) {
    if (const int64_t m = g_bf16_min_rows) return m;
    return f == WeightFormat::BF16 ? 2 : f == WeightFormat::FP8 ? 6 : 6;
}
}  // namespace
void set_bf16_gemm_min_rows(int64_t m) { g_bf16_min_rows = m; }
int64_t bf16_gemm_min_rows() { return g_bf16_min_rows; }
bool fp8_tensor_cores() { return g_fp8_tensor_cores; }

void linear(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t nn = n1 - n0;
    if (nn <= 0 || m <= 0) return;
    const bool gemv = m <= kGemvMaxRows && gemv_ok(w, x, w.k);
    const bool bf16 = m >= bf16_min_rows(w.fmt) && bf16_gemm();
    if (bf16 && !(m > kGemvMaxRows && g_fp8_tensor_cores && (w.fmt == WeightFormat::FP8 || w.fmt == WeightFormat::FP4)) &&
        bf16_linear(x, m, w, n0, n1, y, ldy))
        return;
    if (gemv && m == 1 && slice_use(w, nn, false)) {
        launch_slice(w, nn, n0, one_job(GemvJob{x, w.data, w.scale, y}), nullptr, 1);
        return;
    }
    if (gemv) {
        for (int64_t r0 = 0; r0 < m; r0 += kGemvMaxMt) {
            const int64_t mc = std::min<int64_t>(kGemvMaxMt, m - r0);
            GemvParams p = gemv_params(w, mc, nn, n0, w.k, ldy, 1);
            GemvJob job{x + r0 * w.k, w.data, w.scale, y + r0 * ldy};
            launch_gemv(w.fmt, p, one_job(job), nullptr, 1, mc == 1 ? single_rpw() : kRowsPerWarp);
        }
        return;
    }
    if (g_fp8_tensor_cores && (w.fmt == WeightFormat::FP8 || w.fmt == WeightFormat::FP4) &&
        lt_linear(x, m, w, n0, n1, y, ldy))
        return;
    launch_tiled(x, m, w, n0, n1, y, ldy);
}

// Grouped GEMV for the MoE decode path (moe.cu): one job per (token, expert slot), all with weights
// of the same shape and format as `like`.
// The k split is chosen for kRowsPerBlock-row blocks whatever g_grouped_rpw is, so the rows per warp
// change only which block computes a row, never its sum.
void gemv_grouped(const Weight& like, int64_t n_rows, const GemvJob* jobs_dev, int64_t njobs, int64_t ldx,
                  int64_t ldy) {
    if (slice_use(like, n_rows * njobs, true)) return launch_slice(like, n_rows, 0, GemvJobList{}, jobs_dev, njobs);
    GemvParams p = gemv_params(like, 1, n_rows, 0, ldx, ldy, njobs);
    // A single token's experts (few jobs): persistent blocks of 32 rows (each block's x staged once,
    // even shares); many jobs: one block of 64 rows per row block (H100, bench_cuda: t = 1 77 µs
    // against 84, t = 4 247 against 272).
    const bool few = njobs <= 16;
    p.persistent = few;
    int rpw = g_grouped_rpw.load();
    if (rpw == 0) rpw = few ? 4 : 8;
    launch_gemv(like.fmt, p, GemvJobList{}, jobs_dev, njobs, rpw);
}
bool gemv_grouped_ok(const Weight& like) { return gemv_ok(like, nullptr, like.k); }

void set_slice_gemv(int mode) {
    if (mode < -1 || mode > 2) fail("set_slice_gemv: -1, 0, 1 or 2, got " + std::to_string(mode));
    g_slice_mode = mode;
}

void set_grouped_gemv_rows_per_warp(int rows) {
    if (rows != 0 && rows != 2 && rows != 4 && rows != 8)
        fail("set_grouped_gemv_rows_per_warp: 0, 2, 4 or 8, got " + std::to_string(rows));
    g_grouped_rpw = rows;
}

bool same_layout(const Weight& a, const Weight& b) {
    return a.fmt == b.fmt && a.n == b.n && a.k == b.k && a.scale_kind == b.scale_kind && a.scale_cols == b.scale_cols &&
           (a.scale == nullptr) == (b.scale == nullptr);
}

bool linear_groups(const float* x, int64_t m, int64_t ldx, const Weight& w, int64_t groups, int64_t rows, float* y,
                   int64_t ldy) {
    if (m <= 0 || groups <= 0 || rows <= 0) return true;
    if (m > kGemvMaxRows || groups > kMaxLinearGroups || groups * rows > w.n || !gemv_ok(w, x, w.k)) return false;
    if (bf16_gemm() && m >= bf16_min_rows(w.fmt)) return false;  // linear() would take the BF16 path
    if (m == 1 && ldy == groups * rows && mma_gemv_groups_split(x, w, groups, rows, y)) return true;
    if (m == 1 && slice_use(w, rows, false)) {                   // as linear() takes one row (per group)
        GemvJobList l{};
        for (int64_t g = 0; g < groups; ++g) l.j[g] = GemvJob{x + g * w.k, w.data, w.scale, y + g * rows, g * rows};
        launch_slice(w, rows, 0, l, nullptr, groups);
        return true;
    }
    for (int64_t r0 = 0; r0 < m; r0 += kGemvMaxMt) {  // row chunks as linear() takes them
        const int64_t mc = std::min<int64_t>(kGemvMaxMt, m - r0);
        const GemvParams p = gemv_params(w, mc, rows, 0, ldx, ldy, groups, 1);
        GemvJobList l{};
        for (int64_t g = 0; g < groups; ++g)
            l.j[g] = GemvJob{x + r0 * ldx + g * w.k, w.data, w.scale, y + r0 * ldy + g * rows, g * rows};
        launch_gemv(w.fmt, p, l, nullptr, groups);
    }
    return true;
}

bool linear_pair(const float* x, int64_t m, const Weight& wa, const Weight& wb, float* ya, float* yb, int64_t ldy) {
    if (m <= 0) return true;
    if (m > kGemvMaxRows || !same_layout(wa, wb) || !gemv_ok(wa, x, wa.k) || !gemv_ok(wb, x, wb.k)) return false;
    if (bf16_gemm() && m >= bf16_min_rows(wa.fmt)) return false;  // linear() would take the BF16 path
    if (m == 1 && slice_use(wa, wa.n, false)) {
        GemvJobList l{};
        l.j[0] = GemvJob{x, wa.data, wa.scale, ya};
        l.j[1] = GemvJob{x, wb.data, wb.scale, yb};
        launch_slice(wa, wa.n, 0, l, nullptr, 2);
        return true;
    }
    for (int64_t r0 = 0; r0 < m; r0 += kGemvMaxMt) {
        const int64_t mc = std::min<int64_t>(kGemvMaxMt, m - r0);
        const GemvParams p = gemv_params(wa, mc, wa.n, 0, wa.k, ldy, 2, 1);
        GemvJobList l{};
        l.j[0] = GemvJob{x + r0 * wa.k, wa.data, wa.scale, ya + r0 * ldy};
        l.j[1] = GemvJob{x + r0 * wb.k, wb.data, wb.scale, yb + r0 * ldy};
        launch_gemv(wa.fmt, p, l, nullptr, 2);
    }
    return true;
}

}  // namespace dsinfer::cuda
