// Sparse attention with a sink (§6.5), decode and prefill alike: every query has its own list of
// key rows (window entries and selected compressed entries). The keys are shared by all heads (one
// KV head), so a block of 8 warps (8 heads) loads each key once into shared memory; the key list is
// split across blocks (split-K, online softmax per split) so that a single decode query still fills
// the GPU, and a second kernel merges the splits with the sink.
#include <atomic>
#include <cmath>
#include <cstdlib>

#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

namespace {

constexpr int kHeadsPerBlock = 8;
constexpr int kKeysPerStep = 16;

template <int DPL>
__global__ void __launch_bounds__(kHeadsPerBlock * 32)
    attn_partial_kernel(const float* q, int64_t h, const float* kv_a, int64_t na, const float* kv_b,
                        const int32_t* idx, int64_t nk, float scale, int64_t chunk, int splits, float* pm, float* pl,
                        float* po, const float* const* a_rows, const float* const* b_rows, const int32_t* qrow) {
    pdl_wait();
    pdl_release();
    constexpr int D = DPL * 32;
    __shared__ float4 keys4[kKeysPerStep * D / 4];
    __shared__ int32_t sid[kKeysPerStep];  // the step's key rows (-1: none)
    const float* keys = reinterpret_cast<const float*>(keys4);
    const int64_t i = blockIdx.x;
    const int s = blockIdx.z;
    if (a_rows) {
        kv_a = a_rows[i];
        kv_b = b_rows[i];
    }
    const int64_t qi = qrow ? qrow[i] : i;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t head = int64_t(blockIdx.y) * kHeadsPerBlock + warp;
    const bool live = head < h;
    float qv[DPL], o[DPL];
#pragma unroll
    for (int c = 0; c < DPL; ++c) {
        qv[c] = live ? q[(qi * h + head) * D + c * 32 + lane] : 0.f;
        o[c] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    const int32_t* ix = idx + i * nk;
    const int64_t j0 = int64_t(s) * chunk, j1 = min(nk, j0 + chunk);
    // Each thread moves PER float4 of the step's keys; the row ids go through shared memory first so
    // that the key loads are independent of each other (all in flight at once).
    constexpr int PER = kKeysPerStep * D / 4 / (kHeadsPerBlock * 32);
    static_assert(PER * kHeadsPerBlock * 32 == kKeysPerStep * D / 4, "keys of a step split evenly over the threads");
    // The next step's ids are read a step ahead (in a register of the first kKeysPerStep threads).
    int32_t next_id = (threadIdx.x < kKeysPerStep && j0 + threadIdx.x < j1) ? ix[j0 + threadIdx.x] : -1;
    for (int64_t jb = j0; jb < j1; jb += kKeysPerStep) {
        __syncthreads();  // the previous step is done with keys4 and sid
        if (threadIdx.x < kKeysPerStep) {
            sid[threadIdx.x] = next_id;
            const int64_t j = jb + kKeysPerStep + threadIdx.x;
            next_id = j < j1 ? ix[j] : -1;
        }
        __syncthreads();
        float4 v[PER];
#pragma unroll
        for (int u = 0; u < PER; ++u) {
            const int e = threadIdx.x + u * kHeadsPerBlock * 32;
            const int32_t id = sid[e / (D / 4)];
            v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (id >= 0) {
                const float* row = id < na ? kv_a + int64_t(id) * D : kv_b + (int64_t(id) - na) * D;
                v[u] = reinterpret_cast<const float4*>(row)[e % (D / 4)];
            }
        }
#pragma unroll
        for (int u = 0; u < PER; ++u) keys4[threadIdx.x + u * kHeadsPerBlock * 32] = v[u];
        __syncthreads();
        if (!live) continue;
        float sc[kKeysPerStep];
        float mx = m;
#pragma unroll
        for (int kk = 0; kk < kKeysPerStep; ++kk) {
            if (sid[kk] < 0) {
                sc[kk] = -INFINITY;
                continue;
            }
            float dot = 0.f;
#pragma unroll
            for (int c = 0; c < DPL; ++c) dot += qv[c] * keys[kk * D + c * 32 + lane];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            sc[kk] = dot * scale;
            mx = fmaxf(mx, sc[kk]);
        }
        if (mx == -INFINITY) continue;
        const float corr = m == -INFINITY ? 0.f : expf(m - mx);
        l *= corr;
#pragma unroll
        for (int c = 0; c < DPL; ++c) o[c] *= corr;
#pragma unroll
        for (int kk = 0; kk < kKeysPerStep; ++kk) {
            if (sid[kk] < 0) continue;
            const float p = expf(sc[kk] - mx);
            l += p;
#pragma unroll
            for (int c = 0; c < DPL; ++c) o[c] += p * keys[kk * D + c * 32 + lane];
        }
        m = mx;
    }
    if (!live) return;
    const int64_t slot = (i * h + head) * splits + s;
    if (lane == 0) {
        pm[slot] = m;
        pl[slot] = l;
    }
#pragma unroll
    for (int c = 0; c < DPL; ++c) po[slot * D + c * 32 + lane] = o[c];
}

// The tiled variant (the default; DSINFER_CUDA_ATTN_TILED=0 or set_attn_tiled(false) for the one
// above): a block takes 16 heads and steps over its keys 16 at a time,
// as two small matrix products on register tiles. Scores: S[16 heads x 16 keys] = Q K^T with the
// head dimension split over the 8 warps (a thread holds 4 heads x 2 keys of its warp's slice; the
// slices are summed in order through shared memory). Output: O[16 heads x d] += P V (a thread holds 4
// heads x d / 64 channels). Each shared-memory read feeds 4-8 multiply-adds (one a head in the
// variant above), the next step's keys are loaded while this one is computed, and two blocks share
// an SM. Online softmax per head as above; splits and partials in the same layout, merged by
// attn_combine_kernel.
constexpr int kTiledThreads = 256;
constexpr int kTiledHeads = 16;
constexpr int kTiledKeys = 16;
constexpr int kTiledWarps = kTiledThreads / 32;
template <int D>
constexpr size_t tiled_smem_bytes() {
    return size_t(4) * (size_t(kTiledHeads + kTiledKeys) * (D + 4) + size_t(kTiledWarps) * kTiledHeads * kTiledKeys +
                        size_t(kTiledKeys) * kTiledHeads + kTiledHeads) +
           size_t(4) * 2 * kTiledKeys;
}

template <int D>
__global__ void __launch_bounds__(kTiledThreads, 2)
    attn_tiled_kernel(const float* q, int64_t h, const float* kv_a, int64_t na, const float* kv_b, const int32_t* idx,
                      int64_t nk, float scale, int64_t chunk, int splits, float* pm, float* pl, float* po,
                      const float* const* a_rows, const float* const* b_rows, const int32_t* qrow) {
    constexpr int ROW = D + 4;  // padded rows: a quarter warp's 16-byte reads of 8 rows hit 8 banks
    constexpr int ROW4 = ROW / 4;
    constexpr int SLICE4 = D / 4 / kTiledWarps;                // float4s of a warp's slice of the head dimension
    constexpr int DPT = D / 64;                                // output channels a thread: od + 64 u
    constexpr int LD4 = kTiledKeys * (D / 4) / kTiledThreads;  // float4s of a step's keys a thread loads
    static_assert(SLICE4 >= 1 && DPT >= 1 && LD4 >= 1 && LD4 * kTiledThreads == kTiledKeys * (D / 4), "tiling");
    extern __shared__ float4 tiled_smem[];
    float* Qs = reinterpret_cast<float*>(tiled_smem);
    float* Ks = Qs + kTiledHeads * ROW;
    float* Sp = Ks + kTiledKeys * ROW;                                // [warp][head][key] partial scores
    float* P = Sp + kTiledWarps * kTiledHeads * kTiledKeys;           // [key][head] weights of the step
    float* corr_s = P + kTiledKeys * kTiledHeads;                     // [head]
    int32_t* sid = reinterpret_cast<int32_t*>(corr_s + kTiledHeads);  // [2][key]: row ids, ping-pong
    const float4* Qs4 = reinterpret_cast<const float4*>(Qs);
    const float4* Ks4 = reinterpret_cast<const float4*>(Ks);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t i = blockIdx.x;
    const int s = blockIdx.z;
    const int64_t h0 = int64_t(blockIdx.y) * kTiledHeads;
    const int32_t* ix = idx + i * nk;
    const int64_t j0 = int64_t(s) * chunk, j1 = min(nk, j0 + chunk);
    pdl_wait();  // the ids come from the indexer's top-k, the queries from the kernels before
    pdl_release();
    // This step's ids into shared memory, the next one's into a register.
    int32_t nid = -1;
    if (tid < kTiledKeys) {
        sid[tid] = j0 + tid < j1 ? ix[j0 + tid] : -1;
        nid = j0 + kTiledKeys + tid < j1 ? ix[j0 + kTiledKeys + tid] : -1;
    }
    if (a_rows) {
        kv_a = a_rows[i];
        kv_b = b_rows[i];
    }
    const int64_t qi = qrow ? qrow[i] : i;
    for (int e = tid; e < kTiledHeads * (D / 4); e += kTiledThreads) {
        const int hh = e / (D / 4), c = e % (D / 4);
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (h0 + hh < h) v = reinterpret_cast<const float4*>(q + (qi * h + h0 + hh) * D)[c];
        reinterpret_cast<float4*>(Qs + hh * ROW)[c] = v;
    }
    __syncthreads();
    auto load_keys = [&](const int32_t* ids, float4(&r)[LD4]) {
#pragma unroll
        for (int u = 0; u < LD4; ++u) {
            const int e = tid + u * kTiledThreads;
            const int32_t id = ids[e / (D / 4)];
            r[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (id >= 0) {
                const float* row = id < na ? kv_a + int64_t(id) * D : kv_b + (int64_t(id) - na) * D;
                r[u] = reinterpret_cast<const float4*>(row)[e % (D / 4)];
            }
        }
    };
    float4 kr[LD4];
    load_keys(sid, kr);

    // Scores: lane -> heads 4 hq .. + 3 and keys kp, kp + 8 of warp's slice; output: heads 4 pq .. + 3,
    // channels od + 64 u.
    const int hq = lane >> 3, kp = lane & 7;
    const int pq = tid >> 6, od = tid & 63;
    float o[4][DPT];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int u = 0; u < DPT; ++u) o[a][u] = 0.f;
    // Softmax state of head tid >> 4 (the 16 threads of a head hold the same values).
    float m = -INFINITY, l = 0.f;
    int step = 0;
    for (int64_t jb = j0; jb < j1; jb += kTiledKeys, ++step) {
        const int32_t* cur = sid + (step & 1) * kTiledKeys;
        int32_t* nxt = sid + ((step + 1) & 1) * kTiledKeys;
#pragma unroll
        for (int u = 0; u < LD4; ++u)
            reinterpret_cast<float4*>(
                Ks)[(tid + u * kTiledThreads) / (D / 4) * ROW4 + (tid + u * kTiledThreads) % (D / 4)] = kr[u];
        if (tid < kTiledKeys) {
            nxt[tid] = nid;
            const int64_t j = jb + 2 * kTiledKeys + tid;
            nid = j < j1 ? ix[j] : -1;
        }
        // (A step of padding only, as the tails of prefill's lists, is skipped whole.)
        const bool any_key = __syncthreads_or(tid < kTiledKeys && cur[tid] >= 0);
        if (jb + kTiledKeys < j1) load_keys(nxt, kr);  // in flight while this step is computed
        if (!any_key) continue;  // the same for the whole block; nothing read Ks or P in this step

        float acc[4][2];
#pragma unroll
        for (int a = 0; a < 4; ++a) acc[a][0] = acc[a][1] = 0.f;
#pragma unroll
        for (int c4 = 0; c4 < SLICE4; ++c4) {
            const int c = warp * SLICE4 + c4;
            float4 kv[2], qv[4];
#pragma unroll
            for (int b = 0; b < 2; ++b) kv[b] = Ks4[(kp + 8 * b) * ROW4 + c];
#pragma unroll
            for (int a = 0; a < 4; ++a) qv[a] = Qs4[(4 * hq + a) * ROW4 + c];
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    acc[a][b] = fmaf(qv[a].x, kv[b].x, acc[a][b]);
                    acc[a][b] = fmaf(qv[a].y, kv[b].y, acc[a][b]);
                    acc[a][b] = fmaf(qv[a].z, kv[b].z, acc[a][b]);
                    acc[a][b] = fmaf(qv[a].w, kv[b].w, acc[a][b]);
                }
        }
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 2; ++b) Sp[(warp * kTiledHeads + 4 * hq + a) * kTiledKeys + kp + 8 * b] = acc[a][b];
        __syncthreads();
        {  // thread (head tid >> 4, key tid & 15): its score, then the head's online softmax over 16 lanes
            const int hh = tid >> 4, key = tid & 15;
            float sc = 0.f;
#pragma unroll
            for (int w = 0; w < kTiledWarps; ++w) sc += Sp[(w * kTiledHeads + hh) * kTiledKeys + key];
            sc = cur[key] < 0 ? -INFINITY : sc * scale;
            float mx = sc;
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off, 16));
            const float mn = fmaxf(m, mx);
            const bool any = mn != -INFINITY;  // the same for the head's 16 lanes
            const float corr = !any ? 1.f : (m == -INFINITY ? 0.f : expf(m - mn));
            const float p = !any || cur[key] < 0 ? 0.f : expf(sc - mn);
            float ps = p;
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, off, 16);
            if (any) {
                l = l * corr + ps;
                m = mn;
            }
            P[key * kTiledHeads + hh] = p;
            if (key == 0) corr_s[hh] = corr;
        }
        __syncthreads();
        float cr[4];
#pragma unroll
        for (int a = 0; a < 4; ++a) cr[a] = corr_s[4 * pq + a];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int u = 0; u < DPT; ++u) o[a][u] *= cr[a];
#pragma unroll 4
        for (int key = 0; key < kTiledKeys; ++key) {
            if (cur[key] < 0) continue;  // the same for the whole block
            const float4 pw = reinterpret_cast<const float4*>(P + key * kTiledHeads)[pq];
#pragma unroll
            for (int u = 0; u < DPT; ++u) {
                const float v = Ks[key * ROW + od + 64 * u];
                o[0][u] = fmaf(pw.x, v, o[0][u]);
                o[1][u] = fmaf(pw.y, v, o[1][u]);
                o[2][u] = fmaf(pw.z, v, o[2][u]);
                o[3][u] = fmaf(pw.w, v, o[3][u]);
            }
        }
        __syncthreads();  // Ks, P and the ids of this step are free again
    }
    if ((tid & 15) == 0 && h0 + (tid >> 4) < h) {
        const int64_t slot = (i * h + h0 + (tid >> 4)) * splits + s;
        pm[slot] = m;
        pl[slot] = l;
    }
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        const int64_t head = h0 + 4 * pq + a;
        if (head >= h) continue;
        const int64_t slot = (i * h + head) * splits + s;
#pragma unroll
        for (int u = 0; u < DPT; ++u) po[slot * D + od + 64 * u] = o[a][u];
    }
}

// Merges the splits of one (query, head) for 128 of its channels (blockIdx.y): one warp computes the
// weights exp(m_s − M) and the normalizer Z (with the sink) into shared memory, then every thread sums
// its channel over the splits (loads unrolled, all in flight).
constexpr int kMaxSplits = 64;
// With rp.pos set, the output rows then get the inverse RoPE of the op table's rope (its last rope_dim
// channels at position pos[output row / h]); the two channels of a pair sit in adjacent lanes.
struct OutRope {
    const int64_t* pos;
    const float* freqs;
    int64_t rope_dim;
};
__global__ void attn_combine_kernel(int64_t h, int64_t d, int splits, const float* sink, const float* pm,
                                    const float* pl, const float* po, float* out, const int32_t* qrow, OutRope rp) {
    pdl_wait();
    pdl_release();
    const int64_t row = blockIdx.x;  // i * h + head
    const int64_t head = row % h;
    const int64_t orow = qrow ? int64_t(qrow[row / h]) * h + head : row;
    __shared__ float wgt[kMaxSplits];
    __shared__ float mx_s, z_s;
    if (threadIdx.x < 32) {  // one warp: the splits' maximum, weights and normalizer (lanes, then shuffles)
        const int lane = threadIdx.x;
        float msv[kMaxSplits / 32], plv[kMaxSplits / 32];
        float mx = -INFINITY;
#pragma unroll
        for (int u = 0; u < kMaxSplits / 32; ++u) {
            const int s = lane + 32 * u;
            msv[u] = s < splits ? pm[row * splits + s] : -INFINITY;
            plv[u] = s < splits ? pl[row * splits + s] : 0.f;
            mx = fmaxf(mx, msv[u]);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        float z = 0.f;
#pragma unroll
        for (int u = 0; u < kMaxSplits / 32; ++u) {
            const int s = lane + 32 * u;
            const float w = msv[u] == -INFINITY ? 0.f : expf(msv[u] - mx);
            if (s < splits) wgt[s] = w;
            z += plv[u] * w;
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) z += __shfl_xor_sync(0xffffffffu, z, off);
        if (lane == 0) {
            mx_s = mx;
            z_s = mx == -INFINITY ? 0.f : z + expf(sink[head] - mx);
        }
    }
    __syncthreads();
    const float mx = mx_s;
    // This block's channels: [blockIdx.y · blockDim.x, + blockDim.x).
    float* o = out + orow * d;
    const int64_t c = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
    float v = 0.f;
    if (c < d && mx != -INFINITY) {
        float acc = 0.f;
#pragma unroll 16
        for (int s = 0; s < splits; ++s) acc += po[(row * splits + s) * d + c] * wgt[s];
        v = acc / z_s;
    }
    if (rp.pos) {  // block-uniform; d and rope_dim even, so a pair never straddles a warp
        const float partner = __shfl_xor_sync(0xffffffffu, v, 1);
        const int64_t first = d - rp.rope_dim;
        if (c < d && c >= first) {
            float cs, sn;
            rope_cos_sin(rp.pos[orow / h], rp.freqs[(c - first) / 2], true, cs, sn);
            float a = (c & 1) ? partner : v, b = (c & 1) ? v : partner;
            rope_rotate(a, b, cs, sn);
            v = (c & 1) ? b : a;
        }
    }
    if (c < d) o[c] = v;
}

// The tiled kernel's dynamic shared memory (above 48 KB for d = 512: allowed once per kernel).
template <int D>
size_t tiled_smem() {
    static const bool attr = [] {
        DSINFER_CUDA_CHECK(cudaFuncSetAttribute(attn_tiled_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int(tiled_smem_bytes<D>())));
        return true;
    }();
    (void)attr;
    return tiled_smem_bytes<D>();
}

std::atomic<int> g_attn_tiled{-1};  // -1: DSINFER_CUDA_ATTN_TILED (read once; on unless '0')

int64_t attn_split_keys() {
    static const int64_t v = [] {
        const char* e = std::getenv("DSINFER_CUDA_ATTN_SPLIT_KEYS");
        return e ? std::max<int64_t>(0, std::atoll(e)) : int64_t(0);
    }();
    return v;
}

}  // namespace

bool attn_tiled() {
    return mode_or_env(g_attn_tiled, "DSINFER_CUDA_ATTN_TILED") == 1;
}

void set_attn_tiled(bool on) {
    g_attn_tiled = on ? 1 : 0;
}

void sparse_attn_rows(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                      const int32_t* idx, int64_t nk, const float* sink, float scale, float* out,
                      const float* const* a_rows, const float* const* b_rows, const int32_t* qrow,
                      const int64_t* rope_pos, const ops::RopeFreqs* rope) {
    if (rope_pos && (!rope || rope->rope_dim % 2 || d % 2 || rope->rope_dim > d))
        fail("sparse_attn_rows: inverse RoPE needs an even rope_dim ≤ d");
    if (t <= 0 || h <= 0) return;
    const bool tiled = attn_tiled();
    const int64_t hgroups = ceil_div(h, tiled ? kTiledHeads : kHeadsPerBlock);
    // Enough blocks for two per SM, each with at least 32 keys (DSINFER_CUDA_ATTN_SPLIT_KEYS=N: at
    // least N). The tiled kernel steps 16 keys at a time; H100, one Flash layer's decode graph: 32 keys a
    // split 0.8-2.1 µs faster than 16 in two runs (fewer partials for the merge).
    const int64_t min_keys = std::max<int64_t>(attn_split_keys(), 32);
    int splits =
        int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(2 * sm_count(), t * hgroups), ceil_div(nk, min_keys))));
    splits = std::min(splits, kMaxSplits);
    const int64_t step = tiled ? kTiledKeys : kKeysPerStep;
    const int64_t chunk = ceil_div(ceil_div(nk, splits), step) * step;
    splits = int(std::max<int64_t>(1, ceil_div(nk, chunk)));
    const size_t rows = size_t(t * h * splits);
    float* part = static_cast<float*>(scratch(kScratchAttn, rows * (2 + size_t(d)) * 4));
    float* pm = part;
    float* pl = part + rows;
    float* po = part + 2 * rows;
    const dim3 grid{unsigned(t), unsigned(hgroups), unsigned(splits)};
    auto go = [&](auto kernel, int threads, size_t smem) {
        launch_pdl(kernel, grid, threads, smem, q, h, kv_a, na, kv_b, idx, nk, scale, chunk, splits, pm, pl, po, a_rows,
                   b_rows, qrow);
    };
    constexpr int wt = kHeadsPerBlock * 32;
    switch (d) {
        case 64:
            tiled ? go(attn_tiled_kernel<64>, kTiledThreads, tiled_smem<64>()) : go(attn_partial_kernel<2>, wt, 0);
            break;
        case 128:
            tiled ? go(attn_tiled_kernel<128>, kTiledThreads, tiled_smem<128>()) : go(attn_partial_kernel<4>, wt, 0);
            break;
        case 256:
            tiled ? go(attn_tiled_kernel<256>, kTiledThreads, tiled_smem<256>()) : go(attn_partial_kernel<8>, wt, 0);
            break;
        case 512:
            tiled ? go(attn_tiled_kernel<512>, kTiledThreads, tiled_smem<512>()) : go(attn_partial_kernel<16>, wt, 0);
            break;
        default:
            fail("sparse_attn: head dim must be 64, 128, 256 or 512, got " + std::to_string(d));
    }
    DSINFER_CUDA_LAUNCH();
    const OutRope rp{rope_pos, rope_pos ? rope->freqs : nullptr, rope_pos ? rope->rope_dim : 0};
    launch_pdl(attn_combine_kernel, dim3(unsigned(t * h), unsigned(ceil_div(d, 128))), 128, 0, h, d, splits, sink, pm,
               pl, po, out, qrow, rp);
    DSINFER_CUDA_LAUNCH();
}

void sparse_attn(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                 const int32_t* idx, int64_t nk, const float* sink, float scale, float* out) {
    sparse_attn_rows(q, t, h, d, kv_a, na, kv_b, idx, nk, sink, scale, out, nullptr, nullptr, nullptr, nullptr,
                     nullptr);
}

}  // namespace dsinfer::cuda
