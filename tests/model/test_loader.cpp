// The checkpoint census and validation (dsv4-model.md §2): the shipped tiny checkpoint validates
// clean; the census reproduces the published Flash and Pro tensor counts; every kind of broken
// checkpoint gets a clear error naming the file and tensor, from the library and from `dsinfer inspect`.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "io/config.h"
#include "model/checkpoint_layout.h"
#include "model/dsv4_model.h"
#include "test_loader_util.h"

using namespace dsinfer;
using namespace dsinfer::testing;
using nlohmann::json;

namespace {

// The published Flash config.json values (§1.1).
json flash_config() {
    std::vector<int> ratios = {0, 0};
    for (int i = 0; i < 20; ++i) ratios.insert(ratios.end(), {4, 128});
    ratios.insert(ratios.end(), {4, 0});
    return {{"architectures", {"DeepseekV4ForCausalLM"}},
            {"model_type", "deepseek_v4"},
            {"vocab_size", 129280},
            {"hidden_size", 4096},
            {"num_hidden_layers", 43},
            {"num_attention_heads", 64},
            {"num_key_value_heads", 1},
            {"head_dim", 512},
            {"qk_rope_head_dim", 64},
            {"q_lora_rank", 1024},
            {"o_lora_rank", 1024},
            {"o_groups", 8},
            {"sliding_window", 128},
            {"compress_ratios", ratios},
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
            {"index_topk", 512},
            {"hc_mult", 4},
            {"hc_sinkhorn_iters", 20},
            {"hc_eps", 1e-6},
            {"rms_norm_eps", 1e-6},
            {"n_routed_experts", 256},
            {"n_shared_experts", 1},
            {"num_experts_per_tok", 6},
            {"moe_intermediate_size", 2048},
            {"num_hash_layers", 3},
            {"scoring_func", "sqrtsoftplus"},
            {"norm_topk_prob", true},
            {"routed_scaling_factor", 1.5},
            {"swiglu_limit", 10.0},
            {"num_nextn_predict_layers", 1},
            {"expert_dtype", "fp4"},
            {"quantization_config",
             {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"scale_fmt", "ue8m0"}, {"weight_block_size", {128, 128}}}}};
}

json pro_config() {
    json c = flash_config();
    std::vector<int> ratios = {128, 128};
    for (int i = 0; i < 29; ++i) ratios.insert(ratios.end(), {4, 128});
    ratios.insert(ratios.end(), {4, 0});
    c["hidden_size"] = 7168;
    c["num_hidden_layers"] = 61;
    c["num_attention_heads"] = 128;
    c["q_lora_rank"] = 1536;
    c["o_groups"] = 16;
    c["index_topk"] = 1024;
    c["n_routed_experts"] = 384;
    c["moe_intermediate_size"] = 3072;
    c["routed_scaling_factor"] = 2.5;
    c["compress_ratios"] = ratios;
    return c;
}

const TensorSpec& spec_of(const std::vector<TensorSpec>& census, const std::string& name) {
    for (auto& s : census)
        if (s.name == name) return s;
    throw Error("no census entry " + name);
}

// Expects `fn` to throw an Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> parts) {
    try {
        fn();
        ADD_FAILURE() << "no error thrown";
    } catch (const Error& e) {
        std::string msg = e.what();
        for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "': " << msg;
    }
}

// Loads and validates a folder as the model loader does.
void load_and_validate(const std::string& dir) {
    ModelConfig cfg = load_model_config(dir);
    auto ck = Checkpoint::open(dir);
    validate_checkpoint(cfg, *ck);
}

// `dsinfer inspect DIR` must fail cleanly (exit 1, no crash) with a message containing `part`.
void expect_inspect_fails(const std::string& dir, const std::string& part) {
    RunResult r = run_dsinfer("inspect '" + dir + "'");
    EXPECT_TRUE(r.exited) << "inspect crashed: " << r.output;
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_NE(r.output.find(part), std::string::npos) << "inspect output lacks '" << part << "': " << r.output;
}

}  // namespace

TEST(Census, TinyFixtureValidatesClean) {
    ModelConfig cfg = load_model_config(tiny_dir());
    auto ck = Checkpoint::open(tiny_dir());
    CheckpointSummary s = validate_checkpoint(cfg, *ck);
    EXPECT_EQ(s.n_tensors, 427u);
    EXPECT_EQ(ck->tensors().size(), 427u);
    EXPECT_EQ(s.expert_dtype, ExpertDType::FP4);
    EXPECT_FALSE(s.expert_dtype_from_config);  // the tiny config has no expert_dtype key
    EXPECT_EQ(s.bytes_total, ck->total_bytes());
    ASSERT_EQ(s.scale_dtypes.size(), 1u);
    EXPECT_EQ(s.scale_dtypes.begin()->first, DType::F8_E8M0);
    EXPECT_EQ(s.params_total, s.params_main + s.params_mtp);
    EXPECT_LT(s.params_active, s.params_main);
    // FP4 experts count 2 parameters per stored byte: 5 blocks x 8 experts x 3 matrices of 128x256.
    EXPECT_EQ(s.bytes_by_kind.at(TensorKind::FP4) * 2, uint64_t(5 * 8 * 3 * 128 * 256));
}

TEST(Census, FlashCountAndBytesMatchThePublishedIndex) {
    ModelConfig cfg = parse_model_config(flash_config(), "flash");
    auto census = checkpoint_census(cfg, ExpertDType::FP4);
    EXPECT_EQ(census.size(), 69187u);  // §2.6
    CheckpointSummary s = census_summary(cfg, ExpertDType::FP4, DType::F8_E8M0);
    EXPECT_EQ(s.bytes_total, 159609485896ull);  // total_size of the published Flash index
    // Model card: 284B parameters (main model), about 13B active.
    EXPECT_NEAR(double(s.params_main) / 1e9, 284.0, 1.0);
    EXPECT_NEAR(double(s.params_active) / 1e9, 13.5, 0.6);

    // A few shapes of §2.2.
    EXPECT_EQ(spec_of(census, "layers.5.attn.wo_a.weight").shape, (std::vector<int64_t>{8192, 4096}));
    EXPECT_EQ(spec_of(census, "layers.5.attn.wo_a.scale").shape, (std::vector<int64_t>{64, 32}));
    EXPECT_EQ(spec_of(census, "layers.4.ffn.experts.17.w2.weight").shape, (std::vector<int64_t>{4096, 1024}));
    EXPECT_EQ(spec_of(census, "layers.4.ffn.experts.17.w2.scale").shape, (std::vector<int64_t>{4096, 64}));
    EXPECT_EQ(spec_of(census, "layers.2.ffn.gate.tid2eid").shape, (std::vector<int64_t>{129280, 6}));
    EXPECT_EQ(spec_of(census, "layers.3.attn.compressor.ape").shape, (std::vector<int64_t>{128, 512}));
    EXPECT_EQ(spec_of(census, "layers.4.attn.compressor.ape").shape, (std::vector<int64_t>{4, 1024}));
    EXPECT_EQ(spec_of(census, "layers.4.attn.indexer.compressor.wkv.weight").shape, (std::vector<int64_t>{256, 4096}));
    EXPECT_EQ(spec_of(census, "mtp.0.hc_head_fn").shape, (std::vector<int64_t>{4, 16384}));
    EXPECT_EQ(spec_of(census, "mtp.0.ffn.gate.bias").shape, (std::vector<int64_t>{256}));
    for (auto& s : census) {
        EXPECT_EQ(s.name.find("layers.1.attn.compressor"), std::string::npos);  // ratio 0: no compressor
        EXPECT_EQ(s.name.find("layers.3.attn.indexer"), std::string::npos);     // ratio 128: no indexer
        EXPECT_EQ(s.name.find("mtp.0.attn.compressor"), std::string::npos);
        EXPECT_NE(s.name, "layers.3.ffn.gate.tid2eid");  // not a hash layer
        EXPECT_NE(s.name, "mtp.0.ffn.gate.tid2eid");
    }
}

TEST(Census, ProCount) {
    ModelConfig cfg = parse_model_config(pro_config(), "pro");
    auto census = checkpoint_census(cfg, ExpertDType::FP4);
    EXPECT_EQ(census.size(), 145116u);  // §2.6
    EXPECT_EQ(spec_of(census, "layers.0.attn.wq_a.scale").shape, (std::vector<int64_t>{12, 56}));
    EXPECT_EQ(spec_of(census, "layers.0.ffn.experts.0.w1.weight").shape, (std::vector<int64_t>{3072, 3584}));
    EXPECT_EQ(spec_of(census, "layers.0.ffn.experts.0.w1.scale").shape, (std::vector<int64_t>{3072, 224}));
    EXPECT_EQ(spec_of(census, "layers.0.attn.compressor.ape").shape, (std::vector<int64_t>{128, 512}));
    CheckpointSummary s = census_summary(cfg, ExpertDType::FP4, DType::F8_E8M0);
    EXPECT_NEAR(double(s.params_main) / 1e12, 1.6, 0.05);  // model card: 1.6T
}

TEST(Census, Fp8ExpertsUseBlockScales) {
    ModelConfig cfg = parse_model_config(flash_config(), "flash");
    auto census = checkpoint_census(cfg, ExpertDType::FP8);
    const TensorSpec& w = spec_of(census, "layers.7.ffn.experts.3.w1.weight");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{2048, 4096}));
    EXPECT_EQ(w.dtypes, (std::vector<DType>{DType::F8_E4M3}));
    EXPECT_EQ(spec_of(census, "layers.7.ffn.experts.3.w1.scale").shape, (std::vector<int64_t>{16, 32}));
    EXPECT_EQ(spec_of(census, "layers.7.ffn.experts.3.w2.scale").shape, (std::vector<int64_t>{32, 16}));
    EXPECT_EQ(census.size(), 69187u);
}

TEST(Census, KvMemoryOfTinyModel) {
    ModelConfig cfg = load_model_config(tiny_dir());
    KvMemory m = kv_memory(cfg);
    // Window rings: 5 blocks x 16 x 128 f32. Compressor states: ratio 4 (2 layers): 2·(8·256)·4 +
    // indexer 2·(8·128)·4; ratio 128: 2·(128·128)·4.
    uint64_t window = 5ull * 16 * 128 * 4;
    uint64_t states = 2 * (2ull * (8 * 256) * 4 + 2ull * (8 * 128) * 4) + 2ull * (128 * 128) * 4;
    EXPECT_EQ(m.f32_fixed, window + states);
    // Per 1024 tokens: ratio 4 layers 256 entries x (128 + 64 indexer), ratio 128 layer 8 x 128; f32.
    EXPECT_EQ(m.f32_per_1k, (2ull * 256 * (128 + 64) + 8ull * 128) * 4);
}

TEST(Loader, ExpertDtypeDetectedAndCheckedAgainstConfig) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), nullptr, [](json& c) { c["expert_dtype"] = "fp8"; });
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"expert_dtype", "fp8", "layers.0.ffn.experts.0.w1.weight", "I8"});
    expect_inspect_fails(tmp.str(), "expert_dtype");
}

TEST(Loader, UnknownArchitecture) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), nullptr, [](json& c) {
        c["architectures"] = {"LlamaForCausalLM"};
        c["model_type"] = "llama";
    });
    expect_error([&] { load_and_validate(tmp.str()); }, {"config.json", "unsupported model", "LlamaForCausalLM"});
    expect_inspect_fails(tmp.str(), "LlamaForCausalLM");
}

TEST(Loader, BadJson) {
    TempDir tmp("loader");
    copy_tiny(tmp.str());
    write_text(tmp / "config.json", "{\"vocab_size\": 1024,,}");
    expect_error([&] { load_and_validate(tmp.str()); }, {"config.json", "bad JSON"});
    expect_inspect_fails(tmp.str(), "bad JSON");
}

TEST(Loader, MissingKey) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), nullptr, [](json& c) { c.erase("hidden_size"); });
    expect_error([&] { load_and_validate(tmp.str()); }, {"config.json", "'hidden_size' is missing"});
    expect_inspect_fails(tmp.str(), "hidden_size");
}

TEST(Loader, WrongCompressRatiosLength) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), nullptr, [](json& c) { c["compress_ratios"] = {0, 4, 128, 4}; });
    expect_error([&] { load_and_validate(tmp.str()); }, {"compress_ratios", "4 entries", "expected 5"});
    expect_inspect_fails(tmp.str(), "compress_ratios");
}

TEST(Loader, MissingTensor) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        std::erase_if(ts, [](auto& t) { return t.name == "layers.2.attn.compressor.ape"; });
    });
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"missing tensor 'layers.2.attn.compressor.ape'", "[128, 128]"});
    expect_inspect_fails(tmp.str(), "missing tensor 'layers.2.attn.compressor.ape'");
}

TEST(Loader, UnexpectedTensor) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        // A compressor on a ratio-0 layer does not belong.
        OwnedTensor t = *find(ts, "layers.1.attn.compressor.norm.weight");
        t.name = "layers.0.attn.compressor.norm.weight";
        ts.push_back(t);
    });
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"model.safetensors", "unexpected tensor 'layers.0.attn.compressor.norm.weight'"});
    expect_inspect_fails(tmp.str(), "unexpected tensor 'layers.0.attn.compressor.norm.weight'");
}

TEST(Loader, MisShapedTensor) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        OwnedTensor* t = find(ts, "layers.3.attn.wq_b.weight");  // [512, 128] -> [256, 256]
        t->shape = {256, 256};
    });
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"model.safetensors", "'layers.3.attn.wq_b.weight'", "F8_E4M3 [256, 256]",
                  "expected F8_E4M3 [512, 128]", "wrong shape"});
    expect_inspect_fails(tmp.str(), "layers.3.attn.wq_b.weight");
}

TEST(Loader, WrongDtype) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        OwnedTensor* t = find(ts, "mtp.0.e_proj.weight");  // F8_E4M3 -> I8, same bytes
        t->dtype = DType::I8;
    });
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"'mtp.0.e_proj.weight' is I8 [256, 256]", "expected F8_E4M3", "wrong dtype"});
    expect_inspect_fails(tmp.str(), "mtp.0.e_proj.weight");
}

TEST(Loader, ScaleOfWrongDtype) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        OwnedTensor* t = find(ts, "layers.1.attn.wkv.scale");  // E8M0 [1, 2] -> I8
        t->dtype = DType::I8;
    });
    expect_error([&] { load_and_validate(tmp.str()); }, {"'layers.1.attn.wkv.scale'", "F8_E8M0 or F32"});
}

TEST(Loader, TruncatedFile) {
    TempDir tmp("loader");
    copy_tiny(tmp.str());
    std::string path = tmp / "model.safetensors";
    fs::resize_file(path, fs::file_size(path) - 1000);
    expect_error([&] { load_and_validate(tmp.str()); }, {"model.safetensors", "truncated"});
    expect_inspect_fails(tmp.str(), "truncated");
}

TEST(Loader, BadSafetensorsHeader) {
    TempDir tmp("loader");
    copy_tiny(tmp.str());
    std::string path = tmp / "model.safetensors";
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8);
        f.write("{\"x\":", 5);  // break the JSON of the header
    }
    expect_error([&] { load_and_validate(tmp.str()); }, {"model.safetensors", "malformed safetensors header"});
    expect_inspect_fails(tmp.str(), "malformed safetensors header");

    // A header length pointing past the end of the file.
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        uint64_t huge = 1ull << 40;
        f.write(reinterpret_cast<const char*>(&huge), 8);
    }
    expect_error([&] { load_and_validate(tmp.str()); }, {"model.safetensors", "header length"});
    expect_inspect_fails(tmp.str(), "header length");
}

TEST(Loader, IndexNamingAMissingShard) {
    TempDir tmp("loader");
    copy_tiny(tmp.str());
    // Split into two shards with an index, then delete the second shard.
    auto ts = read_all(tmp.str());
    std::vector<OwnedTensor> a(ts.begin(), ts.begin() + 200), b(ts.begin() + 200, ts.end());
    fs::remove(tmp / "model.safetensors");
    write_all(tmp / "model-00001-of-00002.safetensors", a);
    write_all(tmp / "model-00002-of-00002.safetensors", b);
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    for (auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
    for (auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
    write_text(tmp / "model.safetensors.index.json", index.dump());
    load_and_validate(tmp.str());  // the sharded copy is fine

    fs::remove(tmp / "model-00002-of-00002.safetensors");
    expect_error([&] { load_and_validate(tmp.str()); }, {"model-00002-of-00002.safetensors"});
    expect_inspect_fails(tmp.str(), "model-00002-of-00002.safetensors");
}

TEST(Loader, NoWeightsAtAll) {
    TempDir tmp("loader");
    copy_tiny(tmp.str());
    fs::remove(tmp / "model.safetensors");
    expect_inspect_fails(tmp.str(), "no model.safetensors");
    expect_inspect_fails(tmp / "does-not-exist", "config.json");
}

TEST(Loader, ManyProblemsAreCountedAndTheFirstShown) {
    TempDir tmp("loader");
    copy_tiny(tmp.str(), [](std::vector<OwnedTensor>& ts) {
        std::erase_if(ts, [](auto& t) { return t.name.rfind("layers.3.", 0) == 0; });
    });
    // Layer 3 (ratio 4) has 2 norms + 6 hc + 13 attention + 4 compressor + 7 indexer + 2 gate + 6 shared
    // + 8·6 expert tensors.
    expect_error([&] { load_and_validate(tmp.str()); },
                 {"missing tensor 'layers.3.", "88 problems in all", "config.json"});
}

TEST(Inspect, PrintsShapeFormatsAndMemory) {
    RunResult r = run_dsinfer("inspect '" + tiny_dir() + "'");
    ASSERT_EQ(r.code, 0) << r.output;
    for (const char* part : {"DeepseekV4ForCausalLM", "4 main + 1 MTP", "[0, 4, 128, 4] + MTP [0]", "hash layers  1",
                             "FP4 e2m1", "detected from the tensors", "F8_E8M0 x164", "ue8m0", "427 in 1 file",
                             "KV cache, float32 CPU layout", "per 1024 tokens"})
        EXPECT_NE(r.output.find(part), std::string::npos) << "lacks '" << part << "':\n" << r.output;

    RunResult j = run_dsinfer("inspect --json '" + tiny_dir() + "'");
    ASSERT_EQ(j.code, 0) << j.output;
    json doc = json::parse(j.output);
    ModelConfig cfg = load_model_config(tiny_dir());
    auto ck = Checkpoint::open(tiny_dir());
    CheckpointSummary s = validate_checkpoint(cfg, *ck);
    EXPECT_EQ(doc["tensors"].get<size_t>(), 427u);
    EXPECT_EQ(doc["bytes"]["total"].get<uint64_t>(), ck->total_bytes());
    EXPECT_EQ(doc["parameters"]["total"].get<uint64_t>(), s.params_total);
    EXPECT_EQ(doc["formats"]["expert_dtype"], "fp4");
    EXPECT_EQ(doc["formats"]["expert_dtype_source"], "tensors");
    EXPECT_EQ(doc["shape"]["compress_ratios"], json({0, 4, 128, 4, 0}));
    EXPECT_EQ(doc["memory"]["kv_f32"]["per_1024_tokens"].get<uint64_t>(), kv_memory(cfg).f32_per_1k);
}

TEST(Inspect, BadArguments) {
    RunResult r = run_dsinfer("inspect");
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("DIR is required"), std::string::npos) << r.output;
    r = run_dsinfer("inspect --bogus x");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("unknown option '--bogus'"), std::string::npos) << r.output;
}

// The model's own loader on the same broken checkpoints: a clear Error naming the tensor, never a crash.
TEST(ModelLoad, BrokenCheckpointsAreRefused) {
    struct Case {
        const char* what;
        std::function<void(std::vector<OwnedTensor>&)> edit;
        std::function<void(json&)> edit_config;
        std::vector<std::string> parts;
    };
    std::vector<Case> cases = {
        {"missing",
         [](auto& ts) { std::erase_if(ts, [](auto& t) { return t.name == "layers.2.attn.compressor.ape"; }); },
         nullptr,
         {"layers.2.attn.compressor.ape"}},
        {"mis-shaped",
         [](auto& ts) {
             find(ts, "layers.3.attn.wq_b.weight")->shape = {256, 256};
         },
         nullptr,
         {"layers.3.attn.wq_b.weight", "[512, 128]"}},
        {"wrong dtype",
         [](auto& ts) { find(ts, "layers.1.attn.wkv.scale")->dtype = DType::I8; },
         nullptr,
         {"layers.1.attn.wkv.scale", "I8"}},
        {"expert_dtype", nullptr, [](json& c) { c["expert_dtype"] = "fp8"; }, {"expert_dtype"}},
        {"ratios", nullptr, [](json& c) { c["compress_ratios"] = {0, 4, 128, 4}; }, {"compress_ratios"}},
        {"unexpected",
         [](auto& ts) {
             OwnedTensor extra = *find(ts, "layers.2.attn.compressor.norm.weight");
             extra.name = "layers.0.attn.compressor.norm.weight";
             ts.push_back(extra);
         },
         nullptr, {"model.safetensors", "unexpected tensor 'layers.0.attn.compressor.norm.weight'"}},
    };
    for (auto& c : cases) {
        TempDir tmp("modelload");
        copy_tiny(tmp.str(), c.edit, c.edit_config);
        try {
            Dsv4Model::load(tmp.str(), ModelOptions{});
            ADD_FAILURE() << c.what << ": loaded";
        } catch (const Error& e) {
            std::string msg = e.what();
            for (auto& p : c.parts)
                EXPECT_NE(msg.find(p), std::string::npos) << c.what << ": lacks '" << p << "': " << msg;
        }
    }
}

TEST(Census, WeightBytesPerStep) {
    ModelConfig cfg = parse_model_config(flash_config(), "flash");
    const uint64_t one = weight_bytes_per_token(cfg, ExpertDType::FP4, DType::F8_E8M0);
    EXPECT_NEAR(weight_bytes_per_step(cfg, ExpertDType::FP4, DType::F8_E8M0, 1), double(one), 1.0);
    // Per routed FP4 expert and layer: 3 matrices of 2048x4096 at half a byte plus a scale byte per 32.
    const double expert = 3.0 * (2048.0 * 4096 / 2 + 2048.0 * 4096 / 32);
    // Batch 8 reads 256·(1 − (250/256)^8) ≈ 44.2 distinct experts per layer instead of 6, and 7 more
    // embedding and tid2eid rows.
    double distinct = 256.0 * (1.0 - std::pow(250.0 / 256.0, 8.0));
    double extra_rows = 7.0 * (4096 * 2) + 7.0 * 3 * (6 * 8);
    EXPECT_NEAR(weight_bytes_per_step(cfg, ExpertDType::FP4, DType::F8_E8M0, 8) - double(one),
                43.0 * (distinct - 6.0) * expert + extra_rows, 1e3);
    // A whole decoded token of Flash reads about 11.2 GB (docs/formats.md).
    EXPECT_NEAR(double(one) / 1e9, 11.2, 0.05);
}
