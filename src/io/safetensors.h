// Safetensors checkpoints: one file or a sharded folder (model.safetensors.index.json), mmapped
// read-only. Tensors are views into the mapping in their stored dtype; nothing is copied or widened.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace dsinfer {

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;  // mmapped, read-only
    size_t nbytes = 0;
    std::string file;  // the file the tensor lives in

    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
    std::string shape_str() const;  // "[a, b]"
};

// One mmapped .safetensors file.
class SafeTensorsFile {
public:
    // Throws Error naming the file if it is missing, truncated or its header is malformed.
    explicit SafeTensorsFile(const std::string& path);
    ~SafeTensorsFile();
    SafeTensorsFile(const SafeTensorsFile&) = delete;
    SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

    const std::string& path() const { return path_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    size_t size() const { return size_; }

private:
    std::string path_;
    void* map_ = nullptr;
    size_t size_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

// A model folder: `model.safetensors`, or `model.safetensors.index.json` naming the shards, or
// (without an index) every `*.safetensors` file in it.
class Checkpoint {
public:
    // progress: called after each shard is mapped (index, count, path); may be null.
    using Progress = void (*)(size_t done, size_t total, const std::string& path, void* user);
    static std::unique_ptr<Checkpoint> open(const std::string& dir, Progress progress = nullptr,
                                            void* user = nullptr);

    const TensorInfo* find(std::string_view name) const;
    const TensorInfo& get(std::string_view name) const;  // throws Error naming the tensor and folder
    const std::map<std::string, TensorInfo, std::less<>>& tensors() const { return tensors_; }
    const std::string& dir() const { return dir_; }
    const std::vector<std::unique_ptr<SafeTensorsFile>>& files() const { return files_; }
    uint64_t total_bytes() const;  // bytes of tensor data

private:
    std::string dir_;
    std::vector<std::unique_ptr<SafeTensorsFile>> files_;
    std::map<std::string, TensorInfo, std::less<>> tensors_;
};

// Writing (for outputs of tools and tests): tensors in the given order, 8-byte aligned header.
struct TensorToWrite {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Owning tensor read into memory (for small things such as golden files); any dtype.
struct HostTensor {
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
    std::vector<float> to_f32() const;  // F32, BF16, F16, I32, I64 converted
};

}  // namespace dsinfer
