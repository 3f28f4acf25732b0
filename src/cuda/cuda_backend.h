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
#include <functional>
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

// hc_pre at decode (t ≤ 32) finishes each token over d/256 + 1 blocks (default). On, it uses the
// earlier one-block-per-token finish instead; both give bitwise the same results (tests and
// bench_cuda compare them). Process-wide.
void set_one_block_hc_finish(bool on);
// While on (a scope of the caller's): hc_pre and hc_post_pre at decode sizes (t ≤ 32, called on the main
// stream) run their Sinkhorn (post, comb) on side lane kSinkhornLane while the main stream goes on with
// the weighted stream sum, so y is ready without waiting for the 20 normalisation rounds. post and comb
// are complete only after the next side_join(), which the caller must issue before reading them (and
// before a graph capture ends). Bitwise the same values. Process-wide; off by default.
void set_hc_sinkhorn_aside(bool on);
bool hc_sinkhorn_aside();

// Weight rows per warp of the grouped GEMV launches of moe_experts' decode path (FP8/FP4 experts):
// 2, 4 or 8, or 0 (default): 4 for a single token's experts (up to 16 jobs: persistent blocks that
// stage x once and loop over row blocks of 32 rows), 8 beyond (one block per 64-row block).
// Results are bitwise the same for every value (only which block computes a row changes).
// Process-wide; bench_cuda compares them.
void set_grouped_gemv_rows_per_warp(int rows);

// Which single-row linears (decode, m = 1) run the slice GEMV (x held in registers, linear.cu):
// 0 none, 1 the shapes where it measured faster (default), 2 every one it can run. -1 returns to
// the DSINFER_CUDA_SLICE_GEMV environment setting. Process-wide; tests use it to cover both kernels.
void set_slice_gemv(int mode);

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
// Small host→device uploads without a stream synchronization, ordered on stream(): staged in
// page-locked memory and copied asynchronously; with parameter uploads on, those of up to 8 KB
// (4-byte multiples) go as the parameters of a one-block kernel instead (it takes part in
// programmatic dependent launch). begin_uploads() starts a round; it waits for the previous round's
// copies (a stream synchronization, only when that round staged anything) before its staging memory
// is reused. Parameter uploads: DSINFER_CUDA_PARAM_UPLOAD=1, or set_param_upload(1) (0 off; the
// default is off).
void begin_uploads();
// CUDA graphs of the work enqueued on stream() between begin_capture() and end_capture() (relaxed
// capture mode: no synchronizing call may happen in between). end_capture returns an executable graph
// for launch_graph; abort_capture discards a capture that failed.
// Grows whenever a scratch buffer is reallocated: graphs captured before read freed memory.
uint64_t scratch_generation();
void begin_capture();
void* end_capture();
void abort_capture();
void launch_graph(void* exec);
void destroy_graph(void* exec);
// Page-locked host memory (device copies to and from it run at full speed, without staging).
void* host_alloc(size_t bytes);
void host_free(void* p);
void h2d_staged(void* dst, const void* src, size_t bytes);
void set_param_upload(int mode);
// The stream every op enqueues on (default: a stream owned by the backend).
void* stream();
void set_stream(void* cuda_stream);
// Side streams for independent work inside a step. side_begin(lane): side lane `lane` (1 ..
// kLanes - 1) waits for everything enqueued so far on the main stream and becomes stream(); ops then
// take their scratch buffers from that lane's own set, so work on different lanes never shares one.
// side_end(): stream() is the main stream again (the lane's work goes on). side_join(): the main
// stream waits for the work of every lane opened since the last join. Works eagerly and under graph
// capture (forks and joins become graph edges). One lane open at a time; side_begin() on a lane after
// side_end() and before the join appends a segment to it (it runs after the lane's earlier work, and
// after the main stream's work up to that point).
constexpr int kLanes = 5;
constexpr int kSinkhornLane = 4;  // hc_pre's Sinkhorn (set_hc_sinkhorn_aside)
void side_begin(int lane = 1);
void side_end();
void side_join();
// After an exception inside side_begin .. side_end or a failed capture: stream() is the main stream
// again and no lane is waiting to be joined.
void side_abort();

// A weight copied to the device in its stored format (data and scale both), with the view to pass
// to ops. Owned by the caller (free with free_weight).
ops::Weight upload_weight(const ops::Weight& host);
void free_weight(ops::Weight& w);
// The tensor-core path caches a float32 copy of each FP8 weight's scales, keyed by the scale
// pointer: a weight freed outside free_weight must be forgotten before its memory is reused.
void forget_weight(const ops::Weight& w);

// ---- Grouped decode linears, beyond the op table ----
// Several GEMVs of one shape in one kernel launch (decode: small m), each with exactly the numbers
// linear() gives for it alone (same kernel, same split of k, same order of sums). They return false,
// doing nothing, when the GEMV path does not apply (m > kGemvMaxRows, a weight the GEMV kernels
// cannot stream, too many groups, or differing weight formats/shapes); the caller then runs linear().
//
// Tensor-core GEMV for one activation row (gemv_mma.cu), for x holding act_quant'ed values (each
// 128-block e4m3 times a power of two; the model's quantized inputs with ue8m0 scales): products are
// exact, sums float32 in another order than linear()'s. FP8/FP4 weights with k % 128 == 0 and
// k ≤ 16384. Each returns false, launching nothing, when it does not apply (switched off, other
// format, misaligned x or rows, fewer than 48 tiles of 16 rows); the caller then runs linear().
// DSINFER_CUDA_MMA_GEMV=0 or set_mma_gemv(0) switches it off; set_mma_gemv(2) runs it for small
// launches too (tests), 1 restores the default.
bool mma_gemv_enabled();
void set_mma_gemv(int mode);
bool mma_gemv_ok(const ops::Weight& w);
// y[r] = x·W[n0 + r] for r < n1 − n0.
bool mma_gemv(const float* x, const ops::Weight& w, int64_t n0, int64_t n1, float* y);
// y = act_quant(rmsnorm(x, norm_w, eps))·Wᵀ (128-blocks, power-of-two scales) for one raw row x: the
// norm and its quantization formed inside the launch, bitwise rmsnorm_act_quant's yq (so bitwise
// rmsnorm_act_quant + mma_gemv), without the norm's launch before it. All w.n rows; k ≤ 16384.
bool mma_gemv_normed(const float* x, const float* norm_w, float eps, const ops::Weight& w, float* y);
// Whether mma_gemv_normed would run for these arguments; how many times it has launched (process-wide,
// for tests).
bool mma_gemv_normed_ok(const float* x, const float* norm_w, const ops::Weight& w);
uint64_t mma_gemv_normed_launches();
// The model's decode uses mma_gemv_normed for wq_b (q_norm inside the GEMV; on by default):
// DSINFER_CUDA_NORM_IN_GEMV=0 or set_norm_in_gemv(false) runs the norm launch before it instead.
bool norm_in_gemv();
void set_norm_in_gemv(bool on);
// ya = x·Waᵀ, yb = x·Wbᵀ in one launch (same layouts: the shared expert's w1 and w3).
bool mma_gemv_pair(const float* x, const ops::Weight& wa, const ops::Weight& wb, float* ya, float* yb);
// Split mode, for any float32 x (each element as two f16 terms; gemv_mma.cu): for g < groups,
// y[g·rows + r] = x[g·w.k ..]·W[g·rows + r] for r < rows — linear_groups at one row (wo_a). k ≤ 8192.
// DSINFER_CUDA_MMA_SPLIT=0 or set_mma_split(false) switches it off (the slice GEMV runs instead).
bool mma_gemv_groups_split(const float* x, const ops::Weight& w, int64_t groups, int64_t rows, float* y);
void set_mma_split(bool on);
// FP4 weights decoded through e4m3 inside the tensor-core GEMV (products exact either way, float32 sums
// in another order; ≈ 11 instructions per 8 codes against ≈ 16). Off by default until it has run on a GPU;
// DSINFER_CUDA_MMA_FP4E4=1 or set_mma_fp4_e4m3(true) switches it on.
void set_mma_fp4_e4m3(bool on);
// Decode routed experts whose tensor-core GEMV launches build their own jobs from the expert ids, the
// down launch forming SwiGLU and its quantization while it stages x (two kernels fewer, the down weights
// fetched before the up launch ends; bitwise the separate kernels). Off (no faster on an H100):
// DSINFER_CUDA_MOE_JOBS=1 or set_mma_moe(true) switches it on.
void set_mma_moe(bool on);
// The tensor-core GEMV's register/depth variant for every launch: -1 (default) chosen per launch; 0..8
// forced (gemv_mma.cu, mma_cfg; 2..6 are FP4 variants, measured and left off; 7 and 8 feed the weights
// through shared memory by bulk copies, every format). 2, 4, 5 and 6 give bitwise cfg 1's results, 7 and 8
// cfg 0's; 0 and 3 may split k differently from 1 (float32 sums in another order).
void set_mma_cfg(int cfg);
// Stage x inside the tensor-core GEMV with one redux.sync per 128-block for its maximum and the scale's
// inverse built from its exponent, instead of a five-step shuffle tree and a division (bitwise the same
// staged values for finite x). On by default (routed-expert launches that build their own jobs
// excepted); DSINFER_CUDA_MMA_STAGE=0 or set_mma_fast_stage(false) turns it off.
void set_mma_fast_stage(bool on);
// Launches of the tensor-core GEMV of at most per_sm blocks an SM, with the per-launch register build:
// weights fed through shared memory by bulk copies (mma_cfg 7 or 8; bitwise the register build's results).
// cfg 0 (the default; DSINFER_CUDA_MMA_BULK=7|8[:N] at start) or 7 / 8. mma_bulk_launches counts the
// launches it took.
void set_mma_bulk(int cfg, int per_sm = 1);
uint64_t mma_bulk_launches();

// For bench_cuda: the block-scaled FP8 GEMM of linear()'s FP8 tensor-core path alone (FP8 weight,
// all n rows), on the activations a previous linear() of the same m and k quantized into the scratch;
// false when it does not apply.
bool lt_gemm_only(const ops::Weight& w, int64_t m, float* y);

// linear_groups: for g < groups, y[i, g·rows + r] = Σ_kk x[i, g·w.k + kk] · W[g·rows + r, kk]
// (i < m, r < rows; x row stride ldx, y row stride ldy) — DeepSeek's grouped wo_a (§6.6), equal to
// linear(x_g, m, w, g·rows, (g+1)·rows, y + g·rows, ldy) with x_g the g-th column slice of x — except
// at m = 1 with y contiguous, where the split tensor-core GEMV runs when it applies (same values within
// float32 order, not bitwise).
constexpr int64_t kMaxLinearGroups = 8;
bool linear_groups(const float* x, int64_t m, int64_t ldx, const ops::Weight& w, int64_t groups, int64_t rows,
                   float* y, int64_t ldy);
// linear_pair: ya = x·Waᵀ and yb = x·Wbᵀ (all rows of each; x [m, wa.k] contiguous; y row stride
// ldy) — the shared expert's w1 and w3 (§10.3). Wa and Wb must have the same format, shape and scales.
bool linear_pair(const float* x, int64_t m, const ops::Weight& wa, const ops::Weight& wb, float* ya, float* yb,
                 int64_t ldy);

// ---- act_quant into another buffer, beyond the op table ----
// y = act_quant(x) ([rows, cols] contiguous; x unchanged, y ≠ x): bitwise a copy then act_quant(), in
// one launch (the model's "quantized copy of a linear's input").
void act_quant_copy(const float* x, float* y, int64_t rows, int64_t cols, int64_t block, bool pow2);

// ---- Fused rmsnorm + act_quant, beyond the op table ----
// yq = act_quant(rmsnorm(x, w, eps), block, pow2) over whole rows ([rows, dim], row stride dim), and
// y = rmsnorm(x, w, eps) when y is not null: bitwise the results of rmsnorm() then a copy and
// act_quant(), in one launch where the row fits the one-pass kernel (dim % 4 == 0, dim ≤ 16384,
// 16-byte aligned pointers, block/4 a power of two ≤ 32: Flash's 4096/128 and 1024/128 rows), else
// by those ops. y or yq may be x; y and yq must differ. The model's "rmsnorm, then linear with a
// quantized copy of the input" (§3.3) in one kernel instead of three.
void rmsnorm_act_quant(const float* x, int64_t rows, int64_t dim, const float* w, float eps, float* y, float* yq,
                       int64_t block, bool pow2);

// ---- Fused per-row epilogues, beyond the op table ----
// What head_post applies to each row of x [rows, dim] in place, in this order: rmsnorm (weight norm_w
// or none); rope of the last rope_dim columns at pos[row / heads] (when pos is set; the op table's
// rope with `heads` heads per position); the Hadamard transform; a quantize-dequantize: E4m3 as
// act_quant over the first qcols columns in blocks of qblock (pow2 scales or not), Fp4 as fp4_quant
// over the whole row in blocks of qblock (32). Bitwise the results of those ops run one after another,
// in one launch where the row fits (dim % 4 == 0, dim ≤ 16384, 16-byte aligned x and norm_w, rope_dim
// % 4 == 0, a Hadamard width a power of two ≤ 4096, qblock / 4 a power of two ≤ 32); else by those ops.
// fused = false runs those ops one by one whatever the shape. The model's q (norm, rope), window KV
// (norm, rope, act_quant), indexer query (rope, Hadamard, FP4) and compressed entries (all four steps).
struct HeadPost {
    enum class Quant { None, E4m3, Fp4 };
    bool norm = false;
    const float* norm_w = nullptr;
    float eps = 0.f;
    const int64_t* pos = nullptr;
    const float* freqs = nullptr;
    int64_t rope_dim = 0;
    bool inverse = false;
    int64_t heads = 1;
    bool hadamard = false;
    Quant quant = Quant::None;
    int64_t qcols = 0, qblock = 0;
    bool pow2 = true;
};
void head_post(float* x, int64_t rows, int64_t dim, const HeadPost& p, bool fused = true);
// A compressor's block completions (§7.1) for several sequences in one launch: for each job,
// out[0, d) = compress_pool(kv, score, ratio, d, overlap); with overlap, the state's rows [ratio,
// 2·ratio) then move to rows [0, ratio) (kv and score, width 2d); then head_post(out, 1, d, p) with RoPE
// at job.pos when `rope` (p.pos is not read). Bitwise those ops one by one. jobs: device array; every
// out 16-byte aligned; a job with out = null does nothing. Returns false, launching nothing, when
// head_post's fused kernel does not take these settings (the caller then runs the ops; njobs = 0 only
// asks).
struct CompressJob {
    float* kv;
    float* score;
    float* out;
    int64_t pos;
};
bool compress_finish(const CompressJob* jobs_dev, int64_t njobs, int64_t ratio, int64_t d, bool overlap,
                     const HeadPost& p, bool rope);
// h = act_quant(swiglu(gate, up, limit, row_w), block, pow2) ([rows, n], contiguous): bitwise swiglu()
// then act_quant(), in one launch for block ≤ 128.
void swiglu_act_quant(const float* gate, const float* up, int64_t ld, int64_t rows, int64_t n, float limit,
                      const float* row_w, float* h, int64_t block, bool pow2);
// out = hc_post(f, res, post_in, comb_in) [t, hc, d], then hc_pre(out, ...) into y, post, comb (which may
// be post_in and comb_in): bitwise the two ops, with the hc_post folded into hc_pre's first kernel at
// decode sizes (t ≤ 32).
void hc_post_pre(const float* f, const float* res, const float* post_in, const float* comb_in, int64_t t, int64_t hc,
                 int64_t d, float* out, const float* fn, const float* scale, const float* base, int iters, float hc_eps,
                 float norm_eps, float* y, float* post, float* comb);

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
// x [t, d] is used as given (the model act_quant's the ffn input once for all experts); x_quant says
// it holds act_quant'ed values with power-of-two scales, which lets the grouped GEMVs run on tensor
// cores (gemv_mma.cu; likewise w2 when quant_h).
// ids/w [t, k] device. Small t·k runs grouped GEMV kernels (graph-capturable, no host sync); larger
// batches sort rows by expert on the host (one device→host copy of ids) and run one GEMM per expert.
// With `tail`, what the layer does next is folded into the final combine kernel (bitwise the same as
// running it after): tail->before_combine() is called first (on the host, before the combine is
// enqueued: e.g. to join a side stream that computes `add`); then f = Σ_j out_j + add (add [t, d], when
// set) and, when res is set, out = hc_post(f, res, post, comb) [t, hc, d] instead of f.
// tail->after_up() (when set) is called once the up launch (w1 and w3) is enqueued, before the SwiGLU
// and w2: e.g. to fork work onto a side stream that should not compete with the up launch.
struct MoeTail {
    std::function<void()> before_combine;
    std::function<void()> after_up;
    const float* add = nullptr;
    const float *res = nullptr, *post = nullptr, *comb = nullptr;
    int64_t hc = 0;
};
void moe_experts(const ExpertTable& experts, const float* x, bool x_quant, int64_t t, int64_t d, int64_t inter,
                 const int32_t* ids, const float* w, int64_t k, float limit, bool quant_h, float* out,
                 const MoeTail* tail = nullptr);
// Decode with the shared expert on a side stream: its w2 launch forked after the routed experts' up
// launch (MoeTail::after_up) rather than beside it, so it shares the HBM with the routed w2 instead.
// DSINFER_CUDA_SHARED_W2_LATE=1 or set_shared_w2_late(true); off by default. Bitwise the same.
bool shared_w2_late();
void set_shared_w2_late(bool on);

// moe_route for hash layers with the ids looked up on the device: row i takes table[tokens[i], 0..k)
// (a [vocab, k] tid2eid table with ids checked in range; tokens [t] device). Bitwise moe_route with
// those rows gathered as hash_ids.
void moe_route_hash(const float* logits, int64_t t, int64_t e, const int32_t* tokens, const int32_t* table, int64_t k,
                    float route_scale, int32_t* ids, float* w);

// out[r] = the index of the largest of logits[r, 0..n) (lowest on ties), for rows r < rows: what a
// left-to-right scan taking l[j] > l[best] finds (NaNs never taken; a NaN at index 0 is kept). Greedy
// sampling on the device (logits [rows, n] and out [rows] device).
void argmax_rows(const float* logits, int64_t rows, int64_t n, int32_t* out);
// What the host sampler needs of each row instead of the row (runtime::RowSummary, on the device):
// for row r of logits [rows, n], mx[r] = its maximum, z[r] = the sum over the row of
// exp((l - mx) * inv_t[r]) (double), and ids[r * cap ..] the cap largest logits' indices sorted by
// logit descending, ties by lowest index (-1 for -inf logits), with their weights in w[r * cap ..].
// Weights and z use the host sampler's operations in its order (runtime exp_row): the same bits.
// 1 <= cap <= min(1024, n); n <= 262144.
void sample_summary(const float* logits, int64_t rows, int64_t n, const float* inv_t, int cap, float* mx, double* z,
                    int32_t* ids, float* w);
// topk (the indexer's) and sample_summary's select: the variant with warp-aggregated histogram atomics
// and the compaction by contiguous segments (the same output; on by default: H100, 2-3% faster sampled
// decode steps; DSINFER_CUDA_TOPK_SEGMENTS=0 or this for the ⌈n / 1024⌉ rounds of one block scan).
void set_topk_segments(bool on);
// sparse_attn's kernel: the register-tiled one (16 heads x 16 keys a block step; the default) or the
// one with a warp a head (DSINFER_CUDA_ATTN_TILED=0 or set_attn_tiled(false)). The tiled one is
// 1.4-2.7x faster alone and 2.3x in an 8k prefill (H100, docs/benchmarks.md); the same partials layout
// and merge, results within float32 rounding of each other. attn_tiled() says which runs.
bool attn_tiled();
void set_attn_tiled(bool on);
// out[r] = the token runtime::draw_whole_row(row r, 1 / inv_t[r], u[r]) gives (a draw over the whole
// softmax, the same operations in the same order), or -1 where u[r] < 0. logits [rows, n], inv_t
// [rows], u [rows] (double) and out [rows] device; n <= 262144.
void draw_rows(const float* logits, int64_t rows, int64_t n, const float* inv_t, const double* u, int32_t* out);

// ---- Batched decode of several sequences (beyond the op table) ----
// sparse_attn where query row i has its own key arrays a_rows[i] (na rows) and b_rows[i], and reads
// q / writes out at row qrow[i] (all three device arrays of t entries). With rope_pos, the output then
// gets rope(out, ..., rope_pos, *rope, inverse = true) (positions per output row, as the op table's
// rope takes them) in the same launch, bitwise the separate op.
void sparse_attn_rows(const float* q, int64_t t, int64_t h, int64_t d, const float* kv_a, int64_t na, const float* kv_b,
                      const int32_t* idx, int64_t nk, const float* sink, float scale, float* out,
                      const float* const* a_rows, const float* const* b_rows, const int32_t* qrow,
                      const int64_t* rope_pos = nullptr, const ops::RopeFreqs* rope = nullptr);
// index_scores where row i scores keys_rows[i] (its first valid[i] entries; scores row stride n) with
// q / w rows qrow[i].
void index_scores_rows(const float* q, const float* w, const int32_t* qrow, int64_t t, int64_t h, int64_t dh,
                       const float* const* keys_rows, int64_t n, const int32_t* valid, float* scores);

}  // namespace dsinfer::cuda
