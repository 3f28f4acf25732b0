#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dsinfer::runtime {

bool uses_penalties(const SamplingParams& p) {
    return p.presence_penalty != 0 || p.frequency_penalty != 0 || p.repetition_penalty != 1;
}

void apply_penalties(std::span<float> logits, const SamplingParams& p, const TokenHistory& h) {
    const int64_t v = (int64_t)logits.size();
    if (p.repetition_penalty != 1) {
        auto rep = [&](int32_t t) {
            if (t < 0 || t >= v) return;
            float& l = logits[t];
            l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
        };
        for (auto& [t, _] : h.prompt_seen) rep(t);
        for (auto& [t, _] : h.output_counts)
            if (!h.prompt_seen.count(t)) rep(t);
    }
    for (auto& [t, c] : h.output_counts) {
        if (t < 0 || t >= v) continue;
        logits[t] -= p.frequency_penalty * (float)c + (c > 0 ? p.presence_penalty : 0.0f);
    }
}

static int32_t argmax(std::span<const float> l) {
    int32_t best = 0;
    for (int32_t i = 1; i < (int32_t)l.size(); ++i)
        if (l[i] > l[best]) best = i;
    return best;
}

std::vector<std::pair<int32_t, float>> filtered_distribution(std::span<const float> logits, const SamplingParams& p) {
    const int32_t v = (int32_t)logits.size();
    const float temp = p.temperature;
    float mx = -std::numeric_limits<float>::infinity();
    for (float l : logits) mx = std::max(mx, l);
    std::vector<std::pair<int32_t, float>> c(v);
    double sum = 0;
    for (int32_t i = 0; i < v; ++i) {
        double e = std::isinf(logits[i]) && logits[i] < 0 ? 0.0 : std::exp((double)(logits[i] - mx) / temp);
        c[i] = {i, (float)e};
        sum += e;
    }
    auto by_prob = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
    size_t keep = c.size();
    if (p.top_k > 0 && p.top_k < v) {
        keep = (size_t)p.top_k;
        std::partial_sort(c.begin(), c.begin() + keep, c.end(), by_prob);
        c.resize(keep);
    } else {
        std::sort(c.begin(), c.end(), by_prob);
    }
    for (auto& x : c) x.second = (float)(x.second / sum);
    // top_p over the distribution after top_k (renormalised), as vLLM does.
    double kept_mass = 0;
    for (auto& x : c) kept_mass += x.second;
    if (p.top_p < 1.0f) {
        double cum = 0;
        size_t n = 0;
        for (; n < c.size(); ++n) {
            cum += c[n].second / kept_mass;
            if (cum >= p.top_p) {
                ++n;
                break;
            }
        }
        c.resize(std::max<size_t>(1, std::min(n, c.size())));
    }
    if (p.min_p > 0 && !c.empty()) {
        float thr = p.min_p * c.front().second;
        size_t n = 0;
        while (n < c.size() && c[n].second >= thr) ++n;
        c.resize(std::max<size_t>(1, n));
    }
    double s = 0;
    for (auto& x : c) s += x.second;
    for (auto& x : c) x.second = (float)(x.second / s);
    return c;
}

SampleResult sample(std::span<const float> raw, const SamplingParams& p, Rng& rng, const TokenHistory& h) {
    std::vector<float> work;
    std::span<const float> logits = raw;
    if (uses_penalties(p)) {
        work.assign(raw.begin(), raw.end());
        apply_penalties(work, p, h);
        logits = work;
    }
    SampleResult r;
    if (p.temperature <= 0 || p.top_k == 1) {
        r.token = argmax(logits);
    } else {
        auto dist = filtered_distribution(logits, p);
        double u = rng.uniform(), cum = 0;
        r.token = dist.back().first;
        for (auto& [t, q] : dist) {
            cum += q;
            if (u < cum) {
                r.token = t;
                break;
            }
        }
    }
    // Log-probabilities are those of the model (raw logits), as OpenAI reports them.
    if (p.logprobs >= 0) {
        float mx = -std::numeric_limits<float>::infinity();
        for (float l : raw) mx = std::max(mx, l);
        double s = 0;
        for (float l : raw) s += std::exp((double)(l - mx));
        const float lse = mx + (float)std::log(s);
        r.logprob = raw[r.token] - lse;
        int k = std::min<int>(p.logprobs, (int)raw.size());
        if (k > 0) {
            std::vector<int32_t> idx(raw.size());
            for (size_t i = 0; i < idx.size(); ++i) idx[i] = (int32_t)i;
            std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                              [&](int32_t a, int32_t b) { return raw[a] > raw[b] || (raw[a] == raw[b] && a < b); });
            for (int i = 0; i < k; ++i) r.top.push_back({idx[i], raw[idx[i]] - lse});
        }
    }
    return r;
}

}  // namespace dsinfer::runtime
