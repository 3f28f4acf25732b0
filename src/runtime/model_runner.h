// The runtime's view of a model: a batched step over sequences whose per-sequence state (every cache
// the model keeps) the runner owns. The scheduler never sees tensors; it sees token ids, logits of
// last rows, and how many bytes of cache a sequence needs.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/kv_geometry.h"

namespace dsinfer::runtime {

// Everything the model caches for one sequence (window rings, compressed KV, indexer keys,
// compressor partial blocks, MTP cache). Opaque to the scheduler.
class RunnerState {
public:
    virtual ~RunnerState() = default;
    virtual int64_t position() const = 0;      // tokens consumed so far
    virtual int64_t memory_bytes() const = 0;  // what the state holds now
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
    virtual std::unique_ptr<RunnerState> new_state() = 0;
    virtual std::unique_ptr<RunnerState> clone_state(const RunnerState& s) = 0;
    // Runs all items as one batch. A sequence's result must not depend on what else is in the batch.
    virtual void step(std::span<StepItem> items) = 0;
};

}  // namespace dsinfer::runtime
