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
    const double temp = p.temperature;
    float mx = -std::numeric_limits<float>::infinity();
    for (float l : logits) mx = std::max(mx, l);
    std::vector<std::pair<int32_t, float>> c(v);
    double sum = 0;
    for (int32_t i = 0; i < v; ++i) {
        double e = std::isinf(logits[i]) && logits[i] < 0 ? 0.0 : std::exp((double)(logits[i] - mx) / temp);
        c[i] = {i, (float)e};
        sum += e;
    }
    for (auto& x : c) x.second = (float)(x.second / sum);
    auto by_prob = [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); };
    // Only the head of the distribution is ever kept, so sort just enough of it: the top_k, or a
    // prefix that grows until it holds top_p of the (top-k) mass. A full sort of a 129k vocabulary per
    // token would cost more than the rest of sampling together.
    if (p.top_k > 0 && p.top_k < v) {  // the top-k set, in O(vocab)
        std::nth_element(c.begin(), c.begin() + p.top_k, c.end(), by_prob);
        c.resize((size_t)p.top_k);
    }
    const size_t limit = c.size();
    double kept_mass = 0;  // the top-k set's share of the mass
    for (auto& x : c) kept_mass += x.second;
    size_t sorted = std::min<size_t>(limit, p.top_p < 1.0f ? 256 : limit);
    std::partial_sort(c.begin(), c.begin() + (ptrdiff_t)sorted, c.end(), by_prob);
    size_t keep = limit;
    if (p.top_p < 1.0f) {
        double cum = 0;
        size_t n = 0;
        for (;;) {
            while (n < sorted && cum < p.top_p * kept_mass) cum += c[n++].second;
            if (cum >= p.top_p * kept_mass || sorted == limit) break;
            size_t grow = std::min(limit, sorted * 4);  // the prefix was too short: sort more of it
            std::partial_sort(c.begin() + (ptrdiff_t)sorted, c.begin() + (ptrdiff_t)grow, c.end(), by_prob);
            sorted = grow;
        }
        keep = std::max<size_t>(1, n);
    }
    c.resize(keep);
    if (p.min_p > 0 && !c.empty()) {
        float thr = p.min_p * c.front().second;
        size_t n = 0;
        while (n < c.size() && c[n].second >= thr) ++n;
        c.resize(std::max<size_t>(1, n));
    }
    double s2 = 0;
    for (auto& x : c) s2 += x.second;
    for (auto& x : c) x.second = (float)(x.second / s2);
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
    } else if ((p.top_k <= 0 || p.top_k >= (int)logits.size()) && p.top_p >= 1.0f && p.min_p <= 0) {
        // Nothing filtered: draw from the whole softmax in id order, no sorting.
        float mx = -std::numeric_limits<float>::infinity();
        for (float l : logits) mx = std::max(mx, l);
        std::vector<double> e(logits.size());
        double sum = 0;
        for (size_t i = 0; i < e.size(); ++i) sum += e[i] = std::exp((double)(logits[i] - mx) / p.temperature);
        double u = rng.uniform() * sum, cum = 0;
        r.token = (int32_t)e.size() - 1;
        for (size_t i = 0; i < e.size(); ++i) {
            cum += e[i];
            if (u < cum) {
                r.token = (int32_t)i;
                break;
            }
        }
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
    fill_logprobs(raw, p, r);
    return r;
}

void fill_logprobs(std::span<const float> raw, const SamplingParams& p, SampleResult& r) {
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
}

bool is_greedy(const SamplingParams& p) { return p.temperature <= 0 || p.top_k == 1; }

int32_t greedy_token(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h) {
    if (!uses_penalties(p)) return argmax(raw);
    std::vector<float> work(raw.begin(), raw.end());
    apply_penalties(work, p, h);
    return argmax(work);
}

std::vector<float> sampling_probs(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h) {
    std::vector<float> work(raw.begin(), raw.end());
    if (uses_penalties(p)) apply_penalties(work, p, h);
    std::vector<float> probs(work.size(), 0.0f);
    if ((p.top_k <= 0 || p.top_k >= (int)work.size()) && p.top_p >= 1.0f && p.min_p <= 0) {
        float mx = -std::numeric_limits<float>::infinity();
        for (float l : work) mx = std::max(mx, l);
        double sum = 0;
        std::vector<double> e(work.size());
        for (size_t i = 0; i < e.size(); ++i) sum += e[i] = std::exp((double)(work[i] - mx) / p.temperature);
        for (size_t i = 0; i < e.size(); ++i) probs[i] = (float)(e[i] / sum);
    } else {
        for (auto& [t, q] : filtered_distribution(work, p)) probs[(size_t)t] = q;
    }
    return probs;
}

int32_t draw(std::span<const float> probs, Rng& rng) {
    double total = 0;
    for (float x : probs) total += x;
    double u = rng.uniform() * total, cum = 0;
    int32_t last = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] <= 0) continue;
        last = (int32_t)i;
        cum += probs[i];
        if (u < cum) return (int32_t)i;
    }
    return last;
}

int32_t accept_or_resample(std::span<const float> p, std::span<const float> q, int32_t draft, Rng& rng, bool* accepted) {
    const double pd = p[(size_t)draft], qd = q[(size_t)draft];
    // u < p/q, written without the division (q > 0: the draft was drawn from q).
    if (rng.uniform() * qd < pd) {
        *accepted = true;
        return draft;
    }
    *accepted = false;
    std::vector<float> res(p.size());
    double mass = 0;
    for (size_t i = 0; i < p.size(); ++i) mass += res[i] = std::max(0.0f, p[i] - q[i]);
    // p != q whenever a rejection is possible, so the residual has mass; rounding aside.
    if (!(mass > 0)) return draw(p, rng);
    return draw(res, rng);
}

}  // namespace dsinfer::runtime
