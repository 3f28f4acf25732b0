// The queue between the engine loop (producer) and whoever reads a request's tokens (consumer).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>

#include "dsinfer/engine.h"

namespace dsinfer::runtime {

class OutputChannel : public RequestStream {
public:
    OutputChannel(uint64_t id, std::function<void()> wake_engine) : id_(id), wake_(std::move(wake_engine)) {}

    uint64_t id() const override { return id_; }
    bool next(TokenEvent& ev) override { return next_for(ev, -1) == 1; }
    int next_for(TokenEvent& ev, int timeout_ms) override {
        std::unique_lock lk(mu_);
        auto ready = [&] { return !q_.empty() || drained_; };
        if (timeout_ms < 0)
            cv_.wait(lk, ready);
        else if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), ready))
            return 0;
        if (q_.empty()) return -1;
        ev = std::move(q_.front());
        q_.pop_front();
        if (ev.finish != FinishReason::none) drained_ = true;
        return 1;
    }
    void cancel() override {
        cancel_requested_.store(true);
        if (wake_) wake_();
    }

    // Engine side.
    bool cancel_requested() const { return cancel_requested_.load(); }
    void push(TokenEvent ev) {
        {
            std::lock_guard lk(mu_);
            q_.push_back(std::move(ev));
        }
        cv_.notify_all();
    }

private:
    uint64_t id_;
    std::function<void()> wake_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<TokenEvent> q_;
    bool drained_ = false;
    std::atomic<bool> cancel_requested_{false};
};

}  // namespace dsinfer::runtime
