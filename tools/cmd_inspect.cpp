// dsinfer inspect DIR: what a checkpoint holds (shape, formats, parameters, bytes per format) and what
// it needs in memory (weights + KV cache per 1024 tokens of context), after validating it against the
// census of its config.json.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "command.h"
#include "core/error.h"
#include "io/config.h"
#include "io/progress.h"
#include "io/safetensors.h"
#include "model/checkpoint_layout.h"

namespace dsinfer {
namespace {

using json = nlohmann::json;

std::string ratios_str(const ModelConfig& c) {
    std::string s = "[";
    for (int l = 0; l < c.n_layers; ++l) s += (l ? ", " : "") + std::to_string(c.compress_ratio(l));
    s += "]";
    if (c.n_mtp_layers) {
        s += " + MTP [";
        for (int m = 0; m < c.n_mtp_layers; ++m)
            s += (m ? ", " : "") + std::to_string(c.compress_ratio(c.n_layers + m));
        s += "]";
    }
    return s;
}

const char* expert_name(ExpertDType e) {
    return e == ExpertDType::FP4 ? "fp4" : "fp8";
}

void usage() {
    std::fprintf(stderr,
                 "usage: dsinfer inspect DIR [--json] [--config-only] [--context N]\n"
                 "  DIR            model folder (config.json + model.safetensors or shards with an index)\n"
                 "  --json         machine-readable output\n"
                 "  --config-only  figures from config.json alone (no weights needed; assumes E8M0 scales)\n"
                 "  --context N    also show the KV cache of one sequence of N tokens (default 65536)\n");
}

int run(int argc, char** argv) {
    std::string dir;
    bool as_json = false, config_only = false;
    uint64_t context = 65536;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--json")
            as_json = true;
        else if (a == "--config-only")
            config_only = true;
        else if (a == "--context" && i + 1 < argc) {
            try {
                context = std::stoull(argv[++i]);
            } catch (...) {
                throw Error("--context needs a token count");
            }
        } else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else if (!a.empty() && a[0] == '-') {
            usage();
            throw Error("unknown option '" + a + "'");
        } else if (dir.empty()) {
            dir = a;
        } else {
            usage();
            throw Error("one model folder only (got '" + dir + "' and '" + a + "')");
        }
    }
    if (dir.empty()) {
        usage();
        throw Error("DIR is required");
    }

    const ModelConfig cfg = load_model_config(dir);
    CheckpointSummary sum;
    size_t n_files = 0;
    DType scale_dtype = DType::F8_E8M0;
    uint64_t per_token = 0;
    if (config_only) {
        ExpertDType e = cfg.has_expert_dtype ? cfg.expert_dtype : ExpertDType::FP4;
        sum = census_summary(cfg, e, scale_dtype);
    } else {
        ProgressLine progress("loading");
        auto ck = Checkpoint::open(dir, &ProgressLine::checkpoint_callback, &progress);
        n_files = ck->files().size();
        sum = validate_checkpoint(cfg, *ck);
        if (sum.scale_dtypes.size() == 1) scale_dtype = sum.scale_dtypes.begin()->first;
        per_token = weight_bytes_per_token(cfg, sum.expert_dtype, scale_dtype, ck.get());
    }
    if (config_only) per_token = weight_bytes_per_token(cfg, sum.expert_dtype, scale_dtype);
    const KvMemory kv = kv_memory(cfg);
    int n_window = 0, n_r4 = 0, n_r128 = 0;
    for (int l = 0; l < cfg.n_layers; ++l) {
        int r = cfg.compress_ratio(l);
        (r == 0 ? n_window : r == 4 ? n_r4 : n_r128)++;
    }
    auto kv_at = [&](uint64_t fixed, uint64_t per_1k, uint64_t tokens) { return fixed + per_1k * tokens / 1024; };

    if (as_json) {
        json j;
        j["dir"] = dir;
        j["architecture"] = cfg.architecture;
        j["model_type"] = cfg.model_type;
        j["shape"] = {{"layers", cfg.n_layers},
                      {"mtp_layers", cfg.n_mtp_layers},
                      {"compress_ratios", cfg.compress_ratios},
                      {"hash_layers", cfg.n_hash_layers},
                      {"hidden_size", cfg.dim},
                      {"vocab_size", cfg.vocab_size},
                      {"hc_mult", cfg.hc_mult},
                      {"heads", cfg.n_heads},
                      {"head_dim", cfg.head_dim},
                      {"rope_head_dim", cfg.rope_head_dim},
                      {"q_lora_rank", cfg.q_lora_rank},
                      {"o_groups", cfg.o_groups},
                      {"o_lora_rank", cfg.o_lora_rank},
                      {"window", cfg.window_size},
                      {"index_heads", cfg.index_n_heads},
                      {"index_head_dim", cfg.index_head_dim},
                      {"index_topk", cfg.index_topk},
                      {"routed_experts", cfg.n_routed_experts},
                      {"experts_per_token", cfg.n_activated_experts},
                      {"shared_experts", cfg.n_shared_experts},
                      {"moe_inter_dim", cfg.moe_inter_dim}};
        json scales = json::object();
        for (auto& [d, n] : sum.scale_dtypes) scales[std::string(dtype_name(d))] = n;
        j["formats"] = {{"expert_dtype", expert_name(sum.expert_dtype)},
                        {"expert_dtype_source", config_only                    ? "assumed"
                                                : sum.expert_dtype_from_config ? "config"
                                                                               : "tensors"},
                        {"scale_dtypes", scales},
                        {"scale_fmt", cfg.scale_fmt_ue8m0 ? json("ue8m0") : json(nullptr)}};
        j["parameters"] = {{"total", sum.params_total},
                           {"main", sum.params_main},
                           {"mtp", sum.params_mtp},
                           {"active_per_token", sum.params_active}};
        json by_dtype = json::object(), by_kind = json::object();
        for (auto& [d, b] : sum.bytes_by_dtype) by_dtype[std::string(dtype_name(d))] = b;
        for (auto& [k, b] : sum.bytes_by_kind) by_kind[tensor_kind_name(k)] = b;
        j["tensors"] = sum.n_tensors;
        j["files"] = n_files;
        j["bytes"] = {{"total", sum.bytes_total}, {"by_dtype", by_dtype}, {"by_kind", by_kind}};
        j["memory"] = {{"weights_bytes", sum.bytes_total},
                       {"weight_bytes_read_per_decoded_token", per_token},
                       {"kv_f32", {{"fixed_per_sequence", kv.f32_fixed}, {"per_1024_tokens", kv.f32_per_1k}}},
                       {"kv_packed", {{"fixed_per_sequence", kv.packed_fixed}, {"per_1024_tokens", kv.packed_per_1k}}},
                       {"context", context},
                       {"kv_f32_at_context", kv_at(kv.f32_fixed, kv.f32_per_1k, context)},
                       {"kv_packed_at_context", kv_at(kv.packed_fixed, kv.packed_per_1k, context)}};
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }

    auto hb = [](uint64_t b) { return human_bytes(double(b)); };
    std::printf("%s%s\n", dir.c_str(), config_only ? "  (config.json only: figures from the census, E8M0 scales)" : "");
    std::printf("architecture   %s (%s)\n", cfg.architecture.c_str(), cfg.model_type.c_str());
    std::printf("shape\n");
    std::printf("  layers       %d main + %d MTP; %d window-only, %d ratio 4 (indexer), %d ratio 128\n", cfg.n_layers,
                cfg.n_mtp_layers, n_window, n_r4, n_r128);
    std::printf("  ratios       %s\n", ratios_str(cfg).c_str());
    if (cfg.n_hash_layers)
        std::printf("  hash layers  %d (layers 0..%d route by token id)\n", cfg.n_hash_layers, cfg.n_hash_layers - 1);
    else
        std::printf("  hash layers  none\n");
    std::printf("  width        hidden %lld, vocab %lld, hc_mult %d\n", (long long)cfg.dim, (long long)cfg.vocab_size,
                cfg.hc_mult);
    std::printf("  attention    %d heads x %d (rope %d), q_lora %d, %d output groups x o_lora %d, window %d\n",
                cfg.n_heads, cfg.head_dim, cfg.rope_head_dim, cfg.q_lora_rank, cfg.o_groups, cfg.o_lora_rank,
                cfg.window_size);
    if (n_r4)
        std::printf("  indexer      %d heads x %d, top-k %d\n", cfg.index_n_heads, cfg.index_head_dim, cfg.index_topk);
    std::printf("  experts      %d routed (top %d) + %d shared, inner %lld, route scale %g, swiglu limit %g\n",
                cfg.n_routed_experts, cfg.n_activated_experts, cfg.n_shared_experts, (long long)cfg.moe_inter_dim,
                cfg.route_scale, cfg.swiglu_limit);
    std::printf("formats\n");
    std::printf("  experts      %s (%s)\n",
                sum.expert_dtype == ExpertDType::FP4 ? "FP4 e2m1, scale per 32" : "FP8 e4m3, 128x128 scales",
                config_only                    ? "assumed"
                : sum.expert_dtype_from_config ? "expert_dtype in config.json, matches the tensors"
                                               : "no expert_dtype key; detected from the tensors");
    std::string scales;
    for (auto& [d, n] : sum.scale_dtypes)
        scales += (scales.empty() ? "" : ", ") + std::string(dtype_name(d)) + " x" + std::to_string(n);
    std::printf("  scales       %s\n", scales.c_str());
    std::printf("  scale_fmt    %s\n", cfg.scale_fmt_ue8m0 ? "ue8m0 (activation scales rounded up to powers of two)"
                                                           : "absent (activation scales amax/448)");
    std::printf("parameters     %s total (main %s + MTP %s); %s active per token\n",
                with_commas(sum.params_total).c_str(), with_commas(sum.params_main).c_str(),
                with_commas(sum.params_mtp).c_str(), with_commas(sum.params_active).c_str());
    std::printf("tensors        %s", with_commas(sum.n_tensors).c_str());
    if (n_files) std::printf(" in %zu file%s", n_files, n_files > 1 ? "s" : "");
    std::printf(", %s\n", hb(sum.bytes_total).c_str());
    std::printf("bytes by dtype\n");
    for (auto& [d, b] : sum.bytes_by_dtype)
        std::printf("  %-10s %12s  %5.1f%%\n", std::string(dtype_name(d)).c_str(), hb(b).c_str(),
                    100.0 * double(b) / double(sum.bytes_total));
    std::printf("bytes by kind\n");
    for (auto& [k, b] : sum.bytes_by_kind)
        std::printf("  %-18s %12s  %5.1f%%\n", tensor_kind_name(k).c_str(), hb(b).c_str(),
                    100.0 * double(b) / double(sum.bytes_total));
    std::printf("memory\n");
    std::printf("  weights      %s, mmapped in their stored formats (pages load on first use)\n",
                hb(sum.bytes_total).c_str());
    std::printf("  read/token   %s of weights per decoded token (top-%d experts, shared, attention, head)\n",
                hb(per_token).c_str(), cfg.n_activated_experts);
    std::printf("  KV cache, float32 CPU layout: %s per sequence + %s per 1024 tokens (%s at %llu tokens)\n",
                hb(kv.f32_fixed).c_str(), hb(kv.f32_per_1k).c_str(),
                hb(kv_at(kv.f32_fixed, kv.f32_per_1k, context)).c_str(), (unsigned long long)context);
    std::printf("  KV cache, packed FP8 layout:  %s per sequence + %s per 1024 tokens (%s at %llu tokens)\n",
                hb(kv.packed_fixed).c_str(), hb(kv.packed_per_1k).c_str(),
                hb(kv_at(kv.packed_fixed, kv.packed_per_1k, context)).c_str(), (unsigned long long)context);
    std::printf(
        "  (per sequence: window rings and compressor states; per 1024 tokens: compressed entries and\n"
        "   indexer keys; MTP block included)\n");
    return 0;
}

}  // namespace
}  // namespace dsinfer

DSINFER_COMMAND("inspect", "what a checkpoint holds and the memory it needs", dsinfer::run);
