#include "runtime/scripted_runner.h"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

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
        if (!it.logits) continue;
        const int32_t chosen = o_.next_token(st.tokens);
        uint64_t h = hash(st.tokens);
        for (int i = 0; i < o_.vocab; ++i) {
            h = h * 6364136223846793005ull + 1442695040888963407ull;
            it.logits[i] = -2.0f * (float)((h >> 40) & 0xffff) / 65535.0f;
        }
        if (chosen >= 0 && chosen < o_.vocab) it.logits[chosen] = o_.peak;
    }
}

}  // namespace dsinfer::runtime
