// The DeepSeek-V4 model on the op table: weights bound from a checkpoint folder, per-sequence state
// (window ring, compressed KV, indexer keys, compressor streaming state), and a batched forward
// (prefill chunks of any length and single decode tokens of several sequences in one call).
// The math is dsv4-model.md §4-§11 in float32 with the model's quantization steps (docs/model.md).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "model/dsv4_weights.h"
#include "ops/ops.h"

namespace dsinfer {

struct ModelOptions {
    bool quant_sim = true;  // false: no activation/KV/indexer quantization (weights still dequantized exactly)
    int threads = 0;        // 0: OpenMP default; otherwise sets the process's OpenMP thread count
};

// Streaming state of one compressor (§7.3), reference layout: [coff·ratio, coff·d] values and
// scores (g + ape); slots [0, ratio) the previous block (overlap) or the current one.
struct CompressorState {
    std::vector<float> kv, score;
};

// Cache of one attention block for one sequence.
struct LayerCache {
    int64_t window_size = 0, head_dim = 0;
    std::vector<float> window;  // [window_size, head_dim] ring: slot p % window_size holds position p
    std::vector<float> ckv;     // [n_entries, head_dim] compressed entries (ratio != 0)
    std::vector<float> ikeys;   // [n_entries, index_head_dim] indexer keys (ratio 4)
    CompressorState comp, icomp;
    size_t bytes() const;
};

// Per-sequence state of a device forward (see DeviceForward): its caches live in device memory.
class DeviceState {
public:
    virtual ~DeviceState() = default;
    virtual std::unique_ptr<DeviceState> clone() const = 0;
    virtual size_t bytes() const = 0;
};

// Owns a DeviceState; copying deep-copies it (SequenceState::clone copies the whole state).
struct DeviceStatePtr {
    std::unique_ptr<DeviceState> p;
    DeviceStatePtr() = default;
    DeviceStatePtr(const DeviceStatePtr& o) : p(o.p ? o.p->clone() : nullptr) {}
    DeviceStatePtr& operator=(const DeviceStatePtr& o) {
        p = o.p ? o.p->clone() : nullptr;
        return *this;
    }
    DeviceStatePtr(DeviceStatePtr&&) = default;
    DeviceStatePtr& operator=(DeviceStatePtr&&) = default;
};

// What appending up to `n_future` tokens to a sequence overwrites, saved so the tokens can be taken
// back (speculative decoding: drafts the main model rejects). Much smaller than a clone: the ring
// slots those tokens will use, the compressor streaming states and the entry counts.
struct SequenceMark {
    struct Layer {
        std::vector<float> ring;  // [min(n_future, window), head_dim], slots of positions pos, pos+1, ...
        size_t ckv = 0, ikeys = 0;
        CompressorState comp, icomp;
    };
    int64_t pos = 0, mtp_pos = 0, n_future = 0;
    std::vector<Layer> layers;
    Layer mtp;
};

class SequenceState {
public:
    int64_t position() const { return pos_; }           // tokens consumed by the main model
    int64_t mtp_position() const { return mtp_pos_; }   // tokens consumed by the MTP block
    std::unique_ptr<SequenceState> clone() const { return std::make_unique<SequenceState>(*this); }
    size_t memory_bytes() const;

    // Saves what the next n_future tokens (main model and MTP block each) would overwrite.
    SequenceMark mark(int64_t n_future) const;
    // Back to the marked positions: exactly the state mark() saw. Throws Error if more than
    // n_future tokens were appended since (their effects could not be undone).
    void rollback(const SequenceMark& m);

    // Internal (used by the model).
    int64_t pos_ = 0;
    int64_t mtp_pos_ = 0;
    std::vector<LayerCache> layers;
    LayerCache mtp;  // the first MTP block's own cache
    DeviceStatePtr device;  // the caches of a device forward (layers/mtp then stay empty)
};

struct ForwardItem {
    SequenceState* state = nullptr;
    std::span<const int32_t> tokens;     // appended at state->position()
    bool all_logits = false;             // logits of every row, else only the last
    std::vector<float>* logits_out = nullptr;  // [rows, vocab] (resized); may be null
    // Optional captures: the pre-hc_head residual [T, hc, dim] (the MTP block's input), and each main
    // layer's output [T, hc, dim].
    std::vector<float>* final_hidden = nullptr;
    std::vector<std::vector<float>>* layer_hidden = nullptr;
    // Optional layer inputs (debugging, layerwise replay): entry i, when non-null, replaces the input
    // of main layer i ([T, hc, dim]); layer 0's default input is the embedding expansion.
    const std::vector<const float*>* layer_inputs = nullptr;
};

// One MTP step over positions [state->mtp_position(), +T): hidden = the main model's pre-hc_head
// residual at those positions [T, hc, dim], tokens = the tokens that follow them.
struct MtpItem {
    SequenceState* state = nullptr;
    const float* hidden = nullptr;
    std::span<const int32_t> tokens;
    bool all_logits = false;
    std::vector<float>* logits_out = nullptr;
    // Optional capture: the block's output residual [T, hc, dim] (before its head), the stand-in for
    // the main model's residual when drafting several tokens with the one block (host forward only).
    std::vector<float>* final_hidden = nullptr;
};

// The same forward on another device (the CUDA backend provides one, src/cuda/cuda_model.h): it
// keeps its own copies of the weights and the sequences' caches in device memory, reads the
// model's config, weights, options and RoPE tables, and advances the states' positions.
class DeviceForward {
public:
    virtual ~DeviceForward() = default;
    virtual const char* name() const = 0;
    virtual std::unique_ptr<DeviceState> new_state() = 0;
    virtual void forward(std::span<ForwardItem> items) = 0;
    virtual void forward_mtp(std::span<MtpItem> items) = 0;
};

class Dsv4Model {
public:
    static std::unique_ptr<Dsv4Model> load(const std::string& dir, const ModelOptions& opts);
    ~Dsv4Model();

    const ModelConfig& config() const { return cfg_; }
    const ModelOptions& options() const { return opts_; }
    void set_quant_sim(bool on) { opts_.quant_sim = on; }
    std::unique_ptr<SequenceState> new_sequence() const;

    // Items must name distinct sequence states. Rows are computed independently of the other items
    // (same results as running each alone). Throws Error on bad token ids or shared states.
    void forward(std::span<ForwardItem> items);
    void forward_mtp(std::span<MtpItem> items);

    // Bytes of weights the checkpoint holds.
    uint64_t weight_bytes() const { return ckpt_->total_bytes(); }

    // Runs every later forward on `dev` (null: back to the op table on host buffers). Sequences
    // must be created after the switch (they hold the device's caches).
    void set_device(std::unique_ptr<DeviceForward> dev) { dev_ = std::move(dev); }
    const char* device_name() const { return dev_ ? dev_->name() : be_->name; }
    const Dsv4Weights& weights() const { return w_; }
    // RoPE θ' tables (§6.1): compressed layers (YaRN) or plain (window-only layers, MTP).
    const std::vector<float>& rope_freqs(bool compressed) const { return compressed ? freqs_compressed_ : freqs_plain_; }

private:
    Dsv4Model() = default;
    struct Rows;
    void block_forward(const BlockWeights& bw, Rows& rows, std::vector<float>& x);
    void attention(const BlockWeights& bw, Rows& rows, const float* y, float* out);
    void moe(const BlockWeights& bw, Rows& rows, const float* y, float* out);
    void linear(const float* x, int64_t m, const ops::Weight& w, float* y, bool quant_input);
    void head_logits(const float* x, int64_t m, const float* fn, const float* scale, const float* base,
                     const float* norm, float* logits);
    struct LogitsRequest {
        int64_t first, count;  // rows of the residual
        std::vector<float>* out;
    };
    // All requested rows of every item through one head GEMM (the head is read once per call).
    void emit_logits(const std::vector<float>& x, const std::vector<LogitsRequest>& reqs, const float* fn,
                     const float* scale, const float* base, const float* norm);

    ModelConfig cfg_;
    ModelOptions opts_;
    std::unique_ptr<Checkpoint> ckpt_;
    Dsv4Weights w_;
    const ops::Backend* be_ = nullptr;
    std::vector<float> freqs_plain_, freqs_compressed_;  // RoPE θ' tables (§6.1)
    std::unique_ptr<DeviceForward> dev_;  // last: destroyed before the weights it copied
};

}  // namespace dsinfer
