// The engine: a background loop that owns the scheduler; submit() and cancel() come from any thread.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "dsinfer/engine.h"
#include "runtime/model_runner.h"
#include "runtime/scheduler.h"

namespace dsinfer::runtime {
namespace {

class EngineImpl : public Engine {
public:
    EngineImpl(std::unique_ptr<ModelRunner> runner, const EngineOptions& opts)
        : runner_(std::move(runner)), opts_(opts), sched_(*runner_, opts) {
        std::random_device rd;
        seed_base_ = ((uint64_t)rd() << 32) ^ rd();
        stats_ = sched_.stats();
        loop_ = std::thread([this] { loop(); });
    }
    ~EngineImpl() override { shutdown(); }

    const ModelInfo& info() const override { return sched_.info(); }

    std::shared_ptr<RequestStream> submit(GenerationRequest req, Status* status) override {
        Status st = sched_.validate(req);  // reads only immutable model facts
        if (st.ok()) {
            std::lock_guard lk(mu_);
            if (stopping_) st = Status::error(StatusCode::unavailable, "the engine is shutting down");
            else if ((int64_t)inbox_.size() + waiting_seen_ >= opts_.max_waiting)
                st = Status::error(StatusCode::unavailable, "too many queued requests (" +
                                                                std::to_string(opts_.max_waiting) + "); retry later");
        }
        if (!st.ok()) {
            if (status) *status = st;
            return nullptr;
        }
        auto seq = std::make_unique<Sequence>();
        seq->id = next_id_.fetch_add(1);
        seq->tokens = std::move(req.prompt);
        seq->params = req.params;
        seq->rng = Rng(req.params.seed ? *req.params.seed : seed_base_ + seq->id * 0x9e3779b97f4a7c15ull);
        seq->out = std::make_shared<OutputChannel>(seq->id, [this] { wake(); });
        auto out = seq->out;
        {
            std::lock_guard lk(mu_);
            seq->arrival = seq->id;
            inbox_.push_back(std::move(seq));
        }
        cv_.notify_one();
        if (status) *status = Status::success();
        return out;
    }

    EngineStats stats() const override {
        std::lock_guard lk(mu_);
        EngineStats s = stats_;
        s.waiting += (int64_t)inbox_.size();
        return s;
    }

    void shutdown() override {
        {
            std::lock_guard lk(mu_);
            if (stopping_ && !loop_.joinable()) return;
            stopping_ = true;
        }
        cv_.notify_one();
        if (loop_.joinable()) loop_.join();
    }

    std::string kv_report() const override { return sched_.pool().report(sched_.geometry()); }

private:
    void wake() {
        {
            std::lock_guard lk(mu_);
            woken_ = true;
        }
        cv_.notify_one();
    }

    void loop() {
        for (;;) {
            {
                std::unique_lock lk(mu_);
                cv_.wait(lk, [&] { return stopping_ || woken_ || !inbox_.empty() || sched_.has_work(); });
                woken_ = false;
                while (!inbox_.empty()) {
                    sched_.add(std::move(inbox_.front()));
                    inbox_.pop_front();
                }
                if (stopping_) {
                    sched_.fail_all("the server is shutting down");
                    stats_ = sched_.stats();
                    return;
                }
            }
            try {
                sched_.step();
            } catch (const std::exception& e) {
                sched_.fail_all(std::string("model step failed: ") + e.what());
            }
            std::lock_guard lk(mu_);
            stats_ = sched_.stats();
            waiting_seen_ = stats_.waiting;
        }
    }

    std::unique_ptr<ModelRunner> runner_;
    EngineOptions opts_;
    Scheduler sched_;
    uint64_t seed_base_ = 0;
    std::atomic<uint64_t> next_id_{1};
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Sequence>> inbox_;
    bool stopping_ = false, woken_ = false;
    int64_t waiting_seen_ = 0;
    EngineStats stats_;
    std::thread loop_;
};

}  // namespace
}  // namespace dsinfer::runtime

namespace dsinfer {

std::unique_ptr<Engine> Engine::create(std::unique_ptr<runtime::ModelRunner> runner, const EngineOptions& opts) {
    return std::make_unique<runtime::EngineImpl>(std::move(runner), opts);
}

}  // namespace dsinfer
