// Sparse attention with a sink (§6.5), decode and prefill alike: every query has its own list of
// key rows (window entries and selected compressed entries). The keys are shared by all heads (one
// KV head), so a block of 8 warps (8 heads) loads each key once into shared memory; the key list is
// split across blocks (split-K, online softmax per split) so that a single decode query still fills
// the GPU, and a second kernel merges the splits with the sink.
#include <cmath>

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

}  // namespace

void sparse_attn_rows(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                      const int32_t* idx, int64_t nk, const float* sink, float scale, float* out,
                      const float* const* a_rows, const float* const* b_rows, const int32_t* qrow,
                      const int64_t* rope_pos, const ops::RopeFreqs* rope) {
    if (rope_pos && (!rope || rope->rope_dim % 2 || d % 2 || rope->rope_dim > d))
        fail("sparse_attn_rows: inverse RoPE needs an even rope_dim ≤ d");
    if (t <= 0 || h <= 0) return;
    const int64_t hgroups = ceil_div(h, kHeadsPerBlock);
    // Enough blocks for two per SM, each with at least 32 keys.
    int splits =
        int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(2 * sm_count(), t * hgroups), ceil_div(nk, 32))));
    splits = std::min(splits, kMaxSplits);
    const int64_t chunk = ceil_div(ceil_div(nk, splits), kKeysPerStep) * kKeysPerStep;
    splits = int(std::max<int64_t>(1, ceil_div(nk, chunk)));
    const size_t rows = size_t(t * h * splits);
    float* part = static_cast<float*>(scratch(kScratchAttn, rows * (2 + size_t(d)) * 4));
    float* pm = part;
    float* pl = part + rows;
    float* po = part + 2 * rows;
    const dim3 grid{unsigned(t), unsigned(hgroups), unsigned(splits)};
    cudaStream_t st = cur_stream();
    switch (d) {
        case 64:
            launch_pdl(attn_partial_kernel<2>, grid, kHeadsPerBlock * 32, 0, q, h, kv_a, na, kv_b, idx, nk, scale,
                       chunk, splits, pm, pl, po, a_rows, b_rows, qrow);
            break;
        case 128:
            launch_pdl(attn_partial_kernel<4>, grid, kHeadsPerBlock * 32, 0, q, h, kv_a, na, kv_b, idx, nk, scale,
                       chunk, splits, pm, pl, po, a_rows, b_rows, qrow);
            break;
        case 256:
            launch_pdl(attn_partial_kernel<8>, grid, kHeadsPerBlock * 32, 0, q, h, kv_a, na, kv_b, idx, nk, scale,
                       chunk, splits, pm, pl, po, a_rows, b_rows, qrow);
            break;
        case 512:
            launch_pdl(attn_partial_kernel<16>, grid, kHeadsPerBlock * 32, 0, q, h, kv_a, na, kv_b, idx, nk, scale,
                       chunk, splits, pm, pl, po, a_rows, b_rows, qrow);
            break;
        default: fail("sparse_attn: head dim must be 64, 128, 256 or 512, got " + std::to_string(d));
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
