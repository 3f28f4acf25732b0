// The model forward on the GPU (cuda_model.h) against DeepSeek's reference goldens on the shipped
// tiny checkpoint, with the same bars as the CPU model (tests/model/test_replay.cpp): end to end,
// layer by layer, without quantization simulation, each also with chunked prefill (the default,
// exact float32 GEMMs); end to end with prefill GEMMs on FP8 tensor cores. Plus the CLI
// (`dsinfer replay --device cuda`, then `dsinfer compare`) and cloned device sequences.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_model.h"
#include "model/replay.h"
#include "model/replay_check.h"

using namespace dsinfer;

namespace {

const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

// The tiny checkpoint on the GPU with the given device options.
std::unique_ptr<Dsv4Model> load_with(const cuda::CudaModelOptions& o) {
    auto p = Dsv4Model::load(kDir, ModelOptions{});
    p->set_device(cuda::make_model_device(*p, o));
    return p;
}

std::unique_ptr<Dsv4Model> load(bool fp8_tensor_cores) {
    cuda::CudaModelOptions o;
    o.fp8_tensor_cores = fp8_tensor_cores;
    return load_with(o);
}

// The two models live until the test environment is torn down, i.e. before main() returns: device
// memory must be released while the CUDA runtime is still up (not by static destructors at exit).
std::unique_ptr<Dsv4Model> g_models[2];

Dsv4Model& model() {
    if (!g_models[0]) g_models[0] = load(false);
    return *g_models[0];
}

Dsv4Model& model_tensor_cores() {
    if (!g_models[1]) g_models[1] = load(true);
    return *g_models[1];
}

struct ReleaseModels : ::testing::Environment {
    void TearDown() override {
        g_models[0].reset();
        g_models[1].reset();
    }
};
[[maybe_unused]] ::testing::Environment* const kReleaseModels =
    ::testing::AddGlobalTestEnvironment(new ReleaseModels);


void run_and_check(bool noquant, bool layerwise, int64_t chunk, bool fp8_tensor_cores = false) {
    Dsv4Model& m = fp8_tensor_cores ? model_tensor_cores() : model();
    ASSERT_STREQ(m.device_name(), "cuda");
    test_util::replay_and_check(m, noquant, layerwise, chunk);
}

int run(const std::string& args, std::string* out) {
    const std::string cmd = std::string(DSINFER_BINARY) + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    std::string text;
    while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
    const int status = pclose(p);
    *out = text;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(CudaReplay, EndToEnd) { run_and_check(false, false, 0); }
TEST(CudaReplay, EndToEndChunk7) { run_and_check(false, false, 7); }
TEST(CudaReplay, EndToEndChunk64) { run_and_check(false, false, 64); }
TEST(CudaReplay, Layerwise) { run_and_check(false, true, 0); }
TEST(CudaReplay, LayerwiseChunk7) { run_and_check(false, true, 7); }
TEST(CudaReplay, LayerwiseChunk64) { run_and_check(false, true, 64); }
TEST(CudaReplay, NoQuant) { run_and_check(true, false, 0); }
TEST(CudaReplay, NoQuantChunk7) { run_and_check(true, false, 7); }
TEST(CudaReplay, NoQuantChunk64) { run_and_check(true, false, 64); }
// FP8 tensor cores for the prefill GEMMs: the end-to-end bars hold (the layer-by-layer bar does not,
// docs/cuda.md); chunk 7 would stay on the exact GEMV path, so it is not repeated here.
TEST(CudaReplay, EndToEndFp8TensorCores) { run_and_check(false, false, 0, true); }
TEST(CudaReplay, EndToEndFp8TensorCoresChunk64) { run_and_check(false, false, 64, true); }

// A sequence cloned mid-way holds its own copy of the device caches: both continue identically,
// and continuing one leaves the other untouched.
TEST(CudaReplay, ClonedSequenceContinuesIdentically) {
    Dsv4Model& m = model();
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; ++i) prompt.push_back((i * 37 + 5) % int(m.config().vocab_size));
    auto a = m.new_sequence();
    std::vector<float> la, lb, lc;
    ForwardItem it;
    it.state = a.get();
    it.tokens = prompt;
    it.logits_out = &la;
    m.forward(std::span<ForwardItem>(&it, 1));
    auto b = a->clone();
    EXPECT_GT(b->memory_bytes(), sizeof(SequenceState));
    const int32_t next[2] = {7, 11};
    it.tokens = std::span<const int32_t>(next, 1);
    m.forward(std::span<ForwardItem>(&it, 1));  // a advances by one token
    it.state = b.get();
    it.logits_out = &lb;
    m.forward(std::span<ForwardItem>(&it, 1));  // b: the same token from the same state
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) ASSERT_EQ(la[i], lb[i]) << i;
    it.tokens = std::span<const int32_t>(next + 1, 1);
    m.forward(std::span<ForwardItem>(&it, 1));  // b moves on; a must not see it
    it.state = a.get();
    it.logits_out = &lc;
    m.forward(std::span<ForwardItem>(&it, 1));
    EXPECT_EQ(a->position(), b->position());
    for (size_t i = 0; i < lb.size(); ++i) ASSERT_EQ(lb[i], lc[i]) << i;
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double d = double(got[i]) - double(ref[i]);
        num += d * d;
        den += double(ref[i]) * double(ref[i]);
    }
    return std::sqrt(num / den);
}

// Several sequences at different positions (window ring wrapped or not, with and without
// compressed entries of both ratios) decoding one token each in one batched forward: each one's
// logits match the same sequence decoding alone on the GPU (only attention's split points differ) and
// the CPU model (float32 summation order only; quantization simulation off so that no e4m3 rounding
// step can flip).
TEST(CudaReplay, BatchedDecodeMatchesAloneAndCpu) {
    Dsv4Model& g = model();
    auto cpu_model = Dsv4Model::load(kDir, ModelOptions{});
    struct QuantBack {
        Dsv4Model& m;
        ~QuantBack() { m.set_quant_sim(true); }
    } back{g};
    g.set_quant_sim(false);
    cpu_model->set_quant_sim(false);
    const int64_t V = g.config().vocab_size;
    const std::vector<int> lens = {3, 20, 47, 150};
    std::vector<std::unique_ptr<SequenceState>> gs, alone, cs;
    std::vector<int32_t> last;
    for (size_t s = 0; s < lens.size(); ++s) {
        std::vector<int32_t> prompt;
        for (int i = 0; i < lens[s]; ++i) prompt.push_back(int32_t((i * 37 + 11 * s + 5) % V));
        gs.push_back(g.new_sequence());
        cs.push_back(cpu_model->new_sequence());
        ForwardItem it;
        it.tokens = prompt;
        it.state = gs.back().get();
        g.forward(std::span<ForwardItem>(&it, 1));
        it.state = cs.back().get();
        cpu_model->forward(std::span<ForwardItem>(&it, 1));
        alone.push_back(gs.back()->clone());
        last.push_back(prompt.back());
    }
    for (int step = 0; step < 6; ++step) {
        std::vector<int32_t> tok(lens.size());
        for (size_t s = 0; s < lens.size(); ++s) tok[s] = int32_t((last[s] * 13 + step * 7 + int(s)) % V);
        std::vector<std::vector<float>> lb(lens.size()), la(lens.size()), lcpu(lens.size());
        std::vector<ForwardItem> items(lens.size());
        std::vector<int32_t> am(lens.size(), -1);
        for (size_t s = 0; s < lens.size(); ++s) {
            items[s].state = gs[s].get();
            items[s].tokens = std::span<const int32_t>(&tok[s], 1);
            // Sequence 1 asks only for the device argmax (no logits come back); 0 and 2 for both.
            if (s != 1) items[s].logits_out = &lb[s];
            if (s != 3) items[s].argmax_out = &am[s];
        }
        g.forward(items);  // all sequences in one step
        EXPECT_TRUE(lb[1].empty());
        EXPECT_EQ(am[3], -1);
        for (size_t s = 0; s < lens.size(); ++s) {
            ForwardItem it;
            it.tokens = std::span<const int32_t>(&tok[s], 1);
            it.state = alone[s].get();
            it.logits_out = &la[s];
            g.forward(std::span<ForwardItem>(&it, 1));
            it.state = cs[s].get();
            it.logits_out = &lcpu[s];
            cpu_model->forward(std::span<ForwardItem>(&it, 1));
            auto first_max = [](const std::vector<float>& l) {
                return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
            };
            if (s == 1) {
                EXPECT_EQ(am[s], first_max(la[s])) << "step " << step;
                lb[s] = la[s];  // the checks below then hold trivially for it
            } else if (s != 3) {
                EXPECT_EQ(am[s], first_max(lb[s])) << "sequence " << s << " step " << step;
            }
            ASSERT_EQ(lb[s].size(), size_t(V));
            const double e_alone = rel_l2(lb[s], la[s]), e_cpu = rel_l2(lb[s], lcpu[s]);
            EXPECT_LE(e_alone, 1e-5) << "sequence " << s << " step " << step;
            EXPECT_LE(e_cpu, 1e-4) << "sequence " << s << " step " << step;
            EXPECT_EQ(std::max_element(lb[s].begin(), lb[s].end()) - lb[s].begin(),
                      std::max_element(lcpu[s].begin(), lcpu[s].end()) - lcpu[s].begin());
            if (step == 0 || step == 5)
                std::printf("  seq %zu (prompt %d) step %d: rel L2 vs alone %.2e, vs cpu %.2e\n", s, lens[s], step,
                            e_alone, e_cpu);
        }
        last = tok;
    }
}

// Device rollback (speculative decoding): tokens appended after a mark (a chunk crossing ratio-4 and
// ratio-128 block ends and the window ring's wrap, then single tokens) and rolled back leave the device
// caches exactly as they were: the sequence continues bitwise like a clone that never advanced; the MTP
// block's cache likewise.
TEST(CudaReplay, RollbackRestoresTheDeviceState) {
    Dsv4Model& m = model();
    const int64_t V = m.config().vocab_size;
    std::vector<int32_t> prompt;
    for (int i = 0; i < 124; ++i) prompt.push_back(int32_t((i * 29 + 3) % V));
    auto a = m.new_sequence();
    std::vector<float> hid, la, lb;
    ForwardItem it;
    it.state = a.get();
    it.tokens = prompt;
    it.all_logits = true;
    it.final_hidden = &hid;
    m.forward(std::span<ForwardItem>(&it, 1));
    MtpItem mi;  // the MTP block consumes positions [0, 123): hidden of 0..122, tokens 1..123
    mi.state = a.get();
    mi.hidden = hid.data();
    mi.tokens = std::span<const int32_t>(prompt.data() + 1, prompt.size() - 1);
    m.forward_mtp(std::span<MtpItem>(&mi, 1));
    auto b = a->clone();
    const SequenceMark mark = a->mark(8);
    const std::vector<int32_t> chunk = {5, 9, 11, 17, 23, 31};  // positions 124..129: ends 127, 128
    it = ForwardItem{};
    it.state = a.get();
    it.tokens = chunk;
    it.final_hidden = &hid;
    m.forward(std::span<ForwardItem>(&it, 1));
    mi.state = a.get();
    mi.hidden = hid.data();  // MTP positions 123..128
    mi.tokens = chunk;
    m.forward_mtp(std::span<MtpItem>(&mi, 1));
    const int32_t one = 41;
    it = ForwardItem{};
    it.state = a.get();
    it.tokens = std::span<const int32_t>(&one, 1);
    m.forward(std::span<ForwardItem>(&it, 1));
    EXPECT_EQ(a->position(), 131);
    a->rollback(mark);
    ASSERT_EQ(a->position(), b->position());
    ASSERT_EQ(a->mtp_position(), b->mtp_position());
    for (int step = 0; step < 8; ++step) {  // the same continuation on both: bitwise the same logits
        const int32_t t[2] = {int32_t((step * 53 + 7) % V), int32_t((step * 19 + 2) % V)};
        const std::span<const int32_t> toks(t, step == 0 ? 2 : 1);
        std::vector<float> ha, hb, ma, mb;
        for (auto [st, l, h] : {std::tuple{a.get(), &la, &ha}, std::tuple{b.get(), &lb, &hb}}) {
            ForwardItem f;
            f.state = st;
            f.tokens = toks;
            f.logits_out = l;
            f.final_hidden = h;
            m.forward(std::span<ForwardItem>(&f, 1));
        }
        ASSERT_EQ(la, lb) << "step " << step;
        for (auto [st, h, l] : {std::tuple{a.get(), &ha, &ma}, std::tuple{b.get(), &hb, &mb}}) {
            MtpItem q;
            q.state = st;
            q.hidden = h->data();
            q.tokens = toks;
            q.logits_out = l;
            m.forward_mtp(std::span<MtpItem>(&q, 1));
        }
        ASSERT_EQ(ma, mb) << "MTP, step " << step;
    }
}

// Decodes the same tokens with g and with `other` (models with other device options):
// bitwise the same logits, for one sequence and a batch of three, across steps where compressed blocks
// complete and the attended lists grow.
void decode_matches(Dsv4Model& g, Dsv4Model* other) {
    const int64_t V = g.config().vocab_size;
    for (int batch : {1, 3}) {
        std::vector<std::unique_ptr<SequenceState>> a, b;
        std::vector<int32_t> last;
        for (int s = 0; s < batch; ++s) {
            std::vector<int32_t> prompt;
            for (int i = 0; i < 9 + 17 * s; ++i) prompt.push_back(int32_t((i * 31 + 7 * s + 1) % V));
            a.push_back(g.new_sequence());
            b.push_back(other->new_sequence());
            for (auto [m, st] : {std::pair{&g, a.back().get()}, std::pair{other, b.back().get()}}) {
                ForwardItem it;
                it.state = st;
                it.tokens = prompt;
                m->forward(std::span<ForwardItem>(&it, 1));
            }
            last.push_back(prompt.back());
        }
        const size_t nb = size_t(batch);
        for (int step = 0; step < 10; ++step) {
            std::vector<int32_t> tok(nb);
            for (int s = 0; s < batch; ++s) tok[size_t(s)] = int32_t((last[size_t(s)] * 17 + step * 5 + s) % V);
            std::vector<std::vector<float>> la(nb), lb(nb);
            std::vector<ForwardItem> ia(nb), ib(nb);
            for (int s = 0; s < batch; ++s) {
                ia[size_t(s)].state = a[size_t(s)].get();
                ib[size_t(s)].state = b[size_t(s)].get();
                ia[size_t(s)].tokens = ib[size_t(s)].tokens = std::span<const int32_t>(&tok[size_t(s)], 1);
                ia[size_t(s)].logits_out = &la[size_t(s)];
                ib[size_t(s)].logits_out = &lb[size_t(s)];
            }
            g.forward(ia);
            other->forward(ib);
            for (int s = 0; s < batch; ++s)
                ASSERT_EQ(la[size_t(s)], lb[size_t(s)]) << "batch " << batch << " sequence " << s << " step " << step;
            last = tok;
        }
    }
}

// CUDA graphs of the decode blocks' dense parts (captured on the second step of a shape, replayed
// after) give bitwise the logits of eager launches.
TEST(CudaReplay, GraphedDecodeMatchesEager) {
    cuda::CudaModelOptions o;
    o.cuda_graphs = false;
    auto eager = load_with(o);
    decode_matches(model(), eager.get());
}

// The independent parts of a decode step on a second stream (the default) give bitwise the logits of
// one stream: no shared scratch or counters between the streams, fork and join in the right places.
// (DSINFER_CUDA_SIDE_STREAM set in the environment would override both options.)
TEST(CudaReplay, SideStreamDecodeMatchesOneStream) {
    cuda::CudaModelOptions off, on;
    off.side_stream = false;
    on.side_stream = true;
    auto one = load_with(off), two = load_with(on);
    decode_matches(*two, one.get());
}

// The fused epilogues (one launch for q's norm + RoPE, hc_post folded into hc_pre and the MoE combine,
// ...) give bitwise the logits of the ops one by one, prefill and decode, graphs and side stream on.
TEST(CudaReplay, FusedEpiloguesMatchUnfused) {
    cuda::CudaModelOptions off, on;
    off.fused_epilogues = false;
    on.fused_epilogues = true;
    auto one = load_with(off), two = load_with(on);
    decode_matches(*two, one.get());
}

// Greedy-free decode of one sequence: a prompt of `prompt` tokens, then `steps` fixed tokens one at a
// time; the logits of every decode step.
std::vector<std::vector<float>> decode_logits(Dsv4Model& m, int prompt, int steps) {
    const int64_t V = m.config().vocab_size;
    auto st = m.new_sequence();
    std::vector<int32_t> p;
    for (int i = 0; i < prompt; ++i) p.push_back(int32_t((i * 29 + 3) % V));
    ForwardItem it;
    it.state = st.get();
    it.tokens = p;
    m.forward(std::span<ForwardItem>(&it, 1));
    std::vector<std::vector<float>> out(static_cast<size_t>(steps));
    for (int s = 0; s < steps; ++s) {
        const int32_t tok = int32_t((s * 41 + 7) % V);
        it.tokens = std::span<const int32_t>(&tok, 1);
        it.logits_out = &out[size_t(s)];
        m.forward(std::span<ForwardItem>(&it, 1));
    }
    return out;
}

// Decode tables built on the device (decode_tables 2: a whole block, core included, then runs as one
// CUDA graph) give bitwise the logits of the same run without graphs and of the same padded tables
// built and uploaded by the host (1), and those of the exact-width host tables (0, the default) within
// float32 order. The long run crosses a ratio-128 block (pooled by the device tables) while the
// ratio-4 layers' indexer picks (host tables there).
TEST(CudaReplay, DeviceDecodeTablesMatchHost) {
    cuda::CudaModelOptions dev, dev_eager, host, exact;
    dev.decode_tables = 2;
    dev_eager.decode_tables = 2;
    dev_eager.cuda_graphs = false;
    host.decode_tables = 1;
    exact.decode_tables = 0;
    auto d = load_with(dev), de = load_with(dev_eager), h = load_with(host), e = load_with(exact);
    decode_matches(*d, de.get());
    decode_matches(*d, h.get());
    for (auto [prompt, steps] : {std::pair{5, 12}, std::pair{121, 12}}) {
        const auto dl = decode_logits(*d, prompt, steps), hl = decode_logits(*h, prompt, steps),
                   el = decode_logits(*e, prompt, steps);
        for (int s = 0; s < steps; ++s) {
            ASSERT_EQ(dl[size_t(s)], hl[size_t(s)]) << "prompt " << prompt << " step " << s;
            EXPECT_LE(rel_l2(dl[size_t(s)], el[size_t(s)]), 1e-5) << "prompt " << prompt << " step " << s;
        }
    }
}

// Each hc_pre's Sinkhorn on its own side lane gives bitwise the logits of the default, graphs on and off.
TEST(CudaReplay, SinkhornAsideMatches) {
    cuda::CudaModelOptions o, e;
    o.hc_sinkhorn_aside = true;
    e.hc_sinkhorn_aside = true;
    e.cuda_graphs = false;
    auto m = load_with(o), me = load_with(e);
    decode_matches(*m, &model());
    decode_matches(*me, &model());
}

// Routed experts whose GEMV launches build their own jobs (DSINFER_CUDA_MOE_JOBS) give bitwise the
// logits of the job-table kernels, graphed decode included (each model captures its own graphs).
TEST(CudaReplay, MoeJobsInLaunchMatchTables) {
    cuda::CudaModelOptions o;
    std::vector<std::vector<float>> runs[2];
    for (int on : {0, 1}) {
        cuda::set_mma_moe(on == 1);
        auto m = load_with(o);
        for (auto [prompt, steps] : {std::pair{5, 6}, std::pair{40, 6}}) {
            const auto l = decode_logits(*m, prompt, steps);
            runs[on].insert(runs[on].end(), l.begin(), l.end());
        }
    }
    cuda::set_mma_moe(false);
    ASSERT_EQ(runs[0].size(), runs[1].size());
    for (size_t s = 0; s < runs[0].size(); ++s) ASSERT_EQ(runs[1][s], runs[0][s]) << "step " << s;
}

// q_norm formed inside wq_b's launch (norm_in_gemv) and the shared expert's w2 forked after the routed
// up launch (shared_w2_late) give bitwise the logits of the norm launch and the early fork, graphed
// decode included. The tiny model's launches are below the tensor-core GEMV's size floor, so both runs
// take it for every launch it can run (set_mma_gemv(2)), wq_b included.
TEST(CudaReplay, NormInGemvAndLateSharedW2Match) {
    cuda::CudaModelOptions o;
    std::vector<std::vector<float>> runs[2];
    cuda::set_mma_gemv(2);
    for (int on : {0, 1}) {
        cuda::set_norm_in_gemv(on == 1);
        cuda::set_shared_w2_late(on == 1);
        auto m = load_with(o);
        const uint64_t before = cuda::mma_gemv_normed_launches();
        for (auto [prompt, steps] : {std::pair{5, 6}, std::pair{40, 6}}) {
            const auto l = decode_logits(*m, prompt, steps);
            runs[on].insert(runs[on].end(), l.begin(), l.end());
        }
        // Captured graphs replay without calling it: at least the eager first decode step of each layer.
        if (on)
            EXPECT_GE(cuda::mma_gemv_normed_launches() - before, uint64_t(m->config().n_layers));
        else
            EXPECT_EQ(cuda::mma_gemv_normed_launches(), before);
    }
    cuda::set_mma_gemv(1);
    cuda::set_norm_in_gemv(true);
    cuda::set_shared_w2_late(false);
    ASSERT_EQ(runs[0].size(), runs[1].size());
    for (size_t s = 0; s < runs[0].size(); ++s) ASSERT_EQ(runs[1][s], runs[0][s]) << "step " << s;
}

// The side-stream layouts of the attention projections (wkv + wgate pairs in one launch; the window KV
// path on the main stream; three side lanes) give bitwise the logits of the first layout.
TEST(CudaReplay, SideLayoutsMatch) {
    cuda::CudaModelOptions o;
    o.side_layout = 0;
    auto base = load_with(o);
    for (int layout : {1, 2, 3}) {
        SCOPED_TRACE(testing::Message() << "side_layout " << layout);
        o.side_layout = layout;
        auto m = load_with(o);
        decode_matches(*m, base.get());
    }
}

// The command line: replay --device cuda writes what compare accepts under the bars.
TEST(CudaReplay, CliReplayThenCompare) {
    const std::string out = "/tmp/dsinfer_cuda_replay_" + std::to_string(::getpid()) + ".safetensors";
    std::string text;
    ASSERT_EQ(run("replay --device cuda --chunk 7 --model " + kDir + " --cases " + kDir +
                      "/golden-noquant.safetensors --no-quant-sim --out " + out,
                  &text),
              0)
        << text;
    ASSERT_EQ(run("compare --noquant --golden " + kDir + "/golden-noquant.safetensors --out " + out, &text), 0)
        << text;
    EXPECT_NE(text.find("PASS"), std::string::npos) << text;
    std::remove(out.c_str());
}
