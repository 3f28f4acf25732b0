// The DeepSeek-V4 model on the op table: weights bound from a checkpoint folder, per-sequence state
// (window ring, compressed KV, indexer keys, compressor streaming state) in blocks of a KvStore
// addressed through the sequence's block tables, and a batched forward
// (prefill chunks of any length and single decode tokens of several sequences in one call).
// The math is dsv4-model.md §4-§11 in float32 with the model's quantization steps (docs/model.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/config.h"
#include "io/safetensors.h"
#include "model/dsv4_weights.h"
#include "model/kv_store.h"
#include "model/row_summary.h"
#include "ops/ops.h"

namespace dsinfer {

struct ModelOptions {
    bool quant_sim = true;  // false: no activation/KV/indexer quantization (weights still dequantized exactly)
    int threads = 0;        // 0: OpenMP default; otherwise sets the process's OpenMP thread count
};

// Compressed entries a query attends (§6.4) when n_entries are complete: a ratio-4 layer the indexer's
// top index_topk of them (all of them while there are no more, in index order, which is what top-k
// returns then: take_all, no scoring needed), a ratio-128 layer every one, a window-only layer none.
struct CompressedPick {
    int64_t count = 0;
    bool take_all = false;
};
inline CompressedPick compressed_pick(int ratio, int64_t index_topk, int64_t n_entries) {
    if (ratio == 4) return {std::min<int64_t>(index_topk, n_entries), n_entries <= index_topk};
    return {ratio ? n_entries : 0, false};
}

// Streaming state of one compressor (§7.3), reference layout: [coff·ratio, coff·d] values and
// scores (g + ape); slots [0, ratio) the previous block (overlap) or the current one.
struct CompressorState {
    std::vector<float> kv, score;
};

// A copy of the caches of one attention block for one sequence, contiguous (tests, debugging; the
// sequence itself keeps them in blocks of a KvStore).
struct LayerCache {
    int64_t window_size = 0, head_dim = 0;
    std::vector<float> window;  // [window_size, head_dim] ring: slot p % window_size holds position p
    std::vector<float> ckv;     // [n_entries, head_dim] compressed entries (ratio != 0)
    std::vector<float> ikeys;   // [n_entries, index_head_dim] indexer keys (ratio 4)
    CompressorState comp, icomp;
};

// Where a sequence's caches live in its blocks (one layout per model). Every block of a store has
// block_floats floats. The fixed part (window rings, compressor partial-block states) is a list of
// regions of rows; a row never straddles a block, and a region that fits in one block lies in one,
// so the fixed part can occupy any `fixed_blocks` blocks. The growing part: growth block k holds,
// for every compressed cache, the entries of positions [k·block_tokens, (k+1)·block_tokens) at a
// fixed offset (ratio r: block_tokens / r entries).
struct KvLayout {
    struct Region {
        int64_t width = 0, rows = 0;      // floats per row, rows
        int64_t block = 0, offset = 0;    // where row 0 lies (fixed block index, float offset)
        int64_t rows_first = 0;           // rows in that first block
        int64_t rows_per_block = 0;       // rows in each further block (from offset 0)
        float init = 0.f;                 // value of a new sequence's region
        bool contiguous() const { return rows_first >= rows; }
    };
    struct Cache {  // one attention block: main layer l, or the MTP block (last)
        int ratio = 0;
        int64_t head_dim = 0, index_head_dim = 0, window = 0;
        int window_region = -1;
        int comp_kv = -1, comp_score = -1, icomp_kv = -1, icomp_score = -1;  // regions (-1: none)
        int64_t ckv_offset = -1, ikeys_offset = -1;                          // growth block offsets
    };
    int64_t block_floats = 0, block_tokens = 128, fixed_blocks = 0, growth_floats = 0;
    size_t n_main = 0;          // main layers (caches[n_main], when present, is the MTP block's)
    std::vector<Region> regions;
    std::vector<Cache> caches;  // n_layers main layers, then the MTP block when there is one

    int64_t block_bytes() const { return block_floats * int64_t(sizeof(float)); }
    bool grows() const { return growth_floats > 0; }
};

// Per-sequence state of a device forward (see DeviceForward): its caches live in device memory.
class DeviceState {
public:
    virtual ~DeviceState() = default;
    virtual std::unique_ptr<DeviceState> clone() const = 0;
    virtual size_t bytes() const = 0;
    // What appending up to n_future tokens at main position pos (MTP position mtp_pos) overwrites,
    // saved on the device, and its restoration (SequenceState::mark/rollback). Null: not supported.
    virtual std::shared_ptr<void> mark(int64_t pos, int64_t mtp_pos, int64_t n_future) const { return nullptr; }
    virtual void rollback(const void* saved, int64_t pos, int64_t mtp_pos) {}
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
// slots those tokens will use and the compressor streaming states (entry counts follow from the
// positions: compressed entries are only ever appended).
struct SequenceMark {
    struct Layer {
        std::vector<float> ring;  // [min(n_future, window), head_dim], slots of positions pos, pos+1, ...
        CompressorState comp, icomp;
    };
    int64_t pos = 0, mtp_pos = 0, n_future = 0;
    std::vector<Layer> layers;
    Layer mtp;
    std::shared_ptr<void> device;  // a device forward's saved state (DeviceState::mark)
};

// Every cache of one sequence: for the host forward, blocks of a KvStore addressed through two block
// tables (the fixed part and the growth blocks); for a device forward, `device`.
class SequenceState {
public:
    SequenceState() = default;
    // A copy: complete growth blocks are shared by reference (copy on write), the fixed part copied.
    SequenceState(const SequenceState& o);
    SequenceState& operator=(const SequenceState&) = delete;
    ~SequenceState();

    int64_t position() const { return pos_; }           // tokens consumed by the main model
    int64_t mtp_position() const { return mtp_pos_; }   // tokens consumed by the MTP block
    std::unique_ptr<SequenceState> clone() const { return std::make_unique<SequenceState>(*this); }
    size_t memory_bytes() const;  // blocks referenced (shared ones included) plus the device's caches

    // Saves what the next n_future tokens (main model and MTP block each) would overwrite.
    SequenceMark mark(int64_t n_future) const;
    // Back to the marked positions: exactly the state mark() saw. Throws Error if more than
    // n_future tokens were appended since (their effects could not be undone).
    void rollback(const SequenceMark& m);

    // Blocks the store must still hand out so that positions < n_tokens (main model and MTP block)
    // can be written: missing growth blocks, and shared ones that will be copied on write.
    int64_t blocks_needed(int64_t n_tokens) const;
    // Attaches them (throws Error when a bounded store runs out; the state stays valid).
    void reserve(int64_t n_tokens);
    // The same for MTP positions < n_tokens (only an MTP block with a compressor has growth blocks).
    void reserve_mtp(int64_t n_tokens);
    // Blocks clone() takes from the store (the fixed part).
    int64_t clone_blocks() const { return layout ? layout->fixed_blocks : 0; }
    // Appends the ids of every block referenced.
    void blocks_held(std::vector<int32_t>& out) const;
    // A contiguous copy of cache i (main layer i, or i = n_layers: the MTP block).
    LayerCache cache_copy(size_t i) const;
    size_t n_caches() const { return layout ? layout->caches.size() : 0; }

    // Internal (used by the model).
    int64_t pos_ = 0;
    int64_t mtp_pos_ = 0;
    DeviceStatePtr device;  // the caches of a device forward (no blocks then)
    std::shared_ptr<KvStore> store;
    std::shared_ptr<const KvLayout> layout;
    std::vector<int32_t> fixed, growth;  // block tables

    float* row(int region, int64_t i) const {
        const KvLayout::Region& r = layout->regions[size_t(region)];
        if (i < r.rows_first) return store->data(fixed[size_t(r.block)]) + r.offset + i * r.width;
        const int64_t j = i - r.rows_first;
        return store->data(fixed[size_t(r.block + 1 + j / r.rows_per_block)]) + (j % r.rows_per_block) * r.width;
    }
    // Entry e of a compressed cache (offset in the growth block, entries per block, entry width).
    float* entry(int64_t offset, int64_t per_block, int64_t width, int64_t e) const {
        return store->data(growth[size_t(e / per_block)]) + offset + (e % per_block) * width;
    }
};

struct ForwardItem {
    SequenceState* state = nullptr;
    std::span<const int32_t> tokens;     // appended at state->position()
    bool all_logits = false;             // logits of every row, else only the last
    std::vector<float>* logits_out = nullptr;  // [rows, vocab] (resized); may be null
    // Instead of logits_out: the caller's buffer of [rows, vocab] floats (the rows logits_out would
    // hold), written in place; saves the vector and a copy (a Flash row is 0.5 MB).
    float* logits_into = nullptr;
    // Optional: the index of the largest logit (lowest on ties; what greedy sampling without penalties
    // picks) of the rows logits_out would hold (every row with all_logits, else the last), one entry
    // per row, computed where the logits are (on the device for a device forward, so that only the
    // ids come back). Independent of logits_out.
    int32_t* argmax_out = nullptr;
    // Optional, with one logits row (logits_into or logits_out, not all_logits): its summary instead of
    // the row where the forward can make one (SummaryRequest; the GPU forward), else the row.
    SummaryRequest* summary = nullptr;
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
    int32_t* argmax_out = nullptr;  // as ForwardItem's
    // Optional capture: the block's output residual [T, hc, dim] (before its head), the stand-in for
    // the main model's residual when drafting several tokens with the one block (host forward only).
    std::vector<float>* final_hidden = nullptr;
};

// The rows of one item that a forward call turns into logits or greedy picks (both forwards' emit_logits).
struct LogitsRequest {
    int64_t first = 0, count = 0;       // rows of the call's residual
    std::vector<float>* out = nullptr;  // may be null
    int32_t* argmax = nullptr;          // each row's argmax ([count]); may be null
    float* into = nullptr;              // instead of out: [count, vocab] in place
    SummaryRequest* summary = nullptr;  // one row: its summary instead, where the forward makes one
    bool wants_logits() const { return out || into; }
    // Where the logits go (out resized to count rows).
    float* dest(int64_t vocab) const {
        if (into) return into;
        out->resize(static_cast<size_t>(count * vocab));
        return out->data();
    }
    // The request of an item whose rows are [begin, begin + n) of the call: every row with
    // all_logits, else the last; false when the item asks for nothing.
    template <class Item>
    static bool of(const Item& it, int64_t begin, int64_t n, LogitsRequest& r) {
        float* into = nullptr;
        if constexpr (requires { it.logits_into; }) into = it.logits_into;
        if (!it.logits_out && !into && !it.argmax_out) return false;
        r.first = it.all_logits ? begin : begin + n - 1;
        r.count = begin + n - r.first;
        r.out = it.logits_out;
        r.argmax = it.argmax_out;
        r.into = into;
        if constexpr (requires { it.summary; })
            if (r.count == 1 && r.wants_logits()) r.summary = it.summary;
        return true;
    }
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
    // A new sequence: its fixed blocks come from the model's store (host forward).
    std::unique_ptr<SequenceState> new_sequence() const;

    // The block store of sequences created from now on. By default a growable one; serving replaces
    // it by a bounded one sized from its budget (make_kv_store). Existing sequences keep theirs.
    const std::shared_ptr<KvStore>& kv_store() const { return store_; }
    const KvLayout& kv_layout() const { return *layout_; }
    // A bounded store of budget_bytes / block bytes blocks, installed as the model's store. Throws
    // Error if it cannot hold one sequence of one growth block.
    std::shared_ptr<KvStore> make_kv_store(int64_t budget_bytes);

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
    bool on_device() const { return dev_ != nullptr; }
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
    // All requested rows of every item through one head GEMM (the head is read once per call).
    void emit_logits(const std::vector<float>& x, const std::vector<LogitsRequest>& reqs, const float* fn,
                     const float* scale, const float* base, const float* norm);

    ModelConfig cfg_;
    ModelOptions opts_;
    std::unique_ptr<Checkpoint> ckpt_;
    Dsv4Weights w_;
    const ops::Backend* be_ = nullptr;
    std::vector<float> freqs_plain_, freqs_compressed_;  // RoPE θ' tables (§6.1)
    std::shared_ptr<const KvLayout> layout_;
    std::shared_ptr<KvStore> store_;
    std::unique_ptr<DeviceForward> dev_;  // last: destroyed before the weights it copied
};

}  // namespace dsinfer
