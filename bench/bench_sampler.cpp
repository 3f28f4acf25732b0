// The host sampler on a Flash-size logits row (129280 tokens), per row: what `dsinfer serve` spends per
// sequence and step for every request that is not greedy without penalties (those take the argmax
// where the logits are). Three rows: one shaped like a language model's (a few likely tokens over a flat
// tail), one of N(0, 3) noise, and a flat one of N(0, 0.3) noise (a random model's, or a high
// temperature's: the nucleus holds most of the vocabulary). The ceiling: a memcpy of the row; each figure is
// also given as a number of such copies.
//
// Usage: bench_sampler
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "runtime/sampler.h"

using namespace dsinfer;
using namespace dsinfer::runtime;

namespace {

double us_per_call(const std::function<int64_t(int)>& fn, int iters) {
    int64_t sink = 0;
    for (int i = 0; i < 3; ++i) sink += fn(i);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) sink += fn(i);
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
    if (sink == 0x7fffffff) std::printf(" ");  // keeps the calls
    return us;
}

}  // namespace

int main() {
    const size_t vocab = 129280;
    std::mt19937 gen(1);
    std::normal_distribution<float> noise(0.f, 3.f);
    std::vector<float> wide(vocab), peaked(vocab), flat(vocab);
    for (size_t i = 0; i < vocab; ++i) {
        wide[i] = noise(gen);
        peaked[i] = wide[i] * 0.7f - 4.f;
        flat[i] = wide[i] * 0.1f;
    }
    for (size_t i = 0; i < 30; ++i) peaked[(i * 7919) % vocab] = 6.f + float(i % 9);
    std::vector<float> copy(vocab);
    const double read_us = us_per_call(
        [&](int i) {
            wide[0] = float(i);
            std::memcpy(copy.data(), wide.data(), vocab * 4);
            return int64_t(copy[size_t(i) % vocab]);
        },
        400);
    std::printf("ceiling  memcpy of the row (%zu floats, %.1f MB): %.1f us\n", vocab, vocab * 4 / 1e6, read_us);
    struct Case {
        const char* name;
        SamplingParams p;
    };
    std::vector<Case> cases;
    auto add = [&](const char* name, float t, int k, float tp, float mp, int lp) {
        SamplingParams p;
        p.temperature = t;
        p.top_k = k;
        p.top_p = tp;
        p.min_p = mp;
        p.logprobs = lp;
        cases.push_back({name, p});
    };
    add("greedy (penalties or logprobs ask for it)", 0.f, 0, 1.f, 0.f, -1);
    add("temperature 1, nothing filtered", 1.f, 0, 1.f, 0.f, -1);
    add("temperature 0.6, top_p 0.95", 0.6f, 0, 0.95f, 0.f, -1);
    add("temperature 0.7, top_k 50", 0.7f, 50, 1.f, 0.f, -1);
    add("temperature 0.7, min_p 0.05", 0.7f, 0, 1.f, 0.05f, -1);
    add("temperature 0.6, top_p 0.95, 5 logprobs", 0.6f, 0, 0.95f, 0.f, 5);
    TokenHistory h;
    for (auto* row : {&peaked, &wide, &flat}) {
        std::printf("row      %s\n", row == &peaked ? "peaked (30 likely tokens over a flat tail)"
                                     : row == &wide ? "N(0, 3) noise"
                                                    : "N(0, 0.3) noise (flat)");
        for (const Case& c : cases) {
            Rng rng(7);
            const double us = us_per_call([&](int) { return int64_t(sample(*row, c.p, rng, h).token); }, 100);
            std::printf("sample   %-44s %8.1f us/row  %5.1f copies\n", c.name, us, us / read_us);
        }
    }
    return 0;
}
