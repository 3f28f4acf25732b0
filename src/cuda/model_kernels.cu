// Small element-wise kernels the model forward needs on the device beyond the op table (the host
// loops of src/model/dsv4_model.cpp: scaling, sums, broadcasts, index remapping).
#include <algorithm>
#include <cmath>

#include "cuda/cuda_common.h"
#include "cuda/model_kernels.h"

namespace dsinfer::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return unsigned(std::min<int64_t>(ceil_div(n, kThreads), 65535)); }

__global__ void scale_kernel(float* x, int64_t n, float s) {
    pdl_wait();
    pdl_release();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        x[i] *= s;
}

__global__ void add_kernel(float* out, const float* a, int64_t n) {
    pdl_wait();
    pdl_release();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] += a[i];
}

__global__ void add_to_kernel(const float* a, const float* b, int64_t n, float* out) {
    pdl_wait();
    pdl_release();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void fill_kernel(float* x, int64_t n, float v) {
    pdl_wait();
    pdl_release();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        x[i] = v;
}

// x [n, hc, d]: x[i, h, k] = e[i, k] + (add ? add[i, h, k] : 0).
__global__ void expand_kernel(const float* e, const float* add, int64_t n, int64_t hc, int64_t d, float* x) {
    pdl_wait();
    pdl_release();
    const int64_t total = n * hc * d;
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < total; j += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = j / (hc * d), k = j % d;
        x[j] = add ? e[i * d + k] + add[j] : e[i * d + k];
    }
}

__global__ void sel_to_idx_kernel(const int32_t* sel, int64_t t, int64_t k, int32_t* idx, int64_t nk, int64_t off,
                                  int32_t base) {
    pdl_wait();
    pdl_release();
    const int64_t total = t * k;
    for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < total; j += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = j / k, c = j % k;
        const int32_t e = sel[j];
        idx[i * nk + off + c] = e < 0 ? -1 : base + e;
    }
}

// Block (chunk, job): up to kThreads·4 floats of one job.
__global__ void copy_jobs_kernel(const CopyJob* jobs) {
    pdl_wait();
    pdl_release();
    const CopyJob jb = jobs[blockIdx.y];
    for (int64_t i = int64_t(blockIdx.x) * kThreads * 4 + threadIdx.x, e = min(jb.n, int64_t(blockIdx.x + 1) * kThreads * 4);
         i < e; i += kThreads)
        jb.dst[i] = jb.add ? jb.src[i] + jb.add[i] : jb.src[i];
}

// Block i: sequence i's tables (DecodeTables in model_kernels.h).
__global__ void decode_tables_kernel(DecodeTables t) {
    pdl_wait();
    pdl_release();
    const int64_t i = blockIdx.x;
    const DecodeSeq sq = t.seqs[i];
    const int64_t P = t.pos[sq.row], b = sq.row, W = t.W;
    if (threadIdx.x == 0) {
        CopyJob* jb = t.jobs + i * t.jobs_per_seq;
        int n = 0;
        jb[n++] = CopyJob{sq.window + (P % W) * t.hd, t.kv + b * t.hd, nullptr, t.hd};
        auto comp = [&](const DecodeComp& c, float* kv, float* score, float* entries, CompressJob* cj) {
            const int64_t r = c.ratio, width = (c.overlap ? 2 : 1) * c.d, slot = (c.overlap ? r : 0) + P % r;
            jb[n++] = CopyJob{kv + slot * width, c.a + b * width, nullptr, width};
            jb[n++] = CopyJob{score + slot * width, c.g + b * width, c.ape + (P % r) * width, width};
            cj[i] = CompressJob{kv, score, (P + 1) % r ? nullptr : entries + ((P + 1) / r - 1) * c.d, P + 1 - r};
        };
        if (t.comp.ratio) comp(t.comp, sq.comp_kv, sq.comp_score, sq.ckv, t.cjobs);
        if (t.icomp.ratio) comp(t.icomp, sq.icomp_kv, sq.icomp_score, sq.ikeys, t.ijobs);
        t.qrow[i] = int32_t(b);
        t.valid[i] = int32_t(t.valid_ratio ? (P + 1) / t.valid_ratio : 0);
        t.a_rows[i] = sq.window;
        t.b_rows[i] = sq.ckv;
        t.k_rows[i] = sq.ikeys;
    }
    const int64_t nwin = min(W, P + 1), listed = t.list_ratio ? (P + 1) / t.list_ratio : 0;
    for (int64_t k = threadIdx.x; k < t.nk; k += blockDim.x) {
        int32_t v = -1;
        if (k < nwin)
            v = int32_t((P - nwin + 1 + k) % W);
        else if (k >= W && k - W < listed)
            v = int32_t(k);
        t.idx[i * t.nk + k] = v;
    }
}

}  // namespace

void decode_tables(const DecodeTables& t) {
    if (t.S <= 0) return;
    if (t.S > 65535) fail("decode_tables: more than 65535 sequences");
    launch_pdl(decode_tables_kernel, unsigned(t.S), kThreads, 0, t);
    DSINFER_CUDA_LAUNCH();
}

void copy_jobs(const CopyJob* jobs_dev, int64_t njobs, int64_t max_n) {
    if (njobs <= 0 || max_n <= 0) return;
    if (njobs > 65535) fail("copy_jobs: more than 65535 jobs");
    const dim3 grid(unsigned(ceil_div(max_n, kThreads * 4)), unsigned(njobs));
    launch_pdl(copy_jobs_kernel, grid, kThreads, 0, jobs_dev);
    DSINFER_CUDA_LAUNCH();
}

void scale(float* x, int64_t n, float s) {
    if (n <= 0) return;
    launch_pdl(scale_kernel, blocks_for(n), kThreads, 0, x, n, s);
    DSINFER_CUDA_LAUNCH();
}

void add(float* out, const float* a, int64_t n) {
    if (n <= 0) return;
    launch_pdl(add_kernel, blocks_for(n), kThreads, 0, out, a, n);
    DSINFER_CUDA_LAUNCH();
}

void add_to(const float* a, const float* b, int64_t n, float* out) {
    if (n <= 0) return;
    launch_pdl(add_to_kernel, blocks_for(n), kThreads, 0, a, b, n, out);
    DSINFER_CUDA_LAUNCH();
}

void fill(float* x, int64_t n, float v) {
    if (n <= 0) return;
    launch_pdl(fill_kernel, blocks_for(n), kThreads, 0, x, n, v);
    DSINFER_CUDA_LAUNCH();
}

void expand_hc(const float* e, const float* add, int64_t n, int64_t hc, int64_t d, float* x) {
    if (n <= 0) return;
    launch_pdl(expand_kernel, blocks_for(n * hc * d), kThreads, 0, e, add, n, hc, d, x);
    DSINFER_CUDA_LAUNCH();
}

void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    DSINFER_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(ldd) * 4, src, size_t(lds) * 4, size_t(cols) * 4, size_t(rows),
                                         cudaMemcpyDeviceToDevice, cur_stream()));
}

void sel_to_idx(const int32_t* sel, int64_t t, int64_t k, int32_t* idx, int64_t nk, int64_t off, int32_t base) {
    if (t <= 0 || k <= 0) return;
    launch_pdl(sel_to_idx_kernel, blocks_for(t * k), kThreads, 0, sel, t, k, idx, nk, off, base);
    DSINFER_CUDA_LAUNCH();
}

}  // namespace dsinfer::cuda
