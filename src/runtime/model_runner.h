// The runtime's view of a model: a batched step over sequences whose per-sequence state (every cache
// the model keeps) the runner owns. The scheduler never sees tensors; it sees token ids, logits of
// last rows, and how many bytes of cache a sequence needs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/kv_geometry.h"

namespace dsinfer {
class KvStore;
}

namespace dsinfer::runtime {

// Everything the model caches for one sequence (window rings, compressed KV, indexer keys,
// compressor partial blocks, MTP cache). Opaque to the scheduler.
class RunnerState {
public:
    virtual ~RunnerState() = default;
    virtual int64_t position() const = 0;      // tokens consumed so far
    virtual int64_t memory_bytes() const = 0;  // what the state holds now
    // States of a runner with a block store (ModelRunner::make_kv_store): blocks the store must still
    // hand out so that n_tokens tokens fit, attaching them (the store has them: checked before),
    // blocks a clone takes, and the ids of the blocks referenced.
    virtual int64_t blocks_needed(int64_t /*n_tokens*/) const { return 0; }
    virtual void reserve(int64_t /*n_tokens*/) {}
    virtual int64_t clone_blocks() const { return 0; }
    virtual void blocks_held(std::vector<int32_t>& /*out*/) const {}
};

// One sequence's share of a step: append `tokens` (a prefill chunk or one decode token) to `state`.
// When `logits` is not null the runner writes the logits of the last appended token there
// ([vocab] f32).
struct StepItem {
    RunnerState* state = nullptr;
    std::span<const int32_t> tokens;
    float* logits = nullptr;
};

class ModelRunner {
public:
    virtual ~ModelRunner() = default;
    virtual int vocab_size() const = 0;
    virtual std::vector<int32_t> eos_ids() const = 0;
    virtual int64_t max_context() const = 0;
    // Cache sizes per sequence, for the KV pool.
    virtual KvGeometry kv_geometry() const = 0;
    // Positions at which a copy of the state equals the state computed from scratch and can be
    // continued from (prefix reuse). A multiple of the largest compress ratio for DeepSeek-V4.
    virtual int64_t prefix_granularity() const = 0;
    // Runners that keep every cache in a store of fixed-size blocks: creates it once, sized from the
    // budget, before any state exists (new states then take their blocks from it). Null (default):
    // the runner keeps its caches itself and the scheduler only accounts blocks from kv_geometry().
    virtual std::shared_ptr<KvStore> make_kv_store(int64_t /*budget_bytes*/) { return nullptr; }
    // With a store: blocks a new state takes when created (its fixed part).
    virtual int64_t state_blocks() const { return 0; }
    virtual std::unique_ptr<RunnerState> new_state() = 0;
    virtual std::unique_ptr<RunnerState> clone_state(const RunnerState& s) = 0;
    // Runs all items as one batch. A sequence's result must not depend on what else is in the batch.
    virtual void step(std::span<StepItem> items) = 0;
};

}  // namespace dsinfer::runtime
