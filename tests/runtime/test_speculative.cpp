// Speculative decoding in the scheduler (scripted runner with a draft model that is wrong in a
// quarter of contexts): greedy output is exactly that of plain decoding, alone, batched, with prefix
// reuse and under preemption; seeded sampling does not depend on the batch; stops and max_tokens
// hold when several tokens are accepted at once; and the accept/resample rule keeps the target
// distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "harness.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

namespace {

ScriptedOptions drafting(ScriptedOptions so = {}) {
    so.drafts = true;
    return so;
}

EngineOptions spec_opts(int k, int budget = 64, bool prefix = false) {
    EngineOptions o;
    o.speculative = k;
    o.max_batch_tokens = budget;
    o.prefix_caching = prefix;
    o.kv_cache_gb = 0.05;
    return o;
}

SamplingParams with_logprobs(SamplingParams p) {
    p.logprobs = 2;
    return p;
}

}  // namespace

TEST(Speculative, AcceptOrResampleKeepsTheTargetDistribution) {
    const std::vector<float> p = {0.5f, 0.2f, 0.2f, 0.1f, 0.0f};
    const std::vector<float> q = {0.1f, 0.1f, 0.3f, 0.2f, 0.3f};
    Rng rng(7);
    const int n = 200000;
    std::vector<int> count(p.size(), 0);
    int accepted = 0;
    for (int i = 0; i < n; ++i) {
        int32_t d = draw(q, rng);
        bool ok = false;
        int32_t t = accept_or_resample(p, q, d, rng, &ok);
        accepted += ok;
        if (ok) {
            EXPECT_EQ(t, d);
        }
        ++count[(size_t)t];
    }
    for (size_t i = 0; i < p.size(); ++i) {
        const double f = (double)count[i] / n, sigma = std::sqrt(std::max(1e-12, p[i] * (1.0 - p[i]) / n));
        EXPECT_LE(std::fabs(f - p[i]), 5 * sigma) << "token " << i << " frequency " << f << " vs " << p[i];
    }
    EXPECT_EQ(count[4], 0);  // no mass in p: never produced, though q proposes it 30% of the time
    // The acceptance rate is sum(min(p, q)) = 0.5.
    EXPECT_NEAR((double)accepted / n, 0.5, 5 * std::sqrt(0.25 / n));
}

TEST(Speculative, SamplingProbsIsTheFilteredDistribution) {
    std::vector<float> logits = {2.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f};
    SamplingParams p;
    p.temperature = 0.7f;
    p.top_k = 4;
    p.top_p = 0.9f;
    TokenHistory h;
    auto dense = sampling_probs(logits, p, h);
    auto sparse = filtered_distribution(logits, p);
    double sum = 0;
    for (float x : dense) sum += x;
    EXPECT_NEAR(sum, 1.0, 1e-6);
    for (auto& [t, q] : sparse) EXPECT_EQ(dense[(size_t)t], q);
    for (size_t i = 0; i < dense.size(); ++i)
        if (std::none_of(sparse.begin(), sparse.end(), [&](auto& x) { return x.first == (int32_t)i; })) {
            EXPECT_EQ(dense[i], 0.0f);
        }
}

TEST(Speculative, RefusedWithoutADraftModel) {
    ScriptedRunner runner(ScriptedOptions{});
    try {
        Scheduler s(runner, spec_opts(2));
        FAIL() << "a runner without a draft model was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("no draft"), std::string::npos) << e.what();
    }
    ScriptedRunner with(drafting());
    EXPECT_THROW(Scheduler(with, spec_opts(4, 4)), std::invalid_argument);  // budget below 1 + drafts
}

TEST(Speculative, GreedyBatchedEqualsPlainDecodingAlone) {
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) prompts.push_back(make_prompt(5 + 9 * i, 300 + i));
    for (int k : {1, 3}) {
        Harness h(spec_opts(k, 40), drafting());
        std::vector<uint64_t> ids;
        for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(h.submit(prompts[i], with_logprobs(Harness::greedy(23 + (int)i))));
        h.run();
        for (size_t i = 0; i < prompts.size(); ++i) {
            Result ref = run_alone(prompts[i], with_logprobs(Harness::greedy(23 + (int)i)));
            EXPECT_EQ(h.results[ids[i]].tokens, ref.tokens) << "k " << k << " request " << i;
            EXPECT_EQ(h.results[ids[i]].logprobs, ref.logprobs) << "k " << k << " request " << i;
            EXPECT_EQ(h.results[ids[i]].finish, FinishReason::length);
            EXPECT_EQ(h.results[ids[i]].events_after_finish, 0);
        }
        const auto& st = h.sched->stats();
        EXPECT_GT(st.draft_tokens, 0);
        EXPECT_GT(st.draft_accepted, 0);
        EXPECT_LT(st.draft_accepted, st.draft_tokens);  // rejections happened (and were rolled back)
        EXPECT_EQ(h.sched->pool().used(), 0);
        EXPECT_EQ(h.runner->states_alive(), 0);
    }
}

TEST(Speculative, FewerStepsThanTokens) {
    Harness h(spec_opts(3, 64), drafting());
    uint64_t id = h.submit(make_prompt(8, 5), Harness::greedy(60));
    h.run();
    EXPECT_EQ(h.results[id].tokens.size(), 60u);
    // With 3 drafts accepted ~3/4 of the time, well under one step per token.
    EXPECT_LT(h.sched->stats().steps, 40);
}

TEST(Speculative, GreedyWithPrefixReuseEqualsPlain) {
    Harness h(spec_opts(2, 64, true), drafting());
    std::vector<std::vector<int32_t>> prompts;
    auto base = make_prompt(60, 11);
    std::vector<uint64_t> ids;
    for (int i = 0; i < 5; ++i) {
        auto p = base;  // a shared 60-token prefix (snapshots at 8, 16, 32, ...)
        auto tail = make_prompt(40 + i, 90 + i);
        p.insert(p.end(), tail.begin(), tail.end());
        prompts.push_back(p);
        ids.push_back(h.submit(p, Harness::greedy(30 + 9 * i)));
        if (i == 0) h.run();  // its snapshots serve the others
    }
    h.run();
    EXPECT_EQ(h.sched->stats().prefix_hit_tokens, 4 * 32);
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(h.results[ids[i]].tokens, run_alone(prompts[i], Harness::greedy(30 + 9 * i)).tokens) << i;
    EXPECT_GT(h.sched->stats().draft_accepted, 0);
}

TEST(Speculative, GreedyUnderPreemptionEqualsPlain) {
    ScriptedRunner probe(ScriptedOptions{});
    KvGeometry g = probe.kv_geometry();
    BlockPool sizing(g, 1 << 30);
    EngineOptions o = spec_opts(3, 64);
    // Room for three sequences of up to 128 tokens; growing past 128 needs one more block each.
    o.kv_cache_gb = gb_for_blocks(g, 3 * (sizing.slot_blocks() + 1) + 1);
    Harness h(o, drafting());
    const PreemptionCases cases = submit_preemption_cases(h);
    h.run();
    EXPECT_GT(h.sched->stats().preemptions, 0);
    expect_preemption_cases(h, cases);
    EXPECT_EQ(h.sched->pool().used(), 0);
    EXPECT_EQ(h.runner->states_alive(), 0);
}

TEST(Speculative, SeededSamplingIndependentOfBatch) {
    SamplingParams p;
    p.temperature = 1.2f;
    p.top_p = 0.95f;
    p.presence_penalty = 0.5f;
    p.seed = 42;
    p.max_tokens = 30;
    p.logprobs = 0;
    ScriptedOptions so = drafting();
    so.peak = 2.0f;  // a flat distribution: drafts are really accepted and rejected at random
    auto prompt = make_prompt(20, 9);
    Harness alone(spec_opts(3), so);
    uint64_t a = alone.submit(prompt, p);
    alone.run();
    Harness h(spec_opts(3, 16), so);
    submit_seeded_neighbours(h, p);
    uint64_t id = h.submit(prompt, p);
    h.run();
    EXPECT_EQ(h.results[id].tokens, alone.results[a].tokens);
    EXPECT_EQ(h.results[id].logprobs, alone.results[a].logprobs);
    EXPECT_EQ(h.results[id].tokens.size(), 30u);
    const auto& st = h.sched->stats();
    EXPECT_GT(st.draft_accepted, 0);
    EXPECT_LT(st.draft_accepted, st.draft_tokens);
}

// Sampling with drafts draws from the same distribution as without: the frequencies of the first
// few generated tokens over many seeds agree.
TEST(Speculative, SampledTokensFollowTheModelDistribution) {
    ScriptedOptions so;
    so.vocab = 8;
    so.eos = {};
    so.peak = 1.0f;
    so.next_token = [](std::span<const int32_t> t) { return (t.back() * 3 + 1) % 8; };
    ScriptedOptions sd = drafting(so);
    // A draft that disagrees often, so the resample path carries real weight.
    sd.draft_token = [](std::span<const int32_t> t) { return (t.back() * 5 + 2) % 8; };
    auto prompt = std::vector<int32_t>{3, 4};
    const int n = 2000;
    std::map<std::vector<int32_t>, int> plain, spec;
    SamplingParams p;
    p.temperature = 1.0f;
    p.max_tokens = 3;  // the first token comes from the prompt's logits, the next two from drafts
    EngineOptions o = spec_opts(0, 8192);
    o.max_running = n;
    Harness hp(o, so);
    EngineOptions os = spec_opts(2, 8192);
    os.max_running = n;
    Harness hs(os, sd);
    std::vector<uint64_t> ip, is;
    for (int i = 0; i < n; ++i) {
        p.seed = 1 + (uint64_t)i;
        ip.push_back(hp.submit(prompt, p));
        p.seed = 1000003 + (uint64_t)i;
        is.push_back(hs.submit(prompt, p));
    }
    hp.run();
    hs.run();
    // Tokens 2 and 3 (the first comes from the prompt's logits alike): drafted, accepted or resampled.
    auto tail = [](const Result& r) { return std::vector<int32_t>(r.tokens.begin() + 1, r.tokens.end()); };
    for (int i = 0; i < n; ++i) {
        ASSERT_EQ(hp.results[ip[(size_t)i]].tokens.size(), 3u);
        ASSERT_EQ(hs.results[is[(size_t)i]].tokens.size(), 3u);
        ++plain[tail(hp.results[ip[(size_t)i]])];
        ++spec[tail(hs.results[is[(size_t)i]])];
    }
    EXPECT_GT(hs.sched->stats().draft_accepted, 0);
    EXPECT_LT(hs.sched->stats().draft_accepted, hs.sched->stats().draft_tokens);
    // Two-sample check per outcome with more than a few expected hits: |a - b| <= 5 sigma.
    std::set<std::vector<int32_t>> keys;
    for (auto& [k, _] : plain) keys.insert(k);
    for (auto& [k, _] : spec) keys.insert(k);
    for (auto& k : keys) {
        const double a = (double)plain[k] / n, b = (double)spec[k] / n, m = (a + b) / 2;
        const double sigma = std::sqrt(std::max(m * (1 - m), 1.0 / n) * 2.0 / n);
        EXPECT_LE(std::fabs(a - b), 5 * sigma) << "outcome " << k[0] << "," << k[1] << ": " << a << " vs " << b;
    }
}

TEST(Speculative, StopsAndMaxTokensWithSeveralTokensPerStep) {
    ScriptedOptions so = drafting();
    // Counts up from the last token; emits the eos id 1 after token 20. Drafts always right.
    so.next_token = [](std::span<const int32_t> t) { return t.back() >= 20 ? 1 : t.back() + 1; };
    so.draft_token = so.next_token;
    Harness h(spec_opts(4), so);
    const StopCases c = submit_stop_cases(h);
    h.run();
    expect_stop_cases(h, c);
    for (uint64_t id : {c.eos, c.stop_id, c.length, c.ignore_eos}) EXPECT_EQ(h.results[id].events_after_finish, 0);
    EXPECT_EQ(h.sched->stats().draft_accepted, h.sched->stats().draft_tokens);
    EXPECT_EQ(h.runner->states_alive(), 0);
}

TEST(Speculative, KvReservesTheDraftsAndSpecDecodesFitTheBudget) {
    // Budget 12 with 3 drafts: at most 3 sequences run, each feeding 4 tokens per step.
    Harness h(spec_opts(3, 12), drafting());
    for (int i = 0; i < 6; ++i) h.submit(make_prompt(4, 40 + i), Harness::greedy(20));
    int steps = 0;
    while (h.sched->has_work()) {
        ASSERT_LT(++steps, 10000);
        h.sched->step();
        h.drain();
        EXPECT_LE(h.sched->running_ids().size(), 3u);
        int64_t fed = 0;
        for (auto& p : h.sched->last_plan()) fed += p.n_tokens;
        EXPECT_LE(fed, 12);
    }
    for (auto& [id, r] : h.results) EXPECT_EQ(r.tokens.size(), 20u) << id;
}
