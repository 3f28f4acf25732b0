// The engine: loads a model, takes requests from any thread, and streams tokens back. A background
// loop batches all running requests into one model step at a time (continuous batching).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsinfer/request.h"
#include "dsinfer/status.h"

namespace dsinfer {

namespace runtime {
class ModelRunner;
}

struct EngineOptions {
    double kv_cache_gb = 4.0;      // memory for every per-sequence cache (KV pools + prefix snapshots)
    int max_batch_tokens = 256;    // token budget of one step (decodes + prefill chunks)
    int max_running = 64;          // sequences in flight at once
    int max_waiting = 1024;        // queued requests beyond which submit() refuses
    int64_t max_model_len = 0;     // 0 = the model's context length, capped by what the KV pool holds
    bool prefix_caching = true;
    // Speculative decoding: draft tokens proposed per decode step by the model's draft (MTP) block
    // and verified by the main model in the same step (0 = off). Output is distributed exactly as
    // without it (greedy: the same tokens).
    int speculative = 0;
    // Sampled requests without penalties or logprobs, with top-k, top-p or min-p: the GPU forward
    // returns a summary of each row (the most likely 1024 tokens and the row's total weight) instead of
    // the 0.5 MB row whenever the kept tokens are among them; the same tokens either way.
    bool sample_summaries = true;
    // Sampled requests that filter nothing (no top-k, top_p 1, min_p 0) and have no penalties or
    // logprobs: the GPU forward draws the token over the row's whole softmax from the request's uniform
    // (drawn from its stream before the step) and returns only the id; the same token as on the host.
    bool device_draws = true;
    std::string device = "cpu";    // Engine::load: cpu, or cuda in a build with the CUDA backend
};

// What the engine knows about its model, for servers (limits, vocabulary).
struct ModelInfo {
    int vocab_size = 0;
    std::vector<int32_t> eos_ids;
    int64_t max_model_len = 0;
    int64_t kv_tokens_capacity = 0;  // tokens of context the KV pool holds in total
};

struct EngineStats {
    int64_t waiting = 0, running = 0;
    int64_t kv_blocks_total = 0, kv_blocks_used = 0;  // blocks used by running sequences and snapshots
    int64_t kv_blocks_snapshots = 0;
    int64_t kv_tokens_capacity = 0;
    int64_t prefix_snapshots = 0;
    int64_t requests_finished = 0, requests_cancelled = 0, requests_failed = 0;
    int64_t prompt_tokens = 0, generated_tokens = 0, prefix_hit_tokens = 0;
    int64_t preemptions = 0, steps = 0;
    int64_t draft_tokens = 0, draft_accepted = 0;  // speculative decoding: proposed, accepted by the model
    int64_t sampled_rows = 0, summary_rows = 0;    // tokens drawn from a row; of those, from its summary
};

// The output side of one submitted request. next() blocks until an event is ready.
class RequestStream {
public:
    virtual ~RequestStream() = default;
    virtual uint64_t id() const = 0;
    // Waits for the next event; false once the final event (finish != none) has been taken.
    virtual bool next(TokenEvent& ev) = 0;
    // Like next(), but gives up after timeout_ms; returns 1 = event, 0 = timeout, -1 = finished.
    virtual int next_for(TokenEvent& ev, int timeout_ms) = 0;
    // Frees the request's slot at the engine's next step; a final event with reason cancelled follows.
    virtual void cancel() = 0;
};

class Engine {
public:
    virtual ~Engine() = default;

    // Loads the model in `model_dir` (config.json + safetensors) with the default backend.
    static std::unique_ptr<Engine> load(const std::string& model_dir, const EngineOptions& opts);
    // An engine over any model runner (tests, scripted models).
    static std::unique_ptr<Engine> create(std::unique_ptr<runtime::ModelRunner> runner, const EngineOptions& opts);

    virtual const ModelInfo& info() const = 0;
    // Queues a request; on refusal returns null and sets *status.
    virtual std::shared_ptr<RequestStream> submit(GenerationRequest req, Status* status) = 0;
    virtual EngineStats stats() const = 0;
    // Fails every queued and running request (finish error) and stops the loop.
    virtual void shutdown() = 0;
    // A one-paragraph description of the KV pool (per-token bytes per cache kind, tokens that fit).
    virtual std::string kv_report() const = 0;
};

}  // namespace dsinfer
