// config.json -> ModelConfig (src/io/config.h): values of the tiny test model, the variants the
// engine must read from the file, and clear errors naming the file and key.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/config.h"

using namespace dsinfer;
using nlohmann::json;

namespace {

json tiny() {
    std::ifstream in(std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash/config.json");
    return json::parse(in);
}

std::string error_of(const json& j) {
    try {
        parse_model_config(j, "cfg.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST(Config, TinyValues) {
    ModelConfig c = load_model_config(std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash");
    EXPECT_NE(c.source.find("config.json"), std::string::npos);
    EXPECT_EQ(c.architecture, "DeepseekV4ForCausalLM");
    EXPECT_EQ(c.vocab_size, 1024);
    EXPECT_EQ(c.dim, 256);
    EXPECT_EQ(c.n_layers, 4);
    EXPECT_EQ(c.n_mtp_layers, 1);
    EXPECT_EQ(c.n_hash_layers, 1);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.rope_head_dim, 64);
    EXPECT_EQ(c.nope_head_dim(), 64);
    EXPECT_EQ(c.q_lora_rank, 128);
    EXPECT_EQ(c.o_groups, 2);
    EXPECT_EQ(c.window_size, 16);
    EXPECT_EQ(c.compress_ratios, (std::vector<int>{0, 4, 128, 4, 0}));
    EXPECT_EQ(c.compress_ratio(4), 0);  // the MTP block
    EXPECT_TRUE(c.is_hash_layer(0));
    EXPECT_FALSE(c.is_hash_layer(1));
    EXPECT_DOUBLE_EQ(c.rope_factor, 4);
    EXPECT_EQ(c.original_seq_len, 256);
    EXPECT_DOUBLE_EQ(c.compress_rope_theta, 160000);
    EXPECT_EQ(c.index_topk, 8);
    EXPECT_EQ(c.n_routed_experts, 8);
    EXPECT_EQ(c.n_activated_experts, 2);
    EXPECT_EQ(c.moe_inter_dim, 128);
    EXPECT_DOUBLE_EQ(c.route_scale, 1.5);
    EXPECT_DOUBLE_EQ(c.swiglu_limit, 2.5);
    EXPECT_EQ(c.hc_mult, 4);
    EXPECT_EQ(c.hc_sinkhorn_iters, 20);
    EXPECT_FALSE(c.has_expert_dtype);
    EXPECT_TRUE(c.scale_fmt_ue8m0);
}

TEST(Config, Variants) {
    json j = tiny();
    j["expert_dtype"] = "fp8";
    j["quantization_config"].erase("scale_fmt");
    ModelConfig c = parse_model_config(j, "cfg.json");
    EXPECT_TRUE(c.has_expert_dtype);
    EXPECT_EQ(c.expert_dtype, ExpertDType::FP8);
    EXPECT_FALSE(c.scale_fmt_ue8m0);
    j["expert_dtype"] = "fp4";
    j.erase("rope_scaling");
    c = parse_model_config(j, "cfg.json");
    EXPECT_EQ(c.expert_dtype, ExpertDType::FP4);
    EXPECT_DOUBLE_EQ(c.rope_factor, 1);
    EXPECT_EQ(c.original_seq_len, 0);
    // Only the model_type is enough to recognise the architecture.
    j.erase("architectures");
    EXPECT_EQ(parse_model_config(j, "cfg.json").model_type, "deepseek_v4");
}

TEST(Config, Errors) {
    auto expect = [](json j, std::initializer_list<std::string> parts) {
        std::string msg = error_of(j);
        for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "lacks '" << p << "': " << msg;
    };
    json j = tiny();
    j["architectures"] = {"Qwen2ForCausalLM"};
    j["model_type"] = "qwen2";
    expect(j, {"cfg.json", "unsupported model", "Qwen2ForCausalLM"});

    j = tiny();
    j["text_config"] = json::object();
    expect(j, {"cfg.json", "text_config"});

    for (const char* key : {"hidden_size", "vocab_size", "num_hidden_layers", "compress_ratios", "head_dim",
                            "moe_intermediate_size", "hc_mult"}) {
        j = tiny();
        j.erase(key);
        expect(j, {"cfg.json", std::string("'") + key + "' is missing"});
    }
    j = tiny();
    j["hidden_size"] = "256";
    expect(j, {"'hidden_size' must be an integer"});
    j = tiny();
    j["compress_ratios"] = {0, 4, 128, 4};
    expect(j, {"'compress_ratios'", "4 entries", "expected 5"});
    j = tiny();
    j["compress_ratios"] = {0, 4, 64, 4, 0};
    expect(j, {"'compress_ratios'", "64"});
    j = tiny();
    j["expert_dtype"] = "int4";
    expect(j, {"'expert_dtype'", "int4"});
    j = tiny();
    j["quantization_config"]["scale_fmt"] = "e4m3";
    expect(j, {"scale_fmt", "e4m3"});
    j = tiny();
    j["quantization_config"]["weight_block_size"] = {64, 64};
    expect(j, {"weight_block_size"});
    j = tiny();
    j["num_key_value_heads"] = 2;
    expect(j, {"num_key_value_heads"});
    j = tiny();
    j["o_groups"] = 3;
    expect(j, {"o_groups"});
    j = tiny();
    j["num_experts_per_tok"] = 9;
    expect(j, {"num_experts_per_tok"});
    j = tiny();
    j["scoring_func"] = "softmax";
    expect(j, {"scoring_func", "softmax"});
    expect(json::array(), {"cfg.json", "not a JSON object"});
}

TEST(Config, FileErrors) {
    try {
        load_model_config("/nonexistent-dsinfer-dir");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent-dsinfer-dir/config.json: cannot open"), std::string::npos)
            << e.what();
    }
}
