// CUDA backend benchmark: the card's measured ceilings (a large device-to-device copy; a large
// cuBLASLt FP8 GEMM), then per-op decode (batch 1) and prefill figures at DeepSeek-V4-Flash shapes,
// each with its bytes / FLOPs and the ratio to the ceiling, and one Flash-shape layer's decode
// sequence (a ratio-4 layer) timed as a whole.
//
// Usage: bench_cuda [--quick | --layer | --layer-profile | --layer-trace | --paths | --prefill | --chain | --moe | --gemv |
//                    --attn | --model-trace DIR [CONTEXT] [STEPS]]
#include <cublasLt.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"
#include "cupti_trace.h"

using namespace dsinfer;
using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

#define CK(x)                                                                              \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                  \
        }                                                                                  \
    } while (0)

namespace {

cudaStream_t st() { return static_cast<cudaStream_t>(cuda::stream()); }

__global__ void fill_bytes(uint8_t* p, size_t n, uint32_t seed, int kind) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        uint8_t b = uint8_t(h);
        if (kind == 1 && (b & 0x7f) == 0x7f) b ^= 1;  // e4m3 without NaN
        if (kind == 2) b = uint8_t(120 + (h % 5));      // E8M0 scales 2^-7..2^-3
        p[i] = b;
    }
}
__global__ void fill_float(float* p, size_t n, uint32_t seed, float scale) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = scale * (float(h & 0xffff) / 32768.f - 1.f);
    }
}

void rand_bytes(void* p, size_t n, int kind) {
    static uint32_t seed = 1;
    fill_bytes<<<1024, 256, 0, st()>>>(static_cast<uint8_t*>(p), n, seed++ * 7919u, kind);
}
float* rand_floats(size_t n, float scale = 1.f) {
    static uint32_t seed = 77;
    float* p = static_cast<float*>(cuda::dmalloc(n * 4));
    fill_float<<<1024, 256, 0, st()>>>(p, n, seed++ * 104729u, scale);
    return p;
}

// A device weight with random contents in a stored format.
Weight dev_weight(WeightFormat fmt, int64_t n, int64_t k) {
    Weight w;
    w.fmt = fmt;
    w.n = n;
    w.k = k;
    size_t bytes = 0, sbytes = 0;
    if (fmt == WeightFormat::FP8) {
        bytes = size_t(n * k);
        w.scale_cols = (k + 127) / 128;
        sbytes = size_t((n + 127) / 128 * w.scale_cols);
    } else if (fmt == WeightFormat::FP4) {
        bytes = size_t(n * k / 2);
        w.scale_cols = k / 32;
        sbytes = size_t(n * w.scale_cols);
    } else if (fmt == WeightFormat::BF16) {
        bytes = size_t(n * k * 2);
    } else {
        bytes = size_t(n * k * 4);
    }
    void* d = cuda::dmalloc(bytes);
    rand_bytes(d, bytes, fmt == WeightFormat::FP8 || fmt == WeightFormat::FP4 ? 1 : 0);
    if (fmt == WeightFormat::BF16) {  // keep bf16 values small and finite: high byte from a narrow set
        std::vector<uint16_t> h(size_t(n * k));
        for (size_t i = 0; i < h.size(); ++i) h[i] = uint16_t(0x3c00 + (i * 37) % 512) ^ uint16_t((i & 1) << 15);
        cuda::h2d(d, h.data(), bytes);
    }
    w.data = d;
    if (sbytes) {
        void* s = cuda::dmalloc(sbytes);
        rand_bytes(s, sbytes, 2);
        w.scale = s;
        w.scale_kind = ScaleKind::E8M0;
    }
    return w;
}
size_t weight_bytes(const Weight& w) {
    switch (w.fmt) {
        case WeightFormat::FP8: return size_t(w.n * w.k) + size_t((w.n + 127) / 128 * w.scale_cols);
        case WeightFormat::FP4: return size_t(w.n * w.k / 2) + size_t(w.n * w.scale_cols);
        case WeightFormat::BF16: return size_t(w.n * w.k * 2);
        case WeightFormat::F32: return size_t(w.n * w.k * 4);
    }
    return 0;
}

// Median-free simple timing: warm up, then `iters` runs between two events; ms per run.
double time_ms(const std::function<void(int)>& fn, int iters) {
    for (int i = 0; i < 3; ++i) fn(i);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a, st()));
    for (int i = 0; i < iters; ++i) fn(i);
    CK(cudaEventRecord(b, st()));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaGetLastError());
    return double(ms) / iters;
}

// One CUDA graph per layer i, capturing fn(i) on the bench stream.
std::vector<cudaGraphExec_t> capture_graphs(int layers, const std::function<void(int)>& fn) {
    std::vector<cudaGraphExec_t> execs;
    for (int i = 0; i < layers; ++i) {
        cudaGraph_t g;
        CK(cudaStreamBeginCapture(st(), cudaStreamCaptureModeThreadLocal));
        fn(i);
        CK(cudaStreamEndCapture(st(), &g));
        cudaGraphExec_t e;
        CK(cudaGraphInstantiate(&e, g, 0));
        execs.push_back(e);
        CK(cudaGraphDestroy(g));
    }
    return execs;
}
// ms per replay of the graphs in turn (time_ms), then destroys them.
double replay_ms(std::vector<cudaGraphExec_t>& execs, int iters) {
    const double ms = time_ms([&](int i) { CK(cudaGraphLaunch(execs[size_t(i) % execs.size()], st())); }, iters);
    for (auto e : execs) CK(cudaGraphExecDestroy(e));
    execs.clear();
    return ms;
}

double g_copy_gbs = 0, g_fp8_tflops = 0, g_fp8_block_tflops = 0;

void ceiling_copy() {
    const size_t bytes = size_t(2) << 30;
    void* a = cuda::dmalloc(bytes);
    void* b = cuda::dmalloc(bytes);
    CK(cudaMemsetAsync(a, 1, bytes, st()));
    const double ms = time_ms([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st())); }, 20);
    g_copy_gbs = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
    std::printf("ceiling  d2d copy 2 GiB: %.3f ms  -> %.0f GB/s (read + write)\n", ms, g_copy_gbs);
    cuda::dfree(a);
    cuda::dfree(b);
}

// A plain streaming read of `bytes` (16-byte loads, four in flight a thread, one word out per block):
// what a kernel that only reads its weights once reaches at the sizes a decode step's linears have,
// launch and ramp included. Buffers rotate over more than the L2 holds so every read comes from HBM.
__global__ void read_kernel(const uint4* __restrict__ p, size_t n16, uint32_t* out) {
    uint32_t acc = 0;
    const size_t stride = size_t(gridDim.x) * blockDim.x;
    size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = __ldg(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n16; i += stride) {
        const uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;  // keeps the loads; practically never taken
}
// Random-filled buffers of `bytes` each, together over 400 MB (past the L2), at least two.
std::vector<void*> rotating_buffers(size_t bytes) {
    const size_t n = std::max<size_t>(2, (size_t(400) << 20) / bytes + 1);
    std::vector<void*> bufs;
    for (size_t i = 0; i < n; ++i) {
        bufs.push_back(cuda::dmalloc(bytes));
        rand_bytes(bufs.back(), bytes, 0);
    }
    return bufs;
}

void ceiling_read() {
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    uint32_t* out = static_cast<uint32_t*>(cuda::dmalloc(size_t(sms) * 8 * 4));
    for (double mb : {2.1, 4.2, 8.4, 33.6, 80.2}) {
        const size_t bytes = size_t(mb * 1e6) / 16 * 16;
        const std::vector<void*> bufs = rotating_buffers(bytes);
        const int nbuf = int(bufs.size());
        const double ms = time_ms(
            [&](int i) {
                read_kernel<<<sms * 8, 256, 0, st()>>>(static_cast<const uint4*>(bufs[size_t(i % nbuf)]), bytes / 16,
                                                       out);
            },
            200);
        const double gbs = double(bytes) / (ms * 1e-3) / 1e9;
        std::printf("ceiling  read %5.1f MB (back-to-back launches): %7.2f us  %6.0f GB/s  %5.1f%% of copy\n", mb,
                    ms * 1e3, gbs, 100 * gbs / g_copy_gbs);
        for (void* b : bufs) cuda::dfree(b);
    }
    cuda::dfree(out);
}

// The tensor-core GEMV's weight access pattern alone (no arithmetic): a warp owns 16 rows, lane
// (g, c) reads rows g and g + 8, CHUNK bytes of each at offset round · 4 · CHUNK + c · CHUNK (CHUNK 16:
// gemv_mma.cu's layout, a quad reading 64 contiguous bytes of a row per round; 32: 128 bytes), DEPTH
// rounds in flight. Against read_kernel it tells how much of the GEMV's distance from the copy is
// the pattern itself.
template <int CHUNK, int DEPTH>
__global__ void __launch_bounds__(256)
    pattern_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t row_bytes, int ks, uint32_t* out) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int tpb = 8 / ks;  // tiles a block; each split over ks warps along k, as gemv_mma.cu does
    const int64_t tile = int64_t(blockIdx.x) * tpb + warp % tpb;
    if (tile * 16 >= rows) return;
    const int per = int(row_bytes / (4 * CHUNK)) / ks;
    const uint8_t* ra = w + (tile * 16 + g) * row_bytes + c * CHUNK + int64_t(warp / tpb) * per * 4 * CHUNK;
    const uint8_t* rb = ra + 8 * row_bytes;
    const int rounds = per;
    constexpr int V = CHUNK / 16;
    uint4 qa[DEPTH][V], qb[DEPTH][V];
    uint32_t acc = 0;
#pragma unroll
    for (int i = 0; i < DEPTH; ++i)
#pragma unroll
        for (int v = 0; v < V; ++v) {
            qa[i][v] = __ldg(reinterpret_cast<const uint4*>(ra + int64_t(i) * 4 * CHUNK) + v);
            qb[i][v] = __ldg(reinterpret_cast<const uint4*>(rb + int64_t(i) * 4 * CHUNK) + v);
        }
    for (int r0 = 0; r0 < rounds; r0 += DEPTH) {
#pragma unroll
        for (int i = 0; i < DEPTH; ++i) {
            const int r = r0 + i;
            if (r >= rounds) break;
#pragma unroll
            for (int v = 0; v < V; ++v) acc ^= qa[i][v].x ^ qa[i][v].w ^ qb[i][v].y ^ qb[i][v].z;
            if (r + DEPTH < rounds)
#pragma unroll
                for (int v = 0; v < V; ++v) {
                    qa[i][v] = __ldg(reinterpret_cast<const uint4*>(ra + int64_t(r + DEPTH) * 4 * CHUNK) + v);
                    qb[i][v] = __ldg(reinterpret_cast<const uint4*>(rb + int64_t(r + DEPTH) * 4 * CHUNK) + v);
                }
        }
    }
    if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}
void ceiling_pattern() {
    uint32_t* out = static_cast<uint32_t*>(cuda::dmalloc(size_t(1) << 20));
    struct S {
        const char* name;
        int64_t rows, row_bytes;
    };
    for (const S& sh : {S{"wq_b-like 32768 rows x 1024 B", 32768, 1024}, S{"wo_b-like 4096 rows x 8192 B", 4096, 8192},
                        S{"expert w1+w3-like 24576 rows x 2048 B", 24576, 2048}}) {
        const size_t bytes = size_t(sh.rows * sh.row_bytes);
        const std::vector<void*> bufs = rotating_buffers(bytes);
        const int nbuf = int(bufs.size());
        auto run = [&](auto kern, const char* what) {
            // Warps per tile as gemv_mma.cu chooses them (two blocks per SM, 16-byte chunks).
            const int64_t tiles = sh.rows / 16, rounds = sh.row_bytes / 64;
            auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
            int sms = 0;
            CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
            int ks = 1;
            int64_t best = -1;
            for (int k2 = 1; k2 <= 8; k2 *= 2) {
                if (k2 > 1 && rounds < k2 * 2) break;
                const int64_t cost = ceil_div(ceil_div(tiles, 8 / k2), 2 * sms) * ceil_div(rounds, k2);
                if (best < 0 || cost < best) best = cost, ks = k2;
            }
            const unsigned grid = unsigned(ceil_div(tiles, 8 / ks));
            const double ms = time_ms(
                [&](int i) {
                    kern<<<grid, 256, 0, st()>>>(static_cast<const uint8_t*>(bufs[size_t(i % nbuf)]), sh.rows,
                                                 sh.row_bytes, ks, out);
                },
                200);
            const double gbs = double(bytes) / (ms * 1e-3) / 1e9;
            std::printf("pattern  %-38s %-22s ks %d %7.2f us  %6.0f GB/s  %5.1f%% of copy\n", sh.name, what, ks,
                        ms * 1e3, gbs, 100 * gbs / g_copy_gbs);
        };
        run(pattern_kernel<16, 4>, "16 B a lane, depth 4");
        run(pattern_kernel<16, 8>, "16 B a lane, depth 8");
        run(pattern_kernel<32, 4>, "32 B a lane, depth 4");
        for (void* b : bufs) cuda::dfree(b);
    }
    cuda::dfree(out);
}

// Plain FP8 GEMM (tensor-wide scales) through cuBLASLt: the card's FP8 peak as cuBLAS reaches it.
void ceiling_fp8_gemm(int64_t m, int64_t n, int64_t k, bool bf16_out) {
    cublasLtHandle_t h;
    cublasLtCreate(&h);
    void* A = cuda::dmalloc(size_t(n * k));
    void* B = cuda::dmalloc(size_t(m * k));
    void* D = cuda::dmalloc(size_t(m * n) * 4);
    rand_bytes(A, size_t(n * k), 1);
    rand_bytes(B, size_t(m * k), 1);
    float* one = rand_floats(1);
    float onev = 1.f;
    cuda::h2d(one, &onev, 4);
    cublasLtMatmulDesc_t op;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t t = CUBLAS_OP_T, nn = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof(nn));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &one, sizeof(one));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &one, sizeof(one));
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(n), k);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(m), k);
    cublasLtMatrixLayoutCreate(&ld, bf16_out ? CUDA_R_16BF : CUDA_R_32F, uint64_t(n), uint64_t(m), n);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    size_t ws = 32u << 20;
    void* work = cuda::dmalloc(ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cublasLtMatmulHeuristicResult_t res;
    int count = 0;
    cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, ld, ld, pref, 1, &res, &count);
    if (count == 0) {
        std::printf("ceiling  cuBLASLt FP8 GEMM: no algorithm\n");
        return;
    }
    const float alpha = 1.f, beta = 0.f;
    const double ms = time_ms(
        [&](int) {
            cublasLtMatmul(h, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &res.algo, work, ws, st());
        },
        20);
    const double tf = 2.0 * double(m) * double(n) * double(k) / (ms * 1e-3) / 1e12;
    std::printf("ceiling  cuBLASLt FP8 GEMM %lldx%lldx%lld (%s out, tensor-wide scales): %.3f ms -> %.0f TFLOP/s\n",
                (long long)m, (long long)n, (long long)k, bf16_out ? "bf16" : "f32", ms, tf);
    if (tf > g_fp8_tflops) g_fp8_tflops = tf;
    cuda::dfree(A);
    cuda::dfree(B);
    cuda::dfree(D);
    cuda::dfree(work);
}

// Decode-shaped linear (m rows): weight copies rotate so each call streams from HBM, not L2.
void bench_linear_decode(const char* name, WeightFormat fmt, int64_t n, int64_t k, int64_t m) {
    const size_t wb = weight_bytes(Weight{fmt, nullptr, n, k, nullptr, ScaleKind::None, fmt == WeightFormat::FP4 ? k / 32 : (k + 127) / 128});
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / wb));
    std::vector<Weight> ws;
    for (int i = 0; i < copies; ++i) ws.push_back(dev_weight(fmt, n, k));
    float* x = rand_floats(size_t(m * k));
    cuda::backend().act_quant(x, m, k, k, 128, true);
    float* y = rand_floats(size_t(m * n));
    const double bytes = double(wb) + double(m * k * 4 + m * n * 4);
    auto line = [&](const char* how, double ms) {
        const double gbs = bytes / (ms * 1e-3) / 1e9;
        std::printf("decode   %-28s m=%-3lld [%6lld x %6lld] %5.1f MB  %8.2f us  %6.0f GB/s  %5.1f%% of copy%s\n", name,
                    (long long)m, (long long)n, (long long)k, bytes / 1e6, ms * 1e3, gbs, 100.0 * gbs / g_copy_gbs,
                    how);
    };
    line("", time_ms([&](int i) { cuda::backend().linear(x, m, ws[size_t(i % copies)], 0, n, y, n); }, 200));
    // The tensor-core GEMV on the same act_quant'ed x (what the model runs for one row), where it
    // applies (the model takes it then).
    if (m == 1 && cuda::mma_gemv(x, ws[0], 0, n, y))
        line("  (tensor-core GEMV)", time_ms([&](int i) { cuda::mma_gemv(x, ws[size_t(i % copies)], 0, n, y); }, 200));
    for (auto& w : ws) cuda::free_weight(w);
    cuda::dfree(x);
    cuda::dfree(y);
}

// The decode linears at one row that take the tensor-core GEMV in the model, Flash shapes.
void bench_gemv_linears() {
    bench_linear_decode("wq_a FP8", WeightFormat::FP8, 1024, 4096, 1);
    bench_linear_decode("wq_b FP8", WeightFormat::FP8, 32768, 1024, 1);
    bench_linear_decode("wo_b FP8", WeightFormat::FP8, 4096, 8192, 1);
    bench_linear_decode("shared w1 FP8", WeightFormat::FP8, 2048, 4096, 1);
    bench_linear_decode("routed w1 FP4", WeightFormat::FP4, 2048, 4096, 1);
    bench_linear_decode("routed w2 FP4", WeightFormat::FP4, 4096, 2048, 1);
}

void bench_linear_prefill(const char* name, WeightFormat fmt, int64_t n, int64_t k, int64_t m) {
    Weight w = dev_weight(fmt, n, k);
    float* x = rand_floats(size_t(m * k));
    cuda::backend().act_quant(x, m, k, k, 128, true);
    float* y = rand_floats(size_t(m * n));
    const double ms = time_ms([&](int) { cuda::backend().linear(x, m, w, 0, n, y, n); }, 10);
    const double tf = 2.0 * double(m) * double(n) * double(k) / (ms * 1e-3) / 1e12;
    std::printf("prefill  %-28s m=%-5lld [%6lld x %6lld]  %8.3f ms  %6.0f TFLOP/s  %5.1f%% of cuBLASLt FP8 peak\n",
                name, (long long)m, (long long)n, (long long)k, ms, tf, 100.0 * tf / g_fp8_tflops);
    if (fmt == WeightFormat::FP8 && tf > g_fp8_block_tflops) g_fp8_block_tflops = tf;
    // The same block-scaled FP8 GEMM alone: activations already in FP8 (the line above includes
    // quantizing float32 x, reading 4 bytes and writing 1 per element).
    if (fmt == WeightFormat::FP8 && cuda::fp8_tensor_cores() && cuda::lt_gemm_only(w, m, y)) {
        const double gms = time_ms([&](int) { cuda::lt_gemm_only(w, m, y); }, 10);
        const double gtf = 2.0 * double(m) * double(n) * double(k) / (gms * 1e-3) / 1e12;
        std::printf(
            "prefill  %-28s m=%-5lld [%6lld x %6lld]  %8.3f ms  %6.0f TFLOP/s  %5.1f%% of cuBLASLt FP8 peak  (GEMM "
            "alone)\n",
            name, (long long)m, (long long)n, (long long)k, gms, gtf, 100.0 * gtf / g_fp8_tflops);
    }
    cuda::free_weight(w);
    cuda::dfree(x);
    cuda::dfree(y);
}

// The FP8 prefill linears at m = 8192: Flash's wo_b, wq_b, wq_a and a square 8192³.
void bench_fp8_prefill() {
    bench_linear_prefill("wo_b FP8", WeightFormat::FP8, 4096, 8192, 8192);
    bench_linear_prefill("wq_b FP8", WeightFormat::FP8, 32768, 1024, 8192);
    bench_linear_prefill("wq_a FP8", WeightFormat::FP8, 1024, 4096, 8192);
    bench_linear_prefill("square FP8", WeightFormat::FP8, 8192, 8192, 8192);
}

// The exact paths of linear() side by side for batched decode and prefill (tensor cores off, as the
// model forward runs by default): m ≤ 16 weight-streaming GEMV or tiled float32 GEMM, against the BF16
// tensor-core path with float32 accuracy (gemm_bf16.cu). Bytes: weight + x + y (traffic of an ideal
// kernel); FLOPs 2·m·n·k.
void bench_linear_paths(const char* name, WeightFormat fmt, int64_t n, int64_t k, const std::vector<int64_t>& ms) {
    const size_t wb = weight_bytes(Weight{fmt, nullptr, n, k, nullptr, ScaleKind::None, fmt == WeightFormat::FP4 ? k / 32 : (k + 127) / 128});
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / wb));
    std::vector<Weight> ws;
    for (int i = 0; i < copies; ++i) ws.push_back(dev_weight(fmt, n, k));
    const bool tc = cuda::fp8_tensor_cores(), bf = cuda::bf16_gemm();
    const int64_t min_rows = cuda::bf16_gemm_min_rows();
    cuda::set_fp8_tensor_cores(false);
    cuda::set_bf16_gemm_min_rows(1);
    for (int64_t m : ms) {
        float* x = rand_floats(size_t(m * k));
        cuda::backend().act_quant(x, m, k, k, 128, true);
        float* y = rand_floats(size_t(m * n));
        double t[2];
        for (int path = 0; path < 2; ++path) {
            cuda::set_bf16_gemm(path == 1);
            const int iters = m >= 1024 ? 5 : 50;
            t[path] = time_ms([&](int i) { cuda::backend().linear(x, m, ws[size_t(i % copies)], 0, n, y, n); }, iters);
        }
        const double bytes = double(wb) + double(m * k * 4 + m * n * 4), flop = 2.0 * double(m) * double(n) * double(k);
        std::printf("paths    %-16s m=%-5lld [%6lld x %6lld]  %s %9.2f us (%5.1f%% of copy, %6.1f TFLOP/s)   "
                    "bf16x3 %9.2f us (%5.1f%% of copy, %6.1f TFLOP/s)   speedup %.2fx\n",
                    name, (long long)m, (long long)n, (long long)k, m <= 16 ? "gemv " : "tiled", t[0] * 1e3,
                    100.0 * bytes / (t[0] * 1e-3) / 1e9 / g_copy_gbs, flop / (t[0] * 1e-3) / 1e12, t[1] * 1e3,
                    100.0 * bytes / (t[1] * 1e-3) / 1e9 / g_copy_gbs, flop / (t[1] * 1e-3) / 1e12, t[0] / t[1]);
        cuda::dfree(x);
        cuda::dfree(y);
    }
    cuda::set_fp8_tensor_cores(tc);
    cuda::set_bf16_gemm(bf);
    cuda::set_bf16_gemm_min_rows(min_rows);
    for (auto& w : ws) cuda::free_weight(w);
}

void print_decode(const char* name, double ms, double bytes) {
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("decode   %-44s %5.1f MB  %8.2f us  %6.0f GB/s  %5.1f%% of copy\n", name, bytes / 1e6, ms * 1e3, gbs,
                100.0 * gbs / g_copy_gbs);
}

// The earlier and the current launches of one decode op, a line each: "<what>, <old_way>", "<what>, <new_way>".
void print_decode_pair(const std::string& what, const char* old_way, double ms_old, const char* new_way, double ms_new,
                       double bytes) {
    print_decode((what + ", " + old_way).c_str(), ms_old, bytes);
    print_decode((what + ", " + new_way).c_str(), ms_new, bytes);
}

// hc_pre at decode (t tokens, Flash d = 4096, hc = 4): the one-block-per-token finish against the
// finish over d/256 + 1 blocks per token (bitwise the same results). Bytes: fn, x, y.
void bench_hc_pre(int64_t t) {
    const int64_t D = 4096, hc = 4, mix = 24;
    float *x = rand_floats(size_t(t * hc * D)), *fn = rand_floats(size_t(mix * hc * D), 0.01f),
          *scale = rand_floats(3, 1.f), *base = rand_floats(size_t(mix), 1.f), *y = rand_floats(size_t(t * D)),
          *post = rand_floats(size_t(t * hc)), *comb = rand_floats(size_t(t * hc * hc));
    const double bytes = double(mix * hc * D * 4 + t * hc * D * 4 + t * D * 4);
    for (bool one_block : {true, false}) {
        cuda::set_one_block_hc_finish(one_block);
        const double ms = time_ms(
            [&](int) { cuda::backend().hc_pre(x, t, hc, D, fn, scale, base, 20, 1e-6f, 1e-6f, y, post, comb); }, 200);
        char name[96];
        std::snprintf(name, sizeof name, "hc_pre t=%lld, %s", (long long)t,
                      one_block ? "one-block finish" : "wide finish");
        print_decode(name, ms, bytes);
    }
    cuda::set_one_block_hc_finish(false);
    for (float* p : {x, fn, scale, base, y, post, comb}) cuda::dfree(p);
}

// Flash wo_a at decode (m rows): 8 group-slice linears (the earlier model path, slices given in place)
// against one linear_groups launch. Weight copies rotate so each call streams from HBM.
void bench_wo_a(int64_t m) {
    const int64_t H = 64, hd = 512, G = 8, olr = 1024, gin = H * hd / G;
    const size_t wb = weight_bytes(Weight{WeightFormat::FP8, nullptr, G * olr, gin, nullptr, ScaleKind::None, gin / 128});
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / wb));
    std::vector<Weight> ws;
    for (int i = 0; i < copies; ++i) ws.push_back(dev_weight(WeightFormat::FP8, G * olr, gin));
    float *o = rand_floats(size_t(m * H * hd)), *xs = rand_floats(size_t(m * gin)), *u = rand_floats(size_t(m * G * olr));
    const double bytes = double(wb) + double(m * H * hd * 4 + m * G * olr * 4);
    const auto grouped = [&](int i) {
        if (!cuda::linear_groups(o, m, H * hd, ws[size_t(i % copies)], G, olr, u, G * olr)) {
            std::fprintf(stderr, "bench_cuda: linear_groups declined wo_a\n");
            std::exit(1);
        }
    };
    double ms_old;
    if (m == 1) {  // one row: the slice GEMV against the split tensor-core GEMV, both one launch
        cuda::set_mma_split(false);
        ms_old = time_ms(grouped, 200);
        cuda::set_mma_split(true);
    } else {
        ms_old = time_ms(
            [&](int i) {
                for (int64_t g = 0; g < G; ++g)
                    cuda::backend().linear(xs, m, ws[size_t(i % copies)], g * olr, (g + 1) * olr, u + g * olr, G * olr);
            },
            200);
    }
    const double ms_new = time_ms(grouped, 200);
    print_decode_pair("wo_a FP8 m=" + std::to_string(m), m == 1 ? "slice GEMV" : "8 slice linears", ms_old,
                      m == 1 ? "tensor-core, split x" : "linear_groups", ms_new, bytes);
    for (auto& w : ws) cuda::free_weight(w);
    for (float* p : {o, xs, u}) cuda::dfree(p);
}

// The shared expert's w1 and w3 (FP8 [2048, 4096]) at decode: two linears against one linear_pair.
void bench_shared_w13(int64_t m) {
    const int64_t I = 2048, D = 4096;
    const size_t wb = weight_bytes(Weight{WeightFormat::FP8, nullptr, I, D, nullptr, ScaleKind::None, D / 128});
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / (2 * wb)));
    std::vector<Weight> w1, w3;
    for (int i = 0; i < copies; ++i) {
        w1.push_back(dev_weight(WeightFormat::FP8, I, D));
        w3.push_back(dev_weight(WeightFormat::FP8, I, D));
    }
    float *x = rand_floats(size_t(m * D)), *gu = rand_floats(size_t(m * 2 * I));
    cuda::backend().act_quant(x, m, D, D, 128, true);
    const double bytes = 2.0 * double(wb) + double(m * D * 4 + m * 2 * I * 4);
    const double ms_old = time_ms(
        [&](int i) {
            cuda::backend().linear(x, m, w1[size_t(i % copies)], 0, I, gu, 2 * I);
            cuda::backend().linear(x, m, w3[size_t(i % copies)], 0, I, gu + I, 2 * I);
        },
        200);
    const double ms_new = time_ms(
        [&](int i) {
            if (!cuda::linear_pair(x, m, w1[size_t(i % copies)], w3[size_t(i % copies)], gu, gu + I, 2 * I)) {
                std::fprintf(stderr, "bench_cuda: linear_pair declined shared w1/w3\n");
                std::exit(1);
            }
        },
        200);
    print_decode_pair("shared w1+w3 FP8 m=" + std::to_string(m), "2 linears", ms_old, "linear_pair", ms_new, bytes);
    for (auto& w : w1) cuda::free_weight(w);
    for (auto& w : w3) cuda::free_weight(w);
    for (float* p : {x, gu}) cuda::dfree(p);
}

// Routed experts at decode (t tokens, 6 of 48 FP4 Flash experts each, ids rotating so weights come
// from HBM) with 2, 4 and 8 weight rows per warp in the grouped GEMVs. Bytes: the distinct experts'
// weights (w1, w3, w2 with scales) plus x and out.
void bench_moe_decode(int64_t t, bool mma_only = false) {
    const int64_t D = 4096, I = 2048, E = 48, K = 6;
    std::vector<cuda::ExpertWeights> ex;
    for (int64_t e = 0; e < E; ++e)
        ex.push_back({dev_weight(WeightFormat::FP4, I, D), dev_weight(WeightFormat::FP4, I, D),
                      dev_weight(WeightFormat::FP4, D, I)});
    cuda::ExpertTable table(ex);
    const int sets = int(E / K);  // set s uses experts [s·K, (s+1)·K) for every token (distinct per set)
    std::vector<int32_t*> ids;
    for (int sidx = 0; sidx < sets; ++sidx) {
        std::vector<int32_t> h(static_cast<size_t>(t * K));
        for (int64_t i = 0; i < t; ++i)
            for (int64_t j = 0; j < K; ++j) h[size_t(i * K + j)] = int32_t(sidx * K + (j + i) % K);
        int32_t* d = static_cast<int32_t*>(cuda::dmalloc(h.size() * 4));
        cuda::h2d(d, h.data(), h.size() * 4);
        ids.push_back(d);
    }
    float *x = rand_floats(size_t(t * D)), *rw = rand_floats(size_t(t * K), 0.5f), *out = rand_floats(size_t(t * D));
    cuda::backend().act_quant(x, t, D, D, 128, true);
    const double bytes = double(K) * double(weight_bytes(ex[0].w1) * 3) + double(2 * t * D * 4);
    for (int rpw : {2, 4, 8, 0}) {  // 0: the tensor-core GEMV
        if (mma_only && rpw) continue;
        cuda::set_mma_gemv(rpw == 0 ? 1 : 0);
        cuda::set_grouped_gemv_rows_per_warp(rpw);
        const double ms = time_ms(
            [&](int i) { cuda::moe_experts(table, x, true, t, D, I, ids[size_t(i % sets)], rw, K, 10.f, true, out); },
            100);
        char name[96];
        if (rpw)
            std::snprintf(name, sizeof name, "moe_experts FP4 t=%lld k=6, %d rows/warp", (long long)t, rpw);
        else
            std::snprintf(name, sizeof name, "moe_experts FP4 t=%lld k=6, tensor-core GEMV", (long long)t);
        print_decode(name, ms, bytes);
    }
    cuda::set_mma_gemv(1);
    cuda::set_grouped_gemv_rows_per_warp(0);
    for (auto& e : ex) {
        cuda::free_weight(e.w1);
        cuda::free_weight(e.w3);
        cuda::free_weight(e.w2);
    }
    for (int32_t* p : ids) cuda::dfree(p);
    for (float* p : {x, rw, out}) cuda::dfree(p);
}

// rmsnorm then a quantized copy for the next FP8 linear (Flash: dim 4096 before wq_a/wkv/experts, 1024
// before wq_b): rmsnorm + copy + act_quant (three launches, as the model runs it) against the fused
// rmsnorm_act_quant (bitwise the same). Bytes: x read, y and yq written.
void bench_rmsnorm_quant(int64_t rows, int64_t dim) {
    float *x = rand_floats(size_t(rows * dim)), *w = rand_floats(size_t(dim), 1.f), *y = rand_floats(size_t(rows * dim)),
          *yq = rand_floats(size_t(rows * dim));
    const double bytes = double(3 * rows * dim * 4 + dim * 4);
    const double ms_old = time_ms(
        [&](int) {
            cuda::backend().rmsnorm(x, rows, dim, w, 1e-6f, y);
            cuda::d2d(yq, y, size_t(rows * dim) * 4);
            cuda::backend().act_quant(yq, rows, dim, dim, 128, true);
        },
        200);
    const double ms_new = time_ms([&](int) { cuda::rmsnorm_act_quant(x, rows, dim, w, 1e-6f, y, yq, 128, true); }, 200);
    print_decode_pair("rmsnorm+act_quant " + std::to_string(rows) + "x" + std::to_string(dim), "3 launches", ms_old,
                      "fused", ms_new, bytes);
    for (float* p : {x, w, y, yq}) cuda::dfree(p);
}

// One Flash ratio-4 layer's decode (batch 1) as the model runs it, minus the CPU-side glue:
// hc_pre, rmsnorm, wq_a, wq_b, wkv, attention over 640 keys, wo_a (8 group slices), wo_b, hc_post,
// hc_pre, rmsnorm, gate, routing, 6 routed experts (FP4) + shared expert (FP8), hc_post.
// `layers` distinct weight sets rotate so weights come from HBM. Timed seven times, the first six each
// adding to the one before: as the model ran before the grouped decode launches (8 wo_a slice linears,
// shared w1 and w3 apart, one-block hc_pre finish, 2 rows per warp in the expert GEMVs); grouped
// launches (linear_groups, linear_pair, wide hc_pre finish); the tensor-core GEMV for act_quant'ed
// inputs; wo_a on its split mode; wkv and the shared expert on a second stream; the FP4 experts decoded
// through e4m3 (off by default). The seventh is the fifth with the fused epilogues (the model's default
// now): hc_post folded into hc_pre and into the MoE combine (which also adds the shared expert's
// output), the shared expert's SwiGLU + quantization in one launch, and each rmsnorm before a quantized
// input one launch with its quantization (rmsnorm_act_quant, as the model's norm_q; since the round
// of the register-tiled attention: earlier records of this line had them as two launches), and q_norm
// formed inside wq_b's launch (mma_gemv_normed, as the model's decode; DSINFER_CUDA_NORM_IN_GEMV=0 for
// the launch before it). (The routed experts' SwiGLU + quantization is one launch in every line:
// moe_experts always fuses it. Every line runs the default attention kernel, DSINFER_CUDA_ATTN_TILED.)
// --layer-profile profiles the sequence with the tensor-core GEMVs and split wo_a on one stream (mode 1);
// --layer-trace replays the model's sequence (the seventh) as CUDA graphs and prints the timeline of
// both streams from CUPTI's kernel records (print_layer_timeline); the replays sit between
// cudaProfilerStart and Stop for nsys too (--capture-range=cudaProfilerApi --cuda-graph-trace=node).
void bench_layer_decode(int layers, int64_t ctx_keys, int profile = 0) {
    const int64_t D = 4096, H = 64, hd = 512, ql = 1024, G = 8, olr = 1024, I = 2048, E = 256, K = 6;
    struct L {
        Weight wq_a, wq_b, wkv, wo_a, wo_b, gate, sw1, sw3, sw2;
        std::vector<cuda::ExpertWeights> ex;
        cuda::ExpertTable* table;
        float *fn_a, *fn_f, *kv;
    };
    std::vector<L> ls(static_cast<size_t>(layers));
    for (auto& l : ls) {
        l.wq_a = dev_weight(WeightFormat::FP8, ql, D);
        l.wq_b = dev_weight(WeightFormat::FP8, H * hd, ql);
        l.wkv = dev_weight(WeightFormat::FP8, hd, D);
        l.wo_a = dev_weight(WeightFormat::FP8, G * olr, H * hd / G);
        l.wo_b = dev_weight(WeightFormat::FP8, D, G * olr);
        l.gate = dev_weight(WeightFormat::BF16, E, D);
        l.sw1 = dev_weight(WeightFormat::FP8, I, D);
        l.sw3 = dev_weight(WeightFormat::FP8, I, D);
        l.sw2 = dev_weight(WeightFormat::FP8, D, I);
        for (int64_t e = 0; e < E; ++e)
            l.ex.push_back({dev_weight(WeightFormat::FP4, I, D), dev_weight(WeightFormat::FP4, I, D),
                            dev_weight(WeightFormat::FP4, D, I)});
        l.table = new cuda::ExpertTable(l.ex);
        l.fn_a = rand_floats(size_t(24 * 4 * D), 0.01f);
        l.fn_f = rand_floats(size_t(24 * 4 * D), 0.01f);
        l.kv = rand_floats(size_t((128 + ctx_keys) * hd));
    }
    // Bytes one layer must read: attention + shared weights, the 6 chosen experts, the gate, hc fns, KV.
    const L& l0 = ls[0];
    const double expert_bytes = double(weight_bytes(l0.ex[0].w1) * 3);
    const double layer_bytes = double(weight_bytes(l0.wq_a) + weight_bytes(l0.wq_b) + weight_bytes(l0.wkv) +
                                      weight_bytes(l0.wo_a) + weight_bytes(l0.wo_b) + weight_bytes(l0.gate) +
                                      weight_bytes(l0.sw1) + weight_bytes(l0.sw3) + weight_bytes(l0.sw2)) +
                               K * expert_bytes + 2.0 * 24 * 4 * D * 4 + double(std::min<int64_t>(ctx_keys, 512) + 128) * hd * 4;
    float* x = rand_floats(size_t(4 * D));
    float *y = rand_floats(size_t(D)), *post = rand_floats(4), *comb = rand_floats(16), *scale = rand_floats(3, 1.f),
          *base = rand_floats(24, 1.f), *nw = rand_floats(size_t(D), 1.f);
    float *qr = rand_floats(size_t(ql)), *q = rand_floats(size_t(H * hd)), *kvn = rand_floats(size_t(hd)),
          *o = rand_floats(size_t(H * hd)), *u = rand_floats(size_t(G * olr)), *a = rand_floats(size_t(D)),
          *logits = rand_floats(size_t(E)), *rw = rand_floats(size_t(K)), *gu = rand_floats(size_t(2 * I)),
          *h = rand_floats(size_t(I)), *f = rand_floats(size_t(D)), *sink = rand_floats(size_t(H)),
          *x2 = rand_floats(size_t(4 * D)), *yq = rand_floats(size_t(D)), *qrq = rand_floats(size_t(ql));
    int32_t* ids = static_cast<int32_t*>(cuda::dmalloc(size_t(K) * 4));
    const int64_t nk = 128 + std::min<int64_t>(ctx_keys, 512);
    std::vector<int32_t> hidx(static_cast<size_t>(nk));
    for (int64_t j = 0; j < nk; ++j) hidx[size_t(j)] = int32_t(j < 128 ? j : 128 + (j - 128) * (ctx_keys / 512 > 0 ? ctx_keys / 512 : 1));
    int32_t* idx = static_cast<int32_t*>(cuda::dmalloc(size_t(nk) * 4));
    cuda::h2d(idx, hidx.data(), size_t(nk) * 4);
    std::vector<int32_t> hid = {3, 77, 128, 200, 9, 250};
    cuda::h2d(ids, hid.data(), 24);
    const ops::Backend& be = cuda::backend();
    const float* kv_b = nullptr;
    bool before = false;  // the earlier launch sequence (see above)
    bool mma = true;      // the tensor-core GEMV for act_quant'ed inputs (the model's linear_xq)
    auto lin_q = [&](const float* xin, const Weight& w, float* yout) {
        if (mma && cuda::mma_gemv(xin, w, 0, w.n, yout)) return;
        be.linear(xin, 1, w, 0, w.n, yout, w.n);
    };
    // Two streams: the window-KV projection beside the query path, the shared expert beside the routed
    // experts (independent work; the side stream forks from and joins the main one by events).
    bool fork = false;
    bool fused = false;  // the fused epilogues (hc_post into hc_pre and the MoE combine, SwiGLU + quant)
    // With the fused epilogues, the norms before a quantized input are one launch each with their
    // quantization (rmsnorm_act_quant: y normalized, yq its quantized copy), as the model runs them.
    bool w2_late = false;  // the shared w2 forked after the routed up launch (cuda::shared_w2_late)
    auto shared_expert = [&](const L& l) {
        const float* ys = fused ? yq : y;
        if (!(mma && cuda::mma_gemv_pair(ys, l.sw1, l.sw3, gu, gu + I)) &&
            (before || !cuda::linear_pair(ys, 1, l.sw1, l.sw3, gu, gu + I, 2 * I))) {
            be.linear(ys, 1, l.sw1, 0, I, gu, 2 * I);
            be.linear(ys, 1, l.sw3, 0, I, gu + I, 2 * I);
        }
        if (fused) {
            cuda::swiglu_act_quant(gu, gu + I, 2 * I, 1, I, 10.f, nullptr, h, 128, true);
        } else {
            be.swiglu(gu, gu + I, 2 * I, 1, I, 10.f, nullptr, h);
            be.act_quant(h, 1, I, I, 128, true);
        }
        if (!w2_late) lin_q(h, l.sw2, a);
    };
    auto step = [&](int it) {
        const L& l = ls[size_t(it % layers)];
        kv_b = l.kv + 128 * hd;
        be.hc_pre(x, 1, 4, D, l.fn_a, scale, base, 20, 1e-6f, 1e-6f, y, post, comb);
        const float* ya = y;  // the attention's quantized input
        if (fused) {
            cuda::rmsnorm_act_quant(y, 1, D, nw, 1e-6f, y, yq, 128, true);
            ya = yq;
        } else {
            be.rmsnorm(y, 1, D, nw, 1e-6f, y);
            be.act_quant(y, 1, D, D, 128, true);
        }
        if (fork) {
            cuda::side_begin();
            lin_q(ya, l.wkv, kvn);
            cuda::side_end();
        }
        lin_q(ya, l.wq_a, qr);
        if (fused && mma && cuda::norm_in_gemv() && cuda::mma_gemv_normed(qr, nw, 1e-6f, l.wq_b, q)) {
            // q_norm formed inside wq_b's launch, as the model's decode runs it (DSINFER_CUDA_NORM_IN_GEMV)
        } else if (fused) {
            cuda::rmsnorm_act_quant(qr, 1, ql, nw, 1e-6f, qr, qrq, 128, true);
            lin_q(qrq, l.wq_b, q);
        } else {
            be.rmsnorm(qr, 1, ql, nw, 1e-6f, qr);
            be.act_quant(qr, 1, ql, ql, 128, true);
            lin_q(qr, l.wq_b, q);
        }
        be.rmsnorm(q, H, hd, nullptr, 1e-6f, q);
        if (fork)
            cuda::side_join();
        else
            lin_q(ya, l.wkv, kvn);
        be.sparse_attn(q, 1, H, hd, l.kv, 128, kv_b, idx, nk, sink, 1.f / std::sqrt(float(hd)), o);
        if (before || !cuda::linear_groups(o, 1, H * hd, l.wo_a, G, olr, u, G * olr))
            for (int64_t g = 0; g < G; ++g)
                be.linear(o + g * (H * hd / G), 1, l.wo_a, g * olr, (g + 1) * olr, u + g * olr, G * olr);
        be.act_quant(u, 1, G * olr, G * olr, 128, true);
        lin_q(u, l.wo_b, a);
        if (fused) {
            cuda::hc_post_pre(a, x, post, comb, 1, 4, D, x2, l.fn_f, scale, base, 20, 1e-6f, 1e-6f, y, post, comb);
        } else {
            be.hc_post(a, x, post, comb, 1, 4, D, x2);
            be.hc_pre(x2, 1, 4, D, l.fn_f, scale, base, 20, 1e-6f, 1e-6f, y, post, comb);
        }
        if (fused)
            cuda::rmsnorm_act_quant(y, 1, D, nw, 1e-6f, y, yq, 128, true);
        else
            be.rmsnorm(y, 1, D, nw, 1e-6f, y);
        be.linear(y, 1, l.gate, 0, E, logits, E);
        be.moe_route(logits, 1, E, nullptr, ids, K, 1.5f, ids, rw);  // fixed (hash-style) ids keep the bytes known
        if (!fused) be.act_quant(y, 1, D, D, 128, true);
        w2_late = fused && fork && cuda::shared_w2_late();
        if (fork) {
            cuda::side_begin();
            shared_expert(l);
            cuda::side_end();
        }
        if (fused) {  // the combine adds the shared expert's output and applies hc_post
            cuda::MoeTail tail;
            tail.before_combine = [] { cuda::side_join(); };
            if (w2_late)
                tail.after_up = [&] {
                    cuda::side_begin();
                    lin_q(h, l.sw2, a);
                    cuda::side_end();
                };
            tail.add = a;
            tail.res = x2;
            tail.post = post;
            tail.comb = comb;
            tail.hc = 4;
            cuda::moe_experts(*l.table, yq, true, 1, D, I, ids, rw, K, 10.f, true, x, &tail);
            return;
        }
        cuda::moe_experts(*l.table, y, true, 1, D, I, ids, rw, K, 10.f, true, f);
        if (fork)
            cuda::side_join();
        else
            shared_expert(l);
        be.hc_post(f, x2, post, comb, 1, 4, D, x);
    };
    if (profile == 2) {
        fork = fused = mma = true;
        cuda::set_mma_gemv(1);
        cuda::set_mma_split(true);
        for (int l = 0; l < layers; ++l) step(l);  // scratch buffers grow outside the capture
        CK(cudaStreamSynchronize(st()));
        std::vector<cudaGraphExec_t> execs = capture_graphs(layers, step);
        for (int i = 0; i < 2 * layers; ++i) CK(cudaGraphLaunch(execs[size_t(i % layers)], st()));
        CK(cudaStreamSynchronize(st()));
        bench::cupti_begin();
        CK(cudaProfilerStart());
        for (int i = 0; i < 4 * layers; ++i) CK(cudaGraphLaunch(execs[size_t(i % layers)], st()));
        CK(cudaStreamSynchronize(st()));
        CK(cudaProfilerStop());
        bench::print_layer_timeline(bench::cupti_end(), 4 * layers);
        for (auto e : execs) CK(cudaGraphExecDestroy(e));
        return;
    }
    if (profile) {  // one step between cudaProfilerStart/Stop, for ncu --profile-from-start off
        step(0);
        CK(cudaStreamSynchronize(st()));
        CK(cudaProfilerStart());
        step(0);
        CK(cudaStreamSynchronize(st()));
        CK(cudaProfilerStop());
        return;
    }
    std::printf("layer    Flash ratio-4 layer decode, batch 1, %lld keys: %.1f MB to read\n", (long long)nk, layer_bytes / 1e6);
    // before; grouped launches; + tensor-core GEMVs; + wo_a on them (split x); + 2 streams; + FP4 through
    // e4m3; 2 streams + fused epilogues (FP4 by shifts)
    for (int variant = 0; variant < 7; ++variant) {
        const bool b = variant == 0;
        before = b;
        mma = variant >= 2;
        fork = variant >= 4;
        fused = variant == 6;
        cuda::set_mma_gemv(mma ? 1 : 0);
        cuda::set_mma_split(variant >= 3);
        cuda::set_mma_fp4_e4m3(variant == 5);
        cuda::set_one_block_hc_finish(b);
        cuda::set_grouped_gemv_rows_per_warp(b ? 2 : 0);
        const double ms = time_ms(step, 50);
        // The same sequence captured once in a CUDA graph per layer, replayed.
        std::vector<cudaGraphExec_t> execs = capture_graphs(layers, step);
        const double gms = replay_ms(execs, 50);
        const double gbs = layer_bytes / (ms * 1e-3) / 1e9, ggbs = layer_bytes / (gms * 1e-3) / 1e9;
        std::printf("layer    %s\n", variant == 0   ? "before grouped decode launches:"
                                     : variant == 1 ? "grouped decode launches, multi-row/slice GEMVs:"
                                     : variant == 2 ? "grouped decode launches + tensor-core GEMVs:"
                                     : variant == 3 ? "+ wo_a on the tensor-core GEMV, x as two f16 terms:"
                                     : variant == 4 ? "+ wkv and the shared expert on a second stream:"
                                     : variant == 5 ? "+ FP4 experts decoded through e4m3 (DSINFER_CUDA_MMA_FP4E4=1):"
                                                    : "second stream + fused epilogues, FP4 by shifts (current):");
        std::printf("layer      stream launches: %8.1f us  %6.0f GB/s  %5.1f%% of copy\n", ms * 1e3, gbs, 100 * gbs / g_copy_gbs);
        std::printf("layer      CUDA graph     : %8.1f us  %6.0f GB/s  %5.1f%% of copy  -> 43 layers %.2f ms/token\n",
                    gms * 1e3, ggbs, 100 * ggbs / g_copy_gbs, 43 * gms);
    }
    cuda::set_one_block_hc_finish(false);
    cuda::set_grouped_gemv_rows_per_warp(0);
    cuda::set_mma_gemv(1);
    cuda::set_mma_split(true);
    cuda::set_mma_fp4_e4m3(false);
    for (auto& l : ls) {
        delete l.table;
        for (auto& e : l.ex) {
            cuda::free_weight(e.w1);
            cuda::free_weight(e.w3);
            cuda::free_weight(e.w2);
        }
        for (Weight* w : {&l.wq_a, &l.wq_b, &l.wkv, &l.wo_a, &l.wo_b, &l.gate, &l.sw1, &l.sw3, &l.sw2}) cuda::free_weight(*w);
    }
}

// prefill_lists: each query's list as a prefill chunk's (model: window first, then the compressed entries,
// -1 padding after each): t queries spread evenly over positions [0, 8192), window min(128, p + 1) keys,
// min(nk - 128, (p + 1) / 4) compressed ones; else nk keys at random among 128 + nk rows.
void bench_attention(int64_t t, int64_t nk, bool prefill_lists = false) {
    const int64_t H = 64, hd = 512, na = 128, nb = std::max<int64_t>(nk, 1);
    float *q = rand_floats(size_t(t * H * hd)), *kva = rand_floats(size_t(na * hd)), *kvb = rand_floats(size_t(nb * hd)),
          *sink = rand_floats(size_t(H)), *o = rand_floats(size_t(t * H * hd));
    std::vector<int32_t> hidx(size_t(t * nk), -1);
    int64_t listed = 0;
    if (prefill_lists) {
        for (int64_t i = 0; i < t; ++i) {
            const int64_t p = i * 8192 / t, nw = std::min<int64_t>(na, p + 1), nc = std::min(nk - na, (p + 1) / 4);
            int32_t* ix = hidx.data() + i * nk;
            for (int64_t w = 0; w < nw; ++w) ix[w] = int32_t((p - nw + 1 + w) % na);
            for (int64_t j = 0; j < nc; ++j) ix[na + j] = int32_t(na + j);
            listed += nw + nc;
        }
    } else {
        for (size_t j = 0; j < hidx.size(); ++j) hidx[j] = int32_t((j * 7919) % size_t(na + nb));
        listed = t * nk;
    }
    int32_t* idx = static_cast<int32_t*>(cuda::dmalloc(hidx.size() * 4));
    cuda::h2d(idx, hidx.data(), hidx.size() * 4);
    if (prefill_lists)
        std::printf("attn     prefill-like lists: %.1f%% of the %lld x %lld entries are padding\n",
                    100.0 * double(t * nk - listed) / double(t * nk), (long long)t, (long long)nk);
    const double flops = 4.0 * H * double(listed) * hd;  // the listed keys only (listed: over all queries)
    const double bytes = double(t) * double(nk) * hd * 4 + 2.0 * double(t) * H * hd * 4;
    double base = 0;
    const bool was = cuda::attn_tiled();
    for (bool tiled : {false, true}) {  // the warp-a-head kernel, then the register-tiled one (the default)
        cuda::set_attn_tiled(tiled);
        const double ms =
            time_ms([&](int) { cuda::backend().sparse_attn(q, t, H, hd, kva, na, kvb, idx, nk, sink, 0.044f, o); }, 50);
        if (!tiled) base = ms;
        std::printf(
            "attn     t=%-5lld keys=%-6lld %-6s %8.2f us  %7.2f TFLOP/s  %6.0f GB/s (unique-key bytes if t=1)%s\n",
            (long long)t, (long long)nk, tiled ? "tiled" : "warp", ms * 1e3, flops / (ms * 1e-3) / 1e12,
            bytes / (ms * 1e-3) / 1e9, tiled ? (" " + std::to_string(base / ms).substr(0, 4) + "x").c_str() : "");
    }
    cuda::set_attn_tiled(was);
}

// --chain: what a decode layer's critical path could reach if each weight-reading kernel fetched its
// weights while the kernel before it still runs. A chain shaped like a Flash ratio-4 layer's main
// stream (latency-bound one-block kernels between weight reads of the layer's sizes) is timed three
// ways: (0) reads start after pdl_wait (four 16-byte loads a thread issued before it, as the GEMVs do);
// (1) one block per SM stages its slice through shared memory with bulk copies, the first stages
// issued before pdl_wait; (2) the same pipeline with every copy issued after pdl_wait. No arithmetic:
// the bytes alone.
__global__ void chain_tiny(float* v, int iters) {  // one block, a short dependent chain
    cuda::pdl_wait();
    cuda::pdl_release();
    float a = v[threadIdx.x];
    for (int i = 0; i < iters; ++i) {
        a = a * 0.999f + __shfl_xor_sync(0xffffffffu, a, 1);
        __syncthreads();
    }
    v[threadIdx.x] = a;
}
__global__ void __launch_bounds__(256) chain_read_plain(const uint4* __restrict__ p, size_t n16, uint32_t* out) {
    const size_t stride = size_t(gridDim.x) * blockDim.x;
    size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = i + u * stride < n16 ? __ldg(p + i + u * stride) : make_uint4(0, 0, 0, 0);
    cuda::pdl_wait();
    cuda::pdl_release();
    uint32_t acc = 0;
    for (;;) {
#pragma unroll
        for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
        i += 4 * stride;
        if (i >= n16) break;
#pragma unroll
        for (int u = 0; u < 4; ++u) v[u] = i + u * stride < n16 ? __ldg(p + i + u * stride) : make_uint4(0, 0, 0, 0);
    }
    if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}
constexpr int kChainStages = 6;
constexpr uint32_t kChainChunk = 32768;  // bytes a stage
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return uint32_t(__cvta_generic_to_shared(p));
}
template <bool EARLY>
__global__ void __launch_bounds__(512, 1) chain_read_bulk(const uint8_t* __restrict__ p, size_t bytes, uint32_t* out) {
    extern __shared__ __align__(128) uint8_t buf[];
    __shared__ __align__(8) uint64_t bar[kChainStages];
    // This block's slice: whole chunks, the last block takes the remainder.
    const size_t chunks = (bytes + kChainChunk - 1) / kChainChunk;
    const size_t per = (chunks + gridDim.x - 1) / gridDim.x;
    const size_t c0 = min(chunks, blockIdx.x * per), c1 = min(chunks, c0 + per);
    auto issue = [&](size_t c) {  // thread 0: chunk c into stage c % kChainStages
        const int s = int((c - c0) % kChainStages);
        const uint32_t n = uint32_t(min(size_t(kChainChunk), bytes - c * kChainChunk));
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&bar[s])), "r"(n)
                     : "memory");
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         smem_addr(buf + size_t(s) * kChainChunk)),
                     "l"(p + c * kChainChunk), "r"(n), "r"(smem_addr(&bar[s]))
                     : "memory");
    };
    if (threadIdx.x == 0) {
        for (int s = 0; s < kChainStages; ++s)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar[s])) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        if (EARLY)
            for (size_t c = c0; c < min(c1, c0 + kChainStages); ++c) issue(c);
    }
    cuda::pdl_wait();
    cuda::pdl_release();
    if (!EARLY && threadIdx.x == 0)
        for (size_t c = c0; c < min(c1, c0 + kChainStages); ++c) issue(c);
    __syncthreads();
    uint32_t acc = 0;
    for (size_t c = c0; c < c1; ++c) {
        const int s = int((c - c0) % kChainStages);
        const uint32_t parity = uint32_t(((c - c0) / kChainStages) & 1);
        uint32_t done = 0;
        while (!done)
            asm volatile("{ .reg .pred q; mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2; selp.u32 %0, 1, 0, q; }"
                         : "=r"(done)
                         : "r"(smem_addr(&bar[s])), "r"(parity)
                         : "memory");
        const uint32_t n = uint32_t(min(size_t(kChainChunk), bytes - c * kChainChunk));
        const uint4* q = reinterpret_cast<const uint4*>(buf + size_t(s) * kChainChunk);
        for (uint32_t i = threadIdx.x; i < n / 16; i += blockDim.x) {
            const uint4 v = q[i];
            acc ^= v.x ^ v.y ^ v.z ^ v.w;
        }
        __syncthreads();  // the stage is read: refill it
        if (threadIdx.x == 0 && c + kChainStages < c1) {
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            issue(c + kChainStages);
        }
    }
    if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}
void bench_chain() {
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t smem = size_t(kChainStages) * kChainChunk;
    CK(cudaFuncSetAttribute(chain_read_bulk<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    CK(cudaFuncSetAttribute(chain_read_bulk<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    // The main stream of a ratio-4 layer: 0 = a one-block kernel, else MB read.
    const std::vector<double> seq = {0, 0, 4.2, 0, 33.6, 0, 0, 0, 16.8, 33.6, 0, 0, 2.1, 0, 50.3, 25.2, 25.2, 0};
    double total = 0;
    for (double mb : seq) total += mb * 1e6;
    const int layers = 4;
    std::vector<std::vector<void*>> bufs(layers);
    for (auto& b : bufs)
        for (double mb : seq)
            if (mb > 0) {
                b.push_back(cuda::dmalloc(size_t(mb * 1e6) / kChainChunk * kChainChunk));
                rand_bytes(b.back(), size_t(mb * 1e6) / kChainChunk * kChainChunk, 0);
            }
    float* v = rand_floats(256);
    uint32_t* out = static_cast<uint32_t*>(cuda::dmalloc(size_t(sms) * 8 * 4));
    for (int tiny_iters : {0, 40, 200}) {
        for (int mode = 0; mode < 4; ++mode) {  // 3: the tiny kernels alone
            auto layer = [&](int i) {
                size_t r = 0;
                for (double mb : seq) {
                    if (mb == 0) {
                        cuda::launch_pdl(chain_tiny, dim3(1), dim3(256), 0, v, tiny_iters);
                        continue;
                    }
                    const void* b = bufs[size_t(i % layers)][r++];
                    const size_t bytes = size_t(mb * 1e6) / kChainChunk * kChainChunk;
                    if (mode == 3) continue;
                    if (mode == 0)
                        cuda::launch_pdl(chain_read_plain, dim3(unsigned(sms * 8)), dim3(256), 0,
                                         static_cast<const uint4*>(b), bytes / 16, out);
                    else if (mode == 1)
                        cuda::launch_pdl(chain_read_bulk<true>, dim3(unsigned(sms)), dim3(512), smem,
                                         static_cast<const uint8_t*>(b), bytes, out);
                    else
                        cuda::launch_pdl(chain_read_bulk<false>, dim3(unsigned(sms)), dim3(512), smem,
                                         static_cast<const uint8_t*>(b), bytes, out);
                }
            };
            std::vector<cudaGraphExec_t> execs = capture_graphs(layers, layer);
            const double ms = replay_ms(execs, 40);
            const double gbs = total / (ms * 1e-3) / 1e9;
            std::printf("chain    tiny %3d iters, %-34s %8.1f us  %5.1f%% of copy on %.1f MB\n", tiny_iters,
                        mode == 0   ? "plain reads after pdl_wait:"
                        : mode == 1 ? "bulk-copy pipeline, staged early:"
                        : mode == 2 ? "bulk-copy pipeline, after pdl_wait:"
                                    : "the one-block kernels alone:",
                        ms * 1e3, mode == 3 ? 0.0 : 100 * gbs / g_copy_gbs, total / 1e6);
        }
    }
    // Each read alone, back to back (rotating past the L2).
    for (double mb : {4.2, 33.6}) {
        const size_t bytes = size_t(mb * 1e6) / kChainChunk * kChainChunk;
        const std::vector<void*> rb = rotating_buffers(bytes);
        for (int mode = 0; mode < 2; ++mode) {
            const double ms = time_ms(
                [&](int i) {
                    const void* b = rb[size_t(i) % rb.size()];
                    if (mode == 0)
                        cuda::launch_pdl(chain_read_plain, dim3(unsigned(sms * 8)), dim3(256), 0,
                                         static_cast<const uint4*>(b), bytes / 16, out);
                    else
                        cuda::launch_pdl(chain_read_bulk<true>, dim3(unsigned(sms)), dim3(512), smem,
                                         static_cast<const uint8_t*>(b), bytes, out);
                },
                100);
            const double gbs = double(bytes) / (ms * 1e-3) / 1e9;
            std::printf("chain    alone %5.1f MB %-10s %8.2f us  %5.1f%% of copy\n", mb,
                        mode ? "bulk:" : "plain:", ms * 1e3, 100 * gbs / g_copy_gbs);
        }
        for (void* b : rb) cuda::dfree(b);
    }
    for (auto& b : bufs)
        for (void* x : b) cuda::dfree(x);
    cuda::dfree(v);
    cuda::dfree(out);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    if (!cuda::available()) {
        std::fprintf(stderr, "bench_cuda: no CUDA device\n");
        return 1;
    }
    std::printf("device: %s\n", cuda::device_name());
    if (argc > 1 && std::strcmp(argv[1], "--layer-profile") == 0) {  // one layer step, for ncu
        ceiling_copy();
        bench_layer_decode(1, 1024, 1);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--layer-trace") == 0) {  // graph replays, for nsys
        bench_layer_decode(4, 1024, 2);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--paths") == 0) {  // exact linear paths: GEMV/tiled vs BF16x3
        ceiling_copy();
        const std::vector<int64_t> ms = {1, 2, 4, 8, 16, 64, 256, 1024, 8192};
        bench_linear_paths("wo_b FP8", WeightFormat::FP8, 4096, 8192, ms);
        bench_linear_paths("wq_b FP8", WeightFormat::FP8, 32768, 1024, ms);
        bench_linear_paths("wq_a FP8", WeightFormat::FP8, 1024, 4096, {1, 2, 4, 8, 16, 64, 256, 1024});
        bench_linear_paths("routed w1 FP4", WeightFormat::FP4, 2048, 4096, {1, 2, 4, 8, 16, 64, 256});
        bench_linear_paths("head BF16", WeightFormat::BF16, 129280, 4096, {1, 2, 4, 8, 16, 64, 256});
        return 0;
    }
    if (argc > 2 && std::strcmp(argv[1], "--model-trace") == 0)  // a model's prefill and decode, kernel by kernel
        return bench::model_trace(argv[2], argc > 3 ? std::atoi(argv[3]) : 1024, argc > 4 ? std::atoi(argv[4]) : 16);
    if (argc > 1 && std::strcmp(argv[1], "--attn") == 0) {  // sparse attention alone: decode and prefill shapes
        ceiling_copy();
        bench_attention(1, 640);
        bench_attention(1, 128 + 8192);
        bench_attention(8, 640);
        bench_attention(64, 640);
        bench_attention(512, 640);
        bench_attention(512, 640, true);
        bench_attention(2048, 640, true);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--moe") == 0) {  // one token's routed experts alone (for ncu)
        ceiling_copy();
        bench_moe_decode(1, true);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--gemv") == 0) {  // copy ceiling + the decode linears and experts
        ceiling_copy();
        bench_gemv_linears();
        bench_wo_a(1);
        bench_moe_decode(1, true);
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--chain") == 0) {  // copy ceiling + the weight-staging probe
        ceiling_copy();
        bench_chain();
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--prefill") == 0) {  // FP8 GEMM ceiling + the FP8 prefill linears
        ceiling_fp8_gemm(8192, 8192, 8192, true);
        ceiling_fp8_gemm(8192, 8192, 8192, false);
        bench_fp8_prefill();
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--layer") == 0) {  // copy ceiling + the layer decode only
        ceiling_copy();
        ceiling_read();
        ceiling_pattern();
        bench_layer_decode(4, 1024);
        return 0;
    }
    ceiling_copy();
    ceiling_fp8_gemm(8192, 8192, 8192, true);
    ceiling_fp8_gemm(8192, 8192, 8192, false);

    bench_gemv_linears();
    bench_linear_decode("wkv FP8", WeightFormat::FP8, 512, 4096, 1);
    bench_linear_decode("gate BF16", WeightFormat::BF16, 256, 4096, 1);
    bench_linear_decode("wo_b FP8", WeightFormat::FP8, 4096, 8192, 8);
    bench_linear_decode("head BF16", WeightFormat::BF16, 129280, 4096, 1);

    bench_hc_pre(1);
    bench_hc_pre(4);
    bench_wo_a(1);
    bench_wo_a(4);
    bench_shared_w13(1);
    bench_moe_decode(1);
    bench_moe_decode(4);
    bench_rmsnorm_quant(1, 4096);
    bench_rmsnorm_quant(1, 1024);

    bench_attention(1, 640);
    bench_attention(1, 128 + 8192);
    if (!quick) bench_attention(512, 640);

    bench_fp8_prefill();
    bench_linear_prefill("routed w1 FP4 (256 rows)", WeightFormat::FP4, 2048, 4096, 256);
    bench_linear_prefill("routed w1 FP4 (2048 rows)", WeightFormat::FP4, 2048, 4096, 2048);

    bench_layer_decode(quick ? 2 : 4, 1024);
    std::printf("summary  copy %.0f GB/s, cuBLASLt FP8 peak %.0f TFLOP/s, best block-scaled FP8 linear %.0f TFLOP/s (%.1f%%)\n",
                g_copy_gbs, g_fp8_tflops, g_fp8_block_tflops, 100 * g_fp8_block_tflops / g_fp8_tflops);
    return 0;
}
