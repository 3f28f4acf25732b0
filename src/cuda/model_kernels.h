// Element-wise helpers of the device forward (model_kernels.cu); device pointers, asynchronous on
// cuda::stream(). Plain C++ header.
#pragma once

#include <cstdint>

#include "cuda/cuda_backend.h"

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

// The tables of a batched decode step's attention core, built on the device from the positions, so
// that the step needs no upload of its own (and can be replayed as a CUDA graph). One entry of `seqs`
// per sequence: its caches (fixed while they do not move) and its row in the call.
struct DecodeSeq {
    float *window, *comp_kv, *comp_score, *icomp_kv, *icomp_score, *ckv, *ikeys;
    int64_t row;
};
// A compressor of the layer for decode_tables (ratio 0: none). a/g: the call's [rows, width] projections.
struct DecodeComp {
    int64_t ratio = 0, d = 0;
    bool overlap = false;
    const float* ape = nullptr;
    const float *a = nullptr, *g = nullptr;
};
// For sequence i at position P = pos[seqs[i].row]: copy jobs (jobs_per_seq each: the window ring slot
// P mod W ← kv's row; per compressor, its kv and score slots ← a and g + ape, as the model's
// compressor_step writes them); cjobs[i] / ijobs[i]: the compressor's block completion when P + 1
// completes a block (out = its next entry, numbered (P + 1) / ratio − 1), else out = null (nothing to
// do); idx row i [nk]: ring slots of the window positions oldest first, then -1 up to W, then entries
// W + j for j < (P + 1) / list_ratio when list_ratio (compressed entries listed without the indexer),
// -1 to the end; qrow[i] = row, valid[i] = (P + 1) / valid_ratio (0 when valid_ratio is 0), a_rows /
// b_rows / k_rows[i] = window, ckv, ikeys.
struct DecodeTables {
    const DecodeSeq* seqs = nullptr;
    int64_t S = 0;
    const int64_t* pos = nullptr;
    int64_t W = 0, hd = 0;
    const float* kv = nullptr;
    DecodeComp comp, icomp;
    int64_t nk = 0, list_ratio = 0, valid_ratio = 0;
    CopyJob* jobs = nullptr;
    int64_t jobs_per_seq = 0;
    int32_t *idx = nullptr, *qrow = nullptr, *valid = nullptr;
    const float **a_rows = nullptr, **b_rows = nullptr, **k_rows = nullptr;
    CompressJob *cjobs = nullptr, *ijobs = nullptr;
};
void decode_tables(const DecodeTables& t);

}  // namespace dsinfer::cuda
