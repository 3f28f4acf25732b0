// The tensor census of a DeepSeek-V4 checkpoint (dsv4-model.md §2.2–§2.3, §2.6): from a ModelConfig,
// every tensor the checkpoint must hold with its allowed dtypes and shape; validation of a Checkpoint
// against it (header level only: names, dtypes, shapes — no tensor data is read), parameter and byte
// counts, and the memory a model needs (weights + KV cache, §9).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/config.h"
#include "io/safetensors.h"

namespace dsinfer {

// What a tensor is, for counting and for messages.
enum class TensorKind : uint8_t {
    Float,  // BF16 or F32 storage (norms, embed, head, gate, compressors, hc_*, sinks, ape, ...)
    FP8,    // e4m3 matrix with 128x128 block scales
    FP4,    // packed e2m1 matrix (I8 [N, K/2]) with a scale per 32 along K
    Scale,  // E8M0 or F32 scale of an FP8/FP4 matrix
    Index,  // tid2eid (I64 or I32)
};

struct TensorSpec {
    std::string name;
    std::vector<DType> dtypes;   // allowed storage dtypes; the first is the published one
    std::vector<int64_t> shape;  // stored shape
    TensorKind kind = TensorKind::Float;
    int block = -1;                  // -1 global; 0..n_layers-1 main layers; n_layers + i for mtp.i
    int expert = -1;                 // routed expert index, -1 otherwise
    int64_t logical_params() const;  // FP4: 2 per stored byte; scales and tid2eid: 0
};

// The census for the given routed-expert storage. Tensors in checkpoint order of the published
// index (globals, then layers, then mtp), experts in index order.
std::vector<TensorSpec> checkpoint_census(const ModelConfig& cfg, ExpertDType experts);

// Expert storage read from the tensors: layers.0.ffn.experts.0.w1.weight I8 ⇒ FP4, F8_E4M3 ⇒ FP8.
// Throws Error naming the tensor if it is missing or of another dtype, or if config.json's
// expert_dtype says otherwise.
ExpertDType detect_expert_dtype(const ModelConfig& cfg, const Checkpoint& ck);

// Everything the census and the tensors say about a checkpoint.
struct CheckpointSummary {
    ExpertDType expert_dtype = ExpertDType::FP4;
    bool expert_dtype_from_config = false;   // false: detected from the tensors
    std::map<DType, uint64_t> scale_dtypes;  // scale dtype -> number of scale tensors
    size_t n_tensors = 0;
    uint64_t params_total = 0;   // logical weights (FP4 counts 2 per byte), scales excluded
    uint64_t params_main = 0;    // without the MTP block(s)
    uint64_t params_active = 0;  // per token of the main model: all but routed experts, plus top-k of them
    uint64_t params_mtp = 0;
    uint64_t bytes_total = 0;  // bytes of tensor data
    std::map<DType, uint64_t> bytes_by_dtype;
    std::map<TensorKind, uint64_t> bytes_by_kind;
};

// Checks every tensor of the census against the checkpoint (missing, unexpected, mis-shaped, wrong
// dtype) and returns the summary. Throws Error naming the file and tensor with expected vs actual.
// Cheap: headers only.
CheckpointSummary validate_checkpoint(const ModelConfig& cfg, const Checkpoint& ck);

// Counts from the census alone (no checkpoint): what a checkpoint of this config holds, with all
// scales in scale_dtype.
CheckpointSummary census_summary(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype);

// KV-cache memory of one sequence (§9), in two layouts.
struct KvMemory {
    // Float32 layout of the CPU engine: window ring [window, head_dim], compressed entries
    // [n, head_dim], indexer keys [n, index_head_dim], compressor states (kv, score) f32.
    uint64_t f32_fixed = 0;   // per sequence, independent of length (window rings, compressor states)
    uint64_t f32_per_1k = 0;  // per 1024 tokens of context (compressed entries, indexer keys)
    // Packed layout (vLLM-style GPU cache): 584 B per KV vector (448 FP8 + 64 BF16 rope + 7 UE8M0 scales
    // + 1 pad, for head_dim 512), indexer keys FP8 + one f32 scale; compressor state f32.
    uint64_t packed_fixed = 0;
    uint64_t packed_per_1k = 0;
};
KvMemory kv_memory(const ModelConfig& cfg, bool include_mtp = true);

// Bytes of weights read for one decoded token of one sequence (main model, no MTP): every non-expert
// weight, the shared experts, top-k routed experts per layer, one embedding row and the head. With a
// checkpoint, the sizes of its tensors (as stored); else the published dtypes with scale_dtype scales.
uint64_t weight_bytes_per_token(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype,
                                const Checkpoint* ck = nullptr);

// Expected bytes of weights one decode step of `batch` sequences reads, if every token picked its
// top-k experts uniformly at random: per layer E·(1 − (1 − k/E)^batch) distinct routed experts, every
// other weight once, one embedding (and tid2eid) row per sequence. batch 1 equals weight_bytes_per_token.
double weight_bytes_per_step(const ModelConfig& cfg, ExpertDType experts, DType scale_dtype, int batch,
                             const Checkpoint* ck = nullptr);

std::string tensor_kind_name(TensorKind k);

// Reads a Float tensor (BF16, F16 or F32) into float32.
std::vector<float> read_f32(const TensorInfo& t);

}  // namespace dsinfer
