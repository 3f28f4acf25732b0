// Routed experts of one MoE layer (§10.2) with routing, permute and combine.
//
// Decode (few token·slot pairs): one grouped GEMV launch computes gate and up for every pair, each
// block reading its expert's FP4/FP8 rows in place (on tensor cores when the input is act_quant'ed:
// gemv_mma.cu); SwiGLU + routing weight + FP8 quantization; a
// second grouped GEMV for w2; then a combine kernel sums the k slots of each token in slot order.
// No host synchronization, so a decode step can be captured in a CUDA graph.
// Prefill (many pairs): ids are copied to the host, pairs are sorted by expert, inputs gathered,
// and each expert runs linear() on its rows (FP8 tensor cores through cuBLASLt once it has more
// than kGemvMaxRows rows), then the same combine.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

namespace {

// Up to this many (token, expert) pairs the grouped GEMV path (no host sync; each pair streams its
// expert's weights) beats sorting by expert on the host and one linear per expert (H200, batch 64:
// 384 pairs, 13 ms per layer sorted against ~4 ms grouped). Beyond it (prefill) experts get many
// rows each and the sorted path's per-expert GEMMs win.
constexpr int64_t kGroupedMaxPairs = 2048;

__global__ void build_jobs_kernel(const ExpertPtrs* ex, const int32_t* ids, int64_t pairs, int64_t k, const float* x,
                                  int64_t d, int64_t inter, float* gu, const float* h, float* y, GemvJob* jobs_up,
                                  GemvJob* jobs_down) {
    pdl_wait();
    pdl_release();
    const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (p >= pairs) return;
    const ExpertPtrs e = ex[ids[p]];
    const float* xr = x + (p / k) * d;
    jobs_up[p] = GemvJob{xr, e.w1, e.s1, gu + p * 2 * inter};
    jobs_up[pairs + p] = GemvJob{xr, e.w3, e.s3, gu + p * 2 * inter + inter};
    jobs_down[p] = GemvJob{h + p * inter, e.w2, e.s2, y + p * d};
}

// What the layer does with the combined rows next, folded into combine_kernel (MoeTail).
struct CombineTail {
    const float *add, *res, *post, *comb;
    int64_t hc;
};

// f[t, c] = Σ_j y[pos(t, j), c] over the token's k slots in ascending expert id (the CPU's order
// of sums), + add[t, c] when set; pos = identity or the inverse permutation. k ≤ 16. out = f, or
// hc_post(f, tail.res, tail.post, tail.comb) [t, hc, d] when tail.res is set.
__global__ void combine_kernel(const float* y, const int32_t* ids, const int32_t* inv, int64_t t, int64_t k, int64_t d,
                               float* out, CombineTail tail) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= t * d) return;
    const int64_t tok = i / d, c = i % d;
    // The slots' ids and rows first (all loads in flight), then each slot's rank in ascending expert id
    // (ties in slot order, as a stable sort), then the sum in rank order: s = 0, s += y of rank 0, 1, ...
    // Fully unrolled over kMaxK so that everything stays in registers.
    constexpr int kMaxK = 16;
    int32_t id[kMaxK];
    float yv[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) {
        id[j] = 0;
        yv[j] = 0.f;
        if (j < k) {
            id[j] = ids[tok * k + j];
            const int64_t p = inv ? inv[tok * k + j] : tok * k + j;
            yv[j] = y[p * d + c];
        }
    }
    int rank[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) {
        int r = 0;
#pragma unroll
        for (int a = 0; a < kMaxK; ++a)
            if (a < k && j < k && (id[a] < id[j] || (id[a] == id[j] && a < j))) ++r;
        rank[j] = r;
    }
    float s = 0.f;
#pragma unroll
    for (int r = 0; r < kMaxK; ++r) {
        if (r >= k) break;
        float v = 0.f;
#pragma unroll
        for (int j = 0; j < kMaxK; ++j)
            if (j < k && rank[j] == r) v = yv[j];
        s += v;
    }
    if (tail.add) s += tail.add[i];
    if (!tail.res) {
        out[i] = s;
        return;
    }
    for (int64_t h = 0; h < tail.hc; ++h)
        out[(tok * tail.hc + h) * d + c] = hc_post_elem(s, tail.res, tail.post, tail.comb, tok, tail.hc, d, h, c);
}

__global__ void gather_kernel(const float* x, const float* w, const int32_t* order, int64_t pairs, int64_t k,
                              int64_t d, float* xg, float* wg) {
    pdl_wait();
    pdl_release();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= pairs * d) return;
    const int64_t p = i / d, c = i % d;
    const int64_t src = order[p];
    xg[i] = x[(src / k) * d + c];
    if (c == 0) wg[p] = w[src];
}

}  // namespace

ExpertTable::ExpertTable(const std::vector<ExpertWeights>& experts) : host_(experts) {
    std::vector<ExpertPtrs> ptrs;
    ptrs.reserve(experts.size());
    for (const auto& e : experts) ptrs.push_back({e.w1.data, e.w1.scale, e.w3.data, e.w3.scale, e.w2.data, e.w2.scale});
    dev_ = dmalloc(ptrs.size() * sizeof(ExpertPtrs));
    h2d(dev_, ptrs.data(), ptrs.size() * sizeof(ExpertPtrs));
}

ExpertTable::~ExpertTable() {
    if (dev_) cudaFree(dev_);
}

namespace {
std::atomic<int> g_shared_w2_late{-1};  // -1: DSINFER_CUDA_SHARED_W2_LATE (read once; on only if '1')
}  // namespace

bool shared_w2_late() {
    return mode_or_env(g_shared_w2_late, "DSINFER_CUDA_SHARED_W2_LATE", 0) == 1;
}
void set_shared_w2_late(bool on) { g_shared_w2_late = on ? 1 : 0; }

namespace {
void combine(const float* y, const int32_t* ids, const int32_t* inv, int64_t t, int64_t k, int64_t d, float* out,
             const MoeTail* tail) {
    CombineTail ct{};
    if (tail) {
        if (tail->before_combine) tail->before_combine();
        ct = CombineTail{tail->add, tail->res, tail->post, tail->comb, tail->hc};
    }
    launch_pdl(combine_kernel, unsigned(ceil_div(t * d, 256)), 256, 0, y, ids, inv, t, k, d, out, ct);
    DSINFER_CUDA_LAUNCH();
}
}  // namespace

void moe_experts(const ExpertTable& experts, const float* x, bool x_quant, int64_t t, int64_t d, int64_t inter,
                 const int32_t* ids, const float* w, int64_t k, float limit, bool quant_h, float* out,
                 const MoeTail* tail) {
    if (t <= 0) return;
    if (k > 16) fail("moe_experts: more than 16 experts per token");
    if (experts.size() == 0) fail("moe_experts: empty expert table");
    const ops::Weight& w1 = experts.host(0).w1;
    const ops::Weight& w2 = experts.host(0).w2;
    if (w1.k != d || w1.n != inter || w2.k != inter || w2.n != d)
        fail("moe_experts: expert shapes do not match d=" + std::to_string(d) + " inter=" + std::to_string(inter));
    const int64_t pairs = t * k;
    cudaStream_t st = cur_stream();
    float* gu = static_cast<float*>(scratch(kScratchMoeGu, size_t(pairs * 2 * inter) * 4));
    float* h = static_cast<float*>(scratch(kScratchMoeH, size_t(pairs * inter) * 4));
    float* y = static_cast<float*>(scratch(kScratchMoeY, size_t(pairs * d) * 4));

    if (pairs <= kGroupedMaxPairs && gemv_grouped_ok(w1) && gemv_grouped_ok(w2) && d % 4 == 0 && inter % 4 == 0) {
        const auto* ex = static_cast<const ExpertPtrs*>(experts.device());
        if (x_quant && quant_h && mma_moe_ok(w1, w2, inter)) {  // two GEMV launches build their own jobs
            mma_moe_up(w1, ex, ids, pairs, k, x, inter, gu);
            if (tail && tail->after_up) tail->after_up();
            mma_moe_down(w2, ex, ids, pairs, inter, gu, limit, w, y);
            combine(y, ids, nullptr, t, k, d, out, tail);
            return;
        }
        GemvJob* jobs = static_cast<GemvJob*>(scratch(kScratchMoeIdx, size_t(3 * pairs) * sizeof(GemvJob)));
        launch_pdl(build_jobs_kernel, unsigned(ceil_div(pairs, 64)), 64, 0, ex, ids, pairs, k, x, d, inter, gu, h, y,
                   jobs, jobs + 2 * pairs);
        DSINFER_CUDA_LAUNCH();
        if (!(x_quant && mma_gemv_grouped(w1, inter, jobs, 2 * pairs))) gemv_grouped(w1, inter, jobs, 2 * pairs, d, 0);
        if (tail && tail->after_up) tail->after_up();
        if (quant_h)
            swiglu_act_quant(gu, gu + inter, 2 * inter, pairs, inter, limit, w, h, 128, true);
        else
            swiglu(gu, gu + inter, 2 * inter, pairs, inter, limit, w, h);
        if (!(quant_h && mma_gemv_grouped(w2, d, jobs + 2 * pairs, pairs)))
            gemv_grouped(w2, d, jobs + 2 * pairs, pairs, inter, 0);
        combine(y, ids, nullptr, t, k, d, out, tail);
        return;
    }

    // Prefill: sort the pairs by expert on the host.
    std::vector<int32_t> hids(static_cast<size_t>(pairs));
    d2h(hids.data(), ids, hids.size() * 4);
    const int64_t ne = experts.size();
    std::vector<int64_t> count(static_cast<size_t>(ne + 1), 0);
    for (int32_t e : hids) {
        if (e < 0 || e >= ne) fail("moe_experts: expert id " + std::to_string(e) + " out of range");
        ++count[size_t(e) + 1];
    }
    for (int64_t e = 0; e < ne; ++e) count[size_t(e) + 1] += count[size_t(e)];
    std::vector<int32_t> order(static_cast<size_t>(pairs)), inv(static_cast<size_t>(pairs));
    {
        std::vector<int64_t> fill(count.begin(), count.end() - 1);
        for (int64_t p = 0; p < pairs; ++p) {
            const int64_t pos = fill[size_t(hids[size_t(p)])]++;
            order[size_t(pos)] = int32_t(p);
            inv[size_t(p)] = int32_t(pos);
        }
    }
    int32_t* perm = static_cast<int32_t*>(scratch(kScratchMoeIdx, size_t(2 * pairs) * 4));
    h2d(perm, order.data(), size_t(pairs) * 4);
    h2d(perm + pairs, inv.data(), size_t(pairs) * 4);
    float* xg = static_cast<float*>(scratch(kScratchMoeX, size_t(pairs * (d + 1)) * 4));
    float* wg = xg + pairs * d;
    launch_pdl(gather_kernel, unsigned(ceil_div(pairs * d, 256)), 256, 0, x, w, perm, pairs, k, d, xg, wg);
    DSINFER_CUDA_LAUNCH();
    for (int64_t e = 0; e < ne; ++e) {
        const int64_t off = count[size_t(e)], cnt = count[size_t(e) + 1] - off;
        if (!cnt) continue;
        const ExpertWeights& ex = experts.host(e);
        linear(xg + off * d, cnt, ex.w1, 0, inter, gu + off * 2 * inter, 2 * inter);
        linear(xg + off * d, cnt, ex.w3, 0, inter, gu + off * 2 * inter + inter, 2 * inter);
    }
    if (tail && tail->after_up) tail->after_up();
    if (quant_h)
        swiglu_act_quant(gu, gu + inter, 2 * inter, pairs, inter, limit, wg, h, 128, true);
    else
        swiglu(gu, gu + inter, 2 * inter, pairs, inter, limit, wg, h);
    for (int64_t e = 0; e < ne; ++e) {
        const int64_t off = count[size_t(e)], cnt = count[size_t(e) + 1] - off;
        if (!cnt) continue;
        linear(h + off * inter, cnt, experts.host(e).w2, 0, d, y + off * d, d);
    }
    combine(y, ids, perm + pairs, t, k, d, out, tail);
}

}  // namespace dsinfer::cuda
