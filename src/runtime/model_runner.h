// The runtime's view of a model: a batched step over sequences whose per-sequence state (every cache
// the model keeps) the runner owns. The scheduler never sees tensors; it sees token ids, logits of
// last rows, and how many bytes of cache a sequence needs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/row_summary.h"
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

// What appending tokens to a state overwrites, saved so they can be taken back (speculative decoding).
class RunnerMark {
public:
    virtual ~RunnerMark() = default;
};

// One sequence's share of a step: append `tokens` (a prefill chunk, one decode token, or a token and
// the drafts to verify) to `state`. When `logits` is not null the runner writes there the logits of
// the last n_logits appended tokens ([n_logits, vocab] f32, in order). When `argmax` is not null it
// writes there, for the same rows, the index of each one's largest logit ([n_logits]; lowest on ties:
// greedy sampling without penalties), found where the logits are (a device forward sends back only
// the ids). Either or both may be asked for.
struct StepItem {
    RunnerState* state = nullptr;
    std::span<const int32_t> tokens;
    float* logits = nullptr;
    int64_t n_logits = 1;
    int32_t* argmax = nullptr;
    // Optional, with logits and one row (n_logits 1): that row's summary instead of the row, where the
    // runner's forward makes one (model/row_summary.h); the row is written only when it does not.
    SummaryRequest* summary = nullptr;
};

// One sequence's share of a draft: `context` is every token of the sequence, i.e. the tokens its state
// has consumed followed by exactly one more (the latest sampled); propose k tokens after it.
// With argmax_only the picker needs only the largest logit's index (greedy without penalties): the
// runner may then find it where the logits are and pass no logits.
struct DraftItem {
    RunnerState* state = nullptr;
    std::span<const int32_t> context;
    int k = 0;
    bool argmax_only = false;
};

// Chooses draft token number `round` of item `item` from the draft model's logits ([vocab] f32), or,
// for an argmax_only item, possibly from `argmax` alone (then logits is null; argmax is the index of
// the largest logit, lowest on ties, whenever the item is argmax_only).
using DraftPicker = std::function<int32_t(size_t item, int round, const float* logits, int32_t argmax)>;

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

    // Speculative decoding. Empty when the runner has a draft model, else why it cannot draft.
    virtual std::string draft_unavailable() const { return "the model has no draft (MTP) block"; }
    // From now on states keep what draft() needs; call before any state is created.
    virtual void enable_drafts() { throw std::logic_error(draft_unavailable()); }
    // Proposes item.k tokens after each item's context, one batched round at a time: round r hands
    // pick the draft logits of every item with k > r; the token it returns is the next round's input.
    // The states' positions (what mark/rollback and step see) are the same afterwards.
    virtual void draft(std::span<DraftItem>, const DraftPicker&) { throw std::logic_error(draft_unavailable()); }
    // Saves what appending up to n_future tokens to `s` overwrites; rollback(s, m) puts `s` back
    // exactly as it was at mark time (as if the tokens had never been appended).
    virtual std::unique_ptr<RunnerMark> mark(RunnerState&, int64_t) { throw std::logic_error(draft_unavailable()); }
    virtual void rollback(RunnerState&, const RunnerMark&) { throw std::logic_error(draft_unavailable()); }
};

}  // namespace dsinfer::runtime
