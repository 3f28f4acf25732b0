// The ModelRunner over the DeepSeek-V4 model (src/model): every cache of a sequence lives in its
// SequenceState; a step is one batched Dsv4Model::forward.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "dsinfer/engine.h"
#include "model/dsv4_model.h"
#include "runtime/dsv4_runner.h"
#ifdef DSINFER_CUDA
#include "cuda/cuda_model.h"
#endif

namespace dsinfer::runtime {
namespace {

struct Dsv4State : RunnerState {
    std::unique_ptr<SequenceState> s;
    // With drafts on: the main model's rows the MTP block has not consumed yet, i.e. positions
    // [s->mtp_position(), s->position()): their tokens and pre-head residuals ([n, hc * dim]).
    std::vector<int32_t> ptok;
    std::vector<float> phid;
    explicit Dsv4State(std::unique_ptr<SequenceState> st) : s(std::move(st)) {}
    int64_t position() const override { return s->position(); }
    int64_t memory_bytes() const override {
        return (int64_t)(s->memory_bytes() + ptok.size() * sizeof(int32_t) + phid.size() * sizeof(float));
    }
    int64_t blocks_needed(int64_t n) const override { return s->blocks_needed(n); }
    void reserve(int64_t n) override { s->reserve(n); }
    int64_t clone_blocks() const override { return s->clone_blocks(); }
    void blocks_held(std::vector<int32_t>& out) const override { s->blocks_held(out); }
};

struct Dsv4Mark : RunnerMark {
    SequenceMark m;
    size_t ptok = 0;
};

Dsv4State& as_state(RunnerState& s) { return dynamic_cast<Dsv4State&>(s); }

// An item that wants (logits or greedy picks of) several rows: verifying drafts.
bool several_rows(const StepItem& it) {
    return (it.logits || it.argmax) && it.n_logits > 1;
}

class Dsv4Runner : public ModelRunner {
public:
    Dsv4Runner(std::unique_ptr<Dsv4Model> m, std::string device) : m_(std::move(m)), device_(std::move(device)) {
        const ModelConfig& c = m_->config();
        row_ = (size_t)c.hc_mult * (size_t)c.dim;
    }
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
        const auto& src = dynamic_cast<const Dsv4State&>(s);
        auto c = std::make_unique<Dsv4State>(src.s->clone());
        c->ptok = src.ptok;
        c->phid = src.phid;
        return c;
    }
    void step(std::span<StepItem> items) override {
        std::vector<ForwardItem> fi(items.size());
        std::vector<std::vector<float>> out(items.size()), hid(drafts_ ? items.size() : 0);
        std::vector<std::vector<int32_t>> picks(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
            const bool several = several_rows(items[i]);
            if (several && (size_t)items[i].n_logits > items[i].tokens.size())
                throw std::logic_error("step: more logits rows than tokens");
            fi[i].state = as_state(*items[i].state).s.get();
            fi[i].tokens = items[i].tokens;
            // The rows straight into the scheduler's buffer when they are exactly the ones it asked
            // for (one row, or every row of a verification); otherwise through a vector.
            const bool in_place = items[i].logits && !items[i].tokens.empty() &&
                                  (!several || (size_t)items[i].n_logits == items[i].tokens.size());
            fi[i].logits_into = in_place ? items[i].logits : nullptr;
            fi[i].logits_out = items[i].logits && !in_place ? &out[i] : nullptr;
            fi[i].all_logits = several;
            if (in_place && !several) fi[i].summary = items[i].summary;
            if (items[i].argmax) {
                picks[i].resize(several ? items[i].tokens.size() : 1);
                fi[i].argmax_out = picks[i].data();
            }
            if (drafts_) fi[i].final_hidden = &hid[i];
        }
        m_->forward(fi);
        const size_t v = (size_t)vocab_size();
        for (size_t i = 0; i < items.size(); ++i) {
            const size_t rows = (size_t)std::max<int64_t>(1, items[i].n_logits);
            if (items[i].argmax)  // the last `rows` of the rows the forward picked for
                std::copy(picks[i].end() - (ptrdiff_t)rows, picks[i].end(), items[i].argmax);
            if (!items[i].logits || fi[i].logits_into) continue;
            if (rows > items[i].tokens.size() || out[i].size() < rows * v)
                throw std::runtime_error("model returned fewer logits rows than asked for");
            std::memcpy(items[i].logits, out[i].data() + out[i].size() - rows * v, rows * v * sizeof(float));
        }
        if (!drafts_) return;
        // Keep the new rows for the MTP block. Rows whose next token is known are consumed now
        // (bounded memory during prefill), except for items verifying drafts: those may be rolled back.
        std::vector<MtpItem> mi;
        for (size_t i = 0; i < items.size(); ++i) {
            Dsv4State& st = as_state(*items[i].state);
            if (hid[i].size() != items[i].tokens.size() * row_) throw std::runtime_error("model returned no residual rows");
            st.ptok.insert(st.ptok.end(), items[i].tokens.begin(), items[i].tokens.end());
            st.phid.insert(st.phid.end(), hid[i].begin(), hid[i].end());
            if (several_rows(items[i])) continue;
            if (st.ptok.size() < 2) continue;
            MtpItem m;
            m.state = st.s.get();
            m.hidden = st.phid.data();
            m.tokens = std::span<const int32_t>(st.ptok.data() + 1, st.ptok.size() - 1);
            mi.push_back(m);
        }
        if (mi.empty()) return;
        m_->forward_mtp(mi);
        for (size_t i = 0; i < items.size(); ++i) {
            Dsv4State& st = as_state(*items[i].state);
            if (several_rows(items[i]) || st.ptok.size() < 2) continue;
            drop_front(st, st.ptok.size() - 1);
        }
    }

    std::string draft_unavailable() const override {
        if (m_->config().n_mtp_layers < 1) return "the model has no MTP block (num_nextn_predict_layers is 0)";
        return {};
    }
    void enable_drafts() override {
        std::string why = draft_unavailable();
        if (!why.empty()) throw std::invalid_argument(why);
        drafts_ = true;
    }

    void draft(std::span<DraftItem> items, const DraftPicker& pick) override {
        if (!drafts_) throw std::logic_error("draft() without enable_drafts()");
        const size_t v = (size_t)vocab_size();
        // Round 0: the MTP block catches up with the main model (its last row takes the latest
        // sampled token) and proposes the first draft.
        std::vector<MtpItem> mi(items.size());
        std::vector<std::vector<int32_t>> toks(items.size());
        std::vector<std::vector<float>> logits(items.size()), hid(items.size());
        std::vector<int32_t> am(items.size(), -1);
        // An argmax_only item gets its pick's id from the forward (on the device for a device forward).
        auto ask = [&](MtpItem& m, size_t i) {
            if (items[i].argmax_only)
                m.argmax_out = &am[i];
            else
                m.logits_out = &logits[i];
        };
        auto picked = [&](size_t i, int round) {
            return items[i].argmax_only ? pick(i, round, nullptr, am[i])
                                        : pick(i, round, logits[i].data() + logits[i].size() - v, -1);
        };
        for (size_t i = 0; i < items.size(); ++i) {
            Dsv4State& st = as_state(*items[i].state);
            if ((int64_t)items[i].context.size() != st.position() + 1)
                throw std::logic_error("draft: the context must be the consumed tokens plus one");
            if (st.ptok.empty() || (int64_t)st.ptok.size() != st.position() - st.s->mtp_position())
                throw std::logic_error("draft: the MTP block is not one row behind the main model");
            toks[i].assign(st.ptok.begin() + 1, st.ptok.end());
            toks[i].push_back(items[i].context.back());
            mi[i].state = st.s.get();
            mi[i].hidden = st.phid.data();
            mi[i].tokens = toks[i];
            ask(mi[i], i);
            mi[i].final_hidden = &hid[i];
        }
        m_->forward_mtp(mi);
        int max_k = 0;
        std::vector<std::unique_ptr<Dsv4Mark>> marks(items.size());
        std::vector<int32_t> last(items.size());
        for (size_t i = 0; i < items.size(); ++i) {
            Dsv4State& st = as_state(*items[i].state);
            st.ptok.clear();
            st.phid.clear();
            max_k = std::max(max_k, items[i].k);
            if (items[i].k < 1) continue;
            // Later rounds feed the block its own output residual in place of the main model's,
            // which the next position does not have yet; those MTP rows are undone below.
            if (items[i].k > 1) marks[i] = mark_state(st, items[i].k - 1);
            last[i] = picked(i, 0);
        }
        for (int r = 1; r < max_k; ++r) {
            std::vector<MtpItem> round;
            std::vector<size_t> which;
            std::vector<std::vector<float>> h(items.size());
            for (size_t i = 0; i < items.size(); ++i) {
                if (items[i].k <= r) continue;
                h[i].assign(hid[i].end() - (ptrdiff_t)row_, hid[i].end());
                MtpItem m;
                m.state = as_state(*items[i].state).s.get();
                m.hidden = h[i].data();
                m.tokens = std::span<const int32_t>(&last[i], 1);
                ask(m, i);
                m.final_hidden = &hid[i];
                round.push_back(m);
                which.push_back(i);
            }
            m_->forward_mtp(round);
            for (size_t i : which) last[i] = picked(i, r);
        }
        for (size_t i = 0; i < items.size(); ++i)
            if (marks[i]) rollback(*items[i].state, *marks[i]);
    }

    std::unique_ptr<RunnerMark> mark(RunnerState& s, int64_t n_future) override {
        return mark_state(as_state(s), n_future);
    }
    void rollback(RunnerState& s, const RunnerMark& m) override {
        Dsv4State& st = as_state(s);
        const auto& dm = dynamic_cast<const Dsv4Mark&>(m);
        st.s->rollback(dm.m);
        if (dm.ptok > st.ptok.size()) throw std::logic_error("rollback: rows consumed since the mark");
        st.ptok.resize(dm.ptok);
        st.phid.resize(dm.ptok * row_);
    }

private:
    std::unique_ptr<Dsv4Mark> mark_state(Dsv4State& st, int64_t n_future) {
        auto m = std::make_unique<Dsv4Mark>();
        m->m = st.s->mark(n_future);
        m->ptok = st.ptok.size();
        return m;
    }
    void drop_front(Dsv4State& st, size_t n) {
        st.ptok.erase(st.ptok.begin(), st.ptok.begin() + (ptrdiff_t)n);
        st.phid.erase(st.phid.begin(), st.phid.begin() + (ptrdiff_t)(n * row_));
    }

    std::unique_ptr<Dsv4Model> m_;
    std::string device_;
    size_t row_ = 0;
    bool drafts_ = false;
};

}  // namespace

std::unique_ptr<ModelRunner> make_dsv4_runner(const std::string& model_dir, const std::string& device) {
    if (device != "cpu" && device != "cuda")
        throw std::invalid_argument("device '" + device + "': expected cpu or cuda");
#ifndef DSINFER_CUDA
    if (device == "cuda")
        throw std::invalid_argument("device cuda: this dsinfer was built without the CUDA backend (cmake -DDSINFER_CUDA=ON)");
#endif
    if (!std::filesystem::exists(std::filesystem::path(model_dir) / "config.json"))
        throw std::runtime_error("model directory '" + model_dir + "' has no config.json (give --model DIR)");
    auto model = Dsv4Model::load(model_dir, ModelOptions{});
#ifdef DSINFER_CUDA
    if (device == "cuda") model->set_device(cuda::make_model_device(*model));
#endif
    return std::make_unique<Dsv4Runner>(std::move(model), device);
}

}  // namespace dsinfer::runtime

namespace dsinfer {

std::unique_ptr<Engine> Engine::load(const std::string& model_dir, const EngineOptions& opts) {
    return create(runtime::make_dsv4_runner(model_dir, opts.device), opts);
}

}  // namespace dsinfer
