// Chunked prefill and batching must not change results: several sequences in one forward give what
// each gives alone, and any chunking of a prefill gives what one prefill gives (bitwise: every row's
// math is independent of the rows beside it).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "model/dsv4_model.h"

using namespace dsinfer;

namespace {

const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

Dsv4Model& model() {
    static std::unique_ptr<Dsv4Model> m = Dsv4Model::load(kDir, ModelOptions{});
    return *m;
}

std::vector<int32_t> random_tokens(int n, unsigned seed, int vocab) {
    std::mt19937 rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng() % unsigned(vocab));
    return t;
}

// Prefill in the given chunks, then `decode` single tokens; returns all logits and the final hidden.
std::vector<float> run_alone(const std::vector<int32_t>& toks, const std::vector<int>& chunks, int decode,
                             std::vector<float>* hidden = nullptr) {
    Dsv4Model& m = model();
    auto st = m.new_sequence();
    std::vector<float> all;
    size_t pos = 0;
    const size_t prompt = toks.size() - size_t(decode);
    size_t ci = 0;
    while (pos < prompt) {
        size_t len = std::min(prompt - pos, size_t(chunks[ci % chunks.size()]));
        ++ci;
        std::vector<float> logits, fh;
        ForwardItem it;
        it.state = st.get();
        it.tokens = std::span<const int32_t>(toks.data() + pos, len);
        it.all_logits = true;
        it.logits_out = &logits;
        it.final_hidden = &fh;
        m.forward(std::span<ForwardItem>(&it, 1));
        all.insert(all.end(), logits.begin(), logits.end());
        if (hidden) hidden->insert(hidden->end(), fh.begin(), fh.end());
        pos += len;
    }
    for (int s = 0; s < decode; ++s) {
        std::vector<float> logits;
        ForwardItem it;
        it.state = st.get();
        it.tokens = std::span<const int32_t>(toks.data() + prompt + size_t(s), 1);
        it.logits_out = &logits;
        m.forward(std::span<ForwardItem>(&it, 1));
        all.insert(all.end(), logits.begin(), logits.end());
    }
    EXPECT_EQ(st->position(), int64_t(toks.size()));
    return all;
}

}  // namespace

TEST(Batching, ChunkedPrefillEqualsWhole) {
    const int V = int(model().config().vocab_size);
    auto toks = random_tokens(150, 1, V);
    std::vector<float> h_whole, h_chunk;
    auto whole = run_alone(toks, {130}, 20, &h_whole);
    // Chunks of 1, 3, 5, 7, 128: crossing window, ratio-4 and ratio-128 block boundaries.
    for (std::vector<int> chunks : {std::vector<int>{1}, {3}, {7}, {5, 128}, {64}}) {
        h_chunk.clear();
        auto chunked = run_alone(toks, chunks, 20, &h_chunk);
        ASSERT_EQ(whole.size(), chunked.size());
        for (size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(whole[i], chunked[i]) << "chunk " << chunks[0] << " at " << i;
        ASSERT_EQ(h_whole, h_chunk);
    }
}

TEST(Batching, SequencesInOneForwardEqualAlone) {
    Dsv4Model& m = model();
    const int V = int(m.config().vocab_size);
    // Three sequences of different lengths: prefill them together (one call), then decode together.
    std::vector<std::vector<int32_t>> seqs = {random_tokens(40, 2, V), random_tokens(9, 3, V), random_tokens(133, 4, V)};
    const int decode = 6;
    std::vector<std::vector<float>> alone;
    for (auto& s : seqs) alone.push_back(run_alone(s, {1000}, decode));

    std::vector<std::unique_ptr<SequenceState>> st;
    std::vector<std::vector<float>> got(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) st.push_back(m.new_sequence());
    {
        std::vector<std::vector<float>> logits(seqs.size());
        std::vector<ForwardItem> items(seqs.size());
        for (size_t i = 0; i < seqs.size(); ++i) {
            items[i].state = st[i].get();
            items[i].tokens = std::span<const int32_t>(seqs[i].data(), seqs[i].size() - decode);
            items[i].all_logits = true;
            items[i].logits_out = &logits[i];
        }
        m.forward(items);
        for (size_t i = 0; i < seqs.size(); ++i) got[i] = logits[i];
    }
    for (int s = 0; s < decode; ++s) {
        std::vector<std::vector<float>> logits(seqs.size());
        std::vector<ForwardItem> items(seqs.size());
        for (size_t i = 0; i < seqs.size(); ++i) {
            items[i].state = st[i].get();
            items[i].tokens = std::span<const int32_t>(seqs[i].data() + seqs[i].size() - decode + s, 1);
            items[i].logits_out = &logits[i];
        }
        m.forward(items);
        for (size_t i = 0; i < seqs.size(); ++i) got[i].insert(got[i].end(), logits[i].begin(), logits[i].end());
    }
    for (size_t i = 0; i < seqs.size(); ++i) {
        ASSERT_EQ(got[i].size(), alone[i].size());
        for (size_t j = 0; j < got[i].size(); ++j) ASSERT_EQ(got[i][j], alone[i][j]) << "seq " << i << " at " << j;
    }
}

// argmax_out: the lowest index of the largest logit of each row logits_out would hold (the last, or
// every row with all_logits), alone or beside logits_out, for each item of a batched prefill and of a
// batched decode.
TEST(Batching, ArgmaxOutIsEachRowsArgmax) {
    Dsv4Model& m = model();
    const int V = int(m.config().vocab_size);
    auto scan = [&](const float* r) {
        int32_t best = 0;
        for (int32_t j = 1; j < V; ++j)
            if (r[j] > r[best]) best = j;
        return best;
    };
    std::vector<std::vector<int32_t>> seqs = {random_tokens(21, 5, V), random_tokens(6, 6, V), random_tokens(70, 7, V),
                                              random_tokens(9, 8, V)};
    const int decode = 3;
    std::vector<std::vector<float>> alone;
    for (auto& s : seqs) alone.push_back(run_alone(s, {1000}, decode));
    std::vector<std::unique_ptr<SequenceState>> st;
    for (size_t i = 0; i < seqs.size(); ++i) st.push_back(m.new_sequence());
    for (int step = 0; step <= decode; ++step) {
        std::vector<std::vector<float>> logits(seqs.size());
        std::vector<std::vector<int32_t>> am(seqs.size(), std::vector<int32_t>(80, -7));
        std::vector<ForwardItem> items(seqs.size());
        for (size_t i = 0; i < seqs.size(); ++i) {
            items[i].state = st[i].get();
            const size_t prompt = seqs[i].size() - decode;
            items[i].tokens = step == 0 ? std::span<const int32_t>(seqs[i].data(), prompt)
                                        : std::span<const int32_t>(seqs[i].data() + prompt + step - 1, 1);
            items[i].argmax_out = am[i].data();
            if (i == 1) {  // logits of every row beside the argmax
                items[i].logits_out = &logits[i];
                items[i].all_logits = true;
            }
            if (i == 2) items[i].logits_out = &logits[i];  // the last row's logits too
            if (i == 3) items[i].all_logits = true;        // every row's argmax, no logits
        }
        m.forward(items);
        for (size_t i = 0; i < seqs.size(); ++i) {
            SCOPED_TRACE(testing::Message() << "step " << step << " seq " << i);
            const size_t prompt = seqs[i].size() - decode;
            const size_t t = step == 0 ? prompt : 1, last = step == 0 ? prompt - 1 : prompt - 1 + size_t(step);
            const size_t rows = (i == 1 || i == 3) ? t : 1;  // the rows asked for
            for (size_t r = 0; r < rows; ++r)
                EXPECT_EQ(am[i][r], scan(alone[i].data() + (last + 1 - rows + r) * size_t(V))) << "row " << r;
            EXPECT_EQ(am[i][rows], -7);  // nothing written past them
            const size_t lrows = i == 1 ? t : i == 2 ? 1 : 0;
            ASSERT_EQ(logits[i].size(), lrows * size_t(V));
            if (lrows > 0) {
                const float* want = alone[i].data() + last * size_t(V);
                EXPECT_EQ(std::vector<float>(logits[i].end() - V, logits[i].end()), std::vector<float>(want, want + V));
            }
        }
    }
}

// logits_into writes the rows logits_out would hold straight into the caller's buffer (one request
// alone, and beside others with argmax and vector outputs), and nothing past them.
TEST(Batching, LogitsIntoMatchesLogitsOut) {
    Dsv4Model& m = model();
    const size_t V = size_t(m.config().vocab_size);
    std::vector<std::vector<int32_t>> seqs = {random_tokens(12, 21, int(V)), random_tokens(7, 22, int(V)),
                                              random_tokens(9, 23, int(V))};
    for (bool batched : {false, true}) {
        SCOPED_TRACE(batched ? "batched" : "alone");
        std::vector<std::unique_ptr<SequenceState>> sa, sb;
        for (size_t i = 0; i < seqs.size(); ++i) sa.push_back(m.new_sequence()), sb.push_back(m.new_sequence());
        const size_t n = batched ? seqs.size() : 1;
        std::vector<std::vector<float>> out(n), into(n);
        std::vector<int32_t> am(n, -1);
        std::vector<ForwardItem> a(n), b(n);
        for (size_t i = 0; i < n; ++i) {
            const bool all = i == 0;  // every row of the first, the last row of the others
            a[i].state = sa[i].get();
            b[i].state = sb[i].get();
            a[i].tokens = b[i].tokens = seqs[i];
            a[i].all_logits = b[i].all_logits = all;
            a[i].logits_out = &out[i];
            into[i].assign((all ? seqs[i].size() : 1) * V + 5, -3.0f);  // 5 guard floats past the rows
            b[i].logits_into = into[i].data();
            if (i == 2) b[i].argmax_out = &am[i];
        }
        m.forward(a);
        m.forward(b);
        for (size_t i = 0; i < n; ++i) {
            ASSERT_EQ(out[i].size() + 5, into[i].size()) << i;
            EXPECT_EQ(std::vector<float>(into[i].begin(), into[i].end() - 5), out[i]) << i;
            EXPECT_EQ(std::vector<float>(into[i].end() - 5, into[i].end()), std::vector<float>(5, -3.0f)) << i;
        }
    }
}

TEST(Batching, MixedPrefillAndDecodeAndClone) {
    Dsv4Model& m = model();
    const int V = int(m.config().vocab_size);
    auto a = random_tokens(30, 5, V), b = random_tokens(20, 6, V);
    auto ref_a = run_alone(a, {1000}, 1);
    auto ref_b = run_alone(b, {1000}, 0);
    // a: prefill 29 alone, then its decode token in the same call as b's whole prefill.
    auto sa = m.new_sequence(), sb = m.new_sequence();
    std::vector<float> la, lb, la2;
    ForwardItem it;
    it.state = sa.get();
    it.tokens = std::span<const int32_t>(a.data(), 29);
    it.all_logits = true;
    it.logits_out = &la;
    m.forward(std::span<ForwardItem>(&it, 1));
    auto snapshot = sa->clone();  // prefix reuse: a copy continues exactly like the original
    EXPECT_GT(snapshot->memory_bytes(), size_t(0));
    std::vector<ForwardItem> items(2);
    items[0].state = sa.get();
    items[0].tokens = std::span<const int32_t>(a.data() + 29, 1);
    items[0].logits_out = &la2;
    items[1].state = sb.get();
    items[1].tokens = std::span<const int32_t>(b.data(), b.size());
    items[1].all_logits = true;
    items[1].logits_out = &lb;
    m.forward(items);
    la.insert(la.end(), la2.begin(), la2.end());
    EXPECT_EQ(la, ref_a);
    EXPECT_EQ(lb, ref_b);
    std::vector<float> lc;
    ForwardItem ic;
    ic.state = snapshot.get();
    ic.tokens = std::span<const int32_t>(a.data() + 29, 1);
    ic.logits_out = &lc;
    m.forward(std::span<ForwardItem>(&ic, 1));
    EXPECT_EQ(lc, la2);
}

TEST(Batching, RejectsBadTokens) {
    Dsv4Model& m = model();
    auto st = m.new_sequence();
    std::vector<int32_t> bad = {1, int32_t(m.config().vocab_size)};
    ForwardItem it;
    it.state = st.get();
    it.tokens = bad;
    EXPECT_THROW(m.forward(std::span<ForwardItem>(&it, 1)), std::exception);
    std::vector<int32_t> good = {1, 2};
    std::vector<ForwardItem> two(2);
    two[0].state = two[1].state = st.get();
    two[0].tokens = two[1].tokens = good;
    EXPECT_THROW(m.forward(two), std::exception);
    EXPECT_EQ(st->position(), 0);
}

// Speculative decoding's undo: append tokens (main model and MTP), roll back, and the state is
// bitwise what it was; decoding then continues exactly as if the tokens had never been seen.
TEST(Batching, MarkAndRollback) {
    Dsv4Model& m = model();
    const int V = int(m.config().vocab_size);
    auto toks = random_tokens(140, 7, V);
    auto st = m.new_sequence();
    std::vector<float> logits, hidden;
    ForwardItem it;
    it.state = st.get();
    it.tokens = std::span<const int32_t>(toks.data(), 126);  // the next tokens cross a ratio-128 block end
    it.logits_out = &logits;
    it.final_hidden = &hidden;
    m.forward(std::span<ForwardItem>(&it, 1));
    MtpItem mi;
    mi.state = st.get();
    mi.hidden = hidden.data();
    mi.tokens = std::span<const int32_t>(toks.data() + 1, 125);
    std::vector<float> ml;
    mi.logits_out = &ml;
    m.forward_mtp(std::span<MtpItem>(&mi, 1));

    auto before = st->clone();
    SequenceMark mark = st->mark(3);
    // Three tokens in the main model (two of them "drafts") and three in the MTP block.
    it.tokens = std::span<const int32_t>(toks.data() + 126, 3);
    it.final_hidden = &hidden;
    m.forward(std::span<ForwardItem>(&it, 1));
    mi.hidden = hidden.data();
    mi.tokens = std::span<const int32_t>(toks.data() + 127, 3);
    m.forward_mtp(std::span<MtpItem>(&mi, 1));
    EXPECT_NO_THROW(st->rollback(st->mark(0)));  // a mark taken now covers the present state
    st->rollback(mark);
    ASSERT_EQ(st->position(), before->position());
    ASSERT_EQ(st->mtp_position(), before->mtp_position());
    ASSERT_EQ(st->n_caches(), before->n_caches());
    for (size_t l = 0; l < st->n_caches(); ++l) {  // main layers, then the MTP block
        const LayerCache a = st->cache_copy(l), b = before->cache_copy(l);
        EXPECT_EQ(a.window, b.window) << l;
        EXPECT_EQ(a.ckv, b.ckv) << l;
        EXPECT_EQ(a.ikeys, b.ikeys) << l;
        EXPECT_EQ(a.comp.kv, b.comp.kv) << l;
        EXPECT_EQ(a.comp.score, b.comp.score) << l;
        EXPECT_EQ(a.icomp.kv, b.icomp.kv) << l;
        EXPECT_EQ(a.icomp.score, b.icomp.score) << l;
    }
    // Decoding goes on exactly as from the untouched copy.
    std::vector<float> la, lb;
    ForwardItem ia, ib;
    ia.state = st.get();
    ib.state = before.get();
    ia.tokens = ib.tokens = std::span<const int32_t>(toks.data() + 130, 2);
    ia.logits_out = &la;
    ib.logits_out = &lb;
    m.forward(std::span<ForwardItem>(&ia, 1));
    m.forward(std::span<ForwardItem>(&ib, 1));
    EXPECT_EQ(la, lb);
    st->rollback(st->mark(0));
    // Too many tokens since the mark: refused.
    SequenceMark small = st->mark(1);
    it.tokens = std::span<const int32_t>(toks.data() + 126, 2);
    m.forward(std::span<ForwardItem>(&it, 1));
    EXPECT_THROW(st->rollback(small), std::exception);
}

// The attended compressed entries per layer kind (§6.4), shared by the CPU and GPU forwards.
TEST(CompressedPick, ByLayerKind) {
    const auto none = compressed_pick(0, 512, 40);
    EXPECT_EQ(none.count, 0);
    EXPECT_FALSE(none.take_all);
    const auto all128 = compressed_pick(128, 512, 9000);
    EXPECT_EQ(all128.count, 9000);
    EXPECT_FALSE(all128.take_all);
    const auto few = compressed_pick(4, 512, 512);  // every entry fits: kept without scoring
    EXPECT_EQ(few.count, 512);
    EXPECT_TRUE(few.take_all);
    const auto many = compressed_pick(4, 512, 513);  // the indexer chooses
    EXPECT_EQ(many.count, 512);
    EXPECT_FALSE(many.take_all);
}
