// CUPTI's kernel records for bench_cuda's traces (--layer-trace, --model-trace): each kernel's start and
// end on the GPU's clock, stream and grid, graph nodes included, without an external profiler. Built
// with CUPTI when the CUDA toolkit has it (DSINFER_CUPTI); without it the functions record nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsinfer::bench {

struct KernelRecord {
    uint64_t start, end;  // ns
    uint32_t stream;
    int32_t grid, block;
    std::string name;  // demangled, namespaces and parameters dropped
};

bool cupti_built();
// Starts recording kernels (clears what was recorded); cupti_end flushes, stops and returns them.
void cupti_begin();
std::vector<KernelRecord> cupti_end();

// `graphs` back-to-back graph replays of the same kernels: one replay's kernels with their offsets,
// durations and what each adds to the replay's span, then the spans and the additions by kernel.
void print_layer_timeline(std::vector<KernelRecord> recs, int graphs);
// Kernels of one region by name: launches, summed time and share, and the region's span on the GPU
// (first start to last end) beside its wall time on the host.
void print_kernel_totals(const std::vector<KernelRecord>& recs, const char* label, double wall_ms, int top);

// bench_cuda --model-trace (cuda_model_trace.cpp).
int model_trace(const std::string& dir, int context, int steps);

}  // namespace dsinfer::bench
