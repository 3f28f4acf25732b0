// Compressor pooling (§7.2), lightning-indexer scores (§8.4), top-k (§8.5) and MoE routing (§10.1).
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

namespace {

__global__ void compress_pool_kernel(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap,
                                     float* z) {
    pdl_wait();
    pdl_release();
    const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= d) return;
    z[c] = pool_col(kv, score, ratio, d, overlap, c);
}

constexpr int kIdxKeys = 16;

// Block: query i, keys [j0, j0 + kIdxKeys). Shared: q_i [h][dh+1], keys [kIdxKeys][dh], dots [kIdxKeys][h].
// keys_rows/qrow (optional, device arrays): row i's keys and its row of q and w (batched decode of
// several sequences; keys past valid[i] are never read).
__global__ void index_scores_kernel(const float* q, const float* w, int64_t h, int64_t dh, const float* keys,
                                    int64_t n, const int32_t* valid, float* scores, const float* const* keys_rows,
                                    const int32_t* qrow) {
    pdl_wait();
    pdl_release();
    extern __shared__ float sm[];
    float* qs = sm;
    float* ks = qs + h * (dh + 1);
    float* dots = ks + kIdxKeys * dh;
    const int64_t i = blockIdx.x, j0 = int64_t(blockIdx.y) * kIdxKeys;
    const int64_t nv = valid[i];
    const int64_t qi = qrow ? qrow[i] : i;
    if (keys_rows) keys = keys_rows[i];
    const int64_t nload = keys_rows ? min(n, nv) : n;
    for (int64_t e = threadIdx.x; e < h * dh; e += blockDim.x) qs[(e / dh) * (dh + 1) + e % dh] = q[qi * h * dh + e];
    for (int64_t e = threadIdx.x; e < kIdxKeys * dh; e += blockDim.x) {
        const int64_t j = j0 + e / dh;
        ks[e] = j < nload ? keys[j * dh + e % dh] : 0.f;
    }
    __syncthreads();
    for (int64_t p = threadIdx.x; p < kIdxKeys * h; p += blockDim.x) {
        const int64_t kk = p / h, hh = p % h;
        const float* qr = qs + hh * (dh + 1);
        const float* kr = ks + kk * dh;
        float s = 0.f;
        for (int64_t c = 0; c < dh; ++c) s += qr[c] * kr[c];
        dots[p] = s;
    }
    __syncthreads();
    if (threadIdx.x < kIdxKeys) {
        const int64_t j = j0 + threadIdx.x;
        if (j < n) {
            float s = 0.f;
            if (j >= nv) {
                s = -INFINITY;
            } else {
                for (int64_t hh = 0; hh < h; ++hh) s += w[qi * h + hh] * fmaxf(dots[threadIdx.x * h + hh], 0.f);
            }
            scores[i * n + j] = s;
        }
    }
}

__device__ __forceinline__ uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u >> 31) ? ~u : (u | 0x80000000u);
}

constexpr int kTopkThreads = 1024;

std::atomic<int> g_topk_segments{-1};  // -1: DSINFER_CUDA_TOPK_SEGMENTS (read once; off only if '0')
bool topk_segments() {
    return mode_or_env(g_topk_segments, "DSINFER_CUDA_TOPK_SEGMENTS") == 1;
}

// Radix select of the kk-th largest key, then an in-order compaction: all keys above it, and the
// lowest-index ones equal to it. tie[i] = 1 when keys equal to the kk-th (finite) one are more than
// the slots left for them: the set is then not fixed by the values, and the host redoes the row
// with the CPU's PyTorch tie order (topk below).
// SEG (the default; DSINFER_CUDA_TOPK_SEGMENTS=0 or set_topk_segments(false) for the rounds): one shared atomic per
// distinct bin of a warp in the histograms (a flat row puts most keys in one bin), and the compaction
// by contiguous segments (thread t owns segment t: count its keys above and at the threshold, two block
// scans, write in index order) instead of ⌈n / 1024⌉ rounds of one block scan each; the same output.
template <bool SEG>
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(const float* scores, int64_t n_all, const int32_t* valid,
                                                            int64_t k, int32_t* idx, int32_t* tie) {
    pdl_wait();
    pdl_release();
    using Scan = cub::BlockScan<int, kTopkThreads>;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ int hist[256];
    __shared__ uint32_t s_prefix, s_mask;
    __shared__ int64_t s_remaining, s_base_gt, s_base_eq;
    const int64_t i = blockIdx.x;
    const float* s = scores + i * n_all;
    int32_t* out = idx + i * k;
    // Candidates of row i: the first valid[i] scores (all n_all when valid is null).
    const int64_t n = valid ? min(n_all, int64_t(max(valid[i], 0))) : n_all;
    const int64_t kk = min(k, n);
    if (threadIdx.x == 0) {
        s_prefix = 0;
        s_mask = 0;
        s_remaining = kk;
        s_base_gt = 0;
        s_base_eq = 0;
    }
    __syncthreads();
    if (kk > 0) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
            __syncthreads();
            const uint32_t prefix = s_prefix, mask = s_mask;
            if constexpr (SEG) {
                for (int64_t c0 = 0; c0 < n; c0 += blockDim.x) {
                    const int64_t j = c0 + threadIdx.x;
                    int bin = -1;
                    if (j < n) {
                        const uint32_t key = order_key(s[j]);
                        if ((key & mask) == prefix) bin = int((key >> shift) & 255);
                    }
                    const unsigned peers = __match_any_sync(0xffffffffu, bin);
                    if (bin >= 0 && int(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], __popc(peers));
                }
            } else {
                for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
                    const uint32_t key = order_key(s[j]);
                    if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1);
                }
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int64_t cum = 0;
                int b = 255;
                for (; b > 0; --b) {
                    if (cum + hist[b] >= s_remaining) break;
                    cum += hist[b];
                }
                s_remaining -= cum;
                s_prefix = prefix | (uint32_t(b) << shift);
                s_mask = mask | (255u << shift);
            }
            __syncthreads();
        }
    }
    const uint32_t thr = s_prefix;
    const int64_t take_eq = s_remaining, count_gt = kk - take_eq;
    if (SEG && kk > 0) {
        const int64_t seg = (n + blockDim.x - 1) / blockDim.x;
        const int64_t a = min(n, int64_t(threadIdx.x) * seg), b = min(n, a + seg);
        int gt = 0, eq = 0;
        for (int64_t j = a; j < b; ++j) {
            const uint32_t key = order_key(s[j]);
            gt += key > thr;
            eq += key == thr;
        }
        int gt_ex, eq_ex, eq_total;
        Scan(scan_tmp).ExclusiveSum(gt, gt_ex);
        __syncthreads();
        Scan(scan_tmp).ExclusiveSum(eq, eq_ex, eq_total);
        int64_t pg = gt_ex, pe = eq_ex;
        if (gt > 0 || (eq > 0 && pe < take_eq))
            for (int64_t j = a; j < b; ++j) {
                const uint32_t key = order_key(s[j]);
                if (key > thr) {
                    out[pg++] = int32_t(j);
                } else if (key == thr) {
                    if (pe < take_eq) out[count_gt + pe] = int32_t(j);
                    ++pe;
                }
            }
        if (threadIdx.x == 0) s_base_eq = eq_total;
    }
    for (int64_t c0 = 0; !SEG && c0 < n && kk > 0; c0 += blockDim.x) {
        const int64_t j = c0 + threadIdx.x;
        int gt = 0, eq = 0;
        if (j < n) {
            const uint32_t key = order_key(s[j]);
            gt = key > thr;
            eq = key == thr;
        }
        int packed = gt | (eq << 16), excl, total;
        Scan(scan_tmp).ExclusiveSum(packed, excl, total);
        const int64_t pos_gt = s_base_gt + (excl & 0xffff), pos_eq = s_base_eq + (excl >> 16);
        if (gt) out[pos_gt] = int32_t(j);
        if (eq && pos_eq < take_eq) out[count_gt + pos_eq] = int32_t(j);
        __syncthreads();
        if (threadIdx.x == 0) {
            s_base_gt += total & 0xffff;
            s_base_eq += total >> 16;
        }
        __syncthreads();
    }
    __syncthreads();
    if (threadIdx.x == 0) tie[i] = kk > 0 && s_base_eq > take_eq && thr != order_key(-INFINITY);
    for (int64_t p = threadIdx.x; p < k; p += blockDim.x) {
        if (p >= kk) out[p] = -1;
        else if (s[out[p]] == -INFINITY) out[p] = -1;
    }
}

constexpr int kRouteThreads = 256;

// hash_ids: row i's ids at hash_ids + i * k, or with tokens, at hash_ids + tokens[i] * k (a tid2eid table).
__global__ void __launch_bounds__(kRouteThreads)
    moe_route_kernel(const float* logits, int64_t e, const float* bias, const int32_t* hash_ids, const int32_t* tokens,
                     int64_t k, float route_scale, int32_t* ids, float* w) {
    pdl_wait();
    pdl_release();
    extern __shared__ float sm[];
    float* sc = sm;
    float* sel = sm + e;
    __shared__ float rv[kRouteThreads / 32];
    __shared__ int ri[kRouteThreads / 32];
    __shared__ int chosen[64];
    const int64_t i = blockIdx.x;
    for (int64_t j = threadIdx.x; j < e; j += blockDim.x) {
        const float x = logits[i * e + j];
        const float sp = x > 20.f ? x : log1pf(expf(x));
        sc[j] = sqrtf(sp);
        sel[j] = bias ? sc[j] + bias[j] : sc[j];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t r = 0; r < k; ++r) {
        if (hash_ids) {
            if (threadIdx.x == 0) chosen[r] = hash_ids[(tokens ? int64_t(tokens[i]) : i) * k + r];
            continue;
        }
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int64_t j = threadIdx.x; j < e; j += blockDim.x) {
            const float v = sel[j];
            if (v > bv || (v == bv && j < bi)) bv = v, bi = int(j);
        }
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if (lane == 0) rv[warp] = bv, ri[warp] = bi;
        __syncthreads();
        if (threadIdx.x == 0) {
            float b = rv[0];
            int bix = ri[0];
            for (int wdx = 1; wdx < kRouteThreads / 32; ++wdx)
                if (rv[wdx] > b || (rv[wdx] == b && ri[wdx] < bix)) b = rv[wdx], bix = ri[wdx];
            chosen[r] = bix;
            sel[bix] = -INFINITY;
        }
        __syncthreads();
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.f;
        for (int64_t j = 0; j < k; ++j) s += sc[chosen[j]];
        for (int64_t j = 0; j < k; ++j) {
            ids[i * k + j] = chosen[j];
            w[i * k + j] = sc[chosen[j]] / s * route_scale;
        }
    }
}

void index_scores_launch(const float* q, const float* w, const int32_t* qrow, int64_t t, int64_t h, int64_t dh,
                         const float* keys, const float* const* keys_rows, int64_t n, const int32_t* valid,
                         float* scores) {
    if (t <= 0 || n <= 0) return;
    const size_t smem = size_t(h * (dh + 1) + kIdxKeys * dh + kIdxKeys * h) * 4;
    if (smem > 48 * 1024)
        DSINFER_CUDA_CHECK(cudaFuncSetAttribute(index_scores_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int(smem)));
    dim3 grid(unsigned(t), unsigned(ceil_div(n, kIdxKeys)));
    launch_pdl(index_scores_kernel, grid, 256, smem, q, w, h, dh, keys, n, valid, scores, keys_rows, qrow);
    DSINFER_CUDA_LAUNCH();
}

constexpr int kArgmaxThreads = 1024;

// (value, index) pairs ordered as a left-to-right scan with `>` would find them: the larger value
// wins, equal values go to the lower index, NaN loses to everything (index -1: no candidate yet).
__device__ __forceinline__ void argmax_merge(float& v, int32_t& i, float ov, int32_t oi) {
    if (oi < 0) return;
    if (i < 0 || ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

// Block: one row of n logits. out[r] = the first index of the row's maximum, as a sequential scan
// from index 0 with `l[j] > l[best]` finds it: NaNs are never taken, and a NaN at index 0 is kept.
__global__ void __launch_bounds__(kArgmaxThreads) argmax_rows_kernel(const float* l, int64_t n, int32_t* out) {
    pdl_wait();
    pdl_release();
    const float* row = l + int64_t(blockIdx.x) * n;
    float v = 0.f;
    int32_t i = -1;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float x = row[j];
        if (!isnan(x)) argmax_merge(v, i, x, int32_t(j));
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        argmax_merge(v, i, ov, oi);
    }
    __shared__ float sv[32];
    __shared__ int32_t si[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    if (warp != 0) return;
    const int nw = int(blockDim.x / 32);
    v = lane < nw ? sv[lane] : 0.f;
    i = lane < nw ? si[lane] : -1;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, i, o);
        argmax_merge(v, i, ov, oi);
    }
    if (lane == 0) out[blockIdx.x] = (n > 0 && isnan(row[0])) || i < 0 ? 0 : i;
}

// exp(x) for x <= 0 as the host sampler's exp_le0 computes it (runtime/sampler.cpp): the same
// operations, each rounded on its own (no contraction on either side), so the same bits.
__device__ __forceinline__ float exp_le0_dev(float x) {
    const bool live = x > -87.3f;
    x = live ? x : 0.f;
    const float n = __fsub_rn(__fadd_rn(__fmul_rn(x, 1.44269504088896341f), 12582912.f), 12582912.f);
    float r = __fadd_rn(__fmul_rn(n, -0.693145751953125f), x);
    r = __fadd_rn(__fmul_rn(n, -1.428606765330187e-06f), r);
    float q = 1.f / 5040;
    q = __fadd_rn(__fmul_rn(q, r), 1.f / 720);
    q = __fadd_rn(__fmul_rn(q, r), 1.f / 120);
    q = __fadd_rn(__fmul_rn(q, r), 1.f / 24);
    q = __fadd_rn(__fmul_rn(q, r), 1.f / 6);
    q = __fadd_rn(__fmul_rn(q, r), 0.5f);
    q = __fadd_rn(__fmul_rn(q, r), 1.f);
    q = __fadd_rn(__fmul_rn(q, r), 1.f);
    const float scale = __int_as_float((int(n) + 127) << 23);
    return live ? __fmul_rn(q, scale) : 0.f;
}

constexpr int kSummaryThreads = 1024;
constexpr int64_t kSummaryChunk = 256;  // tokens a thread sums (rows up to 1024 chunks: 262144 tokens)

// The total weight of a row, sum of exp_le0((l - m) · it), in the host sampler's order (runtime exp_row),
// by a block of kSummaryThreads: thread c sums chunk c (256 tokens) as eight float lanes (lane j: tokens
// k ≡ j mod 8, in order) added in double in lane order, into chunk[c]; then the chunks' sums pairwise in
// tree (at step s entry i takes entry i + s, for i a multiple of 2s). Returns the total in every thread.
// chunk and tree hold kSummaryThreads doubles each and may be the same array (chunk is then overwritten).
__device__ double row_weight_total(const float* row, int64_t n, float m, float it, double* chunk, double* tree) {
    const int t = threadIdx.x;
    const int nc = int((n + kSummaryChunk - 1) / kSummaryChunk);
    if (t < nc) {
        const int64_t c0 = int64_t(t) * kSummaryChunk, c1 = min(n, c0 + kSummaryChunk);
        float lane[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        for (int64_t k = c0; k < c1; k += 8)
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (k + j < c1) lane[j] = __fadd_rn(lane[j], exp_le0_dev(__fmul_rn(__fsub_rn(row[k + j], m), it)));
        double c = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) c = __dadd_rn(c, double(lane[j]));
        chunk[t] = c;
        tree[t] = c;
    }
    for (int step = 1; step < nc; step *= 2) {
        __syncthreads();
        if (t % (2 * step) == 0 && t + step < nc) tree[t] = __dadd_rn(tree[t], tree[t + step]);
    }
    __syncthreads();
    return tree[0];
}

// Block: one row. ids[0..cap) hold topk_kernel's picks (the cap largest logits, ties by lowest index,
// -1 for -inf), in index order within "above" and "equal to" the cap-th; sorted here by logit
// descending, ties by index; then the maximum, the total weight over the whole row (double) and
// each pick's weight.
__global__ void __launch_bounds__(kSummaryThreads)
    summary_finish_kernel(const float* logits, int64_t n, const float* inv_t, int cap, float* mx, double* z,
                          int32_t* ids, float* w) {
    pdl_wait();
    pdl_release();
    __shared__ uint32_t key[kSummaryThreads];
    __shared__ int32_t idx[kSummaryThreads];
    __shared__ double chunk[kSummaryThreads];  // per chunk of kSummaryChunk tokens, then the pairwise sums
    const int64_t r = blockIdx.x;
    const float* row = logits + r * n;
    int32_t* out = ids + r * cap;
    const int t = threadIdx.x;
    int p2 = 1;
    while (p2 < cap) p2 <<= 1;
    if (t < p2) {
        const int32_t id = t < cap ? out[t] : -1;
        idx[t] = id >= 0 ? id : INT32_MAX;
        key[t] = id >= 0 ? order_key(row[id]) : 0u;
    }
    __syncthreads();
    // Bitonic sort of p2 entries: key descending, then index ascending.
    for (int size = 2; size <= p2; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            if (t < p2) {
                const int o = t ^ stride;
                if (o > t) {
                    const bool first_before = key[t] > key[o] || (key[t] == key[o] && idx[t] < idx[o]);
                    const bool descending = (t & size) == 0;
                    if (first_before != descending) {
                        const uint32_t kt = key[t];
                        key[t] = key[o];
                        key[o] = kt;
                        const int32_t it = idx[t];
                        idx[t] = idx[o];
                        idx[o] = it;
                    }
                }
            }
            __syncthreads();
        }
    const float m = idx[0] != INT32_MAX ? row[idx[0]] : -INFINITY;
    const float it = inv_t[r];
    const double total = row_weight_total(row, n, m, it, chunk, chunk);
    if (t == 0) {
        mx[r] = m;
        z[r] = total;
    }
    if (t < cap) {
        const int32_t id = idx[t] == INT32_MAX ? -1 : idx[t];
        out[t] = id;
        w[r * cap + t] = id >= 0 ? exp_le0_dev(__fmul_rn(__fsub_rn(row[id], m), it)) : 0.f;
    }
}

// Block: one row with u[r] >= 0: the token runtime::draw_whole_row gives for u[r], operation for
// operation: the row's maximum (a float max: the same value in any order), the chunk sums and the
// total weight z as summary_finish_kernel forms them, then thread 0 steps over whole chunks by their
// sums and walks the chunk u · z falls in token by token in double (the last token with weight if
// rounding leaves it past the end). Rows with u[r] < 0 get -1.
__global__ void __launch_bounds__(kSummaryThreads)
    draw_rows_kernel(const float* logits, int64_t n, const float* inv_t, const double* u, int32_t* out) {
    pdl_wait();
    pdl_release();
    __shared__ double chunk[kSummaryThreads], tree[kSummaryThreads];
    __shared__ float wmax[kSummaryThreads / 32];
    const int64_t r = blockIdx.x;
    const double ur = u[r];
    const int t = threadIdx.x;
    if (ur < 0) {
        if (t == 0) out[r] = -1;
        return;
    }
    const float* row = logits + r * n;
    float m = -INFINITY;
    for (int64_t j = t; j < n; j += blockDim.x) m = row[j] > m ? row[j] : m;
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, m, o);
        m = v > m ? v : m;
    }
    if ((t & 31) == 0) wmax[t >> 5] = m;
    __syncthreads();
    m = -INFINITY;
    for (int k = 0; k < int(blockDim.x / 32); ++k) m = wmax[k] > m ? wmax[k] : m;
    const float it = inv_t[r];
    const double total = row_weight_total(row, n, m, it, chunk, tree);
    if (t != 0) return;
    const double target = __dmul_rn(ur, total);
    double cum = 0;
    int64_t i = 0;
    for (; i + kSummaryChunk <= n; i += kSummaryChunk) {
        const double blk = chunk[i / kSummaryChunk];
        if (__dadd_rn(cum, blk) > target) break;
        cum = __dadd_rn(cum, blk);
    }
    for (; i < n; ++i) {
        const float e = exp_le0_dev(__fmul_rn(__fsub_rn(row[i], m), it));
        cum = __dadd_rn(cum, double(e));
        if (target < cum && e > 0.f) {
            out[r] = int32_t(i);
            return;
        }
    }
    for (int64_t j = n - 1; j >= 0; --j)
        if (exp_le0_dev(__fmul_rn(__fsub_rn(row[j], m), it)) > 0.f) {
            out[r] = int32_t(j);
            return;
        }
    out[r] = 0;
}

}  // namespace

void compress_pool(const float* kv, const float* score, int64_t ratio, int64_t d, bool overlap, float* z) {
    launch_pdl(compress_pool_kernel, unsigned(ceil_div(d, 128)), 128, 0, kv, score, ratio, d, overlap, z);
    DSINFER_CUDA_LAUNCH();
}

void index_scores_rows(const float* q, const float* w, const int32_t* qrow, int64_t t, int64_t h, int64_t dh,
                       const float* const* keys_rows, int64_t n, const int32_t* valid, float* scores) {
    index_scores_launch(q, w, qrow, t, h, dh, nullptr, keys_rows, n, valid, scores);
}

void index_scores(const float* q, const float* w, int64_t t, int64_t h, int64_t dh, const float* keys, int64_t n,
                  const int32_t* valid, float* scores) {
    index_scores_launch(q, w, nullptr, t, h, dh, keys, nullptr, n, valid, scores);
}

void topk(const float* scores, int64_t t, int64_t n, const int32_t* valid, int64_t k, int32_t* idx) {
    if (t <= 0 || k <= 0) return;
    int32_t* tie = static_cast<int32_t*>(scratch(kScratchTopkTie, size_t(t) * sizeof(int32_t)));
    if (topk_segments())
        launch_pdl(topk_kernel<true>, unsigned(t), kTopkThreads, 0, scores, n, valid, k, idx, tie);
    else
        launch_pdl(topk_kernel<false>, unsigned(t), kTopkThreads, 0, scores, n, valid, k, idx, tie);
    DSINFER_CUDA_LAUNCH();
    // Rows whose k-th score ties with candidates left out: PyTorch's CPU topk picks among them by
    // its selection algorithm (indexer scores tie exactly at zero), so those rows are redone on the
    // host with the CPU op. This copy synchronizes the stream (not capturable in a CUDA graph).
    std::vector<int32_t> tie_h(static_cast<size_t>(t), 0);
    d2h(tie_h.data(), tie, tie_h.size() * sizeof(int32_t));
    if (std::find(tie_h.begin(), tie_h.end(), 1) == tie_h.end()) return;
    std::vector<int32_t> valid_h;
    if (valid) {
        valid_h.resize(size_t(t));
        d2h(valid_h.data(), valid, valid_h.size() * sizeof(int32_t));
    }
    std::vector<float> row(static_cast<size_t>(n));
    std::vector<int32_t> out(static_cast<size_t>(k));
    for (int64_t i = 0; i < t; ++i) {
        if (!tie_h[size_t(i)]) continue;
        d2h(row.data(), scores + i * n, row.size() * sizeof(float));
        cpu::topk(row.data(), 1, n, valid ? &valid_h[size_t(i)] : nullptr, k, out.data());
        h2d(idx + i * k, out.data(), out.size() * sizeof(int32_t));
    }
}

void moe_route(const float* logits, int64_t t, int64_t e, const float* bias, const int32_t* hash_ids, int64_t k,
               float route_scale, int32_t* ids, float* w) {
    if (t <= 0) return;
    if (k > 64) fail("moe_route: top-k above 64");
    launch_pdl(moe_route_kernel, unsigned(t), kRouteThreads, size_t(2 * e) * 4, logits, e, bias, hash_ids,
               static_cast<const int32_t*>(nullptr), k, route_scale, ids, w);
    DSINFER_CUDA_LAUNCH();
}

void moe_route_hash(const float* logits, int64_t t, int64_t e, const int32_t* tokens, const int32_t* table, int64_t k,
                    float route_scale, int32_t* ids, float* w) {
    if (t <= 0) return;
    if (k > 64) fail("moe_route: top-k above 64");
    launch_pdl(moe_route_kernel, unsigned(t), kRouteThreads, size_t(2 * e) * 4, logits, e,
               static_cast<const float*>(nullptr), table, tokens, k, route_scale, ids, w);
    DSINFER_CUDA_LAUNCH();
}

void argmax_rows(const float* logits, int64_t rows, int64_t n, int32_t* out) {
    if (rows <= 0) return;
    if (n <= 0 || n > INT32_MAX) fail("argmax_rows: row length out of range");
    launch_pdl(argmax_rows_kernel, unsigned(rows), kArgmaxThreads, 0, logits, n, out);
    DSINFER_CUDA_LAUNCH();
}

void sample_summary(const float* logits, int64_t rows, int64_t n, const float* inv_t, int cap, float* mx, double* z,
                    int32_t* ids, float* w) {
    if (rows <= 0) return;
    if (cap <= 0 || cap > kSummaryThreads || cap > n) fail("sample_summary: cap must be in [1, min(1024, n)]");
    if (n > kSummaryThreads * kSummaryChunk) fail("sample_summary: rows of more than 262144 tokens");
    int32_t* tie = static_cast<int32_t*>(scratch(kScratchTopkTie, size_t(rows) * sizeof(int32_t)));
    if (topk_segments())
        launch_pdl(topk_kernel<true>, unsigned(rows), kTopkThreads, 0, logits, n, static_cast<const int32_t*>(nullptr),
                   int64_t(cap), ids, tie);
    else
        launch_pdl(topk_kernel<false>, unsigned(rows), kTopkThreads, 0, logits, n, static_cast<const int32_t*>(nullptr),
                   int64_t(cap), ids, tie);
    DSINFER_CUDA_LAUNCH();
    launch_pdl(summary_finish_kernel, unsigned(rows), kSummaryThreads, 0, logits, n, inv_t, cap, mx, z, ids, w);
    DSINFER_CUDA_LAUNCH();
}

void draw_rows(const float* logits, int64_t rows, int64_t n, const float* inv_t, const double* u, int32_t* out) {
    if (rows <= 0) return;
    if (n <= 0 || n > kSummaryThreads * kSummaryChunk) fail("draw_rows: rows of 1 to 262144 tokens");
    launch_pdl(draw_rows_kernel, unsigned(rows), kSummaryThreads, 0, logits, n, inv_t, u, out);
    DSINFER_CUDA_LAUNCH();
}

void set_topk_segments(bool on) { g_topk_segments = on ? 1 : 0; }

}  // namespace dsinfer::cuda
