// The ModelRunner over the DeepSeek-V4 model (src/model): every cache of a sequence lives in its
// SequenceState; a step is one batched Dsv4Model::forward.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "dsinfer/engine.h"
#include "model/dsv4_model.h"
#include "runtime/dsv4_runner.h"

namespace dsinfer::runtime {
namespace {

struct Dsv4State : RunnerState {
    std::unique_ptr<SequenceState> s;
    explicit Dsv4State(std::unique_ptr<SequenceState> st) : s(std::move(st)) {}
    int64_t position() const override { return s->position(); }
    int64_t memory_bytes() const override { return (int64_t)s->memory_bytes(); }
    int64_t blocks_needed(int64_t n) const override { return s->blocks_needed(n); }
    void reserve(int64_t n) override { s->reserve(n); }
    int64_t clone_blocks() const override { return s->clone_blocks(); }
    void blocks_held(std::vector<int32_t>& out) const override { s->blocks_held(out); }
};

class Dsv4Runner : public ModelRunner {
public:
    explicit Dsv4Runner(std::unique_ptr<Dsv4Model> m) : m_(std::move(m)) {}
    int vocab_size() const override { return (int)m_->config().vocab_size; }
    std::vector<int32_t> eos_ids() const override { return {m_->config().eos_token_id}; }
    int64_t max_context() const override { return m_->config().max_position_embeddings; }
    KvGeometry kv_geometry() const override {
        const ModelConfig& c = m_->config();
        KvGeometry g;
        g.compress_ratios = c.compress_ratios;
        g.n_mtp = c.n_mtp_layers > 0 ? 1 : 0;  // the model keeps one MTP cache
        g.compress_ratios.resize(std::min<size_t>(g.compress_ratios.size(), (size_t)c.n_layers + g.n_mtp));
        g.window = c.window_size;
        g.head_dim = c.head_dim;
        g.index_head_dim = c.index_head_dim;
        g.kv_value_bytes = 4;  // the CPU model caches float32
        g.block_tokens = m_->kv_layout().block_tokens;  // the largest compress ratio (at least 16)
        return g;
    }
    // The host forward keeps every cache in blocks of the model's store: the scheduler sizes it once.
    // (A device forward keeps its own caches: no store, the scheduler then only accounts blocks.)
    std::shared_ptr<KvStore> make_kv_store(int64_t budget_bytes) override {
        return m_->on_device() ? nullptr : m_->make_kv_store(budget_bytes);
    }
    int64_t state_blocks() const override { return m_->kv_layout().fixed_blocks; }
    // A clone is exact at any position (fixed part copied, growth blocks shared and copied on write);
    // snapshots are kept at multiples of the growth block, where every shared block is complete.
    int64_t prefix_granularity() const override { return kv_geometry().block_tokens; }
    std::unique_ptr<RunnerState> new_state() override { return std::make_unique<Dsv4State>(m_->new_sequence()); }
    std::unique_ptr<RunnerState> clone_state(const RunnerState& s) override {
        return std::make_unique<Dsv4State>(dynamic_cast<const Dsv4State&>(s).s->clone());
    }
    void step(std::span<StepItem> items) override {
        std::vector<ForwardItem> fi(items.size());
        std::vector<std::vector<float>> out(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
            fi[i].state = dynamic_cast<Dsv4State&>(*items[i].state).s.get();
            fi[i].tokens = items[i].tokens;
            fi[i].logits_out = items[i].logits ? &out[i] : nullptr;
        }
        m_->forward(fi);
        const size_t v = (size_t)vocab_size();
        for (size_t i = 0; i < items.size(); ++i) {
            if (!items[i].logits) continue;
            if (out[i].size() < v) throw std::runtime_error("model returned no logits for a batch row");
            std::memcpy(items[i].logits, out[i].data() + out[i].size() - v, v * sizeof(float));
        }
    }

private:
    std::unique_ptr<Dsv4Model> m_;
};

}  // namespace

std::unique_ptr<ModelRunner> make_dsv4_runner(const std::string& model_dir) {
    if (!std::filesystem::exists(std::filesystem::path(model_dir) / "config.json"))
        throw std::runtime_error("model directory '" + model_dir + "' has no config.json (give --model DIR)");
    return std::make_unique<Dsv4Runner>(Dsv4Model::load(model_dir, ModelOptions{}));
}

}  // namespace dsinfer::runtime

namespace dsinfer {

std::unique_ptr<Engine> Engine::load(const std::string& model_dir, const EngineOptions& opts) {
    return create(runtime::make_dsv4_runner(model_dir), opts);
}

}  // namespace dsinfer
