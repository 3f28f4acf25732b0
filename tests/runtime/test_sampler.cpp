// Sampler math (temperature, top-k, top-p, min-p, penalties), seeded determinism, logprobs, and
// stop strings split across pieces.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "runtime/sampler.h"
#include "runtime/stop_strings.h"

using namespace dsinfer;
using namespace dsinfer::runtime;

static std::vector<float> logits_of(std::vector<double> probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back((float)std::log(p));
    return l;
}

TEST(Sampler, GreedyPicksArgmaxLowestIdOnTies) {
    SamplingParams p;
    p.temperature = 0;
    Rng rng(1);
    TokenHistory h;
    std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
    EXPECT_EQ(sample(l, p, rng, h).token, 1);
}

TEST(Sampler, TopKTopPMinPMath) {
    auto l = logits_of({0.5, 0.2, 0.15, 0.1, 0.05});
    SamplingParams p;
    p.temperature = 1;
    auto full = filtered_distribution(l, p);
    ASSERT_EQ(full.size(), 5u);
    EXPECT_NEAR(full[0].second, 0.5, 1e-6);
    p.top_k = 2;
    auto k2 = filtered_distribution(l, p);
    ASSERT_EQ(k2.size(), 2u);
    EXPECT_NEAR(k2[0].second, 0.5 / 0.7, 1e-6);
    EXPECT_EQ(k2[1].first, 1);
    p.top_k = 0;
    p.top_p = 0.8f;  // 0.5 + 0.2 = 0.7 < 0.8 -> needs the third
    auto tp = filtered_distribution(l, p);
    ASSERT_EQ(tp.size(), 3u);
    EXPECT_NEAR(tp[2].second, 0.15 / 0.85, 1e-6);
    p.top_p = 1;
    p.min_p = 0.29f;  // keeps p >= 0.145
    auto mp = filtered_distribution(l, p);
    ASSERT_EQ(mp.size(), 3u);
    p.min_p = 0;
    p.temperature = 0.5f;  // p^(1/T) renormalised
    auto t = filtered_distribution(l, p);
    double z = 0.25 + 0.04 + 0.0225 + 0.01 + 0.0025;
    EXPECT_NEAR(t[0].second, 0.25 / z, 1e-5);
}

// `trials` seeded draws at temperature 1 give each token of `want` with its probability (within tol),
// and no other token.
static void expect_frequencies(const std::vector<float>& l, uint64_t seed, int trials,
                               const std::map<int, double>& want, double tol) {
    SamplingParams p;
    p.temperature = 1;
    Rng rng(seed);
    TokenHistory h;
    std::map<int, int> n;
    for (int i = 0; i < trials; ++i) ++n[sample(l, p, rng, h).token];
    int seen = 0;
    for (auto [id, prob] : want) {
        EXPECT_NEAR(n[id] / (double)trials, prob, tol) << "token " << id;
        seen += n[id];
    }
    EXPECT_EQ(seen, trials);
}

TEST(Sampler, EmpiricalFrequenciesFollowTheDistribution) {
    expect_frequencies(logits_of({0.6, 0.3, 0.1}), 7, 20000, {{0, 0.6}, {1, 0.3}, {2, 0.1}}, 0.02);
}

TEST(Sampler, SeedDeterminism) {
    auto l = logits_of({0.2, 0.2, 0.2, 0.2, 0.2});
    SamplingParams p;
    p.temperature = 1;
    TokenHistory h;
    auto draw = [&](uint64_t seed) {
        Rng rng(seed);
        std::vector<int32_t> v;
        for (int i = 0; i < 50; ++i) v.push_back(sample(l, p, rng, h).token);
        return v;
    };
    EXPECT_EQ(draw(5), draw(5));
    EXPECT_NE(draw(5), draw(6));
}

TEST(Sampler, Penalties) {
    std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f};
    TokenHistory h;
    h.add_prompt(std::vector<int32_t>{1});
    h.add_output(0);
    h.add_output(0);
    h.add_output(2);
    SamplingParams p;
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    apply_penalties(l, p, h);
    EXPECT_FLOAT_EQ(l[0], 2.0f / 2 - 0.25f * 2 - 0.5f);
    EXPECT_FLOAT_EQ(l[1], -2.0f * 2);  // prompt token: repetition only
    EXPECT_FLOAT_EQ(l[2], 1.0f / 2 - 0.25f - 0.5f);
    EXPECT_FLOAT_EQ(l[3], 0.5f);
    // Greedy with a presence penalty turns away from the repeated token.
    std::vector<float> l2 = {1.0f, 0.9f};
    TokenHistory h2;
    h2.add_output(0);
    SamplingParams g;
    g.temperature = 0;
    g.presence_penalty = 0.5f;
    Rng rng(0);
    EXPECT_EQ(sample(l2, g, rng, h2).token, 1);
}

TEST(Sampler, Logprobs) {
    auto l = logits_of({0.5, 0.25, 0.25});
    SamplingParams p;
    p.temperature = 0;
    p.logprobs = 2;
    Rng rng(0);
    TokenHistory h;
    auto r = sample(l, p, rng, h);
    EXPECT_EQ(r.token, 0);
    EXPECT_NEAR(r.logprob, std::log(0.5), 1e-6);
    ASSERT_EQ(r.top.size(), 2u);
    EXPECT_EQ(r.top[0].id, 0);
    EXPECT_EQ(r.top[1].id, 1);  // tie: lowest id first
    EXPECT_NEAR(r.top[1].logprob, std::log(0.25), 1e-6);
}

TEST(StopStrings, SplitAcrossPieces) {
    StopStringMatcher m({"STOP", "xyz"});
    std::string out;
    for (std::string piece : {"hello S", "T", "O", "ne", "ver ST", "OP after"}) out += m.feed(piece);
    EXPECT_TRUE(m.matched());
    EXPECT_EQ(out, "hello STOnever ");
    EXPECT_EQ(m.feed("more"), "");
}

TEST(StopStrings, HoldsBackOnlyPossiblePrefixes) {
    StopStringMatcher m({"abc"});
    EXPECT_EQ(m.feed("xxa"), "xx");
    EXPECT_EQ(m.feed("b"), "");
    EXPECT_EQ(m.feed("d"), "abd");
    EXPECT_EQ(m.feed("ab"), "");
    EXPECT_FALSE(m.matched());
    EXPECT_EQ(m.flush(), "ab");
    StopStringMatcher none({});
    EXPECT_EQ(none.feed("abc"), "abc");
}

// The partial-sort implementation against a plain full-sort reference, on a large random vocabulary.
// What temperature, top-k, top-p and min-p keep, by a full sort in double: (id, probability
// renormalised over the kept set), most likely first (ties by id).
static std::vector<std::pair<int32_t, double>> reference_distribution(const std::vector<float>& l,
                                                                      const SamplingParams& p) {
    std::vector<std::pair<int32_t, double>> c;
    const double mx = *std::max_element(l.begin(), l.end());
    double sum = 0;
    for (int32_t i = 0; i < (int32_t)l.size(); ++i) c.push_back({i, std::exp((l[i] - mx) / p.temperature)});
    for (auto& x : c) sum += x.second;
    for (auto& x : c) x.second /= sum;
    std::sort(c.begin(), c.end(),
              [](auto& a, auto& b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
    if (p.top_k > 0 && p.top_k < (int)c.size()) c.resize(p.top_k);
    double mass = 0, cum = 0;
    for (auto& x : c) mass += x.second;
    size_t n = 0;
    while (n < c.size() && cum < p.top_p * mass) cum += c[n++].second;
    if (p.top_p < 1) c.resize(std::max<size_t>(1, n));
    std::vector<std::pair<int32_t, double>> kept;
    for (auto& x : c)
        if (x.second >= p.min_p * c.front().second) kept.push_back(x);
    double s = 0;
    for (auto& x : kept) s += x.second;
    for (auto& x : kept) x.second /= s;
    return kept;
}

// fn(p) for every combination of the given temperatures, top_k, top_p and min_p (in a trace scope).
static void each_params(std::initializer_list<float> temps, std::initializer_list<int> ks,
                        std::initializer_list<float> tps, std::initializer_list<float> mps,
                        const std::function<void(const SamplingParams&)>& fn) {
    for (float temp : temps)
        for (int k : ks)
            for (float tp : tps)
                for (float mp : mps) {
                    SamplingParams p;
                    p.temperature = temp;
                    p.top_k = k;
                    p.top_p = tp;
                    p.min_p = mp;
                    SCOPED_TRACE(testing::Message() << "T " << temp << " k " << k << " p " << tp << " min_p " << mp);
                    fn(p);
                }
}

TEST(Sampler, FilteringMatchesFullSortReference) {
    Rng rng(3);
    std::vector<float> l(20000);
    for (auto& x : l) x = (float)(rng.uniform() * 12 - 6);
    auto reference = [&](const SamplingParams& p) {
        std::vector<int32_t> ids;
        for (auto& x : reference_distribution(l, p)) ids.push_back(x.first);
        return ids;
    };
    each_params({0.3f, 1.0f, 2.0f}, {0, 50, 400, 5000}, {1.0f, 0.9f, 0.5f, 0.05f}, {0.0f, 0.2f},
                [&](const SamplingParams& p) {
                    auto got = filtered_distribution(l, p);
                    std::vector<int32_t> ids;
                    for (auto& x : got) ids.push_back(x.first);
                    auto ref = reference(p);
                    // The same set (the order of the far tail may differ where float probabilities tie).
                    std::sort(ids.begin(), ids.end());
                    std::sort(ref.begin(), ref.end());
                    EXPECT_EQ(ids, ref);
                });
}

// A row shaped like a language model's (a few likely tokens over a long flat tail, the Flash vocabulary
// size): the kept set and its probabilities match a full sort in double, for cuts inside the head,
// cuts that reach into the tail, and min-p alone.
TEST(Sampler, PeakedVocabularyMatchesReference) {
    Rng rng(11);
    std::vector<float> l(129280);
    for (auto& x : l) x = (float)(rng.uniform() * 6 - 7);
    for (int i = 0; i < 40; ++i) l[(size_t)(i * 3203 + 17) % l.size()] = 4.0f + (float)(i % 11) * 0.7f;
    each_params({0.6f, 1.0f, 1.5f}, {0, 20, 40, 300}, {1.0f, 0.95f, 0.7f}, {0.0f, 0.05f}, [&](const SamplingParams& p) {
        if (p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0) return;  // nothing filtered: the whole row
        const auto got = filtered_distribution(l, p);
        const auto ref = reference_distribution(l, p);
        ASSERT_EQ(got.size(), ref.size());
        for (size_t j = 0; j < got.size(); ++j) {
            EXPECT_EQ(got[j].first, ref[j].first) << j;
            EXPECT_NEAR(got[j].second, ref[j].second, 1e-6 * ref[j].second + 1e-12) << j;
        }
    });
}

// A flat row (a random model, a high temperature): the nucleus keeps most of the vocabulary, which the
// sampler orders with a radix sort. Logits on a coarse grid make thousands of exact ties (and -0 next
// to +0): the kept tokens come in the reference's order (probability descending, ties by id), exactly.
TEST(Sampler, WideNucleusKeepsTheReferenceOrder) {
    Rng rng(5);
    std::vector<float> l(129280);
    for (auto& x : l) x = std::round((float)(rng.uniform() * 2 - 1) * 64.0f) / 128.0f;
    for (size_t i = 0; i < l.size(); i += 97) l[i] = (i / 97) % 2 ? -0.0f : 0.0f;
    each_params({0.6f, 2.0f}, {0, 3000, 100000}, {1.0f, 0.95f, 0.5f}, {0.0f, 0.9f}, [&](const SamplingParams& p) {
        if (p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0) return;  // nothing filtered: the whole row
        const auto got = filtered_distribution(l, p);
        const auto ref = reference_distribution(l, p);
        ASSERT_EQ(got.size(), ref.size());
        ASSERT_GT(got.size(), 1000u);  // a wide nucleus (the candidates sorted number 3000 or more)
        for (size_t j = 0; j < got.size(); ++j) {
            ASSERT_EQ(got[j].first, ref[j].first) << j;
            ASSERT_NEAR(got[j].second, ref[j].second, 1e-6 * ref[j].second + 1e-12) << j;
        }
    });
}

// The draw from the whole softmax (no filters) follows the distribution over a full-size row.
TEST(Sampler, WholeRowDrawFollowsTheDistribution) {
    std::vector<float> l(129280, -30.0f);
    l[5] = std::log(0.5f);
    l[70000] = std::log(0.3f);
    l[129279] = std::log(0.2f);
    // (The tail, e^-30 each, is never drawn in these 4000.)
    expect_frequencies(l, 3, 4000, {{5, 0.5}, {70000, 0.3}, {129279, 0.2}}, 0.03);
}

// Top logprobs over a full-size row (ties included) match a full sort; the values are log-softmax.
TEST(Sampler, TopLogprobsOfAFullRowMatchASort) {
    Rng rng(5);
    std::vector<float> l(129280);
    for (auto& x : l) x = (float)(int)(rng.uniform() * 2000) / 100.0f - 10.0f;  // many exact ties
    SamplingParams p;
    p.temperature = 0;
    p.logprobs = 7;
    TokenHistory h;
    Rng r0(1);
    const SampleResult r = sample(l, p, r0, h);
    std::vector<int32_t> idx(l.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = (int32_t)i;
    std::partial_sort(idx.begin(), idx.begin() + 7, idx.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    const double mx = l[idx[0]];
    double z = 0;
    for (float x : l) z += std::exp((double)x - mx);
    ASSERT_EQ(r.top.size(), 7u);
    EXPECT_EQ(r.token, idx[0]);
    for (size_t j = 0; j < 7; ++j) {
        EXPECT_EQ(r.top[j].id, idx[j]) << j;
        EXPECT_NEAR(r.top[j].logprob, l[idx[j]] - mx - std::log(z), 1e-5) << j;
    }
}

// A summary of the most likely tokens gives exactly filtered_distribution's result whenever it answers,
// answers whenever it holds the whole row, and declines when the kept set may reach past it.
TEST(Sampler, SummaryGivesTheSameDistributionOrDeclines) {
    Rng rng(17);
    std::vector<float> peaked(129280), flat(3000);
    for (auto& x : peaked) x = (float)(rng.uniform() * 6 - 7);
    for (int i = 0; i < 40; ++i) peaked[(size_t)(i * 3203 + 17) % peaked.size()] = 4.0f + (float)(i % 11) * 0.7f;
    for (auto& x : flat) x = (float)(rng.uniform() * 2);
    flat[100] = flat[200] = flat[300] = 2.5f;  // tied logits: ids break the tie
    int answered = 0, declined = 0;
    for (const auto* row : {&peaked, &flat})
        for (size_t cap : {size_t(8), size_t(64), size_t(1024), row->size()})
            each_params({0.7f, 1.3f}, {0, 5, 40, 200}, {1.0f, 0.9f, 0.5f}, {0.0f, 0.1f}, [&](const SamplingParams& p) {
                SCOPED_TRACE(testing::Message() << "vocab " << row->size() << " cap " << cap);
                const RowSummary s = summarize_row(*row, p.temperature, cap);
                ASSERT_EQ(s.ids.size(), std::min(cap, row->size()));
                const auto got = filtered_from_summary(s, p);
                const bool filtered = p.top_k > 0 || p.top_p < 1.0f || p.min_p > 0;
                if (!got) {
                    ++declined;
                    EXPECT_TRUE(!filtered || cap < row->size());  // the whole row always answers
                    if (p.top_k > 0) {                            // declined: the top-k set is longer than the summary
                        EXPECT_GT((size_t)p.top_k, cap);
                    } else if (p.top_p < 1.0f) {  // the nucleus (before min-p) is
                        SamplingParams q = p;
                        q.min_p = 0;
                        EXPECT_GT(filtered_distribution(*row, q).size(), cap);
                    } else if (filtered) {  // what min-p keeps is
                        EXPECT_GE(filtered_distribution(*row, p).size(), cap);
                    }
                    return;
                }
                ++answered;
                const auto full = filtered_distribution(*row, p);
                ASSERT_EQ(got->size(), full.size());
                for (size_t j = 0; j < full.size(); ++j) {
                    EXPECT_EQ((*got)[j].first, full[j].first) << j;
                    EXPECT_EQ((*got)[j].second, full[j].second) << j;  // bitwise
                }
            });
    EXPECT_GT(answered, 100);
    EXPECT_GT(declined, 10);
}

// finish_row for a row the forward drew (device draws): the token comes from the request, never from
// the row, which a caller may leave empty (the bench does: no row was copied); a token outside the
// vocabulary is an error. A row drawn on the host gives the same token from the same uniform.
TEST(Sampler, FinishRowTakesTheForwardsDraw) {
    SamplingParams p;
    p.temperature = 0.8f;
    const int64_t vocab = 5000;
    std::vector<float> row(static_cast<size_t>(vocab));
    Rng fill(3);
    for (auto& x : row) x = (float)(fill.uniform() * 4);
    TokenHistory h;
    KeptDistribution kept;
    Rng a(11), b(11);
    SummaryRequest q;
    ASSERT_TRUE(prepare_row_request(q, p, vocab, true, true, a, &kept));
    ASSERT_TRUE(q.draw);
    const int32_t expect = draw_whole_row(row, p.temperature, q.u);
    EXPECT_EQ(finish_row(row, vocab, p, a, h, q, kept).token, expect);  // not drawn by the forward
    q.summarized = true;
    q.token = expect;
    EXPECT_EQ(finish_row({}, vocab, p, a, h, q, kept).token, expect);  // drawn: no row needed
    EXPECT_EQ(sample(row, p, b, h).token, expect);                     // the host's own draw
    q.token = (int32_t)vocab;
    EXPECT_THROW(finish_row({}, vocab, p, a, h, q, kept), std::logic_error);
    q.token = -1;
    EXPECT_THROW(finish_row({}, vocab, p, a, h, q, kept), std::logic_error);
}
