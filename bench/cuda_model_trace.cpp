// bench_cuda --model-trace DIR [CONTEXT] [STEPS]: a model folder's GPU forward with every kernel
// recorded (cupti_trace.h): one prefill of CONTEXT tokens (one forward call) and STEPS decode steps of
// one sequence (the device argmax, as `dsinfer bench --device cuda` decodes), each region's kernels by
// name with their summed time. Run it twice with a DSINFER_CUDA_* switch flipped to see which kernels
// a switch moves end to end (the op benchmarks time kernels alone).
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_model.h"
#include "cupti_trace.h"
#include "model/dsv4_model.h"

namespace dsinfer::bench {

namespace {
double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int model_trace(const std::string& dir, int context, int steps) {
    ModelOptions mo;
    auto model = Dsv4Model::load(dir, mo);
    model->set_device(cuda::make_model_device(*model));
    const ModelConfig& cfg = model->config();
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(2, int32_t(cfg.vocab_size - 1));
    auto tokens = [&](int n) {
        std::vector<int32_t> v(static_cast<size_t>(n));
        for (auto& t : v) t = tok(rng);
        return v;
    };
    auto run = [&](SequenceState& seq, const std::vector<int32_t>& ids) {
        int32_t pick = -1;
        ForwardItem it;
        it.state = &seq;
        it.tokens = ids;
        it.argmax_out = &pick;
        model->forward(std::span<ForwardItem>(&it, 1));
        return pick;
    };
    std::printf("model    %s: %d layers, context %d, %d decode steps\n", dir.c_str(), cfg.n_layers, context, steps);
    {  // a first pass: kernel attributes, scratch buffers and graphs are set up outside the records
        auto warm = model->new_sequence();
        run(*warm, tokens(context));
        for (int s = 0; s < 3; ++s) run(*warm, tokens(1));
    }
    cudaDeviceSynchronize();
    auto seq = model->new_sequence();
    const auto prompt = tokens(context);
    cupti_begin();
    double t0 = now_ms();
    run(*seq, prompt);
    cudaDeviceSynchronize();
    const double prefill_ms = now_ms() - t0;
    print_kernel_totals(cupti_end(), "prefill", prefill_ms, 25);
    run(*seq, tokens(1));  // the first decode step after a prefill builds its tables
    cudaDeviceSynchronize();
    cupti_begin();
    t0 = now_ms();
    for (int s = 0; s < steps; ++s) run(*seq, tokens(1));
    cudaDeviceSynchronize();
    const double decode_ms = now_ms() - t0;
    std::printf("decode   %d steps, %.3f ms a step on the host\n", steps, decode_ms / steps);
    print_kernel_totals(cupti_end(), "decode", decode_ms, 25);
    return 0;
}

}  // namespace dsinfer::bench
