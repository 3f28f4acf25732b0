#include "runtime/sampler.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

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

namespace {

typedef float v8f __attribute__((vector_size(32)));  // eight lanes (one AVX register where the build has it)
typedef int32_t v8i __attribute__((vector_size(32)));

// exp(x) for x <= 0 in float on eight lanes, within about 1e-7 of the value (0 below -87.3, for -inf
// and for NaN). Branch-free so that the passes over a 129k vocabulary vectorize: the sampler then
// costs tens of microseconds a row instead of the milliseconds std::exp in double takes (a GPU decode
// step of 2 Flash layers is under 1 ms). Each product and sum is rounded on its own (this file is
// compiled without contraction): cuda::sample_summary repeats the same operations.
inline v8f exp_le0(v8f x) {
    auto splat = [](float a) { return v8f{a, a, a, a, a, a, a, a}; };
    const v8i live = x > splat(-87.3f);
    x = (v8f)((v8i)x & live);
    const v8f n = (x * splat(1.44269504088896341f) + splat(12582912.f)) - splat(12582912.f);  // round (1.5 · 2^23)
    v8f r = n * splat(-0.693145751953125f) + x;  // ln 2 in two parts (Cody-Waite)
    r = n * splat(-1.428606765330187e-06f) + r;  // |r| <= ln 2 / 2
    // e^r: Taylor to degree 7 (the term left out is below 2^-27 of the value).
    v8f q = splat(1.f / 5040);
    q = q * r + splat(1.f / 720);
    q = q * r + splat(1.f / 120);
    q = q * r + splat(1.f / 24);
    q = q * r + splat(1.f / 6);
    q = q * r + splat(0.5f);
    q = q * r + splat(1.f);
    q = q * r + splat(1.f);
    const v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;  // 2^n, n in [-126, 0]
    return (v8f)((v8i)(q * (v8f)e) & live);
}

// (Reductions are written as eight lanes so that they vectorize without reassociation.)
float row_max(std::span<const float> l) {
    float lane[8];
    for (float& x : lane) x = -std::numeric_limits<float>::infinity();
    const size_t n = l.size(), n8 = n / 8 * 8;
    for (size_t i = 0; i < n8; i += 8)
        for (size_t j = 0; j < 8; ++j) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
    float mx = -std::numeric_limits<float>::infinity();
    for (float x : lane) mx = x > mx ? x : mx;
    for (size_t i = n8; i < n; ++i) mx = l[i] > mx ? l[i] : mx;
    return mx;
}

// Token a before token b in the order of their probabilities: logit descending, ties by id.
auto by_logit(std::span<const float> l) {
    return [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); };
}

// ids (ascending) sorted into by_logit's order. A wide nucleus (a flat row, a high temperature) keeps
// most of the vocabulary, and a comparison sort of 10^5 ids through the logits takes milliseconds: from
// kRadixFrom ids on, a stable radix sort on the logits' bits (three passes of 11 bits over a key that
// orders floats descending) leaves ties in id order, which is by_logit's order exactly. The ids' logits
// are numbers (NaN weighs nothing and is never a candidate); -0 is keyed as +0, which compares equal.
void sort_by_logit(std::vector<int32_t>& ids, std::span<const float> l) {
    constexpr size_t kRadixFrom = 2048;
    if (ids.size() < kRadixFrom) {
        std::sort(ids.begin(), ids.end(), by_logit(l));
        return;
    }
    const size_t n = ids.size();
    thread_local std::vector<uint32_t> key, key2;  // reused (a fresh 10^5-entry buffer faults its pages in)
    thread_local std::vector<int32_t> ids2;
    key.resize(n);
    key2.resize(n);
    ids2.resize(n);
    for (size_t i = 0; i < n; ++i) {
        uint32_t b;
        const float x = l[(size_t)ids[i]] + 0.0f;  // -0 → +0
        std::memcpy(&b, &x, sizeof b);
        b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // ascending order of the floats
        key[i] = ~b;                                      // descending
    }
    for (int shift = 0; shift < 33; shift += 11) {
        size_t count[2049] = {};
        for (size_t i = 0; i < n; ++i) ++count[((key[i] >> shift) & 2047u) + 1];
        for (size_t d = 0; d < 2048; ++d) count[d + 1] += count[d];
        for (size_t i = 0; i < n; ++i) {
            const size_t at = count[(key[i] >> shift) & 2047u]++;
            key2[at] = key[i];
            ids2[at] = ids[i];
        }
        key.swap(key2);
        ids.swap(ids2);
    }
}

// The weights exp((l - mx) · inv_t) of a row into e (if not null) and their sum z, in an order a device
// pass repeats in parallel (cuda::sample_summary, bit for bit): the row in chunks of 256 tokens (the
// last may be shorter); in a chunk, eight float lane sums (lane j: the tokens k ≡ j mod 8, in order),
// added in double in lane order; then the chunks' sums added pairwise, at step s = 1, 2, 4, … chunk i
// taking chunk i + s for every i a multiple of 2s.
double exp_row(std::span<const float> l, float mx, float inv_t, float* e) {
    constexpr size_t kChunk = 256;
    const size_t n = l.size();
    const v8f mxv = {mx, mx, mx, mx, mx, mx, mx, mx}, itv = {inv_t, inv_t, inv_t, inv_t, inv_t, inv_t, inv_t, inv_t};
    thread_local std::vector<double> chunk;
    chunk.clear();
    for (size_t i = 0; i < n; i += kChunk) {
        const size_t end = std::min(n, i + kChunk);
        v8f part = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = i;
        for (; k + 8 <= end; k += 8) {
            v8f x;
            std::memcpy(&x, l.data() + k, sizeof x);
            const v8f w = exp_le0((x - mxv) * itv);
            if (e) std::memcpy(e + k, &w, sizeof w);
            part += w;
        }
        if (k < end) {  // the row's last tokens, fewer than eight: the lanes past the row add nothing
            const size_t m = end - k;
            v8f x = mxv;
            std::memcpy(&x, l.data() + k, m * sizeof(float));
            v8f w = exp_le0((x - mxv) * itv);
            for (size_t j = 0; j < 8; ++j) {
                if (j < m && e) e[k + j] = w[j];
                if (j >= m) w[j] = 0;
            }
            part += w;
        }
        double c = 0;
        for (int j = 0; j < 8; ++j) c += part[j];
        chunk.push_back(c);
    }
    const size_t nc = chunk.size();
    for (size_t step = 1; step < nc; step *= 2)
        for (size_t i = 0; i + step < nc; i += 2 * step) chunk[i] += chunk[i + step];
    return nc ? chunk[0] : 0.0;
}

// The first token whose running sum of weights (in id order) passes u: whole blocks of 256 are
// stepped over by their sums (vectorized), the one u falls in is walked token by token. If rounding
// leaves u past the last sum, the last token with weight.
int32_t draw_weights(std::span<const float> e, double u) {
    constexpr size_t kBlock = 256;
    const size_t n = e.size();
    double cum = 0;
    size_t i = 0;
    for (; i + kBlock <= n; i += kBlock) {
        float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t k = i; k < i + kBlock; k += 8)
            for (size_t j = 0; j < 8; ++j) part[j] += e[k + j];
        double blk = 0;
        for (float x : part) blk += x;
        if (cum + blk > u) break;
        cum += blk;
    }
    for (; i < n; ++i) {
        cum += e[i];
        if (u < cum && e[i] > 0) return (int32_t)i;
    }
    for (size_t j = n; j-- > 0;)
        if (e[j] > 0) return (int32_t)j;
    return 0;
}

// The weights of a row (reused buffer, one per thread).
std::vector<float>& weights_buffer(size_t n) {
    thread_local std::vector<float> e;
    if (e.size() < n) e.resize(n);
    return e;
}

// Count and weight of the entries of e at least th (eight lanes: lane j sums the entries k + j).
std::pair<int64_t, double> above(const float* e, size_t n, float th) {
    int64_t c = 0;
    double m = 0;
    constexpr size_t kChunk = 256;
    const v8f thv = {th, th, th, th, th, th, th, th};
    size_t i = 0;
    for (; i + kChunk <= n; i += kChunk) {
        v8i cc = {0, 0, 0, 0, 0, 0, 0, 0};
        v8f mm = {0, 0, 0, 0, 0, 0, 0, 0};
        for (size_t k = i; k < i + kChunk; k += 8) {
            v8f x;
            std::memcpy(&x, e + k, sizeof x);
            const v8i in = x >= thv;  // all ones where it holds
            cc -= in;
            mm += (v8f)((v8i)x & in);
        }
        for (int j = 0; j < 8; ++j) c += cc[j], m += mm[j];
    }
    for (; i < n; ++i)
        if (e[i] >= th) ++c, m += e[i];
    return {c, m};
}

// The kept distribution from tokens in logit order (ids and weights: a prefix of the row's order that
// holds every kept token; with top-k, exactly the top-k set) and the row's total weight.
std::vector<std::pair<int32_t, float>> finish_distribution(std::span<const int32_t> cand, std::span<const float> wf,
                                                           double z_all, const SamplingParams& p, bool top_k) {
    std::vector<double> w(wf.begin(), wf.end());
    size_t keep = cand.size();
    if (p.top_p < 1.0f) {  // a share of the top-k set's mass, else of the whole row's
        double base = z_all;
        if (top_k) {
            base = 0;
            for (double x : w) base += x;
        }
        double cum = 0;
        size_t n = 0;
        while (n < cand.size() && cum < p.top_p * base) cum += w[n++];
        keep = std::max<size_t>(1, n);
    }
    if (p.min_p > 0) {  // relative to the most likely token
        size_t n = 0;
        while (n < keep && w[n] >= p.min_p * w[0]) ++n;
        keep = std::max<size_t>(1, n);
    }
    double s2 = 0;
    for (size_t j = 0; j < keep; ++j) s2 += w[j];
    std::vector<std::pair<int32_t, float>> c;
    c.reserve(keep);
    for (size_t j = 0; j < keep; ++j) c.push_back({cand[j], (float)(w[j] / s2)});
    return c;
}

}  // namespace

int32_t first_max(std::span<const float> l) {
    const float mx = row_max(l);
    for (int32_t i = 0; i < (int32_t)l.size(); ++i)
        if (l[i] == mx) return i;
    return 0;
}

std::vector<std::pair<int32_t, float>> filtered_distribution(std::span<const float> logits, const SamplingParams& p) {
    // The kept tokens are the most likely few. With every token's weight w = exp((l - max) / T) at
    // hand (one vectorized pass), a threshold on w is moved down by powers of e^2 until the tokens at
    // or above it hold what top-k, top-p and min-p keep (a set closed upwards in the logit order);
    // only those are sorted, by logit descending, ties by id (the order of their probabilities).
    const size_t v = logits.size();
    const float inv_t = 1.0f / p.temperature;
    const float mx = row_max(logits);
    const bool top_k = p.top_k > 0 && (size_t)p.top_k < v;
    const bool top_p = p.top_p < 1.0f;
    std::vector<float>& eb = weights_buffer(v);
    const float* e = eb.data();
    const double z_all = exp_row(logits, mx, inv_t, eb.data());
    float th = 0;  // 0: every token
    if (top_k || top_p) {
        for (float t = 0.1353352832f; t > 1e-37f; t *= t) {  // e^-2, e^-4, e^-8, ...
            const auto [c, m] = above(e, v, t);
            if (top_k ? c >= p.top_k : m >= p.top_p * z_all) {
                th = t;
                break;
            }
        }
    } else if (p.min_p > 0) {
        th = p.min_p * (1.0f - 1e-6f);  // the most likely token's weight is 1 (within rounding)
    }
    // The ids at or above th (most of a row is below it: groups of 16 are tested at once).
    std::vector<int32_t> cand;
    for (size_t i = 0; i < v; i += 16) {
        const size_t end = std::min(v, i + 16);
        bool any = false;
        if (end == i + 16)
            for (size_t j = 0; j < 16; ++j) any |= e[i + j] >= th;
        else
            any = true;
        if (any)
            for (size_t j = i; j < end; ++j)
                if (e[j] >= th && e[j] > 0) cand.push_back((int32_t)j);
    }
    if (cand.empty())
        cand.push_back((int32_t)std::distance(logits.begin(), std::max_element(logits.begin(), logits.end())));
    const auto order = by_logit(logits);
    if (top_k && cand.size() > (size_t)p.top_k) {
        const size_t k = (size_t)p.top_k;
        if (cand.size() > 8 * k) {  // a flat row: one pass with a heap of the best k (its top the worst)
            std::vector<int32_t> heap(cand.begin(), cand.begin() + (ptrdiff_t)k);
            std::make_heap(heap.begin(), heap.end(), order);
            for (size_t j = k; j < cand.size(); ++j)
                if (order(cand[j], heap.front())) {
                    std::pop_heap(heap.begin(), heap.end(), order);
                    heap.back() = cand[j];
                    std::push_heap(heap.begin(), heap.end(), order);
                }
            cand.swap(heap);
        } else {
            std::nth_element(cand.begin(), cand.begin() + (ptrdiff_t)k, cand.end(), order);
            cand.resize(k);
        }
        std::sort(cand.begin(), cand.end());  // back to id order (sort_by_logit's input)
    }
    sort_by_logit(cand, logits);
    std::vector<float> w(cand.size());
    for (size_t j = 0; j < cand.size(); ++j) w[j] = e[cand[j]];
    return finish_distribution(cand, w, z_all, p, top_k);
}

RowSummary summarize_row(std::span<const float> logits, float temperature, size_t cap) {
    RowSummary s;
    s.vocab = (int64_t)logits.size();
    s.mx = row_max(logits);
    std::vector<float>& e = weights_buffer(logits.size());
    s.z = exp_row(logits, s.mx, 1.0f / temperature, e.data());
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = (int32_t)i;
    cap = std::min(cap, ids.size());
    std::partial_sort(ids.begin(), ids.begin() + (ptrdiff_t)cap, ids.end(), by_logit(logits));
    s.ids.assign(ids.begin(), ids.begin() + (ptrdiff_t)cap);
    for (int32_t i : s.ids) s.w.push_back(e[(size_t)i]);
    return s;
}

std::optional<std::vector<std::pair<int32_t, float>>> filtered_from_summary(const RowSummary& s,
                                                                            const SamplingParams& p) {
    // The tokens with weight (weights fall along the logit order, so the zeros come last).
    size_t n = 0;
    while (n < s.w.size() && s.w[n] > 0) ++n;
    if (n == 0) return std::nullopt;
    const bool whole = n < s.w.size() || (int64_t)s.w.size() == s.vocab;  // every token with weight is here
    const bool top_k = p.top_k > 0 && p.top_k < s.vocab;
    const bool top_p = p.top_p < 1.0f;
    std::span<const int32_t> ids(s.ids.data(), n);
    std::span<const float> w(s.w.data(), n);
    if (top_k) {
        if ((size_t)p.top_k > n && !whole) return std::nullopt;
        ids = ids.first(std::min(n, (size_t)p.top_k));
        w = w.first(ids.size());
    } else if (top_p) {  // the nucleus must end among these
        double cum = 0;
        for (float x : w) cum += x;
        if (cum < p.top_p * s.z && !whole) return std::nullopt;
    } else if (p.min_p > 0) {  // so must the tokens min-p keeps
        if ((double)w.back() >= p.min_p * (double)w.front() && !whole) return std::nullopt;
    } else {
        return std::nullopt;  // nothing filtered: a draw over the whole row
    }
    return finish_distribution(ids, w, s.z, p, top_k);
}

int32_t draw_whole_row(std::span<const float> logits, float temperature, double u) {
    const float mx = row_max(logits);
    std::vector<float>& e = weights_buffer(logits.size());
    const double sum = exp_row(logits, mx, 1.0f / temperature, e.data());
    return draw_weights(std::span<const float>(e.data(), logits.size()), u * sum);
}

bool whole_row_draw_can_serve(const SamplingParams& p, int64_t vocab) {
    const bool unfiltered = (p.top_k <= 0 || p.top_k >= vocab) && p.top_p >= 1.0f && p.min_p <= 0;
    return !is_greedy(p) && !uses_penalties(p) && p.logprobs < 0 && unfiltered;
}

bool prepare_row_request(SummaryRequest& q, const SamplingParams& p, int64_t vocab, bool summaries, bool draws, Rng& rng,
                         KeptDistribution* kept) {
    q = SummaryRequest{};
    q.temperature = p.temperature;
    if (summaries && summary_can_serve(p)) {
        q.enough = [&p, kept](const RowSummary& s) {
            *kept = filtered_from_summary(s, p);
            return kept->has_value();
        };
        return true;
    }
    if (draws && whole_row_draw_can_serve(p, vocab)) {
        q.draw = true;
        q.u = rng.uniform();
        return true;
    }
    return false;
}

SampleResult finish_row(std::span<const float> row, int64_t vocab, const SamplingParams& p, Rng& rng,
                        const TokenHistory& h, const SummaryRequest& q, const KeptDistribution& kept) {
    SampleResult r;
    if (q.draw && q.summarized) {
        if (q.token < 0 || q.token >= vocab)
            throw std::logic_error("the runner returned no pick (or one outside the vocabulary)");
        r.token = q.token;
    } else if (q.draw) {
        r.token = draw_whole_row(row, p.temperature, q.u);
    } else if (q.summarized) {
        r.token = draw_filtered(*kept, rng);
    } else {
        r = sample(row, p, rng, h);
    }
    return r;
}

int32_t draw_filtered(const std::vector<std::pair<int32_t, float>>& dist, Rng& rng) {
    double u = rng.uniform(), cum = 0;
    for (auto& [t, q] : dist) {
        cum += q;
        if (u < cum) return t;
    }
    return dist.back().first;
}

bool summary_can_serve(const SamplingParams& p) {
    const bool filtered = p.top_k > 0 || p.top_p < 1.0f || p.min_p > 0;
    return !is_greedy(p) && !uses_penalties(p) && p.logprobs < 0 && filtered;
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
        r.token = first_max(logits);
    } else if ((p.top_k <= 0 || p.top_k >= (int)logits.size()) && p.top_p >= 1.0f && p.min_p <= 0) {
        // Nothing filtered: draw from the whole softmax in id order, no sorting.
        r.token = draw_whole_row(logits, p.temperature, rng.uniform());
    } else {
        r.token = draw_filtered(filtered_distribution(logits, p), rng);
    }
    fill_logprobs(raw, p, r);
    return r;
}

void fill_logprobs(std::span<const float> raw, const SamplingParams& p, SampleResult& r) {
    // Log-probabilities are those of the model (raw logits), as OpenAI reports them.
    if (p.logprobs >= 0) {
        const float mx = row_max(raw);
        const float lse = mx + (float)std::log(exp_row(raw, mx, 1.0f, nullptr));
        r.logprob = raw[r.token] - lse;
        int k = std::min<int>(p.logprobs, (int)raw.size());
        if (k > 0) {
            // The k largest in one pass: a sorted list of the best so far (k is small).
            const auto better = by_logit(raw);
            std::vector<int32_t> best;
            best.reserve((size_t)k + 1);
            const int32_t n = (int32_t)raw.size();
            for (int32_t i0 = 0; i0 < n; i0 += 16) {
                const int32_t i1 = std::min(n, i0 + 16);
                if ((int)best.size() == k && i1 == i0 + 16) {  // skip 16 at once when none can enter
                    const float kth = raw[best.back()];
                    bool any = false;
                    for (int32_t j = i0; j < i1; ++j) any |= raw[j] >= kth;
                    if (!any) continue;
                }
                for (int32_t i = i0; i < i1; ++i) {
                    if ((int)best.size() == k && !better(i, best.back())) continue;
                    best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
                    if ((int)best.size() > k) best.pop_back();
                }
            }
            for (int32_t i : best) r.top.push_back({i, raw[i] - lse});
        }
    }
}

void for_each_row(size_t n, const std::function<void(size_t)>& fn) {
    constexpr size_t kRowsPerThread = 4;
    const size_t hw = std::max(1u, std::thread::hardware_concurrency());
    const size_t threads = std::min<size_t>({hw, 16, n / kRowsPerThread});
    if (threads < 2) {
        for (size_t j = 0; j < n; ++j) fn(j);
        return;
    }
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mu;
    auto work = [&] {
        try {
            for (size_t j; (j = next.fetch_add(1)) < n;) fn(j);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mu);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

bool is_greedy(const SamplingParams& p) { return p.temperature <= 0 || p.top_k == 1; }

int32_t greedy_token(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h) {
    if (!uses_penalties(p)) return first_max(raw);
    std::vector<float> work(raw.begin(), raw.end());
    apply_penalties(work, p, h);
    return first_max(work);
}

std::vector<float> sampling_probs(std::span<const float> raw, const SamplingParams& p, const TokenHistory& h) {
    std::vector<float> work(raw.begin(), raw.end());
    if (uses_penalties(p)) apply_penalties(work, p, h);
    std::vector<float> probs(work.size(), 0.0f);
    if ((p.top_k <= 0 || p.top_k >= (int)work.size()) && p.top_p >= 1.0f && p.min_p <= 0) {
        const float mx = row_max(work);
        const double sum = exp_row(work, mx, 1.0f / p.temperature, probs.data());
        for (float& x : probs) x = (float)(x / sum);
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
