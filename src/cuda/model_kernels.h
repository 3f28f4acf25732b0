// Element-wise helpers of the device forward (model_kernels.cu); device pointers, asynchronous on
// cuda::stream(). Plain C++ header.
#pragma once

#include <cstdint>

namespace dsinfer::cuda {

void scale(float* x, int64_t n, float s);                  // x *= s
void add(float* out, const float* a, int64_t n);           // out += a
void add_to(const float* a, const float* b, int64_t n, float* out);  // out = a + b
void fill(float* x, int64_t n, float v);
// x [n, hc, d] = e [n, d] broadcast over hc, plus add [n, hc, d] when given.
void expand_hc(const float* e, const float* add, int64_t n, int64_t hc, int64_t d, float* x);
// dst[r, 0:cols] = src[r, 0:cols] for r < rows (row strides ldd, lds, in floats).
void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols);
// idx[i, off + j] = sel[i, j] < 0 ? -1 : base + sel[i, j]  (sel [t, k], idx row stride nk).
void sel_to_idx(const int32_t* sel, int64_t t, int64_t k, int32_t* idx, int64_t nk, int64_t off, int32_t base);

// One small copy of a batched launch: dst[0:n] = src[0:n] (+ add[0:n] when add is set).
struct CopyJob {
    float* dst;
    const float* src;
    const float* add;
    int64_t n;
};
// Runs jobs_dev[0:njobs] (device array) in one launch; max_n bounds every job's n.
void copy_jobs(const CopyJob* jobs_dev, int64_t njobs, int64_t max_n);

}  // namespace dsinfer::cuda
