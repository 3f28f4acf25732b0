// DeepSeek-V4 weights bound by their reference names (dsv4-model.md §2), as views of the mmapped
// checkpoint in their stored formats. Binding checks every shape and dtype against config.json and
// throws an Error naming the tensor, what was expected and what the file holds.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace dsinfer {

// A small float vector/matrix (norm weights, hc_*, ape, biases): a view of the checkpoint when it
// is stored as F32, else a float32 copy (these are at most a few MB per layer).
struct FloatTensor {
    const float* data = nullptr;
    std::vector<float> owned;
    int64_t numel = 0;
    const float* get() const { return data; }
};

struct CompressorWeights {
    int ratio = 0;
    int64_t d = 0;          // head dim of the entries (head_dim, or index_head_dim for the indexer)
    bool overlap = false;   // ratio 4: two halves of channels, previous block + current block
    ops::Weight wkv, wgate;  // [coff·d, dim]
    FloatTensor ape;         // [ratio, coff·d]
    FloatTensor norm;        // [d]
};

struct IndexerWeights {
    ops::Weight wq_b;          // [n_ih·ihd, q_lora]
    ops::Weight weights_proj;  // [n_ih, dim]
    CompressorWeights compressor;
};

struct ExpertWeights {
    ops::Weight w1, w2, w3;  // w1 gate [inter, dim], w3 up [inter, dim], w2 down [dim, inter]
};

struct BlockWeights {
    int layer = 0;   // layer index (n_layers + i for the MTP block i)
    int ratio = 0;   // compress ratio
    bool hash = false;
    // attention
    ops::Weight wq_a, wq_b, wkv, wo_a, wo_b;
    FloatTensor q_norm, kv_norm, attn_sink;
    std::unique_ptr<CompressorWeights> compressor;  // ratio != 0
    std::unique_ptr<IndexerWeights> indexer;        // ratio == 4
    // mHC and norms
    FloatTensor attn_norm, ffn_norm;
    FloatTensor hc_attn_fn, hc_attn_base, hc_attn_scale, hc_ffn_fn, hc_ffn_base, hc_ffn_scale;
    // MoE
    ops::Weight gate;       // [n_routed, dim]
    FloatTensor gate_bias;  // [n_routed] (non-hash layers)
    const TensorInfo* tid2eid = nullptr;  // [vocab, top_k] I64 or I32 (hash layers)
    std::vector<ExpertWeights> experts;
    ExpertWeights shared;
};

struct MtpWeights {
    BlockWeights block;
    ops::Weight e_proj, h_proj;  // [dim, dim]
    FloatTensor enorm, hnorm, norm;
    FloatTensor hc_head_fn, hc_head_base, hc_head_scale;
};

struct Dsv4Weights {
    ops::Weight embed, head;  // [vocab, dim]
    FloatTensor norm;
    FloatTensor hc_head_fn, hc_head_base, hc_head_scale;
    std::vector<BlockWeights> layers;
    std::vector<MtpWeights> mtp;
    bool experts_fp4 = true;  // detected from the tensors
};

// Binds every tensor of the model; throws Error on anything missing or mis-shaped.
Dsv4Weights bind_dsv4_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

}  // namespace dsinfer
