// Tensor-core GEMV for one activation row of FP8-quantized values (decode, m = 1).
//
// The weight-streaming GEMV of linear.cu decodes every FP4/FP8 weight to float32 and multiplies on
// the CUDA cores: for FP4 experts that is ~4 instructions an element, and the kernel runs out of
// issue slots before HBM runs out of bytes. Here weights are decoded to f16 in registers (FP8 with
// one cvt per pair, FP4 with two shifts and two logic ops per pair) and multiplied with
// mma.sync m16n8k16 (f16 in, float32 accumulation): ~2 instructions an element.
//
// Exactness. The caller guarantees x holds act_quant'ed values: each 128-block of x is e4m3 times a
// power of two (§3.3, ue8m0 scales). The kernel re-derives one power of two per 128-block that puts
// the block's largest magnitude in [2^14, 2^15), so x / s is exactly an f16 (an e4m3 value times a
// power of two; the block's smallest nonzero element is ≥ 2^-18 of its largest). FP4 codes are
// decoded as e2m1 · 2^-14 (exact f16, subnormals included); FP8 codes as e4m3 (exact). Every product
// is exact; sums are float32 inside the tensor core and on the accumulators.
//
// Layout. A warp owns a tile of 16 weight rows; lane (g, c) = (lane / 4, lane % 4) holds rows g and
// g + 8 and loads 16 bytes of each per round: the four lanes of a quad read 64 contiguous bytes of a
// row (FP4: four 32-element scale blocks, one a lane; FP8: 64 elements of one 128x128 scale block).
// The k order inside an MMA is free (A and B use the same one), so a lane feeds its own bytes.
// Scales per (row, block) cannot be applied inside an MMA that mixes four lanes' blocks, so the
// B operand spreads the blocks over columns: B[k, n] = x[k] if k belongs to lane c = n's block,
// else 0. Column n of the accumulator is then row·x over block n alone; after a round each column
// is multiplied by its block's weight scale and x scale and added to a float32 total. Lanes whose
// B column holds no block (n ≠ c) read 16 zero bytes instead of x.
// A block of 8 warps holds 8 / ks tiles, each split over ks warps along k (partials added in warp
// order: deterministic). x is staged once per block in shared memory as f16, in the order the
// lanes read it (conflict-free 16-byte reads).
//
// Any float32 x (split mode: wo_a's input, the attention output). x / s is written as hi + lo, two
// f16 (hi = f16(x / s), lo = f16(x / s − hi), the difference exact in float32), and lanes (g, c) with
// g == c + 4 feed lane c's lo terms as column c + 4 of B, which the one-term mode leaves empty: one
// MMA still does a step, the lanes holding columns 4..7 scale and sum the lo parts, and one more
// shuffle adds them to the hi parts. hi + lo carries 22 significant bits of each element (relative
// error ≤ 2^-22 on elements within 2^-13 of their block's largest; smaller ones lose bits below
// 2^-38 of the largest to f16 subnormals), against float32's 24 and the 1e-5 bars.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_pipeline.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

namespace {

constexpr int kMmaWarps = 8;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int64_t kMmaMaxK = 16384;  // x staged as f16: 32 KB of shared memory
constexpr int kMmaMaxInline = 8;
// BULK: a stage's row of DEPTH rounds (DEPTH · 64 bytes) plus 64 bytes, so that rows g and g + 1 fall in
// different halves of the 32 banks; a stage is 16 such rows.
constexpr int bulk_row_stride(int depth) {
    return depth * 64 + 64;
}
constexpr int kMmaScalePad = 4;          // SMS: bytes between rows of staged scales beyond the row
constexpr int64_t kMmaMaxScaleSmem = 32768;  // SMS: staged scale bytes at most (else cfg 1)

struct MmaParams {
    int64_t k, n_rows, n0, scale_cols;
    ScaleKind sk;
    int ks;      // warps per tile (k split inside the block): 1, 2, 4 or 8
    int rounds;  // k / round_k
    int tiles;   // ceil(n_rows / 16)
    int cfg;     // kernel variant (mma_cfg)
    bool device_jobs;
    bool fast_stage;  // stage x with one-instruction warp maxima (SC 5; mma_fast_stage)
    bool scales4;  // the scales 4-byte aligned (checked on the launch's weight; every upload is its own
                   // device allocation, so a grouped launch's other experts' scales are too)
    const float* norm_w;  // NORM: the rmsnorm weight ([k]) applied to x before its quantization
    float norm_eps;
};
struct MmaJobs {
    GemvJob j[kMmaMaxInline];
};
// Routed-expert launches that build their own jobs (mma_moe_up / mma_moe_down): stage 0 none; 1 up (job
// p < 2·pairs: pair p mod pairs, w1 for p < pairs, else w3); 2 down (job p: pair p, x from gu).
struct MmaMoe {
    const ExpertPtrs* ex;
    const int32_t* ids;
    const float* x;  // up: [tokens, ld]; down: gu [pairs, 2 · inter]
    float* y;        // up: gu [pairs, 2 · inter]; down: [pairs, ld]
    const float* rw;
    int64_t pairs, k, ld, inter;
    float limit;
    int stage;
};

template <int FMT>
struct MmaFmt;
template <>
struct MmaFmt<int(WeightFormat::FP4)> {
    static constexpr int EPW = 8;           // elements per 32-bit word
    static constexpr int RK = 4 * 4 * EPW;  // k per round: 4 lanes × 16 bytes
};
template <>
struct MmaFmt<int(WeightFormat::FP8)> {
    static constexpr int EPW = 4;
    static constexpr int RK = 4 * 4 * EPW;
};
// FP4 weights decoded through e4m3 (fp4_word_to_f16x2_e4): the layout of FP4, another pair order.
constexpr int kFmtFp4E4 = 100;
template <>
struct MmaFmt<kFmtFp4E4> : MmaFmt<int(WeightFormat::FP4)> {};

// Position of element j of a word's EPW elements in the staged x (the order the decoded pairs take:
// FP4 pairs are codes (0,4), (1,5), (2,6), (3,7); through e4m3 (0,2), (4,6), (1,3), (5,7); FP8 pairs
// (0,1), (2,3)).
template <int FMT>
__device__ __forceinline__ int mma_xpos(int j) {
    if constexpr (FMT == int(WeightFormat::FP4)) return (j & 3) * 2 + (j >> 2);
    if constexpr (FMT == kFmtFp4E4) return (j & 1) ? 4 + (j >> 1) : (j >> 1);
    return j;
}

// Slot of x's element el in the staged xh: round r = el / RK, where lane c's word w sits at slot w·4 + c
// and the word's elements in mma_xpos order.
template <int FMT, class I>
__device__ __forceinline__ I mma_xslot(I el) {
    constexpr int EPW = MmaFmt<FMT>::EPW, RK = MmaFmt<FMT>::RK;
    const I r = el / RK, o = el % RK;
    const int cc = int(o / (4 * EPW)), w = int((o / EPW) % 4), j = int(o % EPW);
    return r * RK + (w * 4 + cc) * EPW + mma_xpos<FMT>(j);
}

// Four FP4 codes pairs of a word as f16x2 holding e2m1 · 2^-14: magnitude bits to 9..11 (exponent
// LSBs + mantissa: subnormal for e = 0, exact), sign to 15.
__device__ __forceinline__ void fp4_word_to_f16x2(uint32_t w, uint32_t (&h)[4]) {
    constexpr uint32_t M = 0x0E000E00u, S = 0x80008000u;
    h[0] = ((w << 9) & M) | ((w << 12) & S);  // codes 0, 4
    h[1] = ((w << 5) & M) | ((w << 8) & S);   // codes 1, 5
    h[2] = ((w << 1) & M) | ((w << 4) & S);   // codes 2, 6
    h[3] = ((w >> 3) & M) | (w & S);          // codes 3, 7
}

__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t two) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two & 0xffffu), __NV_E4M3);
    return uint32_t(h.x) | (uint32_t(h.y) << 16);
}

// The same eight codes through e4m3: a code's magnitude bits (e1 e0 m) moved to bits 4..2 of a byte
// and its sign to bit 7 make the e4m3 byte of e2m1 · 2^-6 (exponent field e, subnormal for e = 0:
// exact), four codes a word in two shift-and-merge steps; then the hardware's e4m3 pair → f16 pair
// conversion, one instruction a pair. Pairs: codes (0,2), (4,6), (1,3), (5,7).
__device__ __forceinline__ void fp4_word_to_f16x2_e4(uint32_t w, uint32_t (&h)[4]) {
    constexpr uint32_t M = 0x1C1C1C1Cu, S = 0x80808080u;
    const uint32_t even = ((w << 2) & M) | ((w << 4) & S);  // codes 0, 2, 4, 6 (low nibbles)
    const uint32_t odd = ((w >> 2) & M) | (w & S);          // codes 1, 3, 5, 7 (high nibbles)
    h[0] = e4m3x2_to_f16x2(even);
    h[1] = e4m3x2_to_f16x2(even >> 16);
    h[2] = e4m3x2_to_f16x2(odd);
    h[3] = e4m3x2_to_f16x2(odd >> 16);
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                        uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Bulk copies into shared memory through the Tensor Memory Accelerator, completing on an mbarrier
// (BULK variants below). Addresses are shared-window offsets (__cvta_generic_to_shared).
__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred P1;\nWAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
        "@!P1 bra WAIT;\n}" ::"r"(bar),
        "r"(parity)
        : "memory");
}
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}

// The warp's maximum of |v| over its lanes' float4s: by a five-step shuffle tree of fmaxf, or in one
// redux.sync on the bit patterns (non-negative floats order as their bits; the same value for finite v).
__device__ __forceinline__ float warp_absmax_tree(float4 v) {
    float am = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) am = fmaxf(am, __shfl_xor_sync(0xffffffffu, am, off));
    return am;
}
__device__ __forceinline__ uint32_t warp_absmax_bits(float4 v) {
    return __reduce_max_sync(0xffffffffu, max(max(__float_as_uint(fabsf(v.x)), __float_as_uint(fabsf(v.y))),
                                              max(__float_as_uint(fabsf(v.z)), __float_as_uint(fabsf(v.w)))));
}
// A lane's four elements of a 128-block act_quant'ed with the block's power-of-two scale qs.
__device__ __forceinline__ float4 e4m3_qdq4_dev(float4 v, float qs) {
    return make_float4(e4m3_qdq_dev(v.x, qs), e4m3_qdq_dev(v.y, qs), e4m3_qdq_dev(v.z, qs), e4m3_qdq_dev(v.w, qs));
}
// rmsnorm_quant_kernel's expressions for a lane's four elements: normed_vec4 (x · rs · w), then the
// 128-block's power-of-two act_quant, its maximum taken by warp_absmax_tree or (REDUX) warp_absmax_bits.
template <bool REDUX>
__device__ __forceinline__ float4 norm_act_quant4(float4 v, float4 w, float rs) {
    const float4 o{w.x * (v.x * rs), w.y * (v.y * rs), w.z * (v.z * rs), w.w * (v.w * rs)};
    const float am = REDUX ? __uint_as_float(warp_absmax_bits(o)) : warp_absmax_tree(o);
    return e4m3_qdq4_dev(o, e4m3_scale_dev(am, true));
}

// A routed-expert launch's job p (MmaMoe).
__device__ __forceinline__ GemvJob moe_job(const MmaMoe& m, int64_t p) {
    if (m.stage == 1) {
        const int64_t pair = p % m.pairs, which = p / m.pairs;
        const ExpertPtrs e = m.ex[m.ids[pair]];
        return GemvJob{m.x + (pair / m.k) * m.ld, which ? e.w3 : e.w1, which ? e.s3 : e.s1,
                       m.y + pair * 2 * m.inter + which * m.inter};
    }
    const ExpertPtrs e = m.ex[m.ids[p]];
    return GemvJob{nullptr, e.w2, e.s2, m.y + p * m.ld};
}

// DEPTH: rounds of weight loads in flight per lane (2 × 16 bytes each); MINB: resident blocks per SM
// the registers are fitted to (4, 2: 128 registers; 3, 3: 80; 2, 4: 64). SPLIT: x as hi + lo terms
// (header). SC, the scale bytes of FP4 weights with E8M0 scales: 0 read per round at its end; 1 (PRE)
// a round's four bytes a lane uses (two blocks of each of its rows) loaded with its weights, DEPTH
// rounds ahead; 2 (SMS) the block's rows' scale bytes copied once into shared memory before the wait
// (rows kMmaScalePad bytes apart: conflict-free), read from there (the per-round global byte loads
// are as many sector requests as the weights' and miss L1 about half the time); 3 (PAIR) read per
// round at its end as 0 does, the two blocks of a row in one load (E8M0: 16 bits, F32: a float2); 4
// (PAIR, LATE) as 3 with a slot refilled only after its words are decoded (fewer registers live at
// once). MOE: MmaMoe's stage
// (0: jobs given; a compile-time choice, so the other kernels keep their registers). NORM: x is the
// raw row; each block forms act_quant(rmsnorm(x, p.norm_w)) itself while staging it, bitwise what
// rmsnorm_quant_kernel writes (its sums in its order: see mma_gemv_normed), so the launch needs no
// norm kernel before it. BULK (> 0): the weights come through shared memory instead of registers:
// each warp keeps a ring of BULK stages of DEPTH rounds ([16 rows][bulk_row_stride(DEPTH) bytes]); for
// a stage lanes 0..15 issue one bulk copy each of their row's DEPTH · 64 contiguous bytes, completing on
// the stage's mbarrier, and the lanes read their 16 bytes of rows g and g + 8 from there (a quarter warp
// reads two rows' 64 bytes from the two halves of the banks: no conflicts). The loads in flight are then
// BULK − 1 stages a warp whatever the registers; the products, sums and their order are those of the
// register variants.
template <int FMT, int DEPTH, int MINB, bool SPLIT, int SC, int MOE, bool NORM = false, int BULK = 0>
__global__ void __launch_bounds__(kMmaThreads, MINB)
    gemv_mma_kernel(MmaParams p, MmaJobs inl, const GemvJob* jobs, MmaMoe moe) {
    constexpr bool PRE = SC == 1, SMS = SC == 2, PAIR = SC == 3 || SC == 4, LATE = SC == 4, FAST = SC == 5;
    constexpr bool E4 = FMT == kFmtFp4E4;  // FP4 decoded through e4m3
    constexpr bool F4 = FMT == int(WeightFormat::FP4) || E4;
    constexpr float kW = E4 ? 64.f : 16384.f;  // the decoded weights are e2m1 · 2^-6 or · 2^-14
    constexpr int RK = MmaFmt<FMT>::RK;
    static_assert((!PRE && !SMS && !PAIR) || F4, "scales ahead, staged or paired: FP4 only");
    static_assert(MOE == 0 || !SPLIT, "routed-expert launches: one-term x");
    static_assert(!NORM || (MOE == 0 && !SPLIT), "normed x: one-term x, jobs given");
    static_assert(BULK == 0 || (SC == 0 || SC == 5), "bulk-fed weights: scales read per round");
    extern __shared__ uint4 smem[];
    __shared__ uint4 zero16;
    __shared__ uint64_t bars[BULK ? kMmaWarps * BULK : 1];  // BULK: [warp][stage]
    constexpr int RS = bulk_row_stride(DEPTH), SB = 16 * RS;  // BULK: row stride, stage bytes
    uint8_t* const ring = reinterpret_cast<uint8_t*>(smem);   // BULK: [warp][stage][16 rows][RS]
    __half* xh = reinterpret_cast<__half*>(ring + (BULK ? kMmaWarps * BULK * SB : 0));  // [k] f16, lane order;
                                                                                      // split: then [k] lo terms
    float* xsc = reinterpret_cast<float*>(xh + (SPLIT ? 2 * p.k : p.k));  // [k / 128] x scales
    float* part = xsc + p.k / 128;                    // [8 warps][16] partials
    uint8_t* ssc = reinterpret_cast<uint8_t*>(part + kMmaWarps * 16);  // SMS: [tpb · 16 rows][scale_cols + pad]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int tpb = kMmaWarps / p.ks;
    const int tib = warp % tpb, ksp = warp / tpb;
    const int tile = int(blockIdx.x) * tpb + tib;
    const int64_t row_bytes = F4 ? p.k / 2 : p.k;

    // Jobs read before the wait: inline ones, and a down launch's (its ids were written before the up
    // launch, which waited for them before releasing this one). Device job arrays and an up launch's ids
    // may be written by the kernel just before.
    const bool early = MOE == 2 || !p.device_jobs;
    if (!early) pdl_wait();
    const GemvJob job = MOE ? moe_job(moe, blockIdx.z) : p.device_jobs ? jobs[blockIdx.z] : inl.j[blockIdx.z];
    const int64_t jn0 = p.n0 + job.n0;
    const int64_t ra = int64_t(tile) * 16 + g, rb = ra + 8;
    const int64_t last = p.n_rows - 1;
    const uint8_t* wa = static_cast<const uint8_t*>(job.w) + (jn0 + min(ra, last)) * row_bytes + c * 16;
    const uint8_t* wb = static_cast<const uint8_t*>(job.w) + (jn0 + min(rb, last)) * row_bytes + c * 16;
    const bool live = tile < p.tiles;
    // This warp's rounds: an even split of the tile's rounds over its ks warps.
    const int per = (p.rounds + p.ks - 1) / p.ks;
    const int r_begin = min(p.rounds, ksp * per), r_end = live ? min(p.rounds, r_begin + per) : r_begin;

    const int64_t sia = F4 ? (jn0 + min(ra, last)) * p.scale_cols : ((jn0 + min(ra, last)) / 128) * p.scale_cols;
    const int64_t sib = F4 ? (jn0 + min(rb, last)) * p.scale_cols : sia;
    // PRE: the scale bytes of blocks r·4 + 2(c mod 2) + {0, 1} of rows a (bits 0..15) and b (16..31).
    const uint16_t* spa = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(job.s) + sia + 2 * (c & 1));
    const uint16_t* spb = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(job.s) + sib + 2 * (c & 1));
    uint4 qa[DEPTH], qb[DEPTH];  // BULK: unused
    uint32_t sq[PRE ? DEPTH : 1];
    // BULK: stage st (rounds r_begin + st · DEPTH ..) into slot st mod BULK; lane l < 16 copies row l.
    [[maybe_unused]] const uint32_t ring_w = uint32_t(__cvta_generic_to_shared(ring)) + warp * BULK * SB;
    [[maybe_unused]] const uint32_t bar_w = uint32_t(__cvta_generic_to_shared(&bars[0])) + warp * BULK * 8;
    [[maybe_unused]] const uint8_t* wrow =
        static_cast<const uint8_t*>(job.w) + (jn0 + min(int64_t(tile) * 16 + (lane & 15), last)) * row_bytes;
    [[maybe_unused]] auto bulk_issue = [&](int st) {  // warp-uniform
        const int r0 = r_begin + st * DEPTH;
        if (r0 >= r_end) return;
        const int nr = min(DEPTH, r_end - r0), slot = st % (BULK ? BULK : 1);
        const uint32_t bar = bar_w + slot * 8;
        if (lane == 0) mbar_expect_tx(bar, uint32_t(nr) * 1024u);
        __syncwarp();
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // the slot's reads before its refill
        if (lane < 16) bulk_copy(ring_w + slot * SB + lane * RS, wrow + int64_t(r0) * 64, uint32_t(nr) * 64, bar);
    };
    if constexpr (BULK) {
        if (lane == 0)
            for (int s = 0; s < BULK; ++s) mbar_init(bar_w + s * 8, 1);
        mbar_init_fence();
        __syncwarp();
#pragma unroll
        for (int s = 0; s < BULK; ++s) bulk_issue(s);
    }
#pragma unroll
    for (int i = 0; i < (BULK ? 0 : DEPTH); ++i)
        if (r_begin + i < r_end) {
            qa[i] = __ldg(reinterpret_cast<const uint4*>(wa + int64_t(r_begin + i) * 64));
            qb[i] = __ldg(reinterpret_cast<const uint4*>(wb + int64_t(r_begin + i) * 64));
            if constexpr (PRE)
                sq[i] = uint32_t(__ldg(spa + 2 * (r_begin + i))) | (uint32_t(__ldg(spb + 2 * (r_begin + i))) << 16);
        }
    [[maybe_unused]] const int sstride = int(p.scale_cols) + kMmaScalePad;
    if constexpr (SMS) {  // the block's rows' scale bytes (weights: independent of the kernel before),
                          // copied asynchronously (no registers held), waited for before the barrier below
        const int rows = tpb * 16, words = int(p.scale_cols / 4);  // scale_cols: k / 32, a multiple of 4
        const int64_t row0 = int64_t(blockIdx.x) * tpb * 16;
        const uint8_t* s0 = static_cast<const uint8_t*>(job.s);  // 4-byte aligned (launch_mma_fmt checks)
        for (int q = threadIdx.x; q < rows * words; q += kMmaThreads) {
            const int row = q / words, wd = q % words;
            __pipeline_memcpy_async(ssc + row * sstride + wd * 4,
                                    s0 + (jn0 + min(row0 + row, last)) * p.scale_cols + wd * 4, 4);
        }
        __pipeline_commit();
    }
    if (early) pdl_wait();
    pdl_release();

    // NORM: 1 / rms of x as rmsnorm_quant_kernel computes it at its thread count T (row_inv_rms_vec4 +
    // block_sum_double): its thread i sums the squares of float4s i, i + T, .. in double, in that order;
    // each warp sums its lanes by the xor tree; warp 0 sums the warp totals the same way. Thread t here
    // stands in for its threads t + 256 j (their warp w + 8 j, the same lane).
    [[maybe_unused]] float rs = 0.f;
    if constexpr (NORM) {
        __shared__ double nred[32];
        const int64_t n4 = p.k / 4;
        const int T = int(min(int64_t(1024), max(int64_t(32), (n4 + 31) / 32 * 32)));
        const float4* x4 = reinterpret_cast<const float4*>(job.x);
        for (int j = 0; j * kMmaThreads < T; ++j) {  // block-uniform
            const int vt = int(threadIdx.x) + j * kMmaThreads;
            double s = 0;
            if (vt < T)
                for (int m = 0; m < 4; ++m) {
                    const int64_t i = vt + int64_t(m) * T;
                    if (i < n4) {
                        const float4 v = x4[i];
                        s += double(v.x) * double(v.x);
                        s += double(v.y) * double(v.y);
                        s += double(v.z) * double(v.z);
                        s += double(v.w) * double(v.w);
                    }
                }
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0 && vt < T) nred[vt >> 5] = s;
        }
        __syncthreads();
        if (warp == 0) {
            double s = lane < (T >> 5) ? nred[lane] : 0.0;
            for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (lane == 0) nred[0] = s;
        }
        __syncthreads();
        rs = 1.f / sqrtf(float(nred[0] / double(p.k)) + p.norm_eps);
    }

    // Stage x: warp-wide per 128-block (4 elements a lane), one power of two per block.
    if (threadIdx.x == 0) zero16 = make_uint4(0, 0, 0, 0);
    if constexpr (MOE != 2 && FAST) {
        // The same values with a shorter chain a block: the warp's maximum through redux
        // (warp_absmax_bits), the exact inverse of the power of two s from its exponent (no division),
        // and the lane's four slots in xh as offsets from the block's start (a block of 128 holds whole
        // rounds: RK divides 128).
        auto atl = [&](int i) { return mma_xslot<FMT>(lane * 4 + i); };
        for (int64_t b = warp; b < p.k / 128; b += kMmaWarps) {
            float4 v = reinterpret_cast<const float4*>(job.x + b * 128)[lane];
            if constexpr (NORM)
                v = norm_act_quant4<true>(v, reinterpret_cast<const float4*>(p.norm_w + b * 128)[lane], rs);
            const uint32_t ab = warp_absmax_bits(v);
            // s has the biased exponent e (amax's less 14, clamped to [1, 254]; at most 241 for any
            // amax), so 1 / s, exact, has the biased exponent 254 - e (at least 13: normal).
            const int e = max(1, min(254, int((ab >> 23) & 0xff) - 14));
            const float s = ab ? __uint_as_float(uint32_t(e) << 23) : 1.f;
            const float inv = ab ? __uint_as_float(uint32_t(254 - e) << 23) : 1.f;
            if (lane == 0) xsc[b] = s;
            const float vals[4] = {v.x, v.y, v.z, v.w};
            __half* xb = xh + b * 128;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float q = vals[i] * inv;
                const __half hi = __float2half_rn(q);
                xb[atl(i)] = hi;
                if constexpr (SPLIT) xb[p.k + atl(i)] = __float2half_rn(q - __half2float(hi));
            }
        }
    } else {
        for (int64_t b = warp; b < p.k / 128; b += kMmaWarps) {
            float4 v;
            if constexpr (MOE == 2) {  // h = act_quant(swiglu(gu) · rw) of this block, as swiglu_quant_kernel forms it
                const float* gu = moe.x;
                const int64_t c0 = b * 128 + lane * 4;
                float e[4];
#pragma unroll
                for (int i = 0; i < 4; ++i)
                    e[i] = swiglu_dev(gu, gu + moe.inter, 2 * moe.inter, blockIdx.z, c0 + i, moe.limit, moe.rw);
                const float4 h{e[0], e[1], e[2], e[3]};
                v = e4m3_qdq4_dev(h, e4m3_scale_dev(warp_absmax_tree(h), true));
            } else {
                v = reinterpret_cast<const float4*>(job.x + b * 128)[lane];
                if constexpr (NORM)
                    v = norm_act_quant4<false>(v, reinterpret_cast<const float4*>(p.norm_w + b * 128)[lane], rs);
            }
            const float amax = warp_absmax_tree(v);
            // s = 2^(E - 14) with E the exponent of amax: amax / s in [2^14, 2^15).
            int e = int((__float_as_uint(amax) >> 23) & 0xff) - 14;
            e = max(1, min(254, e));
            const float s = amax > 0.f ? __uint_as_float(uint32_t(e) << 23) : 1.f;
            const float inv = 1.f / s;  // exact: a power of two
            if (lane == 0) xsc[b] = s;
            const float vals[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int64_t at = mma_xslot<FMT>(b * 128 + lane * 4 + i);
                const float v = vals[i] * inv;
                const __half hi = __float2half_rn(v);
                xh[at] = hi;
                if constexpr (SPLIT) xh[p.k + at] = __float2half_rn(v - __half2float(hi));
            }
        }
    }
    if constexpr (SMS) __pipeline_wait_prior(0);
    __syncthreads();

    // Lanes (g, c) with g == c feed block c's x as column c of B (split: g == c + 4 its lo terms as
    // column c + 4); the others read 16 zero bytes (stride 0).
    const bool feeds_lo = SPLIT && g == c + 4;
    const bool feeds = g == c || feeds_lo;
    // Slots are 2·EPW bytes (FP4 16, FP8 8): slot w·4 + c of round r holds lane c's word w.
    using Slot = std::conditional_t<F4, uint4, uint2>;
    const Slot* xbase =
        feeds ? reinterpret_cast<const Slot*>(xh + (feeds_lo ? p.k : 0)) + c : reinterpret_cast<const Slot*>(&zero16);
    const int xstep = feeds ? 4 : 0;                            // slots between words
    const int xround = feeds ? RK * 2 / int(sizeof(Slot)) : 0;  // slots between rounds
    float tot[4] = {0.f, 0.f, 0.f, 0.f};
    for (int r0 = r_begin; r0 < r_end; r0 += DEPTH) {
        [[maybe_unused]] const uint8_t* stg = ring;
        if constexpr (BULK) {  // this stage's slot, once its copies have landed
            const int st = (r0 - r_begin) / DEPTH, slot = st % (BULK ? BULK : 1);
            mbar_wait(bar_w + slot * 8, uint32_t(st / (BULK ? BULK : 1)) & 1u);
            stg = ring + (warp * BULK + slot) * SB + g * RS + c * 16;
        }
#pragma unroll
        for (int i = 0; i < DEPTH; ++i) {
            const int r = r0 + i;
            if (r >= r_end) break;
            const uint4 a = BULK ? *reinterpret_cast<const uint4*>(stg + i * 64) : qa[i];
            const uint4 bq = BULK ? *reinterpret_cast<const uint4*>(stg + 8 * RS + i * 64) : qb[i];
            const uint32_t sr = PRE ? sq[PRE ? i : 0] : 0u;
            if (!BULK && !LATE && r + DEPTH < r_end) {  // the slot's next round (LATE: after the decode below)
                qa[i] = __ldg(reinterpret_cast<const uint4*>(wa + int64_t(r + DEPTH) * 64));
                qb[i] = __ldg(reinterpret_cast<const uint4*>(wb + int64_t(r + DEPTH) * 64));
                if constexpr (PRE)
                    sq[i] = uint32_t(__ldg(spa + 2 * (r + DEPTH))) | (uint32_t(__ldg(spb + 2 * (r + DEPTH))) << 16);
            }
            const uint32_t wda[4] = {a.x, a.y, a.z, a.w}, wdb[4] = {bq.x, bq.y, bq.z, bq.w};
            float d[4] = {0.f, 0.f, 0.f, 0.f};
            if constexpr (F4) {
                const Slot* xr = xbase + r * xround;
#pragma unroll
                for (int w = 0; w < 4; ++w) {
                    const uint4 xv = xr[w * xstep];
                    uint32_t ha[4], hb[4];
                    if constexpr (E4) {
                        fp4_word_to_f16x2_e4(wda[w], ha);
                        fp4_word_to_f16x2_e4(wdb[w], hb);
                    } else {
                        fp4_word_to_f16x2(wda[w], ha);
                        fp4_word_to_f16x2(wdb[w], hb);
                    }
                    mma_f16(d, ha[0], hb[0], ha[1], hb[1], xv.x, xv.y);
                    mma_f16(d, ha[2], hb[2], ha[3], hb[3], xv.z, xv.w);
                }
            } else {
                const Slot* xr = xbase + r * xround;
#pragma unroll
                for (int w = 0; w < 4; ++w) {
                    const uint2 xv = xr[w * xstep];
                    mma_f16(d, e4m3x2_to_f16x2(wda[w]), e4m3x2_to_f16x2(wdb[w]), e4m3x2_to_f16x2(wda[w] >> 16),
                            e4m3x2_to_f16x2(wdb[w] >> 16), xv.x, xv.y);
                }
            }
            if (!BULK && LATE && r + DEPTH < r_end) {
                qa[i] = __ldg(reinterpret_cast<const uint4*>(wa + int64_t(r + DEPTH) * 64));
                qb[i] = __ldg(reinterpret_cast<const uint4*>(wb + int64_t(r + DEPTH) * 64));
            }
            // Columns 2c, 2c + 1 hold blocks 2c, 2c + 1 for c < 2; for c ≥ 2 the lo terms of blocks
            // 2c − 4, 2c − 3 (split) or nothing.
            const int k0 = r * RK;
            const float sx = xsc[k0 / 128];
            // PAIR: the round's blocks r·4 + 2(c mod 2) + {0, 1} of each row in one load (sia, sib and r·4
            // even, so aligned).
            [[maybe_unused]] float s2a[2], s2b[2];
            if constexpr (PAIR) {
                const int64_t kb0 = int64_t(r) * 4 + 2 * (c & 1);
                if (p.sk == ScaleKind::E8M0) {
                    const uint8_t* s8 = static_cast<const uint8_t*>(job.s);
                    const uint32_t pa = __ldg(reinterpret_cast<const uint16_t*>(s8 + sia + kb0));
                    const uint32_t pb = __ldg(reinterpret_cast<const uint16_t*>(s8 + sib + kb0));
                    s2a[0] = e8m0_dev(uint8_t(pa)), s2a[1] = e8m0_dev(uint8_t(pa >> 8));
                    s2b[0] = e8m0_dev(uint8_t(pb)), s2b[1] = e8m0_dev(uint8_t(pb >> 8));
                } else {
                    const float* sf = static_cast<const float*>(job.s);
                    const float2 fa = __ldg(reinterpret_cast<const float2*>(sf + sia + kb0));
                    const float2 fb = __ldg(reinterpret_cast<const float2*>(sf + sib + kb0));
                    s2a[0] = fa.x, s2a[1] = fa.y, s2b[0] = fb.x, s2b[1] = fb.y;
                }
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                float swa, swb;
                if constexpr (PRE) {  // block r·4 + 2(c mod 2) + h: the same bytes as below
                    swa = e8m0_dev(uint8_t(sr >> (8 * h))) * kW;
                    swb = e8m0_dev(uint8_t(sr >> (16 + 8 * h))) * kW;
                } else if constexpr (SMS) {  // the same bytes, from shared memory
                    const int kb = r * 4 + ((2 * c + h) & 3), oa = (tib * 16 + g) * sstride + kb;
                    swa = e8m0_dev(ssc[oa]) * kW;
                    swb = e8m0_dev(ssc[oa + 8 * sstride]) * kW;
                } else if constexpr (PAIR) {  // block r·4 + ((2c + h) mod 4) = r·4 + 2(c mod 2) + h
                    swa = s2a[h] * kW;
                    swb = s2b[h] * kW;
                } else if constexpr (F4) {
                    const int kb = r * 4 + ((2 * c + h) & 3);
                    swa = scale_dev(job.s, p.sk, sia + kb) * kW;
                    swb = scale_dev(job.s, p.sk, sib + kb) * kW;
                } else {
                    swa = swb = scale_dev(job.s, p.sk, sia + k0 / 128);
                }
                tot[h] += d[h] * (swa * sx);
                tot[2 + h] += d[2 + h] * (swb * sx);
            }
        }
        if constexpr (BULK) {  // the slot's reads are done: refill it with the stage BULK ahead
            __syncwarp();
            bulk_issue((r0 - r_begin) / DEPTH + BULK);
        }
    }
    // Row g: columns 0..3 of lanes c = 0, 1 (in that order); row g + 8 likewise.
    float va = tot[0] + tot[1], vb = tot[2] + tot[3];
    va += __shfl_xor_sync(0xffffffffu, va, 1);
    vb += __shfl_xor_sync(0xffffffffu, vb, 1);
    if constexpr (SPLIT) {  // hi parts (lanes c = 0, 1) plus lo parts (c = 2, 3)
        va += __shfl_xor_sync(0xffffffffu, va, 2);
        vb += __shfl_xor_sync(0xffffffffu, vb, 2);
    }
    if (p.ks == 1) {
        if (live && c == 0) {
            if (ra < p.n_rows) job.y[ra] = va;
            if (rb < p.n_rows) job.y[rb] = vb;
        }
        return;
    }
    if (c == 0) {
        part[warp * 16 + g] = va;
        part[warp * 16 + g + 8] = vb;
    }
    __syncthreads();
    if (ksp == 0 && live && lane < 16) {
        float s = 0.f;
        for (int q = 0; q < p.ks; ++q) s += part[(q * tpb + tib) * 16 + lane];
        const int64_t row = int64_t(tile) * 16 + lane;
        if (row < p.n_rows) job.y[row] = s;
    }
}

std::atomic<int> g_mma_mode{-1};  // -1: DSINFER_CUDA_MMA_GEMV (default on), 0 off, 1 on, 2 on for small launches too

std::atomic<int> g_mma_fp4e4{-1};  // -1: DSINFER_CUDA_MMA_FP4E4 (read once; on only if '1'), 0 off, 1 on
// FP4 weights decoded through e4m3 (fewer instructions a word; correct but not faster on an H100: off).
bool mma_fp4_e4m3() {
    return mode_or_env(g_mma_fp4e4, "DSINFER_CUDA_MMA_FP4E4", 0) == 1;
}
std::atomic<int> g_mma_stage{-1};  // -1: DSINFER_CUDA_MMA_STAGE (read once; default on), 0 off, 1 on
// x staged with redux maxima and the scale's inverse from its exponent (SC 5): the same values, a shorter
// chain a 128-block. H100 (docs/benchmarks.md): the layer 2 µs faster, batch-64 decode 7%.
bool mma_fast_stage() {
    return mode_or_env(g_mma_stage, "DSINFER_CUDA_MMA_STAGE") == 1;
}
std::atomic<int> g_mma_split{-1};  // -1: DSINFER_CUDA_MMA_SPLIT (read once, see below), 0 off, 1 on

// Registers and depth: 4 rounds in flight with 2 blocks per SM (cfg 0), or 3 rounds with 3 blocks
// (cfg 1). H100, bench_cuda: cfg 1 wins for one token's routed experts (12 jobs: 55 against 65 µs),
// cfg 0 for single linears alone (wo_b 19.8 against 21.1 µs), but in the model (H100, 2 Flash layers
// end to end, docs/benchmarks.md) cfg 1 everywhere is 2-4% faster at batch 1, and for batched decode's
// routed experts +13-16% at batch 8 (96 jobs of 128 tiles a launch), +11-13% at 64, +15% at 128 (up:
// 1536 jobs of 128 tiles); at 256 cfg 0 is 4-7% ahead (up 3072 x 128 tiles, down 1536 x 256). So cfg 1
// except for launches of more than kMmaCfg1MaxTiles tiles in all. Chosen per
// launch; DSINFER_CUDA_MMA_CFG=0|1 forces one (read once), or set_mma_cfg. Measured and left off, for FP4 weights
// without the split (FP8 weights keep the per-launch choice; split launches and routed-expert job
// launches take cfg 1's build for any forced value above 0): 2, cfg 1 with the scale bytes loaded with the weights,
// DEPTH rounds ahead (E8M0 scales); 3, 2 rounds in flight with 4 blocks per SM (64 registers); 4, cfg 1
// with the block's scale bytes staged in shared memory once (E8M0 scales, at most kMmaMaxScaleSmem bytes
// of them; else cfg 1: H100, one token's experts 59.6 against 56.1 µs).
constexpr int64_t kMmaCfg1MaxTiles = int64_t(1) << 18;
std::atomic<int> g_mma_cfg{-2};  // -2: not read yet; -1: chosen per launch
int mma_cfg(int64_t tiles, bool fp4) {
    int forced = g_mma_cfg.load();
    if (forced == -2) {
        const char* v = std::getenv("DSINFER_CUDA_MMA_CFG");
        forced = v && v[0] >= '0' && v[0] <= '8' ? v[0] - '0' : -1;
        g_mma_cfg = forced;
    }
    if (forced >= 0 && (forced <= 1 || forced >= 7 || fp4)) return forced;
    return tiles > kMmaCfg1MaxTiles ? 0 : 1;
}

template <int FMT, int DEPTH, int MINB, bool SPLIT, int SC = 0, int MOE = 0, bool NORM = false, int BULK = 0>
void launch_mma_cfg(const MmaParams& p, const MmaJobs& inl, const GemvJob* jobs, int64_t njobs, const MmaMoe& moe) {
    const int tpb = kMmaWarps / p.ks;
    constexpr size_t ring = size_t(kMmaWarps) * BULK * 16 * bulk_row_stride(DEPTH);
    const size_t smem = ring + size_t(p.k) * (SPLIT ? 4 : 2) + size_t(p.k / 128) * 4 + size_t(kMmaWarps) * 16 * 4 +
                        (SC == 2 ? size_t(tpb) * 16 * size_t(p.scale_cols + kMmaScalePad) : 0);
    static bool attr = false;
    if (!attr) {
        DSINFER_CUDA_CHECK(cudaFuncSetAttribute(
            gemv_mma_kernel<FMT, DEPTH, MINB, SPLIT, SC, MOE, NORM, BULK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
            int(ring + kMmaMaxK * (SPLIT ? 4 : 2) + kMmaMaxK / 128 * 4 + kMmaWarps * 16 * 4 + (SC == 2 ? kMmaMaxScaleSmem : 0))));
        attr = true;
    }
    const dim3 grid{unsigned(ceil_div(p.tiles, tpb)), 1u, unsigned(njobs)};
    launch_pdl(gemv_mma_kernel<FMT, DEPTH, MINB, SPLIT, SC, MOE, NORM, BULK>, grid, kMmaThreads, smem, p, inl, jobs, moe);
    DSINFER_CUDA_LAUNCH();
}

// Bulk-fed weights (cfg 7: stages of 2 rounds, 4 a warp; cfg 8: stages of 4 rounds, 2 a warp; both 2
// blocks an SM), x staged with redux maxima except in the routed down launch (its own staging).
template <int FMT, bool SPLIT, int DEPTH, int MINB, int STAGES>
void launch_mma_bulk(const MmaParams& p, const MmaJobs& inl, const GemvJob* jobs, int64_t njobs, const MmaMoe& moe) {
    if constexpr (!SPLIT) {
        if (moe.stage == 1) return launch_mma_cfg<FMT, DEPTH, MINB, SPLIT, 5, 1, false, STAGES>(p, inl, jobs, njobs, moe);
        if (moe.stage == 2) return launch_mma_cfg<FMT, DEPTH, MINB, SPLIT, 0, 2, false, STAGES>(p, inl, jobs, njobs, moe);
        if (p.norm_w) return launch_mma_cfg<FMT, DEPTH, MINB, SPLIT, 5, 0, true, STAGES>(p, inl, jobs, njobs, moe);
    }
    launch_mma_cfg<FMT, DEPTH, MINB, SPLIT, 5, 0, false, STAGES>(p, inl, jobs, njobs, moe);
}

// The per-launch bulk choice: cfg · 16 + blocks an SM at most; -1 not read yet (DSINFER_CUDA_MMA_BULK=7 or 8,
// optionally ":N" for up to N blocks an SM, 1 to 9, default 1; anything else off), 0 off.
std::atomic<int> g_mma_bulk{-1};
std::atomic<uint64_t> g_bulk_launches{0};
int mma_bulk_mode() {
    int m = g_mma_bulk.load();
    if (m < 0) {
        const char* v = std::getenv("DSINFER_CUDA_MMA_BULK");
        m = 0;
        if (v && (v[0] == '7' || v[0] == '8')) {
            if (!v[1])
                m = (v[0] - '0') * 16 + 1;
            else if (v[1] == ':' && v[2] >= '1' && v[2] <= '9' && !v[3])
                m = (v[0] - '0') * 16 + (v[2] - '0');
        }
        g_mma_bulk = m;
    }
    return m;
}

template <int FMT, bool SPLIT>
void launch_mma_fmt(const MmaParams& p, const MmaJobs& inl, const GemvJob* jobs, int64_t njobs, const MmaMoe& moe) {
    constexpr bool F4 = FMT != int(WeightFormat::FP8);
    if constexpr (FMT != kFmtFp4E4) {
        if (p.cfg == 7) return launch_mma_bulk<FMT, SPLIT, 2, 2, 4>(p, inl, jobs, njobs, moe);
        if (p.cfg == 8) return launch_mma_bulk<FMT, SPLIT, 4, 2, 2>(p, inl, jobs, njobs, moe);
        if (p.fast_stage && moe.stage == 0) {  // x staged with redux maxima (cfg 0 or 1's registers; jobs given)
            if constexpr (!SPLIT)
                if (p.norm_w)
                    return p.cfg == 0 ? launch_mma_cfg<FMT, 4, 2, SPLIT, 5, 0, true>(p, inl, jobs, njobs, moe)
                                      : launch_mma_cfg<FMT, 3, 3, SPLIT, 5, 0, true>(p, inl, jobs, njobs, moe);
            return p.cfg == 0 ? launch_mma_cfg<FMT, 4, 2, SPLIT, 5>(p, inl, jobs, njobs, moe)
                              : launch_mma_cfg<FMT, 3, 3, SPLIT, 5>(p, inl, jobs, njobs, moe);
        }
    }
    if constexpr (!SPLIT) {
        if (p.norm_w)  // normed x (mma_gemv_normed): cfg 0 or 1
            return p.cfg == 0 ? launch_mma_cfg<FMT, 4, 2, SPLIT, 0, 0, true>(p, inl, jobs, njobs, moe)
                              : launch_mma_cfg<FMT, 3, 3, SPLIT, 0, 0, true>(p, inl, jobs, njobs, moe);
        // Routed-expert launches that build their own jobs: cfg 0 or 1's registers.
        if (moe.stage == 1)
            return p.cfg == 0 ? launch_mma_cfg<FMT, 4, 2, SPLIT, 0, 1>(p, inl, jobs, njobs, moe)
                              : launch_mma_cfg<FMT, 3, 3, SPLIT, 0, 1>(p, inl, jobs, njobs, moe);
        if (moe.stage == 2)
            return p.cfg == 0 ? launch_mma_cfg<FMT, 4, 2, SPLIT, 0, 2>(p, inl, jobs, njobs, moe)
                              : launch_mma_cfg<FMT, 3, 3, SPLIT, 0, 2>(p, inl, jobs, njobs, moe);
    }
    if constexpr (F4 && !SPLIT) {  // variants measured and left off (mma_cfg)
        if (p.cfg == 2 && p.sk == ScaleKind::E8M0)
            return launch_mma_cfg<FMT, 3, 3, SPLIT, 1>(p, inl, jobs, njobs, moe);
        if (p.cfg == 4 && p.sk == ScaleKind::E8M0 && p.scales4 &&
            int64_t(kMmaWarps / p.ks) * 16 * (p.scale_cols + kMmaScalePad) <= kMmaMaxScaleSmem)
            return launch_mma_cfg<FMT, 3, 3, SPLIT, 2>(p, inl, jobs, njobs, moe);
        if (p.cfg == 3) return launch_mma_cfg<FMT, 2, 4, SPLIT>(p, inl, jobs, njobs, moe);
        if (p.cfg == 5) return launch_mma_cfg<FMT, 3, 3, SPLIT, 3>(p, inl, jobs, njobs, moe);
        if (p.cfg == 6) return launch_mma_cfg<FMT, 3, 3, SPLIT, 4>(p, inl, jobs, njobs, moe);
    }
    if (p.cfg >= 1) return launch_mma_cfg<FMT, 3, 3, SPLIT>(p, inl, jobs, njobs, moe);
    launch_mma_cfg<FMT, 4, 2, SPLIT>(p, inl, jobs, njobs, moe);
}

void launch_mma(const Weight& like, int64_t n_rows, int64_t n0, const MmaJobs& inl, const GemvJob* jobs, int64_t njobs,
                bool split = false, const MmaMoe& moe = MmaMoe{}, const float* norm_w = nullptr, float norm_eps = 0.f) {
    MmaParams p{};
    p.norm_w = norm_w;
    p.norm_eps = norm_eps;
    p.k = like.k;
    p.n_rows = n_rows;
    p.n0 = n0;
    p.scale_cols = like.scale_cols;
    p.sk = like.scale_kind;
    p.rounds = int(like.k / (like.fmt == WeightFormat::FP4 ? MmaFmt<int(WeightFormat::FP4)>::RK
                                                           : MmaFmt<int(WeightFormat::FP8)>::RK));
    p.tiles = int(ceil_div(n_rows, 16));
    p.device_jobs = jobs != nullptr || moe.stage != 0;
    p.scales4 = (reinterpret_cast<uintptr_t>(like.scale) & 3) == 0;
    p.fast_stage = mma_fast_stage();
    p.cfg = mma_cfg(int64_t(p.tiles) * njobs, like.fmt == WeightFormat::FP4);
    // Warps per tile: the split whose waves of resident blocks (two or three per SM) times rounds per warp is
    // least (fewer warps per tile on ties). DSINFER_CUDA_MMA_KS=1|2|4|8 forces one (read once).
    static const int forced = [] {
        const char* v = std::getenv("DSINFER_CUDA_MMA_KS");
        const int x = v ? std::atoi(v) : 0;
        return (x == 1 || x == 2 || x == 4 || x == 8) ? x : 0;
    }();
    p.ks = forced;
    if (!p.ks) {
        int64_t best = -1;
        for (int ks = 1; ks <= kMmaWarps; ks *= 2) {
            if (ks > 1 && p.rounds < ks * 2) break;
            const int64_t blocks = ceil_div(p.tiles, kMmaWarps / ks) * njobs;
            const int64_t slots = int64_t(p.cfg == 0 || p.cfg >= 7 ? 2 : p.cfg == 3 ? 4 : 3) * sm_count();
            const int64_t cost = ceil_div(blocks, slots) * ceil_div(p.rounds, ks);
            if (best < 0 || cost < best) best = cost, p.ks = ks;
        }
    }
    const bool f4 = like.fmt == WeightFormat::FP4, e4 = f4 && mma_fp4_e4m3();
    // Launches of at most N blocks an SM (1 unless set) with the per-launch build (cfg 1): the weights
    // through shared memory (cfg 7 or 8, DSINFER_CUDA_MMA_BULK / set_mma_bulk), the warps' k split kept
    // (bitwise cfg 1).
    if (const int bulk = mma_bulk_mode(); bulk && p.cfg == 1 && !e4 && g_mma_cfg.load() == -1 &&
                                          ceil_div(p.tiles, kMmaWarps / p.ks) * njobs <= (bulk % 16) * sm_count()) {
        p.cfg = bulk / 16;
        g_bulk_launches.fetch_add(1);
    }
    if (split && e4)
        launch_mma_fmt<kFmtFp4E4, true>(p, inl, jobs, njobs, moe);
    else if (split && f4)
        launch_mma_fmt<int(WeightFormat::FP4), true>(p, inl, jobs, njobs, moe);
    else if (split)
        launch_mma_fmt<int(WeightFormat::FP8), true>(p, inl, jobs, njobs, moe);
    else if (e4)
        launch_mma_fmt<kFmtFp4E4, false>(p, inl, jobs, njobs, moe);
    else if (f4)
        launch_mma_fmt<int(WeightFormat::FP4), false>(p, inl, jobs, njobs, moe);
    else
        launch_mma_fmt<int(WeightFormat::FP8), false>(p, inl, jobs, njobs, moe);
}

}  // namespace

bool mma_gemv_enabled() {
    return mode_or_env(g_mma_mode, "DSINFER_CUDA_MMA_GEMV") >= 1;
}
void set_mma_gemv(int mode) {
    if (mode < 0 || mode > 2) fail("set_mma_gemv: 0, 1 or 2, got " + std::to_string(mode));
    g_mma_mode = mode;
}

bool mma_gemv_ok(const Weight& w) {
    if (w.fmt != WeightFormat::FP4 && w.fmt != WeightFormat::FP8) return false;
    if (!w.scale || w.k % 128 != 0 || w.k > kMmaMaxK) return false;
    if (w.fmt == WeightFormat::FP4 && w.scale_cols != w.k / 32) return false;
    if (w.fmt == WeightFormat::FP8 && w.scale_cols != w.k / 128) return false;
    return reinterpret_cast<uintptr_t>(w.data) % 16 == 0;
}

// Below this many 16-row tiles a launch fills too few SMs (it has no k split across blocks): the
// multi-row GEMV, which splits k over blocks, is faster (H100: wkv [512 x 4096] 6.5 µs against 4.5).
constexpr int64_t kMmaMinTiles = 48;

bool mma_gemv(const float* x, const Weight& w, int64_t n0, int64_t n1, float* y) {
    if (!mma_gemv_enabled() || !mma_gemv_ok(w) || n1 <= n0) return false;
    if (g_mma_mode != 2 && ceil_div(n1 - n0, 16) < kMmaMinTiles) return false;
    if (reinterpret_cast<uintptr_t>(x) % 16 != 0) return false;
    if (w.fmt == WeightFormat::FP8 && n0 % 16 != 0) return false;  // a tile stays in one 128-row scale block
    MmaJobs l{};
    l.j[0] = GemvJob{x, w.data, w.scale, y};
    launch_mma(w, n1 - n0, n0, l, nullptr, 1);
    return true;
}

bool mma_gemv_normed_ok(const float* x, const float* norm_w, const Weight& w) {
    if (!mma_gemv_enabled() || !mma_gemv_ok(w) || w.n <= 0 || !norm_w) return false;
    if (g_mma_mode != 2 && ceil_div(w.n, 16) < kMmaMinTiles) return false;
    // (k ≤ kMmaMaxK = 16384 is also rmsnorm_act_quant's one-pass reach, whose sums are reproduced.)
    return reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(norm_w) % 16 == 0;
}

std::atomic<uint64_t> g_normed_launches{0};
uint64_t mma_gemv_normed_launches() {
    return g_normed_launches.load();
}

bool mma_gemv_normed(const float* x, const float* norm_w, float eps, const Weight& w, float* y) {
    if (!mma_gemv_normed_ok(x, norm_w, w)) return false;
    g_normed_launches.fetch_add(1);
    MmaJobs l{};
    l.j[0] = GemvJob{x, w.data, w.scale, y};
    launch_mma(w, w.n, 0, l, nullptr, 1, false, MmaMoe{}, norm_w, eps);
    return true;
}

bool mma_gemv_pair(const float* x, const Weight& wa, const Weight& wb, float* ya, float* yb) {
    if (!mma_gemv_enabled() || !mma_gemv_ok(wa) || !mma_gemv_ok(wb) || !same_layout(wa, wb)) return false;
    if (g_mma_mode != 2 && 2 * ceil_div(wa.n, 16) < kMmaMinTiles) return false;
    if (reinterpret_cast<uintptr_t>(x) % 16 != 0) return false;
    MmaJobs l{};
    l.j[0] = GemvJob{x, wa.data, wa.scale, ya};
    l.j[1] = GemvJob{x, wb.data, wb.scale, yb};
    launch_mma(wa, wa.n, 0, l, nullptr, 2);
    return true;
}

// On unless DSINFER_CUDA_MMA_SPLIT=0 or set_mma_split(false).
bool mma_split_enabled() {
    return mode_or_env(g_mma_split, "DSINFER_CUDA_MMA_SPLIT") == 1 && mma_gemv_enabled();
}
void set_mma_fp4_e4m3(bool on) {
    g_mma_fp4e4 = on ? 1 : 0;
}
void set_mma_fast_stage(bool on) {
    g_mma_stage = on ? 1 : 0;
}
void set_mma_bulk(int cfg, int per_sm) {
    if (cfg != 0 && cfg != 7 && cfg != 8) fail("set_mma_bulk: 0, 7 or 8, got " + std::to_string(cfg));
    if (per_sm < 1 || per_sm > 9) fail("set_mma_bulk: 1..9 blocks an SM, got " + std::to_string(per_sm));
    g_mma_bulk = cfg ? cfg * 16 + per_sm : 0;
}
uint64_t mma_bulk_launches() {
    return g_bulk_launches.load();
}
void set_mma_split(bool on) {
    g_mma_split = on ? 1 : 0;
}

std::atomic<int> g_norm_in_gemv{-1};  // -1: DSINFER_CUDA_NORM_IN_GEMV (read once; default on), 0 off, 1 on
bool norm_in_gemv() {
    return mode_or_env(g_norm_in_gemv, "DSINFER_CUDA_NORM_IN_GEMV") == 1;
}
void set_norm_in_gemv(bool on) {
    g_norm_in_gemv = on ? 1 : 0;
}

bool mma_gemv_groups_split(const float* x, const Weight& w, int64_t groups, int64_t rows, float* y) {
    if (!mma_split_enabled() || !mma_gemv_ok(w) || w.k > kMmaMaxK / 2) return false;
    if (groups <= 0 || groups > kMmaMaxInline || rows <= 0 || groups * rows > w.n) return false;
    if (g_mma_mode != 2 && groups * ceil_div(rows, 16) < kMmaMinTiles) return false;
    if (w.fmt == WeightFormat::FP8 && groups > 1 && rows % 16 != 0) return false;  // a tile in one scale block
    for (int64_t g = 0; g < groups; ++g)
        if (reinterpret_cast<uintptr_t>(x + g * w.k) % 16 != 0) return false;
    MmaJobs l{};
    for (int64_t g = 0; g < groups; ++g) l.j[g] = GemvJob{x + g * w.k, w.data, w.scale, y + g * rows, g * rows};
    launch_mma(w, rows, 0, l, nullptr, groups, true);
    return true;
}

bool mma_gemv_grouped(const Weight& like, int64_t n_rows, const GemvJob* jobs_dev, int64_t njobs) {
    if (!mma_gemv_enabled() || !mma_gemv_ok(like) || njobs <= 0) return false;
    launch_mma(like, n_rows, 0, MmaJobs{}, jobs_dev, njobs);
    return true;
}

void set_mma_cfg(int cfg) {
    if (cfg < -1 || cfg > 8) fail("set_mma_cfg: -1 (per launch) or 0..8, got " + std::to_string(cfg));
    g_mma_cfg = cfg;
}

std::atomic<int> g_mma_moe{-1};  // -1: DSINFER_CUDA_MOE_JOBS (read once; on only if '1'), 0 off, 1 on
void set_mma_moe(bool on) {
    g_mma_moe = on ? 1 : 0;
}

bool mma_moe_ok(const Weight& w1, const Weight& w2, int64_t inter) {
    if (mode_or_env(g_mma_moe, "DSINFER_CUDA_MOE_JOBS", 0) != 1) return false;
    if (!mma_gemv_enabled() || !mma_gemv_ok(w1) || !mma_gemv_ok(w2)) return false;
    // down stages h per 128-block, one warp a block (4 elements a lane, the act_quant blocks).
    return w2.k == inter && inter % 128 == 0 && w1.n == inter;
}

void mma_moe_up(const Weight& w1, const ExpertPtrs* ex, const int32_t* ids, int64_t pairs, int64_t k, const float* x,
                int64_t inter, float* gu) {
    if (reinterpret_cast<uintptr_t>(x) % 16 != 0) fail("mma_moe_up: x must be 16-byte aligned");
    MmaMoe m{ex, ids, x, gu, nullptr, pairs, k, w1.k, inter, 0.f, 1};
    launch_mma(w1, inter, 0, MmaJobs{}, nullptr, 2 * pairs, false, m);
}

void mma_moe_down(const Weight& w2, const ExpertPtrs* ex, const int32_t* ids, int64_t pairs, int64_t inter,
                  const float* gu, float limit, const float* rw, float* y) {
    MmaMoe m{ex, ids, gu, y, rw, pairs, 1, w2.n, inter, limit, 2};
    launch_mma(w2, w2.n, 0, MmaJobs{}, nullptr, pairs, false, m);
}

}  // namespace dsinfer::cuda
