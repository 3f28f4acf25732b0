// A model runner for tests: the next token is a chosen function of the whole sequence so far, so
// any state lost, duplicated or restored wrongly (preemption, prefix reuse, batching) changes the
// output. Logits put a clear maximum on that token over a deterministic spread of the others, so
// the sampling paths have a real distribution to work on.
#pragma once

#include <functional>

#include "runtime/model_runner.h"

namespace dsinfer::runtime {

struct ScriptedOptions {
    int vocab = 256;
    std::vector<int32_t> eos = {1};
    int64_t max_context = 4096;
    int64_t granularity = 8;  // prefix-reuse boundary
    KvGeometry geometry;      // defaults to a small model (see scripted_runner.cpp)
    // The next token given every token so far; default: a hash of the sequence (never an eos id).
    std::function<int32_t(std::span<const int32_t>)> next_token;
    float peak = 8.0f;        // logit of the chosen token above the others' spread in [-2, 0]
    int step_delay_us = 0;    // simulated compute time per step
    int summary_cap = 0;      // > 0: answer StepItem summary requests (tokens kept, at most this many) and draws
    // A draft model for speculative decoding (off: the runner has none, like a model without MTP).
    // Its token for a context; default: next_token's, except a deterministic quarter of contexts where
    // it is off by one. Its logits: the same construction with a spread of its own.
    bool drafts = false;
    std::function<int32_t(std::span<const int32_t>)> draft_token;
};

class ScriptedRunner : public ModelRunner {
public:
    explicit ScriptedRunner(ScriptedOptions o);
    int vocab_size() const override { return o_.vocab; }
    std::vector<int32_t> eos_ids() const override { return o_.eos; }
    int64_t max_context() const override { return o_.max_context; }
    KvGeometry kv_geometry() const override { return o_.geometry; }
    int64_t prefix_granularity() const override { return o_.granularity; }
    std::unique_ptr<RunnerState> new_state() override;
    std::unique_ptr<RunnerState> clone_state(const RunnerState& s) override;
    void step(std::span<StepItem> items) override;
    std::string draft_unavailable() const override {
        return o_.drafts ? std::string() : "the scripted model has no draft block";
    }
    void enable_drafts() override;
    void draft(std::span<DraftItem> items, const DraftPicker& pick) override;
    std::unique_ptr<RunnerMark> mark(RunnerState& s, int64_t n_future) override;
    void rollback(RunnerState& s, const RunnerMark& m) override;
    int64_t draft_rounds() const { return draft_rounds_; }

    // Batches run so far and the largest batch (tokens), for tests.
    int64_t steps() const { return steps_; }
    int64_t states_alive() const;

    static uint64_t hash(std::span<const int32_t> t);

private:
    ScriptedOptions o_;
    int64_t steps_ = 0, draft_rounds_ = 0;
    void fill_logits(std::span<const int32_t> seq, int32_t chosen, uint64_t salt, float* out) const;
    std::shared_ptr<std::atomic<int64_t>> alive_;
};

}  // namespace dsinfer::runtime
