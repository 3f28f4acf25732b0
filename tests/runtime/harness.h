// Drives a Scheduler over a ScriptedRunner step by step, collecting every request's events.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <vector>

#include "runtime/scheduler.h"
#include "runtime/scripted_runner.h"

namespace dsinfer::runtime::testing {

struct Result {
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;
    FinishReason finish = FinishReason::none;
    int events_after_finish = 0;
};

inline double gb_for_blocks(const KvGeometry& g, int64_t blocks) {
    return (double)(blocks * g.block_bytes() + g.block_bytes() / 2) / (1024.0 * 1024.0 * 1024.0);
}

inline SamplingParams greedy_params(int max_tokens = 16) {
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    return p;
}

struct Harness {
    std::unique_ptr<ScriptedRunner> runner;
    std::unique_ptr<Scheduler> sched;
    std::map<uint64_t, std::shared_ptr<OutputChannel>> channels;
    std::map<uint64_t, Result> results;
    uint64_t next_id = 1;

    Harness(EngineOptions opts, ScriptedOptions so = {}) {
        runner = std::make_unique<ScriptedRunner>(std::move(so));
        sched = std::make_unique<Scheduler>(*runner, opts);
    }

    uint64_t submit(std::vector<int32_t> prompt, SamplingParams p = greedy_params()) {
        GenerationRequest req{prompt, p};
        Status st = sched->validate(req);
        EXPECT_TRUE(st.ok()) << st.message;
        auto s = std::make_unique<Sequence>();
        s->id = s->arrival = next_id++;
        s->tokens = std::move(prompt);
        s->params = p;
        s->rng = Rng(p.seed ? *p.seed : 1234 + s->id);
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        channels[s->id] = s->out;
        uint64_t id = s->id;
        sched->add(std::move(s));
        return id;
    }

    void drain() {
        for (auto& [id, ch] : channels) {
            TokenEvent ev;
            while (ch->next_for(ev, 0) == 1) {
                Result& r = results[id];
                if (r.finish != FinishReason::none) ++r.events_after_finish;
                if (ev.has_token) {
                    r.tokens.push_back(ev.token);
                    r.logprobs.push_back(ev.logprob);
                }
                if (ev.finish != FinishReason::none) r.finish = ev.finish;
            }
        }
    }

    // Steps until nothing is left; fails the test past max_steps.
    void run(int max_steps = 100000) {
        int n = 0;
        while (sched->has_work()) {
            sched->step();
            drain();
            ASSERT_LT(++n, max_steps) << "scheduler did not finish";
        }
        drain();
    }

    static SamplingParams greedy(int max_tokens = 16) { return greedy_params(max_tokens); }
};

inline std::vector<int32_t> make_prompt(int n, uint32_t seed, int vocab = 256) {
    std::vector<int32_t> p(n);
    uint64_t h = seed * 2654435761ull + 7;
    for (int i = 0; i < n; ++i) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = 2 + (int32_t)((h >> 33) % (uint64_t)(vocab - 2));
    }
    return p;
}

// The output of one request run alone with prefix caching off and an ample budget.
inline Result run_alone(const std::vector<int32_t>& prompt, SamplingParams p, ScriptedOptions so = {}) {
    EngineOptions o;
    o.kv_cache_gb = 0.05;
    o.max_batch_tokens = 100000;
    o.prefix_caching = false;
    Harness h(o, std::move(so));
    uint64_t id = h.submit(prompt, p);
    h.run();
    return h.results[id];
}

// Five other sampled requests submitted before the one under test (prompts of 10..14 tokens, seeds
// 1000..1004, otherwise p), so that it shares its steps with them.
inline void submit_seeded_neighbours(Harness& h, const SamplingParams& p) {
    for (int i = 0; i < 5; ++i) {
        SamplingParams q = p;
        q.seed = 1000 + i;
        h.submit(make_prompt(10 + i, 70 + i), q);
    }
}

// The preemption workload: six requests with growing prompts and staggered output lengths, submitted
// at once to a pool that holds only three of them; each must come out as if it had run alone.
struct PreemptionCases {
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint64_t> ids;
    static SamplingParams params(int i) { return Harness::greedy(40 + 25 * i); }
};
inline PreemptionCases submit_preemption_cases(Harness& h) {
    PreemptionCases c;
    for (int i = 0; i < 6; ++i) {
        c.prompts.push_back(make_prompt(100 + i, 50 + i));
        c.ids.push_back(h.submit(c.prompts.back(), PreemptionCases::params(i)));
    }
    return c;
}
inline void expect_preemption_cases(Harness& h, const PreemptionCases& c) {
    for (int i = 0; i < 6; ++i) {
        const Result& r = h.results[c.ids[size_t(i)]];
        EXPECT_EQ(r.tokens, run_alone(c.prompts[size_t(i)], PreemptionCases::params(i)).tokens) << i;
        EXPECT_EQ(r.finish, FinishReason::length) << i;
        EXPECT_EQ(r.events_after_finish, 0) << i;
    }
}

// Stops, eos and max_tokens over a scripted model that counts up from the last token and emits the
// eos id 1 after token 20: four requests (plain until eos, a stop token id, max_tokens, eos ignored).
struct StopCases {
    uint64_t eos, stop_id, length, ignore_eos;
};
inline StopCases submit_stop_cases(Harness& h) {
    StopCases c;
    c.eos = h.submit({10}, Harness::greedy(100));
    SamplingParams ps = Harness::greedy(100);
    ps.stop_token_ids = {15};
    c.stop_id = h.submit({10, 11}, ps);
    c.length = h.submit({10, 12}, Harness::greedy(3));
    SamplingParams pe = Harness::greedy(12);
    pe.ignore_eos = true;
    c.ignore_eos = h.submit({18}, pe);
    return c;
}
inline void expect_stop_cases(Harness& h, const StopCases& c) {
    EXPECT_EQ(h.results[c.eos].tokens, (std::vector<int32_t>{11, 12, 13, 14, 15, 16, 17, 18, 19, 20}));
    EXPECT_EQ(h.results[c.eos].finish, FinishReason::stop);
    EXPECT_EQ(h.results[c.stop_id].tokens, (std::vector<int32_t>{12, 13, 14}));
    EXPECT_EQ(h.results[c.stop_id].finish, FinishReason::stop);
    EXPECT_EQ(h.results[c.length].tokens, (std::vector<int32_t>{13, 14, 15}));
    EXPECT_EQ(h.results[c.length].finish, FinishReason::length);
    EXPECT_EQ(h.results[c.ignore_eos].tokens.size(), 12u);
    EXPECT_EQ(h.results[c.ignore_eos].tokens[2], 1);  // eos kept as output when ignored
}

}  // namespace dsinfer::runtime::testing
