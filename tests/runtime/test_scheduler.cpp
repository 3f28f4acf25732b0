// Scheduler: token budget, chunked prefill, batching invariance, preemption, cancellation, FCFS.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "harness.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

TEST(Scheduler, BatchedGreedyEqualsAlone) {
    EngineOptions o;
    o.max_batch_tokens = 40;
    o.prefix_caching = false;
    Harness h(o);
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint64_t> ids;
    for (int i = 0; i < 12; ++i) {
        prompts.push_back(make_prompt(5 + 17 * i % 90, i));
        ids.push_back(h.submit(prompts.back(), Harness::greedy(10 + i)));
    }
    h.run();
    for (int i = 0; i < 12; ++i) {
        Result alone = run_alone(prompts[i], Harness::greedy(10 + i));
        EXPECT_EQ(h.results[ids[i]].tokens, alone.tokens) << "request " << i;
        EXPECT_EQ(h.results[ids[i]].finish, FinishReason::length);
        EXPECT_EQ((int)h.results[ids[i]].tokens.size(), 10 + i);
        EXPECT_EQ(h.results[ids[i]].events_after_finish, 0);
    }
    EXPECT_EQ(h.sched->pool().used(), 0);
    EXPECT_EQ(h.runner->states_alive(), 0);
}

TEST(Scheduler, BudgetAndChunkedPrefillNeverStallDecodes) {
    EngineOptions o;
    o.max_batch_tokens = 16;
    o.prefix_caching = false;
    Harness h(o);
    std::vector<uint64_t> short_ids;
    for (int i = 0; i < 3; ++i) short_ids.push_back(h.submit(make_prompt(4, 100 + i), Harness::greedy(40)));
    // Let the short ones reach decoding, then a long prompt arrives.
    for (int i = 0; i < 3; ++i) h.sched->step();
    auto long_prompt = make_prompt(300, 7);
    uint64_t long_id = h.submit(long_prompt, Harness::greedy(5));
    int steps_with_long = 0;
    while (h.sched->has_work()) {
        h.sched->step();
        h.drain();
        int64_t total = 0;
        std::set<uint64_t> in_step;
        for (auto& p : h.sched->last_plan()) {
            total += p.n_tokens;
            in_step.insert(p.id);
            if (p.id == long_id) ++steps_with_long;
        }
        EXPECT_LE(total, o.max_batch_tokens);
        // Every short request still generating is in every step: the long prefill takes only what is left.
        for (uint64_t id : short_ids)
            if (h.results[id].finish == FinishReason::none && h.results[id].tokens.size() < 40) {
                EXPECT_TRUE(in_step.count(id)) << "decode of " << id << " stalled";
            }
    }
    EXPECT_GE(steps_with_long, 300 / 16);  // it was chunked
    EXPECT_EQ(h.results[long_id].tokens, run_alone(long_prompt, Harness::greedy(5)).tokens);
}

TEST(Scheduler, NoMoreRunningThanBudgetTokensSoEveryDecodeFits) {
    EngineOptions o;
    o.max_batch_tokens = 4;
    o.prefix_caching = false;
    Harness h(o);
    for (int i = 0; i < 10; ++i) h.submit(make_prompt(3, 40 + i), Harness::greedy(6));
    while (h.sched->has_work()) {
        auto decoding = h.sched->decoding_ids();
        h.sched->step();
        h.drain();
        EXPECT_LE(h.sched->stats().running, 4);
        std::set<uint64_t> planned;
        for (auto& p : h.sched->last_plan()) planned.insert(p.id);
        for (uint64_t id : decoding) EXPECT_TRUE(planned.count(id)) << "decode of " << id << " stalled";
    }
    for (auto& [id, r] : h.results) EXPECT_EQ(r.tokens.size(), 6u);
}

TEST(Scheduler, ChunkSizeDoesNotChangeOutput) {
    auto prompt = make_prompt(257, 3);
    Result big = run_alone(prompt, Harness::greedy(20));
    for (int budget : {1, 7, 64}) {
        EngineOptions o;
        o.max_batch_tokens = budget;
        o.prefix_caching = false;
        Harness h(o);
        uint64_t id = h.submit(prompt, Harness::greedy(20));
        h.run();
        EXPECT_EQ(h.results[id].tokens, big.tokens) << "budget " << budget;
    }
}

TEST(Scheduler, PreemptionLosesAndReordersNothing) {
    ScriptedOptions so;
    ScriptedRunner probe(so);
    KvGeometry g = probe.kv_geometry();
    EngineOptions o;
    o.prefix_caching = false;
    o.max_batch_tokens = 64;
    // Room for three sequences of up to 128 tokens; growing past 128 needs one more block each.
    BlockPool sizing(g, 1 << 30);
    o.kv_cache_gb = gb_for_blocks(g, 3 * (sizing.slot_blocks() + 1) + 1);
    Harness h(o, so);
    const PreemptionCases cases = submit_preemption_cases(h);
    // Every sequence decoding at the start of a step gets its token in that step, unless the step
    // preempts it, even while a preempted (older) sequence recomputes its prefill.
    int steps = 0;
    while (h.sched->has_work()) {
        ASSERT_LT(++steps, 100000);
        auto decoding = h.sched->decoding_ids();
        h.sched->step();
        h.drain();
        auto running = h.sched->running_ids();
        std::set<uint64_t> planned;
        for (auto& p : h.sched->last_plan()) planned.insert(p.id);
        for (uint64_t id : decoding)
            if (h.results[id].finish == FinishReason::none && std::count(running.begin(), running.end(), id)) {
                EXPECT_TRUE(planned.count(id)) << "decode of " << id << " stalled in step " << steps;
            }
    }
    EXPECT_GT(h.sched->stats().preemptions, 0);
    expect_preemption_cases(h, cases);
    EXPECT_EQ(h.sched->pool().used(), 0);
    EXPECT_EQ(h.runner->states_alive(), 0);
}

TEST(Scheduler, SeededSamplingIndependentOfBatch) {
    SamplingParams p;
    p.temperature = 1.5f;
    p.top_p = 0.95f;
    p.seed = 42;
    p.max_tokens = 30;
    ScriptedOptions so;
    so.peak = 0.5f;  // a flat distribution, so sampling really picks among many tokens
    auto prompt = make_prompt(20, 9);
    Result alone = run_alone(prompt, p, so);
    EngineOptions o;
    o.max_batch_tokens = 13;
    Harness h(o, so);
    submit_seeded_neighbours(h, p);
    uint64_t id = h.submit(prompt, p);
    h.run();
    EXPECT_EQ(h.results[id].tokens, alone.tokens);
    // Different seeds give different samples (the distribution is flat enough).
    p.seed = 43;
    EXPECT_NE(run_alone(prompt, p, so).tokens, alone.tokens);
}

// Many sampled rows in one step are drawn side by side (threads from 8 rows on, where the machine has
// more than one core): every request still gets exactly the tokens it gets alone.
TEST(Scheduler, ManySampledRowsInOneStepMatchAlone) {
    ScriptedOptions so;
    so.peak = 0.5f;
    EngineOptions o;
    o.kv_cache_gb = 0.05;
    o.max_batch_tokens = 100000;
    o.prefix_caching = false;
    Harness h(o, so);
    std::vector<std::pair<uint64_t, SamplingParams>> ids;
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 24; ++i) {
        SamplingParams p;
        p.temperature = 1.2f;
        p.top_p = i % 3 == 0 ? 0.9f : 1.0f;
        p.top_k = i % 3 == 1 ? 40 : 0;
        p.seed = 500 + (uint64_t)i;
        p.max_tokens = 12;
        prompts.push_back(make_prompt(8 + i % 5, 30 + i));
        ids.push_back({h.submit(prompts.back(), p), p});
    }
    h.run();
    size_t total = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        const Result alone = run_alone(prompts[i], ids[i].second, so);
        EXPECT_EQ(h.results[ids[i].first].tokens, alone.tokens) << i;
        EXPECT_EQ(h.results[ids[i].first].finish, alone.finish) << i;
        total += alone.tokens.size();
    }
    EXPECT_GT(total, 24u * 6);  // most ran to max_tokens (a few drew the eos): many steps of many rows
}

// Sampled rows drawn from summaries (the scripted runner summarizes as the GPU forward does, and poisons
// the rows it summarized) give the tokens the whole rows give. Rows whose kept tokens may lie beyond the
// summary's 64 come whole, as do rows the summary cannot serve (logprobs, penalties). Rows that filter
// nothing are drawn by the runner from a uniform drawn before the step (device_draws): the same tokens.
TEST(Scheduler, SummarySamplingGivesTheRowsTokens) {
    auto run = [](int summary_cap, bool on, bool draws, EngineStats* stats) {
        ScriptedOptions so;
        so.peak = 0.5f;
        so.summary_cap = summary_cap;
        EngineOptions o;
        o.kv_cache_gb = 0.05;
        o.max_batch_tokens = 100000;
        o.prefix_caching = false;
        o.sample_summaries = on;
        o.device_draws = draws;
        Harness h(o, so);
        std::vector<uint64_t> ids;
        for (int i = 0; i < 24; ++i) {
            SamplingParams p;
            p.temperature = 1.2f;
            p.seed = 900 + (uint64_t)i;
            p.max_tokens = 10;
            switch (i % 8) {
                case 0: p.top_k = 8; break;          // within the summary
                case 1: p.top_k = 100; break;        // beyond it: the row
                case 2: p.top_p = 0.1f; break;       // a narrow nucleus: within
                case 3: p.top_p = 0.9f; break;       // a wide one: the row
                case 4: p.min_p = 0.6f; break;       // within
                case 5: p.top_k = 8, p.logprobs = 2; break;                // reads the row
                case 6: p.top_p = 0.1f, p.presence_penalty = 0.5f; break;  // likewise
                case 7: p.temperature = 0.9f; break;                        // nothing filtered: a draw
            }
            ids.push_back(h.submit(make_prompt(6 + i % 4, 70 + i), p));
        }
        h.run();
        *stats = h.sched->stats();
        std::vector<std::vector<int32_t>> out;
        for (uint64_t id : ids) out.push_back(h.results[id].tokens);
        return out;
    };
    EngineStats with, draws, off, rows_only;
    const auto a = run(64, true, false, &with);
    const auto d = run(64, true, true, &draws);
    const auto b = run(64, false, false, &off);
    const auto c = run(0, true, true, &rows_only);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a, c);
    EXPECT_EQ(a, d);
    size_t total = 0;
    for (const auto& t : a) total += t.size();
    EXPECT_GT(total, 24u * 5);
    EXPECT_GT(with.summary_rows, with.sampled_rows / 5);  // three kinds of eight within
    EXPECT_LT(with.summary_rows, with.sampled_rows / 2);
    EXPECT_GT(draws.summary_rows, with.summary_rows + with.sampled_rows / 10);  // and the draws
    EXPECT_EQ(off.summary_rows, 0);
    EXPECT_EQ(rows_only.summary_rows, 0);
    EXPECT_EQ(off.sampled_rows, with.sampled_rows);
}

TEST(Scheduler, CancellationFreesAtOnce) {
    EngineOptions o;
    o.prefix_caching = false;
    Harness h(o);
    uint64_t a = h.submit(make_prompt(10, 1), Harness::greedy(1000));
    uint64_t b = h.submit(make_prompt(10, 2), Harness::greedy(5));
    for (int i = 0; i < 3; ++i) h.sched->step();
    EXPECT_GT(h.sched->pool().used(), 0);
    h.channels[a]->cancel();
    h.sched->step();
    h.drain();
    EXPECT_EQ(h.results[a].finish, FinishReason::cancelled);
    EXPECT_EQ(h.results[a].tokens.size(), 3u);  // tokens made before the cancel are kept, no more
    h.run();
    EXPECT_EQ(h.results[b].finish, FinishReason::length);
    EXPECT_EQ(h.sched->pool().used(), 0);
    EXPECT_EQ(h.runner->states_alive(), 0);
    EXPECT_EQ(h.sched->stats().requests_cancelled, 1);
}

TEST(Scheduler, StopTokensEosAndMaxTokens) {
    ScriptedOptions so;
    // Counts up from the last token; emits the eos id 1 after token 20.
    so.next_token = [](std::span<const int32_t> t) { return t.back() >= 20 ? 1 : t.back() + 1; };
    EngineOptions o;
    Harness h(o, so);
    const StopCases c = submit_stop_cases(h);
    h.run();
    expect_stop_cases(h, c);
}

TEST(Scheduler, FirstComeFirstServed) {
    EngineOptions o;
    o.max_running = 2;
    o.prefix_caching = false;
    Harness h(o);
    std::vector<uint64_t> ids;
    for (int i = 0; i < 6; ++i) ids.push_back(h.submit(make_prompt(8, i), Harness::greedy(5)));
    std::vector<uint64_t> admitted;
    while (h.sched->has_work()) {
        h.sched->step();
        h.drain();
        for (auto& p : h.sched->last_plan())
            if (std::find(admitted.begin(), admitted.end(), p.id) == admitted.end()) admitted.push_back(p.id);
        EXPECT_LE(h.sched->stats().running, 2);
    }
    EXPECT_EQ(admitted, ids);
}

TEST(Scheduler, RejectsWhatCanNeverRun) {
    EngineOptions o;
    o.max_model_len = 64;
    Harness h(o);
    GenerationRequest r;
    r.prompt = make_prompt(64, 1);
    EXPECT_EQ(h.sched->validate(r).code, StatusCode::resource_exhausted);
    r.prompt = make_prompt(60, 1);
    r.params.max_tokens = 10;
    EXPECT_EQ(h.sched->validate(r).code, StatusCode::resource_exhausted);
    r.params.max_tokens = 4;
    EXPECT_TRUE(h.sched->validate(r).ok());
    r.prompt[3] = 256;
    Status st = h.sched->validate(r);
    EXPECT_EQ(st.code, StatusCode::invalid_argument);
    EXPECT_NE(st.message.find("vocabulary"), std::string::npos);
    r.prompt.clear();
    EXPECT_EQ(h.sched->validate(r).code, StatusCode::invalid_argument);
}
