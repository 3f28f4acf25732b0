#include "runtime/scripted_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <thread>

#include "runtime/sampler.h"

namespace dsinfer::runtime {
namespace {

struct ScriptedState : RunnerState {
    std::vector<int32_t> tokens;
    std::shared_ptr<std::atomic<int64_t>> alive;
    explicit ScriptedState(std::shared_ptr<std::atomic<int64_t>> a) : alive(std::move(a)) { ++*alive; }
    ~ScriptedState() override { --*alive; }
    int64_t position() const override { return (int64_t)tokens.size(); }
    int64_t memory_bytes() const override { return (int64_t)tokens.size() * 4; }
};

}  // namespace

uint64_t ScriptedRunner::hash(std::span<const int32_t> t) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int32_t x : t) {
        h ^= (uint32_t)x;
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

ScriptedRunner::ScriptedRunner(ScriptedOptions o) : o_(std::move(o)), alive_(std::make_shared<std::atomic<int64_t>>(0)) {
    if (o_.geometry.compress_ratios.empty()) {
        // A small V4-like layout: window 16, layers [0, 4, 128, 4] + MTP window, head 64, indexer 32.
        o_.geometry.compress_ratios = {0, 4, 128, 4, 0};
        o_.geometry.n_mtp = 1;
        o_.geometry.window = 16;
        o_.geometry.head_dim = 64;
        o_.geometry.index_head_dim = 32;
        o_.geometry.block_tokens = 128;
    }
    if (!o_.next_token) {
        int vocab = o_.vocab;
        auto eos = o_.eos;
        o_.next_token = [vocab, eos](std::span<const int32_t> t) {
            int32_t id = (int32_t)(hash(t) % (uint64_t)vocab);
            while (std::find(eos.begin(), eos.end(), id) != eos.end()) id = (id + 1) % vocab;
            return id;
        };
    }
}

std::unique_ptr<RunnerState> ScriptedRunner::new_state() { return std::make_unique<ScriptedState>(alive_); }

std::unique_ptr<RunnerState> ScriptedRunner::clone_state(const RunnerState& s) {
    auto c = std::make_unique<ScriptedState>(alive_);
    c->tokens = dynamic_cast<const ScriptedState&>(s).tokens;
    return c;
}

int64_t ScriptedRunner::states_alive() const { return alive_->load(); }

void ScriptedRunner::step(std::span<StepItem> items) {
    ++steps_;
    if (o_.step_delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(o_.step_delay_us));
    for (auto& it : items) {
        auto& st = dynamic_cast<ScriptedState&>(*it.state);
        for (int32_t t : it.tokens) {
            if (t < 0 || t >= o_.vocab) throw std::out_of_range("scripted runner: token id out of range");
            st.tokens.push_back(t);
        }
        if (!it.logits && !it.argmax) continue;
        const int64_t rows = std::max<int64_t>(1, it.n_logits);
        if (rows > (int64_t)it.tokens.size()) throw std::logic_error("scripted runner: more logits rows than tokens");
        std::vector<float> row(it.logits ? 0 : (size_t)o_.vocab);
        for (int64_t r = 0; r < rows; ++r) {
            std::span<const int32_t> prefix(st.tokens.data(), st.tokens.size() - (size_t)(rows - 1 - r));
            float* out = it.logits ? it.logits + r * o_.vocab : row.data();
            fill_logits(prefix, o_.next_token(prefix), 0, out);
            if (it.argmax) it.argmax[r] = first_max(std::span<const float>(out, (size_t)o_.vocab));
            // A summary, as a device forward would make it; when it is taken, the row is poisoned
            // (the caller must not read it).
            if (it.summary && o_.summary_cap > 0 && rows == 1 && it.logits) {
                SummaryRequest& q = *it.summary;
                const std::span<const float> row(out, (size_t)o_.vocab);
                if (q.draw) {
                    q.token = draw_whole_row(row, q.temperature, q.u);
                    q.summarized = true;
                } else {
                    q.out = summarize_row(row, q.temperature, (size_t)std::min(q.cap, o_.summary_cap));
                    q.summarized = q.enough && q.enough(q.out);
                }
                if (q.summarized) std::fill(out, out + o_.vocab, std::numeric_limits<float>::quiet_NaN());
            }
        }
    }
}

void ScriptedRunner::fill_logits(std::span<const int32_t> seq, int32_t chosen, uint64_t salt, float* out) const {
    uint64_t h = hash(seq) ^ salt;
    for (int i = 0; i < o_.vocab; ++i) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = -2.0f * (float)((h >> 40) & 0xffff) / 65535.0f;
    }
    if (chosen >= 0 && chosen < o_.vocab) out[chosen] = o_.peak;
}

void ScriptedRunner::enable_drafts() {
    if (!o_.drafts) throw std::invalid_argument(draft_unavailable());
    if (!o_.draft_token) {
        auto next = o_.next_token;
        int vocab = o_.vocab;
        o_.draft_token = [next, vocab](std::span<const int32_t> t) {
            int32_t id = next(t);
            return hash(t) % 4 == 0 ? (id + 1) % vocab : id;
        };
    }
}

void ScriptedRunner::draft(std::span<DraftItem> items, const DraftPicker& pick) {
    if (!o_.draft_token) throw std::logic_error("scripted runner: draft() without enable_drafts()");
    std::vector<std::vector<int32_t>> ctx(items.size());
    int max_k = 0;
    for (size_t i = 0; i < items.size(); ++i) {
        auto& st = dynamic_cast<ScriptedState&>(*items[i].state);
        if (items[i].context.size() != st.tokens.size() + 1 ||
            !std::equal(st.tokens.begin(), st.tokens.end(), items[i].context.begin()))
            throw std::logic_error("scripted runner: the draft context is not the state's tokens plus one");
        ctx[i].assign(items[i].context.begin(), items[i].context.end());
        max_k = std::max(max_k, items[i].k);
    }
    std::vector<float> logits((size_t)o_.vocab);
    for (int r = 0; r < max_k; ++r) {
        ++draft_rounds_;
        for (size_t i = 0; i < items.size(); ++i) {
            if (items[i].k <= r) continue;
            fill_logits(ctx[i], o_.draft_token(ctx[i]), 0x5bd1e995u, logits.data());
            // An argmax_only item gets the id alone, as a device runner would give it.
            ctx[i].push_back(items[i].argmax_only ? pick(i, r, nullptr, first_max(logits))
                                                  : pick(i, r, logits.data(), -1));
        }
    }
}

namespace {
struct ScriptedMark : RunnerMark {
    size_t n = 0;
    int64_t n_future = 0;
};
}  // namespace

std::unique_ptr<RunnerMark> ScriptedRunner::mark(RunnerState& s, int64_t n_future) {
    auto m = std::make_unique<ScriptedMark>();
    m->n = dynamic_cast<ScriptedState&>(s).tokens.size();
    m->n_future = n_future;
    return m;
}

void ScriptedRunner::rollback(RunnerState& s, const RunnerMark& m) {
    auto& st = dynamic_cast<ScriptedState&>(s);
    const auto& sm = dynamic_cast<const ScriptedMark&>(m);
    if (st.tokens.size() < sm.n || (int64_t)(st.tokens.size() - sm.n) > sm.n_future)
        throw std::logic_error("scripted runner: rollback past what the mark covers");
    st.tokens.resize(sm.n);
}

}  // namespace dsinfer::runtime
