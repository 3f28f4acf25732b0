// Greedy generation: speculative decoding with the MTP block (and with drafts that are always, or
// only sometimes, right) gives exactly the plain greedy tokens.
#include <gtest/gtest.h>

#include <string>

#include "model/generate.h"

using namespace dsinfer;

namespace {
const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";
Dsv4Model& model() {
    static std::unique_ptr<Dsv4Model> m = Dsv4Model::load(kDir, ModelOptions{.quant_sim = true, .threads = 1});
    return *m;
}
}  // namespace

TEST(Generate, SpeculativeEqualsPlainGreedy) {
    const std::vector<int32_t> prompt = {0, 17, 301, 4, 99, 250, 7};
    GreedyOptions plain;
    plain.max_tokens = 60;
    plain.stop_at_eos = false;
    const auto ref = greedy_generate(model(), prompt, plain, nullptr);
    ASSERT_EQ(ref.size(), size_t(60));

    GreedyOptions spec = plain;
    spec.speculative = true;
    GreedyStats st;
    std::vector<int32_t> streamed;
    const auto got = greedy_generate(model(), prompt, spec, [&](int32_t t) { streamed.push_back(t); }, &st);
    EXPECT_EQ(got, ref);
    EXPECT_EQ(streamed, ref);
    EXPECT_GT(st.drafts, 0);

    // Perfect drafts: every one accepted, two tokens per main-model step.
    const size_t np = prompt.size();
    spec.draft_override = [&](const std::vector<int32_t>& hist) {
        const size_t i = hist.size() - np;  // index in ref of the token after hist
        return i < ref.size() ? ref[i] : 0;
    };
    GreedyStats st2;
    EXPECT_EQ(greedy_generate(model(), prompt, spec, nullptr, &st2), ref);
    EXPECT_EQ(st2.accepted, st2.drafts);
    EXPECT_LE(st2.main_steps, 31);

    // Every other draft wrong: accepted and rolled-back steps interleave.
    spec.draft_override = [&](const std::vector<int32_t>& hist) {
        const size_t i = hist.size() - np;
        const int32_t right = i < ref.size() ? ref[i] : 0;
        return (hist.size() % 2) ? right : int32_t((right + 1) % 1024);
    };
    GreedyStats st3;
    EXPECT_EQ(greedy_generate(model(), prompt, spec, nullptr, &st3), ref);
    EXPECT_GT(st3.accepted, 0);
    EXPECT_LT(st3.accepted, st3.drafts);
}

TEST(Generate, StopsAtEosAndMaxTokens) {
    GreedyOptions o;
    o.max_tokens = 5;
    EXPECT_EQ(greedy_generate(model(), std::vector<int32_t>{1, 2, 3}, o, nullptr).size(), size_t(5));
    o.max_tokens = 0;
    EXPECT_TRUE(greedy_generate(model(), std::vector<int32_t>{1, 2, 3}, o, nullptr).empty());
    EXPECT_THROW(greedy_generate(model(), std::vector<int32_t>{}, o, nullptr), std::exception);
}
