// Safetensors reading and writing (src/io/safetensors.h) and the progress helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "io/progress.h"
#include "io/safetensors.h"

using namespace dsinfer;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("dsinfer-io-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& s) const { return (path / s).string(); }
};

template <class F>
std::string error_of(F&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// A raw safetensors file from a header string and data bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes) {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
    std::string data(data_bytes, '\0');
    out << data;
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
    TempDir tmp;
    std::vector<float> f32 = {1.5f, -2.f, 3.25f, 0.f, 7.f, -8.5f};
    std::vector<uint16_t> bf16;
    for (float v : f32) bf16.push_back(f32_to_bf16(v));
    std::vector<uint8_t> e4m3 = {0x38, 0xb8, 0x7e, 0x00}, e8m0 = {127, 130}, i8 = {0x21, 0xf3};
    std::vector<int64_t> i64 = {3, 1, 4, 1, 5, 9};
    std::vector<int32_t> i32 = {-7, 11};
    write_safetensors(tmp / "a.safetensors",
                      {{"f", DType::F32, {2, 3}, f32.data(), f32.size() * 4},
                       {"b", DType::BF16, {6}, bf16.data(), bf16.size() * 2},
                       {"q", DType::F8_E4M3, {2, 2}, e4m3.data(), 4},
                       {"s", DType::F8_E8M0, {1, 2}, e8m0.data(), 2},
                       {"p", DType::I8, {1, 2}, i8.data(), 2},
                       {"t", DType::I64, {3, 2}, i64.data(), i64.size() * 8},
                       {"i", DType::I32, {2}, i32.data(), 8},
                       {"empty", DType::F32, {0, 4}, nullptr, 0}},
                      {{"format", "pt"}});
    SafeTensorsFile f(tmp / "a.safetensors");
    EXPECT_EQ(f.metadata().at("format"), "pt");
    ASSERT_EQ(f.tensors().size(), 8u);
    std::map<std::string, const TensorInfo*> by;
    for (auto& t : f.tensors()) by[t.name] = &t;
    EXPECT_EQ(by["f"]->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(std::memcmp(by["f"]->data, f32.data(), 24), 0);
    EXPECT_EQ(by["b"]->dtype, DType::BF16);
    EXPECT_EQ(std::memcmp(by["b"]->data, bf16.data(), 12), 0);
    EXPECT_EQ(by["q"]->dtype, DType::F8_E4M3);
    EXPECT_EQ(e4m3_to_f32(by["q"]->data[0]), 1.f);
    EXPECT_EQ(by["s"]->dtype, DType::F8_E8M0);
    EXPECT_EQ(e8m0_to_f32(by["s"]->data[1]), 8.f);
    EXPECT_EQ(fp4_nibble(by["p"]->data, 0), 0x1);  // low nibble first
    EXPECT_EQ(fp4_nibble(by["p"]->data, 1), 0x2);
    EXPECT_EQ(fp4_nibble(by["p"]->data, 3), 0xf);
    EXPECT_EQ(by["t"]->dtype, DType::I64);
    EXPECT_EQ(std::memcmp(by["t"]->data, i64.data(), 48), 0);
    EXPECT_EQ(by["i"]->nbytes, 8u);
    EXPECT_EQ(by["empty"]->nbytes, 0u);
    // Data start is 8-byte aligned (the header is padded).
    uint64_t hlen;
    std::ifstream in(tmp / "a.safetensors", std::ios::binary);
    in.read(reinterpret_cast<char*>(&hlen), 8);
    EXPECT_EQ(hlen % 8, 0u);
}

TEST(Safetensors, WriteRefusesSizeMismatch) {
    TempDir tmp;
    float x[3] = {};
    std::string msg = error_of([&] { write_safetensors(tmp / "x.safetensors", {{"x", DType::F32, {4}, x, 12}}); });
    EXPECT_NE(msg.find("'x'"), std::string::npos) << msg;
}

TEST(Safetensors, MalformedFiles) {
    TempDir tmp;
    // Too short to hold a header length.
    { std::ofstream(tmp / "short.safetensors") << "abc"; }
    EXPECT_NE(error_of([&] { SafeTensorsFile f(tmp / "short.safetensors"); }).find("not a safetensors file"),
              std::string::npos);
    // Missing file.
    EXPECT_NE(error_of([&] { SafeTensorsFile f(tmp / "nope.safetensors"); }).find("nope.safetensors: cannot open"),
              std::string::npos);
    // Header that is not JSON.
    write_raw(tmp / "bad.safetensors", "{not json}", 0);
    EXPECT_NE(error_of([&] { SafeTensorsFile f(tmp / "bad.safetensors"); }).find("malformed safetensors header"),
              std::string::npos);
    // Unknown dtype.
    write_raw(tmp / "dt.safetensors", R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1);
    std::string msg = error_of([&] { SafeTensorsFile f(tmp / "dt.safetensors"); });
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unsupported dtype F4"), std::string::npos) << msg;
    // Data past the end of the file.
    write_raw(tmp / "tr.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
    msg = error_of([&] { SafeTensorsFile f(tmp / "tr.safetensors"); });
    EXPECT_NE(msg.find("truncated: tensor 'w'"), std::string::npos) << msg;
    // Offsets that disagree with the shape.
    write_raw(tmp / "sz.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16);
    msg = error_of([&] { SafeTensorsFile f(tmp / "sz.safetensors"); });
    EXPECT_NE(msg.find("needs 16 bytes but spans 12"), std::string::npos) << msg;
    // Entry missing its shape.
    write_raw(tmp / "ms.safetensors", R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4);
    msg = error_of([&] { SafeTensorsFile f(tmp / "ms.safetensors"); });
    EXPECT_NE(msg.find("malformed entry for tensor 'w'"), std::string::npos) << msg;
}

TEST(Checkpoint, ShardsWithIndex) {
    TempDir tmp;
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    write_safetensors(tmp / "model-00001-of-00002.safetensors", {{"a", DType::F32, {2}, a, 8}});
    write_safetensors(tmp / "model-00002-of-00002.safetensors", {{"b", DType::F32, {3}, b, 12}});
    nlohmann::json index = {{"weight_map",
                             {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
    { std::ofstream(tmp / "model.safetensors.index.json") << index.dump(); }
    size_t calls = 0;
    struct P {
        static void cb(size_t done, size_t total, const std::string&, void* u) {
            auto* n = static_cast<size_t*>(u);
            EXPECT_EQ(done, *n + 1);
            EXPECT_EQ(total, 2u);
            ++*n;
        }
    };
    auto ck = Checkpoint::open(tmp.path.string(), &P::cb, &calls);
    EXPECT_EQ(calls, 2u);
    EXPECT_EQ(ck->files().size(), 2u);
    EXPECT_EQ(ck->total_bytes(), 20u);
    EXPECT_EQ(ck->get("b").file, tmp / "model-00002-of-00002.safetensors");
    float v;
    std::memcpy(&v, ck->get("b").data + 8, 4);
    EXPECT_EQ(v, 5.f);
    std::string msg = error_of([&] { ck->get("c"); });
    EXPECT_NE(msg.find("missing tensor 'c'"), std::string::npos) << msg;

    // The index places a tensor in another file than it is in.
    index["weight_map"]["b"] = "model-00001-of-00002.safetensors";
    index["weight_map"]["a"] = "model-00002-of-00002.safetensors";
    { std::ofstream(tmp / "model.safetensors.index.json") << index.dump(); }
    msg = error_of([&] { Checkpoint::open(tmp.path.string()); });
    EXPECT_NE(msg.find("is not listed for this file"), std::string::npos) << msg;

    // A malformed index.
    { std::ofstream(tmp / "model.safetensors.index.json") << "{\"weight_map\": 3}"; }
    msg = error_of([&] { Checkpoint::open(tmp.path.string()); });
    EXPECT_NE(msg.find("model.safetensors.index.json: malformed index"), std::string::npos) << msg;
}

TEST(Checkpoint, DuplicateTensorAcrossFiles) {
    TempDir tmp;
    float a[2] = {1, 2};
    write_safetensors(tmp / "x-1.safetensors", {{"a", DType::F32, {2}, a, 8}});
    write_safetensors(tmp / "x-2.safetensors", {{"a", DType::F32, {2}, a, 8}});
    std::string msg = error_of([&] { Checkpoint::open(tmp.path.string()); });
    EXPECT_NE(msg.find("tensor 'a' also appears in"), std::string::npos) << msg;
    msg = error_of([&] { Checkpoint::open(tmp / "none"); });
    EXPECT_NE(msg.find("not a model folder"), std::string::npos) << msg;
}

TEST(Progress, OneLinePerStepWhenEnabled) {
    ProgressLine on("loading", /*force=*/true);
    ::testing::internal::CaptureStderr();
    on.step(1, 46, "model-00001-of-00046.safetensors");
    on.step(2, 46, "model-00002-of-00046.safetensors");
    std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("loading 1/46 model-00001-of-00046.safetensors"), std::string::npos) << err;
    EXPECT_NE(err.find("loading 2/46 model-00002-of-00046.safetensors"), std::string::npos) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 2);
}

TEST(Progress, Formatting) {
    EXPECT_EQ(human_bytes(512), "512 B");
    EXPECT_EQ(human_bytes(1500), "1.5 kB");
    EXPECT_EQ(human_bytes(159609485896.0), "159.6 GB");
    EXPECT_EQ(with_commas(69187), "69,187");
    EXPECT_EQ(with_commas(145116), "145,116");
    EXPECT_EQ(with_commas(999), "999");
    EXPECT_EQ(with_commas(1000000), "1,000,000");
}
