// dsinfer make-synthetic: writes a DeepSeek-V4 checkpoint with deterministic random weights in the
// published Hugging Face layout (config.json + model.safetensors, or shards + index), shaped like the
// tiny test model, Flash or Pro. Weights are drawn so that activations stay sane through the forward:
// every matrix has std ~ 1/sqrt(fan_in) after its scales, norms ~ 1, hc_* and biases small.
#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/config.h"
#include "io/progress.h"
#include "io/safetensors.h"
#include "model/checkpoint_layout.h"

namespace dsinfer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- random numbers: splitmix64 for seeding, xoshiro256** for streams ----
uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
struct Xoshiro {
    uint64_t s[4];
    explicit Xoshiro(uint64_t seed) {
        for (auto& v : s) v = splitmix64(seed);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
    }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};
uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}
// The stream of (tensor, chunk): independent of sharding and thread count.
uint64_t stream_seed(uint64_t seed, const std::string& name, uint64_t chunk) {
    uint64_t s = seed ^ fnv1a(name) ^ (chunk * 0xd1b54a32d192ed03ull);
    return splitmix64(s);
}

// 65536 standard normal samples (Box-Muller), indexed by 16 random bits: fast normal-ish draws.
struct NormalTable {
    std::vector<float> z;
    explicit NormalTable(uint64_t seed) : z(65536) {
        Xoshiro r(seed ^ 0x6e6f726dull);
        for (size_t i = 0; i < z.size(); i += 2) {
            double u1 = 1.0 - r.uniform(), u2 = r.uniform();
            double m = std::sqrt(-2.0 * std::log(u1));
            z[i] = float(m * std::cos(2 * M_PI * u2));
            z[i + 1] = float(m * std::sin(2 * M_PI * u2));
        }
    }
};

// How the values of one tensor are drawn.
enum class Fill { Fp8Codes, Fp4Codes, ScaleFp8, ScaleFp4, Normal, NormsOne, Tid2eid };

constexpr float kFp8CodeStd = 32.f;  // e4m3 codes ~ N(0, 32): well inside ±448, fine resolution
constexpr float kFp4CodeStd = 2.f;   // e2m1 codes ~ N(0, 2) on {0, .5, ..., 6}

struct Planned {
    TensorSpec spec;
    DType dtype;
    Fill fill;
    float std = 1.f;            // Normal: std; NormsOne: jitter
    float mean = 0.f;           // Normal: mean
    int64_t fan_in = 0;         // scales: logical K of the matrix they belong to
    bool scale_jitter = false;  // F32 scales: generic (non power of two) multipliers
    size_t nbytes = 0;
    size_t offset = 0;  // within its shard's data
    int shard = 0;
};

bool ends_with(const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

Planned plan(const TensorSpec& spec, const ModelConfig& cfg, DType scale_dtype, const std::vector<TensorSpec>& all,
             size_t index) {
    Planned p;
    p.spec = spec;
    const std::string& n = spec.name;
    switch (spec.kind) {
        case TensorKind::FP8:
            p.dtype = DType::F8_E4M3;
            p.fill = Fill::Fp8Codes;
            break;
        case TensorKind::FP4:
            p.dtype = DType::I8;
            p.fill = Fill::Fp4Codes;
            break;
        case TensorKind::Index:
            p.dtype = DType::I64;
            p.fill = Fill::Tid2eid;
            break;
        case TensorKind::Scale: {
            const TensorSpec& w = all.at(index - 1);  // the census puts X.weight right before X.scale
            p.dtype = scale_dtype;
            p.fill = w.kind == TensorKind::FP4 ? Fill::ScaleFp4 : Fill::ScaleFp8;
            p.fan_in = w.kind == TensorKind::FP4 ? w.shape[1] * 2 : w.shape[1];
            p.scale_jitter = scale_dtype == DType::F32;
            break;
        }
        case TensorKind::Float: {
            p.dtype = spec.dtypes[0];  // the published dtype (BF16 matrices and norms, F32 hc_*, sinks, ape, bias)
            p.fill = Fill::Normal;
            if (ends_with(n, "norm.weight")) {
                p.fill = Fill::NormsOne;
                p.std = 0.1f;
            } else if (n == "embed.weight") {
                p.std = 1.f;
            } else if (ends_with(n, "_fn")) {
                p.std = 0.5f / std::sqrt(float(spec.shape[1]));
            } else if (ends_with(n, "_base")) {
                p.std = 0.1f;
            } else if (ends_with(n, "_scale")) {
                p.mean = 0.3f;
                p.std = 0.05f;
            } else if (ends_with(n, "attn_sink")) {
                p.std = 0.5f;
            } else if (ends_with(n, "ape")) {
                p.std = 0.02f;
            } else if (ends_with(n, "gate.bias")) {
                p.std = 0.01f;
            } else if (spec.shape.size() == 2) {
                p.std = 1.f / std::sqrt(float(spec.shape[1]));
            }
            break;
        }
    }
    (void)cfg;
    int64_t numel = 1;
    for (int64_t d : spec.shape) numel *= d;
    p.nbytes = size_t(numel) * dtype_size(p.dtype);
    return p;
}

// E8M0 exponent e with 2^e · code_std ≈ 1/sqrt(fan_in).
int weight_exponent(float code_std, int64_t fan_in) {
    return int(std::lround(std::log2(1.0 / (code_std * std::sqrt(double(fan_in))))));
}

constexpr size_t kChunk = size_t(1) << 20;  // bytes generated per task (multiple of 8)

// Bytes [begin, end) of tensor p into out (out[0] is byte `begin`).
void fill_chunk(const Planned& p, uint8_t* out, size_t begin, size_t end, uint64_t seed, const NormalTable& nt,
                const ModelConfig& cfg, const uint8_t* fp8_table, const uint8_t* fp4_table) {
    Xoshiro r(stream_seed(seed, p.spec.name, begin / kChunk));
    size_t len = end - begin;
    switch (p.fill) {
        case Fill::Fp8Codes:
        case Fill::Fp4Codes: {
            const uint8_t* table = p.fill == Fill::Fp8Codes ? fp8_table : fp4_table;
            size_t i = 0;
            for (; i + 4 <= len; i += 4) {
                uint64_t v = r.next();
                out[i] = table[v & 0xffff];
                out[i + 1] = table[(v >> 16) & 0xffff];
                out[i + 2] = table[(v >> 32) & 0xffff];
                out[i + 3] = table[v >> 48];
            }
            for (; i < len; ++i) out[i] = table[r.next() & 0xffff];
            break;
        }
        case Fill::ScaleFp8:
        case Fill::ScaleFp4: {
            float code_std = p.fill == Fill::ScaleFp8 ? kFp8CodeStd : kFp4CodeStd;
            int e = weight_exponent(code_std, p.fan_in);
            size_t es = dtype_size(p.dtype);
            for (size_t i = 0; i < len; i += es) {
                if (p.dtype == DType::F8_E8M0) {
                    out[i] = uint8_t(e + 127);
                } else {
                    // F32 scales as generic multipliers: the right magnitude, not a power of two.
                    float s = std::ldexp(float(0.75 + 0.5 * r.uniform()), e);
                    std::memcpy(out + i, &s, 4);
                }
            }
            break;
        }
        case Fill::Normal:
        case Fill::NormsOne: {
            float mean = p.fill == Fill::NormsOne ? 1.f : p.mean;
            if (p.dtype == DType::BF16) {
                for (size_t i = 0; i < len; i += 2) {
                    uint16_t h = f32_to_bf16(mean + p.std * nt.z[r.next() & 0xffff]);
                    std::memcpy(out + i, &h, 2);
                }
            } else {
                for (size_t i = 0; i < len; i += 4) {
                    float v = mean + p.std * nt.z[r.next() & 0xffff];
                    std::memcpy(out + i, &v, 4);
                }
            }
            break;
        }
        case Fill::Tid2eid: {
            // Whole rows: each chunk boundary is a multiple of 8 bytes but rows are k·8 bytes, so
            // generate row by row from the row index with its own stream.
            const int64_t k = p.spec.shape[1], E = cfg.n_routed_experts;
            std::vector<int64_t> perm(size_t(E), 0);
            size_t row_bytes = size_t(k) * 8;
            for (size_t row = begin / row_bytes; row * row_bytes < end; ++row) {
                Xoshiro rr(stream_seed(seed, p.spec.name, ~uint64_t(row)));
                for (int64_t e = 0; e < E; ++e) perm[size_t(e)] = e;
                for (int64_t j = 0; j < k; ++j) {  // partial Fisher-Yates: k distinct experts
                    int64_t pick = j + int64_t(rr.next() % uint64_t(E - j));
                    std::swap(perm[size_t(j)], perm[size_t(pick)]);
                }
                for (int64_t j = 0; j < k; ++j) {
                    size_t at = row * row_bytes + size_t(j) * 8;
                    if (at >= begin && at < end) std::memcpy(out + (at - begin), &perm[size_t(j)], 8);
                }
            }
            break;
        }
    }
}

json like_config(const std::string& like) {
    json q = {{"activation_scheme", "dynamic"},
              {"fmt", "e4m3"},
              {"quant_method", "fp8"},
              {"scale_fmt", "ue8m0"},
              {"weight_block_size", {128, 128}}};
    json c = {{"architectures", {"DeepseekV4ForCausalLM"}},
              {"model_type", "deepseek_v4"},
              {"attention_bias", false},
              {"bos_token_id", 0},
              {"eos_token_id", 1},
              {"hidden_act", "silu"},
              {"tie_word_embeddings", false},
              {"torch_dtype", "bfloat16"},
              {"quantization_config", q},
              {"num_key_value_heads", 1},
              {"head_dim", 512},
              {"qk_rope_head_dim", 64},
              {"compress_rope_theta", 160000},
              {"rope_theta", 10000},
              {"rope_scaling",
               {{"type", "yarn"},
                {"factor", 16},
                {"original_max_position_embeddings", 65536},
                {"beta_fast", 32},
                {"beta_slow", 1}}},
              {"max_position_embeddings", 1048576},
              {"index_n_heads", 64},
              {"index_head_dim", 128},
              {"n_shared_experts", 1},
              {"num_experts_per_tok", 6},
              {"num_hash_layers", 3},
              {"scoring_func", "sqrtsoftplus"},
              {"topk_method", "noaux_tc"},
              {"norm_topk_prob", true},
              {"swiglu_limit", 10.0},
              {"hc_mult", 4},
              {"hc_sinkhorn_iters", 20},
              {"hc_eps", 1e-6},
              {"num_nextn_predict_layers", 1},
              {"rms_norm_eps", 1e-6},
              {"sliding_window", 128},
              {"vocab_size", 129280}};
    std::vector<int> ratios;
    if (like == "tiny") {
        c["vocab_size"] = 1024;
        c["hidden_size"] = 256;
        c["num_hidden_layers"] = 4;
        c["num_hash_layers"] = 1;
        c["num_attention_heads"] = 4;
        c["head_dim"] = 128;
        c["q_lora_rank"] = 128;
        c["o_groups"] = 2;
        c["o_lora_rank"] = 128;
        c["sliding_window"] = 16;
        ratios = {0, 4, 128, 4};
        c["rope_scaling"]["factor"] = 4;
        c["rope_scaling"]["original_max_position_embeddings"] = 256;
        c["index_n_heads"] = 4;
        c["index_head_dim"] = 64;
        c["index_topk"] = 8;
        c["n_routed_experts"] = 8;
        c["num_experts_per_tok"] = 2;
        c["moe_intermediate_size"] = 128;
        c["routed_scaling_factor"] = 1.5;
        c["swiglu_limit"] = 2.5;
    } else if (like == "flash") {
        c["hidden_size"] = 4096;
        c["num_hidden_layers"] = 43;
        c["num_attention_heads"] = 64;
        c["q_lora_rank"] = 1024;
        c["o_groups"] = 8;
        c["o_lora_rank"] = 1024;
        ratios = {0, 0};
        for (int i = 0; i < 20; ++i) ratios.insert(ratios.end(), {4, 128});
        ratios.push_back(4);
        c["index_topk"] = 512;
        c["n_routed_experts"] = 256;
        c["moe_intermediate_size"] = 2048;
        c["routed_scaling_factor"] = 1.5;
        c["expert_dtype"] = "fp4";
    } else if (like == "pro") {
        c["hidden_size"] = 7168;
        c["num_hidden_layers"] = 61;
        c["num_attention_heads"] = 128;
        c["q_lora_rank"] = 1536;
        c["o_groups"] = 16;
        c["o_lora_rank"] = 1024;
        ratios = {128, 128};
        for (int i = 0; i < 29; ++i) ratios.insert(ratios.end(), {4, 128});
        ratios.push_back(4);
        c["index_topk"] = 1024;
        c["n_routed_experts"] = 384;
        c["moe_intermediate_size"] = 3072;
        c["routed_scaling_factor"] = 2.5;
        c["expert_dtype"] = "fp4";
    } else {
        throw Error("--like must be tiny, flash or pro (got '" + like + "')");
    }
    ratios.push_back(0);  // the MTP block
    c["compress_ratios"] = ratios;
    return c;
}

void usage() {
    std::fprintf(
        stderr,
        "usage: dsinfer make-synthetic --out DIR [options]\n"
        "  --like tiny|flash|pro   shape of the model (default tiny: the test model's shape)\n"
        "  --layers N              main layers (default: the model's own); other than the model's own,\n"
        "                          the ratios alternate 4, 128 and min(hash layers, N/2) are hash-routed\n"
        "  --ratios a,b,...        compress ratio of every main layer (0, 4 or 128; the MTP block gets 0)\n"
        "  --hash-layers N         hash-routed layers (num_hash_layers)\n"
        "  --vocab N               vocab_size\n"
        "  --experts N             n_routed_experts (top-k shrinks to N if larger)\n"
        "  --mtp N                 MTP blocks (num_nextn_predict_layers, default 1)\n"
        "  --expert-dtype fp4|fp8  routed-expert storage (writes the expert_dtype key)\n"
        "  --no-expert-dtype       leave expert_dtype out of config.json (first Flash release)\n"
        "  --scale-dtype e8m0|f32  storage of every .scale tensor (default e8m0)\n"
        "  --no-scale-fmt          leave quantization_config.scale_fmt out (plain amax/448 activation scales)\n"
        "  --shards N              write N shards + model.safetensors.index.json\n"
        "  --seed S                random seed (default 1)\n"
        "  --threads N             generator threads (default: all)\n"
        "  --force                 overwrite an existing model in DIR\n");
}

int run(int argc, char** argv) {
    std::string like = "tiny", out, expert_dtype_flag, scale_flag = "e8m0", ratios_flag;
    int layers = -1, shards = 1, hash_layers = -1, mtp = -1, threads = 0;
    int64_t vocab = -1, experts = -1;
    uint64_t seed = 1;
    bool no_scale_fmt = false, no_expert_dtype = false, force = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        auto num = [&]() -> int64_t {
            std::string v = val();
            try {
                size_t pos;
                long long x = std::stoll(v, &pos);
                if (pos != v.size() || x < 0) throw 0;
                return x;
            } catch (...) {
                throw Error(a + " needs a non-negative integer (got '" + v + "')");
            }
        };
        if (a == "--like")
            like = val();
        else if (a == "--out")
            out = val();
        else if (a == "--layers")
            layers = int(num());
        else if (a == "--ratios")
            ratios_flag = val();
        else if (a == "--hash-layers")
            hash_layers = int(num());
        else if (a == "--vocab")
            vocab = num();
        else if (a == "--experts")
            experts = num();
        else if (a == "--mtp")
            mtp = int(num());
        else if (a == "--expert-dtype")
            expert_dtype_flag = val();
        else if (a == "--no-expert-dtype")
            no_expert_dtype = true;
        else if (a == "--scale-dtype")
            scale_flag = val();
        else if (a == "--no-scale-fmt")
            no_scale_fmt = true;
        else if (a == "--shards")
            shards = int(num());
        else if (a == "--seed")
            seed = uint64_t(num());
        else if (a == "--threads")
            threads = int(num());
        else if (a == "--force")
            force = true;
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            usage();
            throw Error("unknown option '" + a + "'");
        }
    }
    if (out.empty()) {
        usage();
        throw Error("--out DIR is required");
    }
    if (shards < 1) throw Error("--shards must be at least 1");
    if (expert_dtype_flag != "" && expert_dtype_flag != "fp4" && expert_dtype_flag != "fp8")
        throw Error("--expert-dtype must be fp4 or fp8 (got '" + expert_dtype_flag + "')");
    if (scale_flag != "e8m0" && scale_flag != "f32")
        throw Error("--scale-dtype must be e8m0 or f32 (got '" + scale_flag + "')");
    const DType scale_dtype = scale_flag == "f32" ? DType::F32 : DType::F8_E8M0;

    json c = like_config(like);
    const int native_layers = c["num_hidden_layers"].get<int>();
    if (layers == 0) throw Error("--layers must be at least 1");
    if (!ratios_flag.empty()) {
        std::vector<int> r;
        size_t pos = 0;
        while (pos <= ratios_flag.size()) {
            size_t comma = ratios_flag.find(',', pos);
            std::string item = ratios_flag.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            try {
                r.push_back(std::stoi(item));
            } catch (...) {
                throw Error("--ratios needs a comma-separated list of integers (got '" + ratios_flag + "')");
            }
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
        if (layers > 0 && int(r.size()) != layers)
            throw Error("--ratios has " + std::to_string(r.size()) + " entries but --layers is " +
                        std::to_string(layers));
        layers = int(r.size());
        c["num_hidden_layers"] = layers;
        c["num_hash_layers"] = std::min(c["num_hash_layers"].get<int>(), layers / 2);
        r.push_back(0);
        c["compress_ratios"] = r;
    } else if (layers > 0 && layers != native_layers) {
        std::vector<int> r;
        for (int l = 0; l < layers; ++l) r.push_back(l % 2 == 0 ? 4 : 128);
        r.push_back(0);
        c["num_hidden_layers"] = layers;
        c["num_hash_layers"] = std::min(c["num_hash_layers"].get<int>(), layers / 2);
        c["compress_ratios"] = r;
    }
    if (hash_layers >= 0) c["num_hash_layers"] = hash_layers;
    if (vocab >= 0) c["vocab_size"] = vocab;
    if (experts >= 0) {
        c["n_routed_experts"] = experts;
        c["num_experts_per_tok"] = std::min<int64_t>(c["num_experts_per_tok"].get<int64_t>(), experts);
    }
    if (mtp >= 0) {
        auto r = c["compress_ratios"].get<std::vector<int>>();
        r.resize(size_t(c["num_hidden_layers"].get<int>()));
        r.insert(r.end(), size_t(mtp), 0);
        c["compress_ratios"] = r;
        c["num_nextn_predict_layers"] = mtp;
    }
    if (!expert_dtype_flag.empty()) c["expert_dtype"] = expert_dtype_flag;
    if (no_expert_dtype) c.erase("expert_dtype");
    if (no_scale_fmt) c["quantization_config"].erase("scale_fmt");

    const std::string config_path = (fs::path(out) / "config.json").string();
    ModelConfig cfg = parse_model_config(c, config_path + " (to be written)");
    ExpertDType experts_fmt = expert_dtype_flag == "fp8"   ? ExpertDType::FP8
                              : expert_dtype_flag == "fp4" ? ExpertDType::FP4
                                                           : cfg.expert_dtype;
    std::vector<TensorSpec> census = checkpoint_census(cfg, experts_fmt);
    std::vector<Planned> planned;
    planned.reserve(census.size());
    uint64_t total = 0;
    for (size_t i = 0; i < census.size(); ++i) {
        planned.push_back(plan(census[i], cfg, scale_dtype, census, i));
        total += planned.back().nbytes;
    }

    // Shards of about equal size, tensors in census order.
    std::vector<std::string> shard_names;
    for (int s = 0; s < shards; ++s) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", s + 1, shards);
        shard_names.push_back(shards == 1 ? "model.safetensors" : buf);
    }
    {
        uint64_t acc = 0;
        for (auto& p : planned) {
            p.shard = std::min(shards - 1, int((acc + p.nbytes / 2) * uint64_t(shards) / std::max<uint64_t>(total, 1)));
            acc += p.nbytes;
        }
    }

    fs::create_directories(out);
    if (!force &&
        (fs::exists(fs::path(out) / "model.safetensors") || fs::exists(fs::path(out) / "model.safetensors.index.json")))
        throw Error(out + ": already holds a model (use --force to overwrite)");
    for (auto& e : fs::directory_iterator(out))
        if (e.path().extension() == ".safetensors" || e.path().filename() == "model.safetensors.index.json")
            fs::remove(e.path());
    auto space = fs::space(out);
    if (space.available < total + (64u << 20))
        throw Error(out + ": needs " + human_bytes(double(total)) + " but only " +
                    human_bytes(double(space.available)) + " are free");

    {
        std::ofstream f(config_path);
        f << c.dump(2) << "\n";
        if (!f) throw Error(config_path + ": write failed");
    }

    if (threads > 0) omp_set_num_threads(threads);
    const NormalTable nt(seed);
    std::vector<uint8_t> fp8_table(65536), fp4_table(65536);
    for (size_t i = 0; i < 65536; ++i) {
        fp8_table[i] = f32_to_e4m3(kFp8CodeStd * nt.z[i]);
        uint8_t lo = f32_to_e2m1(kFp4CodeStd * nt.z[i]),
                hi = f32_to_e2m1(kFp4CodeStd * nt.z[(i * 40503u + 1) & 0xffff]);
        fp4_table[i] = uint8_t(lo | (hi << 4));
    }

    auto t0 = std::chrono::steady_clock::now();
    ProgressLine progress("writing");
    json weight_map = json::object();
    for (int s = 0; s < shards; ++s) {
        std::vector<Planned*> mine;
        json header = json::object();
        header["__metadata__"] = {{"format", "pt"}};
        size_t offset = 0;
        for (auto& p : planned) {
            if (p.shard != s) continue;
            p.offset = offset;
            header[p.spec.name] = {{"dtype", std::string(dtype_name(p.dtype))},
                                   {"shape", p.spec.shape},
                                   {"data_offsets", {offset, offset + p.nbytes}}};
            offset += p.nbytes;
            mine.push_back(&p);
            weight_map[p.spec.name] = shard_names[size_t(s)];
        }
        std::string h = header.dump();
        while ((h.size() + 8) % 8) h += ' ';
        const size_t data_start = 8 + h.size(), file_size = data_start + offset;
        const std::string path = (fs::path(out) / shard_names[size_t(s)]).string();
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) throw Error(path + ": cannot create: " + std::strerror(errno));
        std::string head(8, '\0');
        uint64_t hlen = h.size();
        std::memcpy(head.data(), &hlen, 8);
        head += h;
        bool ok = ::pwrite(fd, head.data(), head.size(), 0) == ssize_t(head.size());

        // Tasks: (tensor, chunk) pairs, generated in parallel into per-thread buffers and written
        // with pwrite at their place (cheaper than faulting in a writable mapping page by page).
        std::vector<std::pair<Planned*, size_t>> tasks;
        for (Planned* p : mine)
            for (size_t b = 0; b < p->nbytes; b += kChunk) tasks.emplace_back(p, b);
#pragma omp parallel
        {
            std::vector<uint8_t> buf(kChunk);
#pragma omp for schedule(dynamic, 4)
            for (size_t t = 0; t < tasks.size(); ++t) {
                Planned* p = tasks[t].first;
                size_t b = tasks[t].second, e = std::min(p->nbytes, b + kChunk);
                fill_chunk(*p, buf.data(), b, e, seed, nt, cfg, fp8_table.data(), fp4_table.data());
                if (::pwrite(fd, buf.data(), e - b, off_t(data_start + p->offset + b)) != ssize_t(e - b)) {
#pragma omp atomic write
                    ok = false;
                }
            }
        }
        if (::close(fd) != 0) ok = false;
        if (!ok || fs::file_size(path) != file_size)
            throw Error(path + ": write failed (disk full?): " + std::strerror(errno));
        progress.step(size_t(s + 1), size_t(shards), path);
    }
    if (shards > 1) {
        json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
        std::ofstream f((fs::path(out) / "model.safetensors.index.json").string());
        f << index.dump(2) << "\n";
        if (!f) throw Error(out + "/model.safetensors.index.json: write failed");
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // Self-check: the written folder must pass the census.
    ModelConfig written = load_model_config(out);
    auto ck = Checkpoint::open(out);
    CheckpointSummary sum = validate_checkpoint(written, *ck);
    std::printf("wrote %s: %s tensors, %s in %d file%s, %.1f s (%.2f GB/s); %s parameters\n", out.c_str(),
                with_commas(sum.n_tensors).c_str(), human_bytes(double(sum.bytes_total)).c_str(), shards,
                shards > 1 ? "s" : "", secs, double(total) / secs / 1e9, with_commas(sum.params_total).c_str());
    return 0;
}

}  // namespace
}  // namespace dsinfer

DSINFER_COMMAND("make-synthetic", "write a random-weight DeepSeek-V4 checkpoint (tiny, Flash or Pro shape)",
                dsinfer::run);
