// The scheduler and its step, without threads (the engine loop calls step(); tests call it
// directly). Each step: drop cancelled sequences; give every running sequence its tokens in arrival
// order (decodes are one token, prefills a chunk bounded by what is left of the token budget);
// admit waiting requests first come first served while budget, slots and KV blocks allow; run the
// model once over the batch; sample; stream tokens out. When the KV pool runs short, prefix
// snapshots are evicted first, then the latest-arrived running sequence is preempted: its state and
// blocks are freed and it goes back to the queue with every token it has (prompt and output), to be
// recomputed later; its output continues where it stopped.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsinfer/engine.h"
#include "runtime/kv_cache.h"
#include "runtime/model_runner.h"
#include "runtime/output_channel.h"
#include "runtime/sampler.h"

namespace dsinfer::runtime {

struct Sequence {
    uint64_t id = 0;
    uint64_t arrival = 0;
    std::vector<int32_t> tokens;  // prompt, then generated tokens
    int64_t prompt_len = 0;
    int64_t computed = 0;         // tokens the runner state has consumed
    int64_t generated = 0;
    int64_t max_tokens = 0;
    int64_t snapshot_at = 0;      // prefix boundary at which to keep a snapshot (0 = none)
    int64_t blocks = 0;           // KV blocks held
    SamplingParams params;
    Rng rng;
    TokenHistory history;
    std::unique_ptr<RunnerState> state;
    std::shared_ptr<OutputChannel> out;
};

class Scheduler {
public:
    Scheduler(ModelRunner& runner, const EngineOptions& opts);

    // Checks a request against the model and the pool; fills max_tokens.
    Status validate(const GenerationRequest& req) const;
    void add(std::unique_ptr<Sequence> seq);
    bool has_work() const { return !running_.empty() || !waiting_.empty(); }
    void step();
    // Finishes every sequence with reason error.
    void fail_all(const std::string& message);

    const EngineStats& stats() const { return stats_; }
    const ModelInfo& info() const { return info_; }
    const BlockPool& pool() const { return pool_; }
    const KvGeometry& geometry() const { return geometry_; }

    // What the last step ran, for tests: (sequence id, tokens fed).
    struct Planned {
        uint64_t id;
        int64_t n_tokens;
    };
    const std::vector<Planned>& last_plan() const { return last_plan_; }
    // Running sequences that are decoding (one token to feed), for tests.
    std::vector<uint64_t> decoding_ids() const {
        std::vector<uint64_t> ids;
        for (auto& s : running_)
            if ((int64_t)s->tokens.size() - s->computed == 1) ids.push_back(s->id);
        return ids;
    }
    std::vector<uint64_t> running_ids() const {
        std::vector<uint64_t> ids;
        for (auto& s : running_) ids.push_back(s->id);
        return ids;
    }

private:
    bool reserve(Sequence& s, int64_t n_tokens);
    void free_state(Sequence& s);
    void preempt(size_t running_index);
    void finish(Sequence& s, FinishReason r, const std::string& error = {});
    void enqueue_waiting(std::unique_ptr<Sequence> s);
    int64_t chunk_for(const Sequence& s, int64_t budget) const;
    int64_t next_snapshot_point(const Sequence& s) const;
    // Appends a chosen token (or finishes on a stop id / eos); done when the sequence finished.
    void emit(Sequence& s, SampleResult r, bool& done);
    // Draft tokens a decoding sequence proposes this step (0 = a plain decode). Depends on the
    // sequence alone, so seeded sampling does not depend on the batch.
    int drafts_for(const Sequence& s) const;
    void update_gauges();

    ModelRunner& runner_;
    EngineOptions opts_;
    KvGeometry geometry_;
    BlockPool pool_;
    PrefixCache prefix_;
    ModelInfo info_;
    std::vector<int32_t> eos_;
    std::vector<std::unique_ptr<Sequence>> running_;  // sorted by arrival
    std::deque<std::unique_ptr<Sequence>> waiting_;   // sorted by arrival
    std::vector<Planned> last_plan_;
    std::vector<float> logits_;
    std::vector<int32_t> argmax_;  // greedy picks of the last step (the rows of argmax_only items)
    std::vector<SummaryRequest> summaries_;  // per planned item of the last step (sample_summaries)
    std::vector<KeptDistribution> summary_dists_;
    int spec_ = 0;  // EngineOptions::speculative
    EngineStats stats_;
};

}  // namespace dsinfer::runtime
