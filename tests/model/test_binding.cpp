// Weights binding: a checkpoint that does not match its config.json is refused with an error that
// names the tensor and says what was expected.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/safetensors.h"
#include "model/dsv4_model.h"

using namespace dsinfer;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

// Copies the tiny checkpoint into a fresh folder, letting `edit` drop (return false) or change tensors.
template <class Edit>
std::string variant(const std::string& name, Edit edit) {
    const fs::path dir = fs::temp_directory_path() / ("dsinfer_binding_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(kDir + "/config.json", dir / "config.json");
    auto ckpt = Checkpoint::open(kDir);
    std::vector<TensorToWrite> out;
    std::vector<std::vector<uint8_t>> keep;
    for (const auto& [n, t] : ckpt->tensors()) {
        TensorToWrite w{n, t.dtype, t.shape, t.data, t.nbytes};
        if (!edit(w, keep)) continue;
        out.push_back(w);
    }
    write_safetensors((dir / "model.safetensors").string(), out);
    return dir.string();
}

std::string load_error(const std::string& dir) {
    try {
        Dsv4Model::load(dir, ModelOptions{});
    } catch (const std::exception& e) {
        fs::remove_all(dir);
        std::printf("error: %s\n", e.what());
        return e.what();
    }
    fs::remove_all(dir);
    return "";
}

}  // namespace

TEST(Binding, LoadsTheTinyCheckpoint) {
    auto m = Dsv4Model::load(kDir, ModelOptions{});
    EXPECT_EQ(m->config().n_layers, 4);
    auto st = m->new_sequence();
    EXPECT_EQ(st->position(), 0);
    EXPECT_GT(st->memory_bytes(), size_t(0));
}

TEST(Binding, MissingTensorIsNamed) {
    auto dir = variant("missing", [](TensorToWrite& w, auto&) { return w.name != "layers.2.attn.compressor.ape"; });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("layers.2.attn.compressor.ape"), std::string::npos) << err;
}

TEST(Binding, WrongShapeIsNamedWithExpectedShape) {
    auto dir = variant("shape", [](TensorToWrite& w, auto& keep) {
        if (w.name == "layers.1.attn.wkv.weight") {  // [128, 256] F8 → [64, 256]
            w.shape = {64, 256};
            w.nbytes = 64 * 256;
        }
        (void)keep;
        return true;
    });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("layers.1.attn.wkv.weight"), std::string::npos) << err;
    EXPECT_NE(err.find("[128, 256]"), std::string::npos) << err;
}

TEST(Binding, WrongDtypeIsNamed) {
    auto dir = variant("dtype", [](TensorToWrite& w, auto& keep) {
        if (w.name == "layers.0.attn.attn_sink") {  // F32 [4] → I32 [4]
            w.dtype = DType::I32;
        }
        (void)keep;
        return true;
    });
    const std::string err = load_error(dir);
    EXPECT_NE(err.find("layers.0.attn.attn_sink"), std::string::npos) << err;
    EXPECT_NE(err.find("I32"), std::string::npos) << err;
}

TEST(Binding, ExpertDtypeMismatchWithConfig) {
    const fs::path dir = fs::temp_directory_path() / ("dsinfer_binding_cfg_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(kDir + "/model.safetensors", dir / "model.safetensors");
    std::ifstream in(kDir + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    cfg.insert(cfg.find('{') + 1, "\n  \"expert_dtype\": \"fp8\",");
    std::ofstream(dir / "config.json") << cfg;
    const std::string err = load_error(dir.string());
    EXPECT_NE(err.find("expert_dtype"), std::string::npos) << err;
}
