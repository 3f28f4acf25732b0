// Prometheus text exposition of the server's counters and latency histograms.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "dsinfer/engine.h"

namespace dsinfer::server {

class Histogram {
public:
    static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                       0.25,  0.5,    1,     2.5,  5,     10,  30};
    void observe(double seconds);
    std::string render(const std::string& name, const std::string& help) const;

private:
    mutable std::mutex mu_;
    std::array<uint64_t, kBounds.size() + 1> counts_{};
    double sum_ = 0;
    uint64_t n_ = 0;
};

struct Metrics {
    std::mutex mu;
    std::map<std::string, uint64_t> requests;  // "route status" -> count
    std::atomic<int64_t> in_flight{0};
    std::atomic<uint64_t> prompt_tokens{0}, completion_tokens{0}, client_disconnects{0};
    Histogram ttft, itl, e2e;

    void count_request(const std::string& route, int status);
    std::string render(const EngineStats& s) const;
};

}  // namespace dsinfer::server
