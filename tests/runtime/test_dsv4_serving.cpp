// The scheduler over the real DeepSeek-V4 forward (tests/data/dsv4-tiny-flash): greedy tokens are the
// same alone or batched, with any chunking, after preemption, and with prefix reuse.
#include <gtest/gtest.h>

#include <cmath>

#include "harness.h"
#include "runtime/dsv4_runner.h"

using namespace dsinfer;
using namespace dsinfer::runtime;
using namespace dsinfer::runtime::testing;

namespace {

const std::string kModel = DSINFER_TEST_DATA "/dsv4-tiny-flash";

struct RealHarness {
    std::unique_ptr<ModelRunner> runner;
    std::unique_ptr<Scheduler> sched;
    std::map<uint64_t, std::shared_ptr<OutputChannel>> ch;
    std::map<uint64_t, Result> res;
    uint64_t next = 1;

    explicit RealHarness(EngineOptions o, const std::string& model = kModel) : runner(make_dsv4_runner(model)) {
        sched = std::make_unique<Scheduler>(*runner, o);
    }
    uint64_t submit(const std::vector<int32_t>& prompt, int max_tokens) {
        SamplingParams p = greedy_params(max_tokens);
        p.logprobs = 0;
        return submit(prompt, p);
    }
    uint64_t submit(const std::vector<int32_t>& prompt, SamplingParams p) {
        EXPECT_TRUE(sched->validate({prompt, p}).ok());
        auto s = std::make_unique<Sequence>();
        s->id = s->arrival = next++;
        s->tokens = prompt;
        s->params = p;
        s->out = std::make_shared<OutputChannel>(s->id, nullptr);
        ch[s->id] = s->out;
        uint64_t id = s->id;
        sched->add(std::move(s));
        return id;
    }
    void run() {
        for (int n = 0; sched->has_work(); ++n) {
            ASSERT_LT(n, 100000);
            sched->step();
        }
        for (auto& [id, c] : ch) {
            TokenEvent ev;
            while (c->next_for(ev, 0) == 1) {
                if (ev.has_token) {
                    res[id].tokens.push_back(ev.token);
                    res[id].logprobs.push_back(ev.logprob);
                }
                if (ev.finish != FinishReason::none) res[id].finish = ev.finish;
            }
        }
    }
};

EngineOptions opts(int budget, bool prefix, double gb = 0.25) {
    EngineOptions o;
    o.max_batch_tokens = budget;
    o.prefix_caching = prefix;
    o.kv_cache_gb = gb;
    return o;
}

Result alone(const std::vector<int32_t>& prompt, int max_tokens, const std::string& model = kModel) {
    RealHarness h(opts(4096, false), model);
    uint64_t id = h.submit(prompt, max_tokens);
    h.run();
    return h.res[id];
}

void expect_same(const Result& got, const Result& ref, const std::string& what) {
    EXPECT_EQ(got.tokens, ref.tokens) << what;
    ASSERT_EQ(got.logprobs.size(), ref.logprobs.size()) << what;
    double worst = 0;
    for (size_t i = 0; i < got.logprobs.size(); ++i) worst = std::max(worst, (double)std::fabs(got.logprobs[i] - ref.logprobs[i]));
    // The forward is row-independent and chunk-invariant, so even the log-probabilities are bitwise equal.
    EXPECT_EQ(worst, 0.0) << what;
}

}  // namespace

TEST(Dsv4Serving, BatchedAndChunkedEqualAlone) {
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 6; ++i) prompts.push_back(make_prompt(20 + 37 * i, 500 + i, 1024));
    RealHarness h(opts(48, false));
    std::vector<uint64_t> ids;
    for (auto& p : prompts) ids.push_back(h.submit(p, 6));
    h.run();
    for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_EQ(h.res[ids[i]].finish, FinishReason::length);
        expect_same(h.res[ids[i]], alone(prompts[i], 6), "batched request " + std::to_string(i));
    }
    EXPECT_EQ(h.sched->pool().used(), 0);
}

TEST(Dsv4Serving, PrefixReuseEqualsComputingFromScratch) {
    auto base = make_prompt(300, 77, 1024);
    auto other = base;
    other.resize(270);  // shares 270 tokens: the 256-token snapshot (2 x 128) is reusable
    auto tail = make_prompt(30, 78, 1024);
    other.insert(other.end(), tail.begin(), tail.end());
    RealHarness h(opts(96, true));
    uint64_t a = h.submit(base, 5);
    h.run();
    uint64_t b = h.submit(other, 5);
    uint64_t c = h.submit(base, 5);
    h.run();
    EXPECT_EQ(h.sched->stats().prefix_hit_tokens, 256 + 256);
    Result ref_base = alone(base, 5), ref_other = alone(other, 5);
    expect_same(h.res[a], ref_base, "first run");
    expect_same(h.res[b], ref_other, "shared prefix");
    expect_same(h.res[c], ref_base, "same prompt again");
}

TEST(Dsv4Serving, PreemptionEqualsUninterrupted) {
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 3; ++i) prompts.push_back(make_prompt(250, 600 + i, 1024));
    auto probe = make_dsv4_runner(kModel);
    KvGeometry g = probe->kv_geometry();
    BlockPool sizing(g, 1 << 30);
    // Three sequences of <= 256 tokens fit; growing past 256 needs a block more each.
    RealHarness h(opts(512, false, gb_for_blocks(g, 3 * (sizing.slot_blocks() + 2) + 1)));
    std::vector<uint64_t> ids;
    for (auto& p : prompts) ids.push_back(h.submit(p, 8));
    h.run();
    EXPECT_GT(h.sched->stats().preemptions, 0);
    for (size_t i = 0; i < prompts.size(); ++i)
        expect_same(h.res[ids[i]], alone(prompts[i], 8), "preempted batch request " + std::to_string(i));
    EXPECT_EQ(h.sched->pool().used(), 0);
}

// Speculative decoding with the model's MTP block: the same greedy tokens and bitwise-equal logprobs
// as plain decoding alone, in a batch (drafts of several sequences in one forward) and after a
// prefix snapshot is reused (its MTP state included).
TEST(Dsv4Serving, SpeculativeEqualsPlainDecoding) {
    auto base = make_prompt(140, 91, 1024);
    std::vector<std::vector<int32_t>> prompts = {base, make_prompt(23, 92, 1024), make_prompt(57, 93, 1024)};
    auto shared = base;
    shared.resize(133);  // reuses the 128-token snapshot of base
    auto tail = make_prompt(9, 94, 1024);
    shared.insert(shared.end(), tail.begin(), tail.end());
    EngineOptions o = opts(64, true);
    o.speculative = 2;
    RealHarness h(o);
    std::vector<uint64_t> ids;
    for (auto& p : prompts) ids.push_back(h.submit(p, 12));
    h.run();
    uint64_t sid = h.submit(shared, 12);
    h.run();
    EXPECT_EQ(h.sched->stats().prefix_hit_tokens, 128);
    EXPECT_GT(h.sched->stats().draft_tokens, 0);
    std::printf("MTP drafts: %lld proposed, %lld accepted\n", (long long)h.sched->stats().draft_tokens,
                (long long)h.sched->stats().draft_accepted);
    for (size_t i = 0; i < prompts.size(); ++i) expect_same(h.res[ids[i]], alone(prompts[i], 12), "speculative " + std::to_string(i));
    expect_same(h.res[sid], alone(shared, 12), "speculative after prefix reuse");
    EXPECT_EQ(h.sched->pool().used() - h.sched->stats().kv_blocks_snapshots, 0);
}

#ifndef DSINFER_CUDA
TEST(Dsv4Serving, DeviceCudaRefusedInACpuBuild) {
    try {
        make_dsv4_runner(kModel, "cuda");
        FAIL() << "--device cuda accepted by a CPU-only build";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("without the CUDA backend"), std::string::npos) << e.what();
    }
    EXPECT_THROW(make_dsv4_runner(kModel, "tpu"), std::invalid_argument);
}
#endif

// The trained default model (models/tiny-en), whose MTP block drafts well: accepted drafts (several
// tokens per step) and rejected ones both occur, and the output is still exactly plain decoding's.
TEST(Dsv4Serving, SpeculativeWithATrainedMtpBlock) {
    const std::string model = DSINFER_TEST_DATA "/../../models/tiny-en";
    // Random ids from the first 3000 of the vocabulary (ordinary byte-level tokens).
    std::vector<std::vector<int32_t>> prompts = {make_prompt(12, 5, 3000), make_prompt(30, 6, 3000)};
    EngineOptions o = opts(64, false);
    o.speculative = 3;
    RealHarness h(o, model);
    std::vector<uint64_t> ids;
    for (auto& p : prompts) ids.push_back(h.submit(p, 24));
    h.run();
    const auto& st = h.sched->stats();
    std::printf("tiny-en MTP drafts: %lld proposed, %lld accepted\n", (long long)st.draft_tokens, (long long)st.draft_accepted);
    EXPECT_GT(st.draft_accepted, 0);
    EXPECT_LT(st.draft_accepted, st.draft_tokens);
    for (size_t i = 0; i < prompts.size(); ++i)
        expect_same(h.res[ids[i]], alone(prompts[i], 24, model), "tiny-en speculative " + std::to_string(i));
}
