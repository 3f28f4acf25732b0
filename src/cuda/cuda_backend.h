// The CUDA backend of the op table (Hopper, sm_90a). Plain C++ header: callers need no CUDA headers.
//
// Every pointer given to backend() ops is device memory. Activations are float32 on the GPU, as on
// the CPU (the replay goldens are float32; bf16 activations would not hold their bars). Weights stay
// in their stored formats (FP8 e4m3 + 128x128 scales, MXFP4 + per-32 E8M0 scales, BF16, F32),
// uploaded once; the ops decode them where they are used.
//
// All ops are asynchronous on stream() unless said otherwise. Numerics differ from the CPU only by
// float32 summation order, except where noted: linear() on FP8/FP4 weights with more than
// kGemvMaxRows rows runs on FP8 tensor cores (cuBLASLt block scaling), which re-quantizes x per
// 1x128 with power-of-two scales — lossless when x was act_quant'ed (pow2) as the model does before
// every FP8 GEMM, an approximation otherwise (see docs/cuda.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ops/ops.h"

namespace dsinfer::cuda {

// Rows up to which linear() runs the weight-streaming GEMV kernels (exact float32 math).
constexpr int64_t kGemvMaxRows = 16;

// Whether linear() may use the FP8 tensor-core path for m > kGemvMaxRows (default: yes). Off, every
// linear is exact float32 (tiled GEMM): Hopper's FP8 MMA accumulates with fewer bits than float32
// (≈ 2e-4 relative per GEMM), which the replay's layer-by-layer bar does not allow (docs/cuda.md).
// Process-wide; the model forward sets it for the duration of each call.
void set_fp8_tensor_cores(bool on);
bool fp8_tensor_cores();

// Whether linear() may use the BF16 tensor-core path (float32-accurate: weights expanded to bf16
// exactly, x split into three bf16 terms; gemm_bf16.cu) from bf16_gemm_min_rows() rows on (default:
// on; min rows 0 = per format, 2 for BF16 weights and 6 for FP8/FP4, where it beats the GEMV). FP8
// weights with F32 scales that are not powers of two never take it. Process-wide.
void set_bf16_gemm(bool on);
bool bf16_gemm();
void set_bf16_gemm_min_rows(int64_t m);
int64_t bf16_gemm_min_rows();

// True when a CUDA device is usable.
bool available();
const char* device_name();

// The op table on the GPU.
const ops::Backend& backend();

// ---- Device memory and streams ----
void* dmalloc(size_t bytes);
void dfree(void* p);
void h2d(void* dst, const void* src, size_t bytes);
void d2h(void* dst, const void* src, size_t bytes);
void d2d(void* dst, const void* src, size_t bytes);
void dfill_nan(float* p, size_t count);  // poisons a float buffer with quiet NaNs
void sync();
// Small host→device uploads without a stream synchronization: the bytes are staged in page-locked
// memory and copied asynchronously on stream(). begin_uploads() starts a round; it waits for the
// previous round's copies (a stream synchronization, only when that round staged anything) before
// its staging memory is reused.
void begin_uploads();
void h2d_staged(void* dst, const void* src, size_t bytes);
// The stream every op enqueues on (default: a stream owned by the backend).
void* stream();
void set_stream(void* cuda_stream);

// A weight copied to the device in its stored format (data and scale both), with the view to pass
// to ops. Owned by the caller (free with free_weight).
ops::Weight upload_weight(const ops::Weight& host);
void free_weight(ops::Weight& w);
// The tensor-core path caches a float32 copy of each FP8 weight's scales, keyed by the scale
// pointer: a weight freed outside free_weight must be forgotten before its memory is reused.
void forget_weight(const ops::Weight& w);

// ---- Fused MoE experts (§10.2), beyond the op table ----
// Routed experts of one layer as device weight views, uploaded once (w1 gate, w3 up [inter, d];
// w2 down [d, inter]).
struct ExpertWeights {
    ops::Weight w1, w3, w2;
};
class ExpertTable {
public:
    ExpertTable() = default;
    explicit ExpertTable(const std::vector<ExpertWeights>& experts);
    ~ExpertTable();
    ExpertTable(const ExpertTable&) = delete;
    ExpertTable& operator=(const ExpertTable&) = delete;
    int64_t size() const { return int64_t(host_.size()); }
    const ExpertWeights& host(int64_t e) const { return host_[size_t(e)]; }
    const void* device() const { return dev_; }

private:
    std::vector<ExpertWeights> host_;
    void* dev_ = nullptr;  // device array of per-expert pointers
};

// out[t, d] = Σ_j expert(ids[t,j])(x[t]) with the routing weight w[t,j] applied before w2:
//   g = x·w1ᵀ, u = x·w3ᵀ, h = swiglu(g, u, limit)·w, then act_quant(h) (128, pow2) when quant_h,
//   out_j = h·w2ᵀ; out = Σ_j out_j in ascending expert id (the CPU model's order of sums).
// x [t, d] is used as given (the model act_quant's the ffn input once for all experts).
// ids/w [t, k] device. Small t·k runs grouped GEMV kernels (graph-capturable, no host sync); larger
// batches sort rows by expert on the host (one device→host copy of ids) and run one GEMM per expert.
void moe_experts(const ExpertTable& experts, const float* x, int64_t t, int64_t d, int64_t inter, const int32_t* ids,
                 const float* w, int64_t k, float limit, bool quant_h, float* out);

// ---- Batched decode of several sequences (beyond the op table) ----
// sparse_attn where query row i has its own key arrays a_rows[i] (na rows) and b_rows[i], and reads
// q / writes out at row qrow[i] (all three device arrays of t entries).
void sparse_attn_rows(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                      const int32_t* idx, int64_t nk, const float* sink, float scale, float* out,
                      const float* const* a_rows, const float* const* b_rows, const int32_t* qrow);
// index_scores where row i scores keys_rows[i] (its first valid[i] entries; scores row stride n) with
// q / w rows qrow[i].
void index_scores_rows(const float* q, const float* w, const int32_t* qrow, int64_t t, int64_t h, int64_t dh,
                       const float* const* keys_rows, int64_t n, const int32_t* valid, float* scores);

}  // namespace dsinfer::cuda
