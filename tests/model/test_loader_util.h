// Helpers of the loader and synthetic-checkpoint tests: temp folders, rewriting a checkpoint with
// changes, running the dsinfer binary.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace dsinfer::testing {

namespace fs = std::filesystem;

inline std::string tiny_dir() {
    return std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";
}

// A fresh folder under the system temp dir, removed when the object dies.
struct TempDir {
    fs::path path;
    explicit TempDir(const std::string& tag) {
        std::random_device rd;
        path = fs::temp_directory_path() /
               ("dsinfer-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string str() const { return path.string(); }
    std::string operator/(const std::string& s) const { return (path / s).string(); }
};

inline nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}
inline void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

// A tensor to write, owning its bytes.
struct OwnedTensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

// The tensors of a checkpoint folder, copied into memory (small checkpoints only).
inline std::vector<OwnedTensor> read_all(const std::string& dir) {
    auto ck = Checkpoint::open(dir);
    std::vector<OwnedTensor> out;
    for (auto& [name, t] : ck->tensors())
        out.push_back({name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)});
    return out;
}

inline void write_all(const std::string& path, const std::vector<OwnedTensor>& ts) {
    std::vector<TensorToWrite> w;
    for (auto& t : ts) w.push_back({t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
    write_safetensors(path, w, {{"format", "pt"}});
}

// Copies the tiny fixture (config.json + model.safetensors) to dir, letting `edit` change the
// tensors and `edit_config` the config first.
inline void copy_tiny(const std::string& dir, const std::function<void(std::vector<OwnedTensor>&)>& edit = nullptr,
                      const std::function<void(nlohmann::json&)>& edit_config = nullptr) {
    fs::create_directories(dir);
    nlohmann::json c = read_json(tiny_dir() + "/config.json");
    if (edit_config) edit_config(c);
    write_text(dir + "/config.json", c.dump(2));
    auto ts = read_all(tiny_dir());
    if (edit) edit(ts);
    write_all(dir + "/model.safetensors", ts);
}

inline OwnedTensor* find(std::vector<OwnedTensor>& ts, const std::string& name) {
    for (auto& t : ts)
        if (t.name == name) return &t;
    return nullptr;
}

struct RunResult {
    bool exited = false;  // false: killed by a signal (a crash)
    int code = -1;
    std::string output;  // stdout and stderr
};

// Runs the dsinfer binary with the given arguments (shell-quoted by the caller where needed).
inline RunResult run_dsinfer(const std::string& args) {
    std::string cmd = std::string(DSINFER_BINARY) + " " + args + " 2>&1";
    RunResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    int st = ::pclose(p);
    r.exited = WIFEXITED(st);
    r.code = r.exited ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace dsinfer::testing
