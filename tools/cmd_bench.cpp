// dsinfer bench: end-to-end throughput of the model (prefill and decode tokens/s), the weight bytes a
// decoded token reads, and that traffic against the measured memory bandwidth: the host's (--device cpu)
// or the GPU's device-to-device copy (--device cuda). A benchmark prints figures and ratios; it asserts
// nothing.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "command.h"
#include "core/error.h"
#include "io/config.h"
#include "io/progress.h"
#include "model/checkpoint_layout.h"
#include "model/dsv4_model.h"
#include "model_device.h"
#include "runtime/sampler.h"

#ifdef DSINFER_CUDA
#include <cuda_runtime.h>
#endif

namespace dsinfer {
namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// VmHWM / VmRSS of this process in bytes (mmapped file pages that are resident count too).
struct Rss {
    uint64_t hwm = 0, rss = 0, anon = 0, file = 0;
};
Rss read_rss() {
    Rss r;
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        unsigned long long kb;
        if (std::sscanf(line.c_str(), "VmHWM: %llu kB", &kb) == 1) r.hwm = kb * 1024;
        if (std::sscanf(line.c_str(), "VmRSS: %llu kB", &kb) == 1) r.rss = kb * 1024;
        if (std::sscanf(line.c_str(), "RssAnon: %llu kB", &kb) == 1) r.anon = kb * 1024;
        if (std::sscanf(line.c_str(), "RssFile: %llu kB", &kb) == 1) r.file = kb * 1024;
    }
    return r;
}

// Resets VmHWM to the current RSS (Linux: write 5 to clear_refs), so the peak of one phase can be read.
bool reset_hwm() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    return bool(f);
}

// Multi-threaded memory bandwidth: read (sum of 64-bit words) and copy of a buffer much larger than
// the caches; best of a few runs. Copy counts bytes read + written.
struct Bandwidth {
    double read_gbs = 0, copy_gbs = 0;
};
Bandwidth measure_bandwidth(size_t bytes) {
    const size_t n = bytes / 8;
    std::vector<uint64_t> a(n), b(n);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) {
        a[i] = i * 0x9e3779b97f4a7c15ull;
        b[i] = 0;
    }
    Bandwidth bw;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; ++rep) {
        double t0 = now_s();
        uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
        for (size_t i = 0; i < n; ++i) sum += a[i];
        double t1 = now_s();
        sink = sink + sum;
        bw.read_gbs = std::max(bw.read_gbs, double(bytes) / (t1 - t0) / 1e9);
        t0 = now_s();
        const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num();
            size_t lo = n * size_t(t) / size_t(threads), hi = n * size_t(t + 1) / size_t(threads);
            std::memcpy(b.data() + lo, a.data() + lo, (hi - lo) * 8);
        }
        t1 = now_s();
        bw.copy_gbs = std::max(bw.copy_gbs, 2.0 * double(bytes) / (t1 - t0) / 1e9);
    }
    return bw;
}

// Touches every page of the tensors the bench runs (all but the MTP blocks, which plain decode never
// reads) through a mapping of its own, so the page cache holds them and the timed runs measure compute
// and memory rather than the disk. The caller drops that mapping afterwards; the model maps the same
// pages again without I/O.
double warm_page_cache(const Checkpoint& ck) {
    std::vector<const TensorInfo*> ts;
    for (auto& [name, t] : ck.tensors())
        if (name.rfind("mtp.", 0) != 0) ts.push_back(&t);
    uint64_t total = 0;
    volatile uint8_t sink = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : total)
    for (size_t i = 0; i < ts.size(); ++i) {
        const TensorInfo& t = *ts[i];
        uint8_t acc = 0;
        for (size_t off = 0; off < t.nbytes; off += 4096) acc ^= t.data[off];
        if (t.nbytes) acc ^= t.data[t.nbytes - 1];
        sink = acc;
        total += t.nbytes;
    }
    (void)sink;
    return double(total);
}

#ifdef DSINFER_CUDA
void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw Error(std::string("bench: ") + what + ": " + cudaGetErrorString(e));
}

// The GPU's copy bandwidth: a large device-to-device cudaMemcpy, best of several, counting bytes read
// plus written (the same ceiling as bench_cuda's "d2d copy").
double measure_device_copy_gbs(size_t bytes) {
    void *a = nullptr, *b = nullptr;
    cuda_check(cudaMalloc(&a, bytes), "cudaMalloc");
    cuda_check(cudaMalloc(&b, bytes), "cudaMalloc");
    cuda_check(cudaMemset(a, 1, bytes), "cudaMemset");
    cudaEvent_t e0, e1;
    cuda_check(cudaEventCreate(&e0), "cudaEventCreate");
    cuda_check(cudaEventCreate(&e1), "cudaEventCreate");
    float best_ms = 1e30f;
    for (int rep = 0; rep < 10; ++rep) {
        cuda_check(cudaEventRecord(e0), "cudaEventRecord");
        cuda_check(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy");
        cuda_check(cudaEventRecord(e1), "cudaEventRecord");
        cuda_check(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float ms = 0;
        cuda_check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
        if (rep > 0) best_ms = std::min(best_ms, ms);  // the first copy warms up
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) / (double(best_ms) * 1e-3) / 1e9;
}

std::string device_card() {
    int dev = 0;
    cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp p{};
    cuda_check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
    char buf[256];
    std::snprintf(buf, sizeof buf, "%.200s, %.1f GiB, sm_%d%d, %d SMs", p.name, double(p.totalGlobalMem) / (1ull << 30),
                  p.major, p.minor, p.multiProcessorCount);
    return buf;
}
#endif

std::vector<int> parse_list(const std::string& s, const std::string& flag) {
    std::vector<int> out;
    size_t pos = 0;
    while (pos < s.size()) {
        size_t comma = s.find(',', pos);
        std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        try {
            int v = std::stoi(item);
            if (v <= 0) throw 0;
            out.push_back(v);
        } catch (...) {
            throw Error(flag + " needs positive integers separated by commas (got '" + s + "')");
        }
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (out.empty()) throw Error(flag + " needs at least one value");
    return out;
}

// Decode with the GPU forward: one sequence prefilled with `context` tokens, copied (device state
// included) to each of B sequences, one untimed warm-up step (scratch buffers settle), then `decode`
// timed steps of one random token per sequence (random rather than greedy, so the copies do not route
// alike). Prints per-sequence and aggregate tokens/s and the weight traffic of a step against the
// device's copy bandwidth.
template <class Tokens>
void decode_on_device(Dsv4Model& model, const ModelConfig& cfg, const std::vector<int>& batches, int context,
                      int decode, std::map<int, double>& step_bytes, double copy_gbs, uint64_t per_token,
                      bool host_logits, const SamplingParams* sampled, bool use_summaries, bool device_draws,
                      Tokens&& tokens) {
    auto base = model.new_sequence();
    {
        std::vector<float> logits;
        ForwardItem it;
        it.state = base.get();
        const auto ids = tokens(context);
        it.tokens = ids;
        it.logits_out = &logits;
        double s = now_s();
        model.forward(std::span<ForwardItem>(&it, 1));
        std::printf("context        %d tokens prefilled in %.3f s (%.1f tokens/s), copied to each sequence\n",
                    context, now_s() - s, context / (now_s() - s));
    }
    for (int B : batches) {
        std::vector<std::unique_ptr<SequenceState>> seqs;
        for (int b = 0; b < B; ++b) seqs.push_back(base->clone());
        std::vector<std::vector<int32_t>> next(static_cast<size_t>(B));
        std::vector<std::vector<float>> logits(static_cast<size_t>(B));
        std::vector<int32_t> picks(static_cast<size_t>(B));
        std::vector<ForwardItem> items(static_cast<size_t>(B));
        std::vector<runtime::Rng> rngs;
        for (int b = 0; b < B; ++b) rngs.emplace_back(uint64_t(1000 + b));
        const runtime::TokenHistory history;
        // Sampled rows as the server asks for them (a summary, or a device draw, where one serves).
        const bool summaries = sampled && use_summaries && runtime::summary_can_serve(*sampled);
        const bool draws = sampled && device_draws && runtime::whole_row_draw_can_serve(*sampled, cfg.vocab_size);
        std::vector<SummaryRequest> sums(static_cast<size_t>(B));
        std::vector<runtime::KeptDistribution> kept(static_cast<size_t>(B));
        int64_t rows_summarized = 0, rows_sampled = 0;
        double total = 0, sampling = 0;
        for (int step = 0; step <= decode; ++step) {
            for (int b = 0; b < B; ++b) {
                next[size_t(b)] = tokens(1);
                items[size_t(b)].state = seqs[size_t(b)].get();
                items[size_t(b)].tokens = next[size_t(b)];
                if (host_logits)
                    items[size_t(b)].logits_out = &logits[size_t(b)];
                else
                    items[size_t(b)].argmax_out = &picks[size_t(b)];
                if (sampled && runtime::prepare_row_request(sums[size_t(b)], *sampled, cfg.vocab_size, use_summaries,
                                                            device_draws, rngs[size_t(b)], &kept[size_t(b)]))
                    items[size_t(b)].summary = &sums[size_t(b)];
            }
            double s = now_s();
            model.forward(items);
            const double fwd = now_s();
            if (sampled) {  // as the server does: summarized rows in turn, the others side by side
                auto draw_b = [&](size_t b) {
                    picks[b] =
                        runtime::finish_row(logits[b], cfg.vocab_size, *sampled, rngs[b], history, sums[b], kept[b])
                            .token;
                };
                std::vector<size_t> heavy;
                for (size_t b = 0; b < size_t(B); ++b)
                    if (sums[b].summarized)
                        draw_b(b);
                    else
                        heavy.push_back(b);
                runtime::for_each_row(heavy.size(), [&](size_t j) { draw_b(heavy[j]); });
            }
            if (step > 0) {  // step 0 warms up
                total += now_s() - s, sampling += now_s() - fwd;
                for (const auto& q : sums) rows_summarized += q.summarized ? 1 : 0;
                rows_sampled += sampled ? B : 0;
            }
        }
        const double step_s = total / decode;
        const double bytes = B == 1 ? double(per_token) : step_bytes[B];
        const double gbs = bytes / step_s / 1e9;
        std::printf(
            "decode         batch %d, context %d: %d steps, %.3f ms/step, %.2f tokens/s per sequence, %.1f "
            "tokens/s in all (%s)\n",
            B, context, decode, step_s * 1e3, 1.0 / step_s, B / step_s,
            sampled && draws     ? "drawn on the device"
            : sampled && summaries ? "sampled on the host from summaries, else from logits"
            : sampled            ? "logits to the host, sampled there"
            : host_logits ? "logits to the host"
                          : "argmax on the device");
        if (sampled)
            std::printf("               of which sampling (temperature %.2g, top_p %.2g, top_k %d): %.3f ms/step; "
                        "%lld of %lld rows from their summaries\n",
                        double(sampled->temperature), double(sampled->top_p), sampled->top_k,
                        sampling / decode * 1e3, (long long)rows_summarized, (long long)rows_sampled);
        std::printf("               ~%s of weights per step%s = %.1f GB/s, %.1f%% of the device copy bandwidth "
                    "(%.0f GB/s)\n",
                    human_bytes(bytes).c_str(), B == 1 ? "" : " (uniform routing)", gbs, 100.0 * gbs / copy_gbs,
                    copy_gbs);
    }
    std::printf(
        "weights read   %s per decoded token at batch 1 (non-expert weights, shared expert, top-%d routed experts\n"
        "               per layer, one embedding row, the head; KV reads not counted; MTP not run)\n",
        human_bytes(double(per_token)).c_str(), cfg.n_activated_experts);
    std::printf("ceiling        %.1f tokens/s at batch 1 if decode were bound by weight reads at the copy bandwidth\n",
                copy_gbs * 1e9 / double(per_token));
}

void usage() {
    std::fprintf(stderr,
                 "usage: dsinfer bench [--model DIR] [--device cpu|cuda] [--prompt N] [--decode N] [--batch 1,8]\n"
                 "                     [--context N] [--threads N] [--logits] [--sample T,P[,K]]\n"
                 "  --model DIR     model folder (default $DSINFER_MODEL, else models/default); for real Flash layer "
                 "shapes make one with\n"
                 "                  dsinfer make-synthetic --like flash --layers 2 --out DIR\n"
                 "  --prompt N      prefill length of the prefill measurement (default 32)\n"
                 "  --decode N      decode steps per batch size (default 8)\n"
                 "  --batch LIST    decode batch sizes (default 1,8)\n"
                 "  --context N     prompt tokens of each decoding sequence (default 8); with --device cuda one\n"
                 "                  sequence is prefilled and copied to the batch, and the decoded tokens are random\n"
                 "                  (so the sequences route to different experts)\n"
                 "  --device D      cpu (default) or cuda: the whole forward on the GPU, traffic set against the\n"
                 "                  GPU's measured device-to-device copy bandwidth\n"
                 "  --fp8-prefill   cuda: prefill GEMMs on FP8 tensor cores (default exact float32)\n"
                 "  --logits        cuda decode: copy each sequence's logits to the host every step (what sampled\n"
                 "                  requests need); by default only each one's argmax comes back (greedy requests)\n"
                 "  --sample T,P[,K] cuda decode: also draw every sequence's token on the host with temperature T,\n"
                 "                  top_p P and top_k K (default 0: off), as the server does: from the row's summary\n"
                 "                  (its 1024 most likely tokens) where that serves, else from its logits (the step\n"
                 "                  time includes it)\n"
                 "  --no-summaries  with --sample: every row's logits to the host\n"
                 "  --no-device-draws with --sample T,1: the row to the host (by default the token is drawn on the\n"
                 "                  device and only its id comes back; --device-draws, the default)\n"
                 "  --no-warm       do not bring the weights into the page cache first\n"
                 "  --bw-mb N       buffer size of the bandwidth measurement in MB (default 1024)\n"
                 "  --no-quant-sim  turn the quantization simulation off\n"
                 "  --threads N     OpenMP threads (default: all)\n");
}

int run(int argc, char** argv) {
    std::string dir = dsinfer::cli::default_model_dir(), device = "cpu";
    bool fp8_prefill = false, host_logits = false, sample = false, summaries = true, device_draws = true;
    SamplingParams sample_params;
    int prompt = 32, decode = 8, context = 8, threads = 0;
    bool warm = true;
    size_t bw_mb = 1024;
    std::vector<int> batches = {1, 8};
    ModelOptions mo;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        auto num = [&]() -> int { return parse_list(val(), a).at(0); };
        if (a == "--model")
            dir = val();
        else if (a == "--prompt")
            prompt = num();
        else if (a == "--decode")
            decode = num();
        else if (a == "--context")
            context = num();
        else if (a == "--batch")
            batches = parse_list(val(), a);
        else if (a == "--bw-mb")
            bw_mb = size_t(num());
        else if (a == "--threads")
            threads = num();
        else if (a == "--no-quant-sim")
            mo.quant_sim = false;
        else if (a == "--device")
            device = val();
        else if (a == "--fp8-prefill")
            fp8_prefill = true;
        else if (a == "--logits")
            host_logits = true;
        else if (a == "--no-summaries")
            summaries = false;
        else if (a == "--no-device-draws")
            device_draws = false;
        else if (a == "--device-draws")
            device_draws = true;  // the default
        else if (a == "--sample") {
            const std::string v = val();
            const size_t comma = v.find(',');
            char* end = nullptr;
            sample_params.temperature = std::strtof(v.c_str(), &end);
            const bool t_ok = end == v.c_str() + (comma == std::string::npos ? v.size() : comma);
            sample_params.top_p = comma == std::string::npos ? 1.0f : std::strtof(v.c_str() + comma + 1, &end);
            const size_t comma2 = comma == std::string::npos ? comma : v.find(',', comma + 1);
            if (comma2 != std::string::npos && end == v.c_str() + comma2)
                sample_params.top_k = int(std::strtol(v.c_str() + comma2 + 1, &end, 10));
            if (!t_ok || *end != 0 || !(sample_params.temperature > 0) || !(sample_params.top_p > 0) ||
                sample_params.top_p > 1 || sample_params.top_k < 0)
                throw Error("--sample '" + v + "': expected T,P[,K] with T > 0, 0 < P <= 1, K >= 0 (e.g. 0.6,0.95)");
            sample = host_logits = true;
        } else if (a == "--no-warm")
            warm = false;
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            usage();
            throw Error("unknown option '" + a + "'");
        }
    }
    if (threads > 0) omp_set_num_threads(threads);
    mo.threads = threads;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured, also in a log

    const bool on_gpu = device == "cuda";
    (void)fp8_prefill;  // read only by the CUDA build
    if (!on_gpu && device != "cpu") throw Error("--device '" + device + "': expected cpu or cuda");
    if (!on_gpu && sample) throw Error("--sample: only with --device cuda (a CPU step is the forward alone)");
#ifndef DSINFER_CUDA
    if (on_gpu)
        throw Error("--device cuda: this dsinfer was built without the CUDA backend (cmake -DDSINFER_CUDA=ON)");
#endif
    std::printf("threads        %d\n", omp_get_max_threads());
    Bandwidth bw;
    double dev_copy_gbs = 0;  // --device cuda: the GPU's d2d copy bandwidth (read + write)
    if (!on_gpu) {
        bw = measure_bandwidth(bw_mb << 20);
        std::printf("memory bandwidth  read %.2f GB/s, copy %.2f GB/s (%zu MB buffers, %d threads)\n", bw.read_gbs,
                    bw.copy_gbs, bw_mb, omp_get_max_threads());
    }
#ifdef DSINFER_CUDA
    else {
        std::printf("device         %s\n", device_card().c_str());
        dev_copy_gbs = measure_device_copy_gbs(size_t(2) << 30);
        std::printf("device copy    %.0f GB/s (cudaMemcpy D2D of 2 GiB, read + write, best of 9)\n", dev_copy_gbs);
    }
#endif

    // What the checkpoint is (validated against the census, headers only).
    const ModelConfig cfg = load_model_config(dir);
    ProgressLine progress("loading");
    CheckpointSummary sum;
    uint64_t per_token = 0;
    std::map<int, double> step_bytes;  // batch -> expected weight bytes of one decode step
    {
        auto ck = Checkpoint::open(dir, &ProgressLine::checkpoint_callback, &progress);
        sum = validate_checkpoint(cfg, *ck);
        DType scale_dtype = sum.scale_dtypes.size() == 1 ? sum.scale_dtypes.begin()->first : DType::F8_E8M0;
        per_token = weight_bytes_per_token(cfg, sum.expert_dtype, scale_dtype, ck.get());
        for (int B : batches) step_bytes[B] = weight_bytes_per_step(cfg, sum.expert_dtype, scale_dtype, B, ck.get());
        if (warm) {
            double t = now_s();
            double bytes = warm_page_cache(*ck);
            std::printf("page cache     touched %s of weights (MTP blocks left out) in %.1f s (%.2f GB/s)\n",
                        human_bytes(bytes).c_str(), now_s() - t, bytes / (now_s() - t) / 1e9);
        }
    }
    std::printf("model          %s: %d layers + %d MTP, hidden %lld, %d experts top-%d, %s experts, %s\n", dir.c_str(),
                cfg.n_layers, cfg.n_mtp_layers, (long long)cfg.dim, cfg.n_routed_experts, cfg.n_activated_experts,
                sum.expert_dtype == ExpertDType::FP4 ? "FP4" : "FP8", human_bytes(double(sum.bytes_total)).c_str());

    double t0 = now_s();
    auto model = Dsv4Model::load(dir, mo);
    std::printf("load           %.2f s\n", now_s() - t0);
#ifdef DSINFER_CUDA
    if (on_gpu) {
        t0 = now_s();
        cuda::CudaModelOptions co;
        co.fp8_tensor_cores = fp8_prefill;
        model->set_device(cuda::make_model_device(*model, co));
        std::printf("upload         %.2f s (weights to the GPU in stored formats; prefill GEMMs %s)\n", now_s() - t0,
                    fp8_prefill ? "on FP8 tensor cores" : "exact float32");
    }
#endif

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(2, int32_t(cfg.vocab_size - 1));
    auto tokens = [&](int n) {
        std::vector<int32_t> v(static_cast<size_t>(n));
        for (auto& t : v) t = tok(rng);
        return v;
    };

    // Prefill: one sequence, one chunk of `prompt` tokens (the first call also faults in the weights
    // it touches, so it runs twice and the second is reported).
    {
        double best = 1e30;
        const auto ids = tokens(prompt);
        std::vector<float> logits;
        for (int rep = 0; rep < 2; ++rep) {
            auto seq = model->new_sequence();
            ForwardItem it;
            it.state = seq.get();
            it.tokens = ids;
            it.logits_out = &logits;
            double s = now_s();
            model->forward(std::span<ForwardItem>(&it, 1));
            best = std::min(best, now_s() - s);
        }
        std::printf("prefill        %d tokens: %.3f s, %.2f tokens/s\n", prompt, best, prompt / best);
        // A sanity line: the logits of a random-weight model should be finite with a moderate spread.
        size_t bad = 0;
        double sum = 0, sum2 = 0;
        for (float v : logits) {
            if (!std::isfinite(v)) {
                ++bad;
                continue;
            }
            sum += v;
            sum2 += double(v) * v;
        }
        double n = double(logits.size() - bad), mean = sum / std::max(n, 1.0);
        std::printf("logits         last token: mean %.3f, sd %.3f, %zu non-finite of %zu\n", mean,
                    std::sqrt(std::max(0.0, sum2 / std::max(n, 1.0) - mean * mean)), bad, logits.size());
    }

    // Decode at each batch size: B sequences with `context` prompt tokens each, then `decode` steps
    // of one token per sequence in one forward call.
    const bool hwm_ok = reset_hwm();
    double tps_b1 = 0;
    if (on_gpu) {
        decode_on_device(*model, cfg, batches, context, decode, step_bytes, dev_copy_gbs, per_token, host_logits,
                         sample ? &sample_params : nullptr, summaries, device_draws, tokens);
        return 0;
    }
    for (int B : batches) {
        std::vector<std::unique_ptr<SequenceState>> seqs;
        std::vector<std::vector<int32_t>> next(static_cast<size_t>(B));
        std::vector<std::vector<float>> logits(static_cast<size_t>(B));
        {
            std::vector<std::vector<int32_t>> prompts;
            std::vector<ForwardItem> items(static_cast<size_t>(B));
            for (int b = 0; b < B; ++b) {
                seqs.push_back(model->new_sequence());
                prompts.push_back(tokens(context));
            }
            for (int b = 0; b < B; ++b) {
                items[size_t(b)].state = seqs[size_t(b)].get();
                items[size_t(b)].tokens = prompts[size_t(b)];
                items[size_t(b)].logits_out = &logits[size_t(b)];
            }
            model->forward(items);
        }
        auto greedy = [&](int b) {
            const auto& l = logits[size_t(b)];
            return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
        };
        std::vector<ForwardItem> items(static_cast<size_t>(B));
        double total = 0;
        for (int step = 0; step < decode; ++step) {
            for (int b = 0; b < B; ++b) {
                next[size_t(b)] = {greedy(b)};
                items[size_t(b)].state = seqs[size_t(b)].get();
                items[size_t(b)].tokens = next[size_t(b)];
                items[size_t(b)].logits_out = &logits[size_t(b)];
            }
            double s = now_s();
            model->forward(items);
            total += now_s() - s;
        }
        double tps = double(B) * decode / total;
        if (B == 1) tps_b1 = tps;
        std::printf("decode         batch %d: %d steps, %.3f s/step, %.2f tokens/s\n", B, decode, total / decode, tps);
        if (B > 1) {
            double gbs = step_bytes[B] / (total / decode) / 1e9;
            std::printf(
                "               ~%s of weights per step (uniform routing) = %.2f GB/s, %.1f%% of the read "
                "bandwidth\n",
                human_bytes(step_bytes[B]).c_str(), gbs, 100.0 * gbs / bw.read_gbs);
        }
    }
    Rss rss = read_rss();

    std::printf(
        "weights read   %s per decoded token (batch 1: non-expert weights, shared expert, top-%d routed\n"
        "               experts per layer, one embedding row, the head; MTP not run)\n",
        human_bytes(double(per_token)).c_str(), cfg.n_activated_experts);
    if (tps_b1 > 0) {
        double gbs = double(per_token) * tps_b1 / 1e9;
        std::printf("decode traffic %.2f GB/s at batch 1 = %.1f%% of the measured read bandwidth (%.2f GB/s)\n", gbs,
                    100.0 * gbs / bw.read_gbs, bw.read_gbs);
        std::printf("ceiling        %.2f tokens/s at batch 1 if decode were bound by weight reads alone\n",
                    bw.read_gbs * 1e9 / double(per_token));
    }
    const uint64_t bar = sum.bytes_total + (1ull << 30);
    std::printf(
        "memory         VmHWM %s%s, VmRSS %s (anonymous %s, mmapped files %s)\n", human_bytes(double(rss.hwm)).c_str(),
        hwm_ok ? " (peak since decoding began)" : " (peak of the whole run)", human_bytes(double(rss.rss)).c_str(),
        human_bytes(double(rss.anon)).c_str(), human_bytes(double(rss.file)).c_str());
    std::printf("bar            peak %s %s checkpoint %s + 1 GiB = %s (resident checkpoint pages count in RSS)\n",
                human_bytes(double(rss.hwm)).c_str(), rss.hwm <= bar ? "under" : "OVER",
                human_bytes(double(sum.bytes_total)).c_str(), human_bytes(double(bar)).c_str());
    return 0;
}

}  // namespace
}  // namespace dsinfer

DSINFER_COMMAND("bench", "throughput (cpu or cuda): prefill and decode tokens/s, weight traffic vs memory bandwidth",
                dsinfer::run);
