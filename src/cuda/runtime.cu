// Device, stream, scratch buffers and weight upload of the CUDA backend.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>
#include <mutex>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

void fail(const std::string& what) { throw std::runtime_error("cuda: " + what); }

namespace {
cudaStream_t g_stream = nullptr;
bool g_stream_set = false;
struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
};
Scratch g_scratch[kLanes][kScratchCount];  // [0] main stream, [i] side lane i (side_begin(i) .. side_end)
int g_lane = 0;
cudaStream_t g_main = nullptr, g_side[kLanes] = {};
cudaEvent_t g_fork = nullptr, g_join[kLanes] = {};
bool g_pending[kLanes] = {};  // lanes with work the next side_join waits for
std::mutex g_mutex;
}  // namespace

bool available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

const char* device_name() {
    static std::string name;
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "none";
    name = p.name;
    return name.c_str();
}

cudaStream_t cur_stream() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_stream_set) {
        DSINFER_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
        g_stream_set = true;
    }
    return g_stream;
}
void* stream() { return cur_stream(); }

int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        DSINFER_CUDA_CHECK(cudaGetDevice(&dev));
        DSINFER_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        return v;
    }();
    return n;
}

bool pdl_enabled() {
    static const bool on = [] {
        const char* v = std::getenv("DSINFER_CUDA_PDL");
        return !(v && v[0] == '0');
    }();
    return on;
}
bool legacy_decode_kernels() {
    static const bool legacy = [] {
        const char* v = std::getenv("DSINFER_CUDA_LEGACY_DECODE");
        return v && v[0] && v[0] != '0';
    }();
    return legacy;
}
void set_stream(void* s) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_stream = static_cast<cudaStream_t>(s);
    g_stream_set = true;
}

namespace {
std::atomic<uint64_t> g_scratch_generation{0};
}  // namespace

uint64_t scratch_generation() { return g_scratch_generation; }
void scratch_moved() {
    ++g_scratch_generation;
}
int scratch_lane() {
    return g_lane;
}

void* scratch(int slot, size_t bytes) {
    Scratch& s = g_scratch[g_lane][slot];
    if (bytes > s.bytes) {
        ++g_scratch_generation;  // captured CUDA graphs that used the old buffer are stale
        if (s.p) {
            DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
            DSINFER_CUDA_CHECK(cudaFree(s.p));
        }
        const size_t grown = std::max(bytes, s.bytes + s.bytes / 2);
        DSINFER_CUDA_CHECK(cudaMalloc(&s.p, grown));
        s.bytes = grown;
    }
    return s.p;
}

void* dmalloc(size_t bytes) {
    void* p = nullptr;
    DSINFER_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}
void dfree(void* p) {
    if (p) DSINFER_CUDA_CHECK(cudaFree(p));
}
void h2d(void* dst, const void* src, size_t bytes) {
    DSINFER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cur_stream()));
    DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
}
void d2h(void* dst, const void* src, size_t bytes) {
    DSINFER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cur_stream()));
    DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
}
void d2d(void* dst, const void* src, size_t bytes) {
    DSINFER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cur_stream()));
}
void sync() { DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream())); }

namespace {
// Page-locked staging chunks of the current upload round (cuda_backend.h, h2d_staged).
struct Staging {
    struct Chunk {
        char* p;
        size_t bytes;
    };
    std::vector<Chunk> chunks;
    size_t cur = 0, off = 0;
    bool used = false;
    ~Staging() {
        for (auto& c : chunks) cudaFreeHost(c.p);
    }
};
Staging g_staging;
}  // namespace

void begin_capture() { DSINFER_CUDA_CHECK(cudaStreamBeginCapture(cur_stream(), cudaStreamCaptureModeRelaxed)); }

void* end_capture() {
    cudaGraph_t graph = nullptr;
    DSINFER_CUDA_CHECK(cudaStreamEndCapture(cur_stream(), &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    DSINFER_CUDA_CHECK(e);
    return exec;
}

void abort_capture() {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(cur_stream(), &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
    cudaGetLastError();  // clear the capture's error state
}

void launch_graph(void* exec) { DSINFER_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), cur_stream())); }

void destroy_graph(void* exec) {
    if (exec) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec));
}

void* host_alloc(size_t bytes) {
    void* p = nullptr;
    DSINFER_CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
}
void host_free(void* p) {
    if (p) DSINFER_CUDA_CHECK(cudaFreeHost(p));
}

void begin_uploads() {
    Staging& s = g_staging;
    if (s.used) DSINFER_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));  // the last round's copies are done
    s.cur = 0;
    s.off = 0;
    s.used = false;
}

namespace {
// Small uploads may travel as a kernel's parameters (up to kParamUpload bytes): a kernel launch takes
// part in programmatic dependent launch like its neighbours, where a copy-engine transfer would stall
// the stream's kernel chain on both sides. Off by default (not yet measured on a GPU):
// DSINFER_CUDA_PARAM_UPLOAD=1 or set_param_upload(1) turns it on.
constexpr size_t kParamUpload = 8192;
struct ParamBlob {
    uint32_t w[kParamUpload / 4];
};
__global__ void __launch_bounds__(256)
    upload_kernel(const __grid_constant__ ParamBlob blob, uint32_t* dst, unsigned words) {
    pdl_wait();  // the destination may still be read by earlier work
    pdl_release();
    for (unsigned i = threadIdx.x; i < words; i += blockDim.x) dst[i] = blob.w[i];
}
std::atomic<int> g_param_upload{-1};  // -1: DSINFER_CUDA_PARAM_UPLOAD (read once), 0 off, 1 on
bool param_upload() {
    return mode_or_env(g_param_upload, "DSINFER_CUDA_PARAM_UPLOAD", 0) == 1;
}
}  // namespace

void set_param_upload(int mode) {
    g_param_upload.store(mode == 1 ? 1 : 0);
}

void h2d_staged(void* dst, const void* src, size_t bytes) {
    if (!bytes) return;
    if (bytes <= kParamUpload && bytes % 4 == 0 && reinterpret_cast<uintptr_t>(dst) % 4 == 0 && param_upload()) {
        ParamBlob blob;  // the launch copies its parameters when it is enqueued
        std::memcpy(blob.w, src, bytes);
        launch_pdl(upload_kernel, 1, 256, 0, blob, static_cast<uint32_t*>(dst), unsigned(bytes / 4));
        DSINFER_CUDA_LAUNCH();
        return;
    }
    Staging& s = g_staging;
    const size_t need = (bytes + 255) / 256 * 256;
    while (s.cur < s.chunks.size() && s.off + need > s.chunks[s.cur].bytes) {
        ++s.cur;
        s.off = 0;
    }
    if (s.cur == s.chunks.size()) {
        Staging::Chunk c{nullptr, std::max<size_t>(need, size_t(4) << 20)};
        DSINFER_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&c.p), c.bytes));
        s.chunks.push_back(c);
        s.off = 0;
    }
    char* p = s.chunks[s.cur].p + s.off;
    s.off += need;
    s.used = true;
    std::memcpy(p, src, bytes);
    DSINFER_CUDA_CHECK(cudaMemcpyAsync(dst, p, bytes, cudaMemcpyHostToDevice, cur_stream()));
}

namespace {
__global__ void fill_kernel(float* p, size_t n, float v) {
    pdl_wait();
    pdl_release();
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) p[i] = v;
}
}  // namespace

void dfill_nan(float* p, size_t count) {
    if (!count) return;
    const int blocks = int(std::min<size_t>((count + 255) / 256, 4096));
    launch_pdl(fill_kernel, blocks, 256, 0, p, count, std::numeric_limits<float>::quiet_NaN());
    DSINFER_CUDA_LAUNCH();
}

namespace {
size_t weight_bytes(const ops::Weight& w) {
    switch (w.fmt) {
        case ops::WeightFormat::F32: return size_t(w.n * w.k) * 4;
        case ops::WeightFormat::BF16: return size_t(w.n * w.k) * 2;
        case ops::WeightFormat::FP8: return size_t(w.n * w.k);
        case ops::WeightFormat::FP4: return size_t(w.n * w.k / 2);
    }
    return 0;
}
size_t scale_bytes(const ops::Weight& w) {
    if (w.scale_kind == ops::ScaleKind::None) return 0;
    const int64_t rows = w.fmt == ops::WeightFormat::FP8 ? ceil_div(w.n, 128) : w.n;
    return size_t(rows * w.scale_cols) * (w.scale_kind == ops::ScaleKind::E8M0 ? 1 : 4);
}
}  // namespace

ops::Weight upload_weight(const ops::Weight& host) {
    ops::Weight d = host;
    const size_t wb = weight_bytes(host), sb = scale_bytes(host);
    void* data = dmalloc(wb);
    h2d(data, host.data, wb);
    d.data = data;
    if (sb) {
        void* s = dmalloc(sb);
        h2d(s, host.scale, sb);
        d.scale = s;
    }
    return d;
}

void forget_weight(const ops::Weight& w) {
    if (w.scale) forget_weight_scales(w.scale);
}

void free_weight(ops::Weight& w) {
    forget_weight(w);
    dfree(const_cast<void*>(w.data));
    dfree(const_cast<void*>(w.scale));
    w.data = nullptr;
    w.scale = nullptr;
}

void side_begin(int lane) {
    if (g_lane) fail("side_begin: a side stream is already open");
    if (lane < 1 || lane >= kLanes) fail("side_begin: no side lane " + std::to_string(lane));
    if (!g_fork) DSINFER_CUDA_CHECK(cudaEventCreateWithFlags(&g_fork, cudaEventDisableTiming));
    if (!g_side[lane]) {
        DSINFER_CUDA_CHECK(cudaStreamCreateWithFlags(&g_side[lane], cudaStreamNonBlocking));
        DSINFER_CUDA_CHECK(cudaEventCreateWithFlags(&g_join[lane], cudaEventDisableTiming));
    }
    g_main = cur_stream();
    DSINFER_CUDA_CHECK(cudaEventRecord(g_fork, g_main));
    DSINFER_CUDA_CHECK(cudaStreamWaitEvent(g_side[lane], g_fork, 0));
    set_stream(g_side[lane]);
    g_lane = lane;
}

void side_end() {
    if (!g_lane) fail("side_end: no side stream is open");
    DSINFER_CUDA_CHECK(cudaEventRecord(g_join[g_lane], g_side[g_lane]));
    g_pending[g_lane] = true;
    set_stream(g_main);
    g_lane = 0;
}

void side_abort() {
    // Joins recorded inside a capture that failed cannot be waited on: forget them (the eager rerun
    // records its own).
    for (int l = 1; l < kLanes; ++l) g_pending[l] = false;
    if (!g_lane) return;
    set_stream(g_main);
    g_lane = 0;
}

void side_join() {
    if (g_lane) fail("side_join: a side stream is still open");
    for (int l = 1; l < kLanes; ++l)
        if (g_pending[l]) {
            DSINFER_CUDA_CHECK(cudaStreamWaitEvent(cur_stream(), g_join[l], 0));
            g_pending[l] = false;
        }
}

}  // namespace dsinfer::cuda
