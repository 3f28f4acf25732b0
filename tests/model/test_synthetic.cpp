// dsinfer make-synthetic: the checkpoints it writes pass the census, are deterministic, shard without
// changing a byte, cover the format variants (FP8 experts, F32 scales, no scale_fmt, no expert_dtype)
// and hold weights of the intended magnitudes.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "io/config.h"
#include "model/checkpoint_layout.h"
#include "model/dsv4_model.h"
#include "test_loader_util.h"

using namespace dsinfer;
using namespace dsinfer::testing;
using nlohmann::json;

namespace {

void make(const std::string& args) {
    RunResult r = run_dsinfer("make-synthetic " + args);
    ASSERT_TRUE(r.exited) << r.output;
    ASSERT_EQ(r.code, 0) << r.output;
}

CheckpointSummary validate(const std::string& dir) {
    ModelConfig cfg = load_model_config(dir);
    auto ck = Checkpoint::open(dir);
    return validate_checkpoint(cfg, *ck);
}

// Scale multiplier of an FP8/FP4 matrix's scale tensor at index i.
float scale_at(const TensorInfo& s, size_t i) {
    if (s.dtype == DType::F8_E8M0) return e8m0_to_f32(s.data[i]);
    float f;
    std::memcpy(&f, s.data + 4 * i, 4);
    return f;
}

// Standard deviation of a dequantized FP8 matrix [n, k] with 128x128 block scales.
double fp8_std(const TensorInfo& w, const TensorInfo& s) {
    int64_t n = w.shape[0], k = w.shape[1], sc = s.shape[1];
    double sum2 = 0;
    for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < k; ++c) {
            double v = e4m3_to_f32(w.data[r * k + c]) * scale_at(s, size_t((r / 128) * sc + c / 128));
            sum2 += v * v;
        }
    return std::sqrt(sum2 / double(n * k));
}

// Standard deviation of a dequantized FP4 matrix, logical [n, 2·bytes], a scale per 32.
double fp4_std(const TensorInfo& w, const TensorInfo& s) {
    int64_t n = w.shape[0], k = w.shape[1] * 2, sc = s.shape[1];
    double sum2 = 0;
    for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < k; ++c) {
            double v = e2m1_to_f32(fp4_nibble(w.data + r * (k / 2), size_t(c))) * scale_at(s, size_t(r * sc + c / 32));
            sum2 += v * v;
        }
    return std::sqrt(sum2 / double(n * k));
}

}  // namespace

TEST(Synthetic, TinyHasTheFixtureShapeAndValidates) {
    TempDir tmp("syn");
    make("--like tiny --out '" + tmp.str() + "/m' --seed 3");
    EXPECT_EQ(read_json(tmp / "m/config.json"), read_json(tiny_dir() + "/config.json"));
    CheckpointSummary s = validate(tmp / "m");
    EXPECT_EQ(s.n_tensors, 427u);
    EXPECT_EQ(s.expert_dtype, ExpertDType::FP4);
    auto fixture = Checkpoint::open(tiny_dir());
    auto synth = Checkpoint::open(tmp / "m");
    for (auto& [name, t] : fixture->tensors()) {
        const TensorInfo* u = synth->find(name);
        ASSERT_NE(u, nullptr) << name;
        EXPECT_EQ(u->shape, t.shape) << name;
    }
}

TEST(Synthetic, DeterministicFromTheSeed) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/a' --seed 7");
    make("--out '" + tmp.str() + "/b' --seed 7");
    make("--out '" + tmp.str() + "/c' --seed 8");
    auto a = read_all(tmp / "a"), b = read_all(tmp / "b"), c = read_all(tmp / "c");
    ASSERT_EQ(a.size(), b.size());
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].bytes, b[i].bytes) << a[i].name;
        if (a[i].bytes != c[i].bytes) differ++;
    }
    EXPECT_GT(differ, a.size() / 2);  // another seed gives other weights (E8M0 scales may coincide)
}

TEST(Synthetic, ShardedEqualsSingleFile) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/one' --seed 5");
    make("--out '" + tmp.str() + "/four' --seed 5 --shards 4");
    for (int i = 1; i <= 4; ++i)
        EXPECT_TRUE(fs::exists(tmp / ("four/model-0000" + std::to_string(i) + "-of-00004.safetensors")));
    json index = read_json(tmp / "four/model.safetensors.index.json");
    EXPECT_EQ(index["weight_map"].size(), 427u);
    auto one = Checkpoint::open(tmp / "one");
    auto four = Checkpoint::open(tmp / "four");
    EXPECT_EQ(four->files().size(), 4u);
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), four->total_bytes());
    ASSERT_EQ(one->tensors().size(), four->tensors().size());
    for (auto& [name, t] : one->tensors()) {
        const TensorInfo& u = four->get(name);
        EXPECT_EQ(u.dtype, t.dtype) << name;
        EXPECT_EQ(u.shape, t.shape) << name;
        ASSERT_EQ(u.nbytes, t.nbytes) << name;
        EXPECT_EQ(std::memcmp(u.data, t.data, t.nbytes), 0) << name;
    }
    validate(tmp / "four");
}

TEST(Synthetic, Fp8ExpertsWithF32ScalesAndNoScaleFmt) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/m' --expert-dtype fp8 --scale-dtype f32 --no-scale-fmt");
    ModelConfig cfg = load_model_config(tmp / "m");
    EXPECT_FALSE(cfg.scale_fmt_ue8m0);
    EXPECT_TRUE(cfg.has_expert_dtype);
    CheckpointSummary s = validate(tmp / "m");
    EXPECT_EQ(s.expert_dtype, ExpertDType::FP8);
    ASSERT_EQ(s.scale_dtypes.size(), 1u);
    EXPECT_EQ(s.scale_dtypes.begin()->first, DType::F32);
    auto ck = Checkpoint::open(tmp / "m");
    const TensorInfo& w = ck->get("layers.2.ffn.experts.5.w2.weight");
    EXPECT_EQ(w.dtype, DType::F8_E4M3);
    EXPECT_EQ(w.shape, (std::vector<int64_t>{256, 128}));
    // F32 scales are generic multipliers, not only powers of two.
    const TensorInfo& sc = ck->get("layers.2.attn.wq_a.scale");
    bool non_pow2 = false;
    for (size_t i = 0; i < size_t(sc.numel()); ++i) {
        float v = scale_at(sc, i);
        EXPECT_GT(v, 0.f);
        int e;
        non_pow2 |= std::frexp(v, &e) != 0.5f;
    }
    EXPECT_TRUE(non_pow2);
}

TEST(Synthetic, ExpertDtypeAbsentIsDetected) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/m' --expert-dtype fp8 --no-expert-dtype");
    ModelConfig cfg = load_model_config(tmp / "m");
    EXPECT_FALSE(cfg.has_expert_dtype);
    CheckpointSummary s = validate(tmp / "m");
    EXPECT_EQ(s.expert_dtype, ExpertDType::FP8);
    EXPECT_FALSE(s.expert_dtype_from_config);
}

TEST(Synthetic, OtherLayerPatterns) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/six' --layers 6 --vocab 512 --experts 4");
    ModelConfig six = load_model_config(tmp / "six");
    EXPECT_EQ(six.compress_ratios, (std::vector<int>{4, 128, 4, 128, 4, 128, 0}));
    EXPECT_EQ(six.n_routed_experts, 4);
    EXPECT_EQ(six.vocab_size, 512);
    validate(tmp / "six");

    make("--out '" + tmp.str() + "/r' --ratios 0,0,128,4 --hash-layers 2 --mtp 2");
    ModelConfig r = load_model_config(tmp / "r");
    EXPECT_EQ(r.compress_ratios, (std::vector<int>{0, 0, 128, 4, 0, 0}));
    EXPECT_EQ(r.n_hash_layers, 2);
    EXPECT_EQ(r.n_mtp_layers, 2);
    CheckpointSummary s = validate(tmp / "r");
    auto ck = Checkpoint::open(tmp / "r");
    EXPECT_NE(ck->find("layers.1.ffn.gate.tid2eid"), nullptr);
    EXPECT_NE(ck->find("mtp.1.e_proj.weight"), nullptr);
    EXPECT_GT(s.params_mtp, 0u);
}

TEST(Synthetic, WeightMagnitudes) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/m'");
    make("--out '" + tmp.str() + "/f8' --expert-dtype fp8 --scale-dtype f32");
    auto ck = Checkpoint::open(tmp / "m");
    auto f8 = Checkpoint::open(tmp / "f8");
    // Every matrix has std ~ 1/sqrt(fan_in) once dequantized (within a factor of 1.5: E8M0 scales
    // move in powers of two).
    auto near = [](double got, double fan_in, const std::string& what) {
        double want = 1 / std::sqrt(fan_in);
        EXPECT_GT(got, want / 1.5) << what;
        EXPECT_LT(got, want * 1.5) << what;
    };
    near(fp8_std(ck->get("layers.1.attn.wq_a.weight"), ck->get("layers.1.attn.wq_a.scale")), 256, "wq_a");
    near(fp8_std(ck->get("layers.1.attn.wo_b.weight"), ck->get("layers.1.attn.wo_b.scale")), 256, "wo_b");
    near(fp4_std(ck->get("layers.1.ffn.experts.3.w1.weight"), ck->get("layers.1.ffn.experts.3.w1.scale")), 256,
         "fp4 w1");
    near(fp4_std(ck->get("layers.1.ffn.experts.3.w2.weight"), ck->get("layers.1.ffn.experts.3.w2.scale")), 128,
         "fp4 w2");
    near(fp8_std(f8->get("layers.1.ffn.experts.3.w1.weight"), f8->get("layers.1.ffn.experts.3.w1.scale")), 256,
         "fp8 w1");
    auto gate = read_f32(ck->get("layers.1.ffn.gate.weight"));
    double g2 = 0;
    for (float v : gate) g2 += double(v) * v;
    near(std::sqrt(g2 / double(gate.size())), 256, "gate");

    for (const char* n : {"norm.weight", "layers.2.attn.q_norm.weight", "mtp.0.enorm.weight"})
        for (float v : read_f32(ck->get(n))) {
            EXPECT_GT(v, 0.4f) << n;
            EXPECT_LT(v, 1.6f) << n;
        }
    for (float v : read_f32(ck->get("layers.1.hc_attn_fn"))) EXPECT_LT(std::fabs(v), 0.2f);
    for (float v : read_f32(ck->get("layers.1.ffn.gate.bias"))) EXPECT_LT(std::fabs(v), 0.1f);

    // tid2eid: every row holds distinct expert ids in range, and rows differ.
    const TensorInfo& t = ck->get("layers.0.ffn.gate.tid2eid");
    ASSERT_EQ(t.dtype, DType::I64);
    int64_t rows = t.shape[0], k = t.shape[1];
    std::set<std::vector<int64_t>> distinct_rows;
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<int64_t> row(static_cast<size_t>(k));
        std::memcpy(row.data(), t.data + r * k * 8, size_t(k) * 8);
        std::set<int64_t> ids(row.begin(), row.end());
        EXPECT_EQ(ids.size(), size_t(k)) << "row " << r;
        for (int64_t e : row) {
            EXPECT_GE(e, 0);
            EXPECT_LT(e, 8);
        }
        distinct_rows.insert(row);
    }
    EXPECT_GT(distinct_rows.size(), 20u);  // 56 ordered pairs of 8 experts
}

TEST(Synthetic, BadArguments) {
    TempDir tmp("syn");
    RunResult r = run_dsinfer("make-synthetic --like huge --out '" + tmp.str() + "/x'");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("--like must be tiny, flash or pro"), std::string::npos) << r.output;
    r = run_dsinfer("make-synthetic --out '" + tmp.str() + "/x' --shards");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("--shards needs a value"), std::string::npos) << r.output;
    r = run_dsinfer("make-synthetic --out '" + tmp.str() + "/x' --expert-dtype fp6");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("--expert-dtype must be fp4 or fp8"), std::string::npos) << r.output;
    make("--out '" + tmp.str() + "/x'");
    r = run_dsinfer("make-synthetic --out '" + tmp.str() + "/x'");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.output.find("already holds a model"), std::string::npos) << r.output;
    make("--out '" + tmp.str() + "/x' --force --shards 2");
    validate(tmp / "x");
}

namespace {

// Logits of the last token after a prefill of `ids` on a fresh sequence.
std::vector<float> last_logits(Dsv4Model& m, const std::vector<int32_t>& ids) {
    auto seq = m.new_sequence();
    std::vector<float> logits;
    ForwardItem it;
    it.state = seq.get();
    it.tokens = ids;
    it.logits_out = &logits;
    m.forward(std::span<ForwardItem>(&it, 1));
    return logits;
}

// Logits are finite and of a sane spread (activations neither vanish nor explode through the blocks).
void expect_sane(const std::vector<float>& logits, int64_t vocab, const std::string& what) {
    ASSERT_EQ(int64_t(logits.size()), vocab) << what;
    double s = 0, s2 = 0;
    for (float v : logits) {
        ASSERT_TRUE(std::isfinite(v)) << what;
        s += v;
        s2 += double(v) * v;
    }
    double mean = s / double(vocab), sd = std::sqrt(std::max(0.0, s2 / double(vocab) - mean * mean));
    EXPECT_GT(sd, 0.05) << what;
    EXPECT_LT(sd, 50.0) << what;
}

}  // namespace

TEST(SyntheticModel, RunsInTheModelWithSaneActivations) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/m' --seed 11");
    make("--out '" + tmp.str() + "/f8' --seed 11 --expert-dtype fp8 --scale-dtype f32 --no-scale-fmt");
    std::vector<int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(int32_t((i * 37 + 5) % 1024));  // past the window, over a ratio-4 block
    for (const char* name : {"m", "f8"}) {
        auto model = Dsv4Model::load(tmp / name, ModelOptions{});
        expect_sane(last_logits(*model, ids), 1024, name);
    }
}

TEST(SyntheticModel, ShardedLoadsAndMatchesSingleFile) {
    TempDir tmp("syn");
    make("--out '" + tmp.str() + "/one' --seed 4");
    make("--out '" + tmp.str() + "/three' --seed 4 --shards 3");
    std::vector<int32_t> ids = {0, 17, 400, 3, 999, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    auto a = Dsv4Model::load(tmp / "one", ModelOptions{});
    auto b = Dsv4Model::load(tmp / "three", ModelOptions{});
    std::vector<float> la = last_logits(*a, ids), lb = last_logits(*b, ids);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << i;  // same bytes, same math
}
