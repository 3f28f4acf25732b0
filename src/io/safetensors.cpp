#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace dsinfer {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string TensorInfo::shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ::close(fd);
        throw Error(path + ": cannot stat: " + std::strerror(errno));
    }
    size_ = size_t(st.st_size);
    if (size_ < 8) {
        ::close(fd);
        throw Error(path + ": not a safetensors file (only " + std::to_string(size_) + " bytes)");
    }
    map_ = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map_ == MAP_FAILED) {
        map_ = nullptr;
        throw Error(path + ": mmap failed: " + std::strerror(errno));
    }
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    uint64_t header_len;
    std::memcpy(&header_len, base, 8);
    if (header_len > size_ - 8 || header_len > (100u << 20))
        throw Error(path + ": truncated or not a safetensors file (header length " + std::to_string(header_len) +
                    ", file size " + std::to_string(size_) + ")");
    json header;
    try {
        header = json::parse(base + 8, base + 8 + header_len);
    } catch (const std::exception& e) {
        throw Error(path + ": malformed safetensors header: " + e.what());
    }
    if (!header.is_object()) throw Error(path + ": malformed safetensors header: not a JSON object");
    const uint8_t* data = base + 8 + header_len;
    size_t data_size = size_ - 8 - header_len;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (it->is_object())
                for (auto m = it->begin(); m != it->end(); ++m)
                    if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
            continue;
        }
        const json& t = *it;
        TensorInfo info;
        info.name = it.key();
        info.file = path;
        try {
            std::string dt = t.at("dtype").get<std::string>();
            if (!dtype_from_name(dt, &info.dtype))
                throw Error(path + ": tensor '" + info.name + "' has unsupported dtype " + dt);
            info.shape = t.at("shape").get<std::vector<int64_t>>();
            auto off = t.at("data_offsets").get<std::vector<uint64_t>>();
            if (off.size() != 2 || off[0] > off[1])
                throw Error(path + ": tensor '" + info.name + "' has bad data_offsets");
            for (int64_t d : info.shape)
                if (d < 0) throw Error(path + ": tensor '" + info.name + "' has a negative dimension");
            if (off[1] > data_size)
                throw Error(path + ": truncated: tensor '" + info.name + "' ends at byte " + std::to_string(off[1]) +
                            " of the data but the file holds " + std::to_string(data_size));
            info.nbytes = size_t(off[1] - off[0]);
            size_t expect = size_t(info.numel()) * dtype_size(info.dtype);
            if (info.nbytes != expect)
                throw Error(path + ": tensor '" + info.name + "' " + std::string(dtype_name(info.dtype)) +
                            info.shape_str() + " needs " + std::to_string(expect) + " bytes but spans " +
                            std::to_string(info.nbytes));
            info.data = data + off[0];
        } catch (const json::exception& e) {
            throw Error(path + ": malformed entry for tensor '" + info.name + "': " + e.what());
        }
        tensors_.push_back(std::move(info));
    }
    // Hint the kernel that reads will be scattered (experts are chosen per token).
    madvise(map_, size_, MADV_RANDOM);
}

SafeTensorsFile::~SafeTensorsFile() {
    if (map_) munmap(map_, size_);
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string& dir, Progress progress, void* user) {
    auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
    ck->dir_ = dir;
    if (!fs::is_directory(dir)) throw Error(dir + ": not a model folder (no such directory)");
    std::vector<std::string> shards;
    fs::path index = fs::path(dir) / "model.safetensors.index.json";
    std::map<std::string, std::string> weight_map;
    if (fs::exists(index)) {
        json j;
        try {
            std::ifstream in(index);
            j = json::parse(in);
            for (auto& [name, file] : j.at("weight_map").items()) weight_map[name] = file.get<std::string>();
        } catch (const std::exception& e) {
            throw Error(index.string() + ": malformed index: " + e.what());
        }
        std::set<std::string> files;
        for (auto& [_, f] : weight_map) files.insert(f);
        shards.assign(files.begin(), files.end());
    } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
        shards.push_back("model.safetensors");
    } else {
        for (auto& e : fs::directory_iterator(dir))
            if (e.path().extension() == ".safetensors") shards.push_back(e.path().filename().string());
        std::sort(shards.begin(), shards.end());
        if (shards.empty()) throw Error(dir + ": no model.safetensors, index or *.safetensors files");
    }
    for (size_t i = 0; i < shards.size(); ++i) {
        std::string path = (fs::path(dir) / shards[i]).string();
        ck->files_.push_back(std::make_unique<SafeTensorsFile>(path));
        for (const TensorInfo& t : ck->files_.back()->tensors()) {
            if (ck->tensors_.count(t.name))
                throw Error(path + ": tensor '" + t.name + "' also appears in " + ck->tensors_[t.name].file);
            if (!weight_map.empty()) {
                auto w = weight_map.find(t.name);
                if (w == weight_map.end() || w->second != shards[i])
                    throw Error(path + ": tensor '" + t.name + "' is not listed for this file in " + index.string());
            }
            ck->tensors_[t.name] = t;
        }
        if (progress) progress(i + 1, shards.size(), path, user);
    }
    for (auto& [name, file] : weight_map)
        if (!ck->tensors_.count(name))
            throw Error(index.string() + ": tensor '" + name + "' is listed in " + file + " but not found there");
    return ck;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

const TensorInfo& Checkpoint::get(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (!t) throw Error(dir_ + ": missing tensor '" + std::string(name) + "'");
    return *t;
}

uint64_t Checkpoint::total_bytes() const {
    uint64_t n = 0;
    for (auto& [_, t] : tensors_) n += t.nbytes;
    return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (auto& t : tensors) {
        size_t expect = 1;
        for (int64_t d : t.shape) expect *= size_t(d);
        expect *= dtype_size(t.dtype);
        if (expect != t.nbytes) throw Error(path + ": tensor '" + t.name + "' size does not match its shape");
        header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + t.nbytes}}};
        offset += t.nbytes;
    }
    std::string h = header.dump();
    while ((h.size() + 8) % 8) h += ' ';
    std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error(path + ": cannot write");
        uint64_t len = h.size();
        out.write(reinterpret_cast<const char*>(&len), 8);
        out.write(h.data(), std::streamsize(h.size()));
        for (auto& t : tensors) out.write(static_cast<const char*>(t.data), std::streamsize(t.nbytes));
        if (!out) throw Error(path + ": write failed");
    }
    fs::rename(tmp, path);
}

std::vector<float> HostTensor::to_f32() const {
    size_t n = size_t(numel());
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = bytes.data() + i * dtype_size(dtype);
        switch (dtype) {
            case DType::F32: std::memcpy(&out[i], p, 4); break;
            case DType::BF16: { uint16_t h; std::memcpy(&h, p, 2); out[i] = bf16_to_f32(h); break; }
            case DType::F16: { uint16_t h; std::memcpy(&h, p, 2); out[i] = f16_to_f32(h); break; }
            case DType::I32: { int32_t v; std::memcpy(&v, p, 4); out[i] = float(v); break; }
            case DType::I64: { int64_t v; std::memcpy(&v, p, 8); out[i] = float(v); break; }
            default: throw Error("HostTensor::to_f32: unsupported dtype " + std::string(dtype_name(dtype)));
        }
    }
    return out;
}

}  // namespace dsinfer
