// The model forward on the GPU (see cuda_model.h). Mirrors Dsv4Model's host forward op for op, in
// the same order, so the two differ only where the CUDA ops do (docs/cuda.md); the host loops of
// that forward become device copies or the small kernels of model_kernels.cu.
#include "cuda/cuda_model.h"

#include <algorithm>
#include <map>
#include <cstdio>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/model_kernels.h"

namespace dsinfer::cuda {

namespace {

// DSINFER_CUDA_PER_SEQUENCE_DECODE=1: decode tokens take the chunk path one sequence at a time (the
// earlier behaviour, for before/after figures). Read once.
bool per_sequence_decode() {
    static const bool on = [] {
        const char* v = std::getenv("DSINFER_CUDA_PER_SEQUENCE_DECODE");
        return v && *v && std::string(v) != "0";
    }();
    return on;
}

// DSINFER_CUDA_PROFILE=1: wall time per section of the forward, each section ended by a stream
// synchronization (so the step gets slower), printed to stderr at exit. For finding where a step's
// time goes. Read once.
class Sections {
public:
    static Sections& get() {
        static Sections s;
        return s;
    }
    bool on() const { return on_; }
    void mark(const char* name) {
        if (!on_ || !active_) return;
        sync();
        const auto now = std::chrono::steady_clock::now();
        auto& e = acc_[name];
        e.first += std::chrono::duration<double, std::milli>(now - last_).count();
        e.second += 1;
        last_ = now;
    }
    // Counts the calls whose rows are all decode tokens (one per sequence); others are not timed.
    void start(bool decode_only) {
        active_ = decode_only;
        if (!on_ || !active_) return;
        sync();
        last_ = std::chrono::steady_clock::now();
    }
    ~Sections() {
        if (!on_ || acc_.empty()) return;
        double total = 0;
        for (auto& [k, v] : acc_) total += v.first;
        std::fprintf(stderr, "cuda sections of decode steps (DSINFER_CUDA_PROFILE): %.3f ms in all\n", total);
        for (auto& [k, v] : acc_)
            std::fprintf(stderr, "  %-18s %10.3f ms %6.1f%%  (%ld calls)\n", k.c_str(), v.first, 100 * v.first / total,
                         long(v.second));
    }

private:
    Sections() {
        const char* v = std::getenv("DSINFER_CUDA_PROFILE");
        on_ = v && *v && std::string(v) != "0";
    }
    bool on_ = false, active_ = false;
    std::chrono::steady_clock::time_point last_;
    std::map<std::string, std::pair<double, int64_t>> acc_;
};
void mark(const char* name) { Sections::get().mark(name); }

bool quantized(const ops::Weight& w) { return w.fmt == ops::WeightFormat::FP8 || w.fmt == ops::WeightFormat::FP4; }

// The digit 0..max a switch's environment variable starts with, else -1.
int env_choice(const char* var, int max) {
    const char* v = std::getenv(var);
    return v && v[0] >= '0' && v[0] <= '0' + max ? v[0] - '0' : -1;
}

// Independent parts of a step on a second stream (side_begin/side_end/side_join): at decode sizes,
// where each part alone leaves the GPU partly idle. Not while the section profiler times parts.
// `option`: CudaModelOptions::side_stream; DSINFER_CUDA_SIDE_STREAM=1 or 0 turns it on or off for every
// model.
bool fork_rows(bool option, int64_t n) {
    static const int env = env_choice("DSINFER_CUDA_SIDE_STREAM", 1);
    return (env >= 0 ? env == 1 : option) && n <= 16 && !Sections::get().on();
}

// CudaModelOptions::fused_epilogues, or DSINFER_CUDA_FUSED=1 / 0 for every model.
bool fused_option(bool option) {
    static const int env = env_choice("DSINFER_CUDA_FUSED", 1);
    return env >= 0 ? env == 1 : option;
}

// CudaModelOptions::side_layout, or DSINFER_CUDA_SIDE_LAYOUT=0|1|2|3 for every model.
int side_layout_option(int option) {
    static const int env = env_choice("DSINFER_CUDA_SIDE_LAYOUT", 3);
    const int l = env >= 0 ? env : option;
    return l < 0 || l > 3 ? 0 : l;
}

// CudaModelOptions::decode_tables, or DSINFER_CUDA_DECODE_TABLES=0|1|2 for every model.
int tables_option(int option) {
    static const int env = env_choice("DSINFER_CUDA_DECODE_TABLES", 2);
    const int m = env >= 0 ? env : option;
    return m < 0 || m > 2 ? 0 : m;
}

// CudaModelOptions::hc_sinkhorn_aside, or DSINFER_CUDA_HC_ASIDE=0|1 for every model.
bool hc_aside_option(bool option) {
    static const int env = env_choice("DSINFER_CUDA_HC_ASIDE", 1);
    return env >= 0 ? env == 1 : option;
}

// A process-wide switch (get / set) held at a value for a scope, restored on the way out (exceptions
// included).
template <bool (*Get)(), void (*Set)(bool)>
class SwitchScope {
  public:
    explicit SwitchScope(bool on) : prev_(Get()) { Set(on); }
    ~SwitchScope() { Set(prev_); }
    SwitchScope(const SwitchScope&) = delete;
    SwitchScope& operator=(const SwitchScope&) = delete;

  private:
    bool prev_;
};
using SinkhornAside = SwitchScope<hc_sinkhorn_aside, set_hc_sinkhorn_aside>;

// A growable float array in device memory (caches that grow with the sequence).
class DevVec {
public:
    DevVec() = default;
    DevVec(const DevVec&) = delete;
    DevVec& operator=(const DevVec&) = delete;
    DevVec(DevVec&& o) noexcept { swap(o); }
    DevVec& operator=(DevVec&& o) noexcept {
        swap(o);
        return *this;
    }
    ~DevVec() { dfree(p_); }

    float* data() const { return p_; }
    int64_t size() const { return n_; }
    size_t bytes() const { return cap_ * sizeof(float); }

    void resize(int64_t n) {
        reserve(n);
        n_ = n;
    }
    // Room for `count` more floats at the end without moving (grows geometrically; may move now).
    void ensure(int64_t count) {
        if (n_ + count > cap_) reserve(std::max<int64_t>({n_ + count, 2 * cap_, 4096}));
    }
    // Room for `count` more floats at the end; returns them (contents undefined until written).
    float* append(int64_t count) {
        ensure(count);
        float* p = p_ + n_;
        n_ += count;
        return p;
    }
    DevVec clone() const {
        DevVec c;
        c.reserve(cap_);
        c.n_ = n_;
        if (n_) d2d(c.p_, p_, size_t(n_) * sizeof(float));
        return c;
    }

private:
    void reserve(int64_t cap) {
        if (cap <= cap_) return;
        float* np = static_cast<float*>(dmalloc(size_t(cap) * sizeof(float)));
        if (n_) d2d(np, p_, size_t(n_) * sizeof(float));
        dfree(p_);  // cudaFree waits for the device, so the copy above has finished
        p_ = np;
        cap_ = cap;
    }
    void swap(DevVec& o) {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        std::swap(cap_, o.cap_);
    }
    float* p_ = nullptr;
    int64_t n_ = 0, cap_ = 0;
};

// Per-call temporaries: bump allocation from device chunks that are kept and reused across calls.
// Work is ordered on one stream, so a buffer may be reused by the next call as soon as it is enqueued.
class Arena {
public:
    Arena() = default;
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    ~Arena() {
        for (auto& c : chunks_) dfree(c.p);
    }
    void reset() {
        cur_ = 0;
        off_ = 0;
    }
    // Where the next allocation goes: a replayed CUDA graph moves the arena to where its capture left it.
    std::pair<size_t, size_t> state() const { return {cur_, off_}; }
    void set_state(std::pair<size_t, size_t> s) {
        cur_ = s.first;
        off_ = s.second;
    }
    float* f(int64_t n) { return static_cast<float*>(get(size_t(n) * sizeof(float))); }
    int32_t* i32(int64_t n) { return static_cast<int32_t*>(get(size_t(n) * sizeof(int32_t))); }
    int64_t* i64(int64_t n) { return static_cast<int64_t*>(get(size_t(n) * sizeof(int64_t))); }

private:
    struct Chunk {
        char* p;
        size_t bytes;
    };
    void* get(size_t bytes) {
        bytes = std::max<size_t>((bytes + 255) / 256 * 256, 256);
        while (cur_ < chunks_.size()) {
            if (off_ + bytes <= chunks_[cur_].bytes) {
                void* p = chunks_[cur_].p + off_;
                off_ += bytes;
                return p;
            }
            ++cur_;
            off_ = 0;
        }
        const size_t sz = std::max<size_t>(bytes, size_t(64) << 20);
        chunks_.push_back({static_cast<char*>(dmalloc(sz)), sz});
        off_ = bytes;
        return chunks_.back().p;
    }
    std::vector<Chunk> chunks_;
    size_t cur_ = 0, off_ = 0;
};

struct DevCompressor {
    int ratio = 0;
    int64_t d = 0;
    bool overlap = false;
    ops::Weight wkv, wgate;
    const float* ape = nullptr;
    const float* norm = nullptr;
};

struct DevIndexer {
    ops::Weight wq_b, weights_proj;
    DevCompressor compressor;
};

struct DevBlock {
    const BlockWeights* host = nullptr;
    int layer = 0, ratio = 0;
    bool hash = false;
    ops::Weight wq_a, wq_b, wkv, wo_a, wo_b;
    const float *q_norm = nullptr, *kv_norm = nullptr, *attn_sink = nullptr;
    std::unique_ptr<DevCompressor> compressor;
    std::unique_ptr<DevIndexer> indexer;
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    const float *hc_attn_fn = nullptr, *hc_attn_base = nullptr, *hc_attn_scale = nullptr;
    const float *hc_ffn_fn = nullptr, *hc_ffn_base = nullptr, *hc_ffn_scale = nullptr;
    ops::Weight gate;
    const float* gate_bias = nullptr;
    const int32_t* tid2eid = nullptr;  // hash layers: [vocab, K] expert ids, checked in range at upload
    std::unique_ptr<ExpertTable> experts;
    bool experts_quant_in = false, experts_quant_h = false;  // w1 / w2 of the routed experts are FP8/FP4
    ExpertWeights shared;                                    // w1, w3, w2
};

struct DevMtp {
    DevBlock block;
    ops::Weight e_proj, h_proj;
    const float *enorm = nullptr, *hnorm = nullptr, *norm = nullptr;
    const float *hc_head_fn = nullptr, *hc_head_base = nullptr, *hc_head_scale = nullptr;
};

// Device cache of one attention block for one sequence (LayerCache's fields).
struct DevCache {
    DevVec window;  // [window_size, head_dim] ring
    DevVec ckv;     // [n_entries, head_dim]
    DevVec ikeys;   // [n_entries, index_head_dim]
    DevVec comp_kv, comp_score, icomp_kv, icomp_score;
    DevCache clone() const {
        DevCache c;
        c.window = window.clone();
        c.ckv = ckv.clone();
        c.ikeys = ikeys.clone();
        c.comp_kv = comp_kv.clone();
        c.comp_score = comp_score.clone();
        c.icomp_kv = icomp_kv.clone();
        c.icomp_score = icomp_score.clone();
        return c;
    }
    size_t bytes() const {
        return window.bytes() + ckv.bytes() + ikeys.bytes() + comp_kv.bytes() + comp_score.bytes() +
               icomp_kv.bytes() + icomp_score.bytes();
    }
};

// What appending tokens to one DevCache overwrites (CudaState::mark): the window ring slots of the
// next positions, the entry counts, the compressors' streaming states.
struct DevCacheMark {
    DevVec ring;  // [min(n_future, W), head_dim], slots of positions pos, pos + 1, ...
    int64_t ckv = 0, ikeys = 0;
    DevVec comp_kv, comp_score, icomp_kv, icomp_score;
};
struct CudaMark {
    std::vector<DevCacheMark> layers;
    DevCacheMark mtp;
};

class CudaState final : public DeviceState {
public:
    int64_t window = 0, head_dim = 0;
    std::vector<DevCache> layers;
    DevCache mtp;
    std::unique_ptr<DeviceState> clone() const override {
        auto c = std::make_unique<CudaState>();
        c->window = window;
        c->head_dim = head_dim;
        for (const auto& l : layers) c->layers.push_back(l.clone());
        c->mtp = mtp.clone();
        return c;
    }
    std::shared_ptr<void> mark(int64_t pos, int64_t mtp_pos, int64_t n_future) const override {
        auto m = std::make_shared<CudaMark>();
        for (const auto& l : layers) m->layers.push_back(save(l, pos, n_future));
        m->mtp = save(mtp, mtp_pos, n_future);
        return m;
    }
    void rollback(const void* saved, int64_t pos, int64_t mtp_pos) override {
        const auto& m = *static_cast<const CudaMark*>(saved);
        for (size_t l = 0; l < layers.size(); ++l) restore(layers[l], m.layers[l], pos);
        restore(mtp, m.mtp, mtp_pos);
    }
    size_t bytes() const override {
        size_t b = mtp.bytes();
        for (const auto& l : layers) b += l.bytes();
        return b;
    }

private:
    // Ring slots of positions [pos, pos + k) as at most two runs of consecutive slots; f(slot, i, run).
    template <class F>
    void ring_runs(int64_t pos, int64_t k, F f) const {
        for (int64_t i = 0; i < k;) {
            const int64_t slot = (pos + i) % window, run = std::min(k - i, window - slot);
            f(slot, i, run);
            i += run;
        }
    }
    DevCacheMark save(const DevCache& c, int64_t pos, int64_t n_future) const {
        DevCacheMark m;
        if (!c.window.size()) return m;  // no MTP block
        const int64_t k = std::min(n_future, window), hd = head_dim;
        m.ring.resize(k * hd);
        ring_runs(pos, k, [&](int64_t slot, int64_t i, int64_t run) {
            d2d(m.ring.data() + i * hd, c.window.data() + slot * hd, size_t(run * hd) * sizeof(float));
        });
        m.ckv = c.ckv.size();
        m.ikeys = c.ikeys.size();
        m.comp_kv = c.comp_kv.clone();
        m.comp_score = c.comp_score.clone();
        m.icomp_kv = c.icomp_kv.clone();
        m.icomp_score = c.icomp_score.clone();
        return m;
    }
    void restore(DevCache& c, const DevCacheMark& m, int64_t pos) {
        if (!c.window.size()) return;
        const int64_t hd = head_dim;
        ring_runs(pos, m.ring.size() / hd, [&](int64_t slot, int64_t i, int64_t run) {
            d2d(c.window.data() + slot * hd, m.ring.data() + i * hd, size_t(run * hd) * sizeof(float));
        });
        c.ckv.resize(m.ckv);
        c.ikeys.resize(m.ikeys);
        auto back = [](DevVec& dst, const DevVec& src) {
            if (src.size()) d2d(dst.data(), src.data(), size_t(src.size()) * sizeof(float));
        };
        back(c.comp_kv, m.comp_kv);
        back(c.comp_score, m.comp_score);
        back(c.icomp_kv, m.icomp_kv);
        back(c.icomp_score, m.icomp_score);
    }
};

// linear()'s tensor-core switch for one call.
using TensorCoreScope = SwitchScope<fp8_tensor_cores, set_fp8_tensor_cores>;

class CudaModel final : public DeviceForward {
public:
    CudaModel(const Dsv4Model& m, const CudaModelOptions& o);
    ~CudaModel() override;
    const char* name() const override { return "cuda"; }
    std::unique_ptr<DeviceState> new_state() override;
    void forward(std::span<ForwardItem> items) override;
    void forward_mtp(std::span<MtpItem> items) override;

private:
    struct Rows {
        struct Seq {
            SequenceState* state;
            CudaState* dev;
            int64_t begin, count, start;
        };
        int64_t n = 0;
        std::vector<int32_t> tokens;
        std::vector<int64_t> pos;
        const int32_t* tokens_d = nullptr;
        const int64_t* pos_d = nullptr;
        std::vector<Seq> seqs;
    };

    ops::Weight up(const ops::Weight& w);
    const float* up(const FloatTensor& t);
    void up_compressor(const CompressorWeights& h, DevCompressor& d);
    void up_block(const BlockWeights& h, DevBlock& d);
    void up_tid2eid(const BlockWeights& h, DevBlock& d);
    void init_cache(DevCache& lc, const DevBlock& b);
    const int64_t* iota(int64_t p);
    void upload_rows(Rows& rows);
    template <class Item>
    CudaState* check(const Item& it);

    void linear(const float* x, int64_t m, const ops::Weight& w, float* y, bool quant_input);
    void compressor_step(const DevCompressor& cw, DevVec& kv, DevVec& score, const float* a, const float* g, int64_t p,
                         const ops::RopeFreqs& rf, bool indexer, DevVec& out);
    HeadPost entry_post(const DevCompressor& cw, const ops::RopeFreqs& rf, bool indexer) const;
    void finish_ops(const DevCompressor& cw, float* kv, float* score, float* z, int64_t first, const ops::RopeFreqs& rf,
                    bool indexer);
    void finish_jobs(const DevCompressor& cw, const std::vector<CompressJob>& jobs, const CompressJob* jobs_d,
                     const ops::RopeFreqs& rf, bool indexer);
    void compressor_finish(const DevCompressor& cw, DevVec& kv, DevVec& score, int64_t p, const ops::RopeFreqs& rf,
                           bool indexer, DevVec& out);
    struct AttnIn {  // the per-row projections of attention_proj for all rows, and the output rows o
        float *q, *kv, *ca, *cg, *iq, *iwt, *ia, *ig;
        int64_t cwidth, iwidth;
        float* o;
    };
    AttnIn attention_proj(const DevBlock& b, Rows& rows, const float* y, const float* yq);
    // out_rope: the output's inverse RoPE is applied by the core (every row a decode row, fused
    // epilogues on) instead of by attention_out.
    bool out_rope_in_core(const Rows& rows) const;
    // The host's decisions for a batched decode step of one block (plan_decode).
    struct DecodePlan {
        bool device = false;  // tables built on the device (decode_tables): no per-step upload
        bool take_all = false, indexer = false;
        int64_t max_entries = 0, n_cmp = 0, nk = 0;
        std::vector<CompressJob> cjobs, ijobs;  // block completions (host-built tables)
        const DecodeSeq* seqtab = nullptr;      // device: the sequences' table, when the step uploaded it
    };
    // A decode call's plans, one per layer, made before its first launch (empty: planned per block).
    std::vector<DecodePlan> step_plans_;
    void plan_step(Rows& rows);
    std::vector<DecodeSeq> decode_seqs(const DevBlock& b, const Rows& rows, const std::vector<size_t>& seqs) const;
    DevCache& cache_of(const DevBlock& b, const Rows& rows, size_t s) const;
    DecodePlan plan_decode(const DevBlock& b, Rows& rows, const std::vector<size_t>& seqs);
    // plan: the decode rows' plan when the caller made it (it must be made once per block and call).
    void attention_core(const DevBlock& b, Rows& rows, const AttnIn& in, const DecodePlan* plan = nullptr);
    void attention_out(const DevBlock& b, Rows& rows, float* o, float* out);
    void attention_decode(const DevBlock& b, Rows& rows, const std::vector<size_t>& seqs, const AttnIn& in,
                          const ops::RopeFreqs& rf, float* o, bool out_rope, const DecodePlan& plan);
    void block_forward(const DevBlock& b, Rows& rows, float* x);
    // yq: y quantized for FP8/FP4 weights (§3.3), computed once per block (null without quantization).
    // The FFN's output f (routed + shared experts) goes on through hc_post(f, res, post, comb) into
    // x_out; f is its buffer where that is not folded into the experts' combine.
    void moe(const DevBlock& b, Rows& rows, const float* y, const float* yq, float* f, const float* res,
             const float* post, const float* comb, float* x_out);
    void linear_q(const float* x, const float* xq, int64_t m, const ops::Weight& w, float* y);
    // linear of an act_quant'ed input xq: the tensor-core GEMV when it applies (one row, power-of-two
    // scales), else the backend's linear.
    void linear_xq(const float* xq, int64_t m, const ops::Weight& w, float* y);
    // rmsnorm of x in place, and its quantized copy into xq when xq is not null (one launch).
    void norm_q(float* x, int64_t rows, int64_t dim, const float* w, float* xq);
    // Every requested row of every item through one hc_head, norm and head GEMM (the head is read
    // once per call, not once per sequence) and one device→host copy.
    void emit_logits(const float* x, const std::vector<LogitsRequest>& reqs, const float* fn, const float* scale,
                     const float* base, const float* norm);

    const Dsv4Model& m_;
    const ModelConfig& c_;
    const ops::Backend& be_;
    CudaModelOptions o_;
    bool quant_ = true, pow2_ = true;
    bool fused_ = true;  // fused_option(o_.fused_epilogues)
    int side_layout_ = 0;               // side_layout_option(o_.side_layout)
    int tables_mode_ = 0;               // tables_option(o_.decode_tables)
    bool hc_aside_ = false;             // hc_aside_option(o_.hc_sinkhorn_aside)
    // Block completions through compress_finish (one launch per compressor and step) rather than the
    // ops one by one: with the fused epilogues and decode tables 1 or 2.
    bool fused_finish() const { return fused_ && tables_mode_ >= 1; }
    std::vector<ops::Weight> weights_;  // uploaded, freed at the end
    std::vector<void*> buffers_;        // uploaded float tensors
    ops::Weight embed_, head_;
    const float *norm_ = nullptr, *hc_head_fn_ = nullptr, *hc_head_base_ = nullptr, *hc_head_scale_ = nullptr;
    std::vector<DevBlock> layers_;
    std::vector<DevMtp> mtp_;
    const float *freqs_plain_ = nullptr, *freqs_compressed_ = nullptr;
    int64_t* iota_ = nullptr;  // 0, 1, 2, ...: device pointers to single positions (compressor RoPE)
    int64_t iota_n_ = 0;
    Arena call_, layer_;  // temporaries of one call / of one block (reset per block)
    Arena core_;          // temporaries of attention's per-step core (reset per block; sizes vary by step)
    // CUDA graphs of a decode block's two dense parts (before and after attention's core), per key.
    struct GraphKey {
        int layer, part;  // part 1: before attention's core, 2: after it, 3: the whole block
        int64_t n;
        bool quant, pow2, tensor_cores, bf16;
        int64_t nk = 0;  // part 3: the key lists' width
        bool operator<(const GraphKey& o) const {
            return std::tie(layer, part, n, quant, pow2, tensor_cores, bf16, nk) <
                   std::tie(o.layer, o.part, o.n, o.quant, o.pow2, o.tensor_cores, o.bf16, o.nk);
        }
    };
    struct GraphEntry {
        bool captured = false, uncapturable = false;
        int recaptures = 0;    // after its inputs moved
        void* exec = nullptr;  // executable graph (cuda::launch_graph)
        std::pair<size_t, size_t> before, after;  // layer_ arena around the part
        std::vector<const void*> inputs;          // the pointers from outside the layer arena it reads
        uint64_t scratch_gen = 0;                 // cuda::scratch_generation() at capture
        std::vector<float*> out;                  // the part's outputs
    };
    std::map<GraphKey, GraphEntry> graphs_;
    template <class F>
    std::vector<float*> graphed(const GraphKey& key, bool enabled, const std::vector<const void*>& inputs, F run);
    float* logits_host_ = nullptr;  // page-locked landing buffer of emit_logits
    std::vector<char> summary_host_;  // emit_logits: the rows' summaries as copied back
    std::vector<int32_t> argmax_host_;
    size_t logits_host_bytes_ = 0;
};

CudaModel::CudaModel(const Dsv4Model& m, const CudaModelOptions& o) : m_(m), c_(m.config()), be_(backend()), o_(o) {
    if (!available()) throw Error("cuda: no usable CUDA device");
    fused_ = fused_option(o.fused_epilogues);
    side_layout_ = side_layout_option(o.side_layout);
    tables_mode_ = tables_option(o.decode_tables);
    hc_aside_ = hc_aside_option(o.hc_sinkhorn_aside);
    const Dsv4Weights& w = m.weights();
    embed_ = up(w.embed);
    head_ = up(w.head);
    norm_ = up(w.norm);
    hc_head_fn_ = up(w.hc_head_fn);
    hc_head_base_ = up(w.hc_head_base);
    hc_head_scale_ = up(w.hc_head_scale);
    layers_.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) up_block(w.layers[l], layers_[l]);
    mtp_.resize(w.mtp.size());
    for (size_t i = 0; i < w.mtp.size(); ++i) {
        const MtpWeights& h = w.mtp[i];
        DevMtp& d = mtp_[i];
        up_block(h.block, d.block);
        d.e_proj = up(h.e_proj);
        d.h_proj = up(h.h_proj);
        d.enorm = up(h.enorm);
        d.hnorm = up(h.hnorm);
        d.norm = up(h.norm);
        d.hc_head_fn = up(h.hc_head_fn);
        d.hc_head_base = up(h.hc_head_base);
        d.hc_head_scale = up(h.hc_head_scale);
    }
    auto up_vec = [&](const std::vector<float>& v) {
        void* p = dmalloc(v.size() * sizeof(float));
        h2d(p, v.data(), v.size() * sizeof(float));
        buffers_.push_back(p);
        return static_cast<const float*>(p);
    };
    freqs_plain_ = up_vec(m.rope_freqs(false));
    freqs_compressed_ = up_vec(m.rope_freqs(true));
    iota(4096);
}

CudaModel::~CudaModel() {
    try {
        sync();
        for (auto& l : layers_) l.experts.reset();
        for (auto& d : mtp_) d.block.experts.reset();
        for (auto& w : weights_) free_weight(w);
        for (void* p : buffers_) dfree(p);
        host_free(logits_host_);
        for (auto& [k, g] : graphs_) destroy_graph(g.exec);
        dfree(iota_);
    } catch (...) {
        // A failing device at exit: nothing left to do with its memory.
    }
}

ops::Weight CudaModel::up(const ops::Weight& w) {
    if (!w.data) return w;
    ops::Weight d = upload_weight(w);
    weights_.push_back(d);
    return d;
}

const float* CudaModel::up(const FloatTensor& t) {
    if (!t.data || t.numel == 0) return nullptr;
    void* p = dmalloc(size_t(t.numel) * sizeof(float));
    h2d(p, t.data, size_t(t.numel) * sizeof(float));
    buffers_.push_back(p);
    return static_cast<const float*>(p);
}

void CudaModel::up_compressor(const CompressorWeights& h, DevCompressor& d) {
    d.ratio = h.ratio;
    d.d = h.d;
    d.overlap = h.overlap;
    d.wkv = up(h.wkv);
    d.wgate = up(h.wgate);
    d.ape = up(h.ape);
    d.norm = up(h.norm);
}

void CudaModel::up_block(const BlockWeights& h, DevBlock& d) {
    d.host = &h;
    d.layer = h.layer;
    d.ratio = h.ratio;
    d.hash = h.hash;
    d.wq_a = up(h.wq_a);
    d.wq_b = up(h.wq_b);
    d.wkv = up(h.wkv);
    d.wo_a = up(h.wo_a);
    d.wo_b = up(h.wo_b);
    d.q_norm = up(h.q_norm);
    d.kv_norm = up(h.kv_norm);
    d.attn_sink = up(h.attn_sink);
    if (h.compressor) {
        d.compressor = std::make_unique<DevCompressor>();
        up_compressor(*h.compressor, *d.compressor);
    }
    if (h.indexer) {
        d.indexer = std::make_unique<DevIndexer>();
        d.indexer->wq_b = up(h.indexer->wq_b);
        d.indexer->weights_proj = up(h.indexer->weights_proj);
        up_compressor(h.indexer->compressor, d.indexer->compressor);
    }
    d.attn_norm = up(h.attn_norm);
    d.ffn_norm = up(h.ffn_norm);
    d.hc_attn_fn = up(h.hc_attn_fn);
    d.hc_attn_base = up(h.hc_attn_base);
    d.hc_attn_scale = up(h.hc_attn_scale);
    d.hc_ffn_fn = up(h.hc_ffn_fn);
    d.hc_ffn_base = up(h.hc_ffn_base);
    d.hc_ffn_scale = up(h.hc_ffn_scale);
    d.gate = up(h.gate);
    d.gate_bias = up(h.gate_bias);
    if (h.hash) up_tid2eid(h, d);
    std::vector<ExpertWeights> ex;
    ex.reserve(h.experts.size());
    for (const auto& e : h.experts) {
        // The fused MoE kernels take one format for all experts of a layer (as the checkpoints store them).
        if (e.w1.fmt != h.experts[0].w1.fmt || e.w2.fmt != h.experts[0].w2.fmt)
            throw Error("cuda: layer " + std::to_string(h.layer) + " mixes routed-expert weight formats");
        ex.push_back({up(e.w1), up(e.w3), up(e.w2)});
    }
    if (!ex.empty()) {
        d.experts = std::make_unique<ExpertTable>(ex);
        d.experts_quant_in = quantized(h.experts[0].w1);
        d.experts_quant_h = quantized(h.experts[0].w2);
    }
    d.shared = {up(h.shared.w1), up(h.shared.w3), up(h.shared.w2)};
}

// A hash layer's token → expert table on the device (int32), so that routing reads it by the device's
// token ids and the layer's dense part stays capturable. Every id is checked once here.
void CudaModel::up_tid2eid(const BlockWeights& h, DevBlock& d) {
    const TensorInfo* t = h.tid2eid;
    const int64_t E = c_.n_routed_experts, K = c_.n_activated_experts;
    if (!t || t->shape.size() != 2 || t->shape[0] < c_.vocab_size || t->shape[1] != K ||
        (t->dtype != DType::I64 && t->dtype != DType::I32))
        throw Error("cuda: layer " + std::to_string(h.layer) + " is hash-routed but has no [" +
                    std::to_string(c_.vocab_size) + ", " + std::to_string(K) + "] I64/I32 tid2eid");
    const int64_t n = t->numel();
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t e = t->dtype == DType::I64 ? reinterpret_cast<const int64_t*>(t->data)[i]
                                                 : reinterpret_cast<const int32_t*>(t->data)[i];
        if (e < 0 || e >= E)
            throw Error("tensor '" + t->name + "' holds expert id " + std::to_string(e) + " out of range [0, " +
                        std::to_string(E) + ") at token " + std::to_string(i / K));
        ids[size_t(i)] = int32_t(e);
    }
    void* p = dmalloc(ids.size() * sizeof(int32_t));
    h2d(p, ids.data(), ids.size() * sizeof(int32_t));
    buffers_.push_back(p);
    d.tid2eid = static_cast<const int32_t*>(p);
}

// The call's positions and token ids in one upload (positions first: 8-byte aligned).
void CudaModel::upload_rows(Rows& rows) {
    const int64_t n = rows.n;
    std::vector<int64_t> both(static_cast<size_t>(n + (n + 1) / 2));
    std::memcpy(both.data(), rows.pos.data(), size_t(n) * sizeof(int64_t));
    std::memcpy(both.data() + n, rows.tokens.data(), size_t(n) * sizeof(int32_t));
    int64_t* d = call_.i64(int64_t(both.size()));
    h2d_staged(d, both.data(), both.size() * sizeof(int64_t));
    rows.pos_d = d;
    rows.tokens_d = reinterpret_cast<const int32_t*>(d + n);
}

const int64_t* CudaModel::iota(int64_t p) {
    if (p >= iota_n_) {
        const int64_t n = std::max<int64_t>(p + 1, 2 * iota_n_);
        std::vector<int64_t> v(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
        int64_t* np = static_cast<int64_t*>(dmalloc(size_t(n) * sizeof(int64_t)));
        h2d(np, v.data(), v.size() * sizeof(int64_t));
        dfree(iota_);  // waits for the device: no enqueued op reads the old table any more
        iota_ = np;
        iota_n_ = n;
    }
    return iota_ + p;
}

void CudaModel::init_cache(DevCache& lc, const DevBlock& b) {
    lc.window.resize(int64_t(c_.window_size) * c_.head_dim);
    fill(lc.window.data(), lc.window.size(), 0.f);
    auto reset = [](DevVec& kv, DevVec& score, const DevCompressor& cw) {
        const int64_t coff = cw.overlap ? 2 : 1, n = coff * cw.ratio * coff * cw.d;
        kv.resize(n);
        score.resize(n);
        fill(kv.data(), n, 0.f);
        fill(score.data(), n, -std::numeric_limits<float>::infinity());
    };
    if (b.compressor) reset(lc.comp_kv, lc.comp_score, *b.compressor);
    if (b.indexer) reset(lc.icomp_kv, lc.icomp_score, b.indexer->compressor);
}

std::unique_ptr<DeviceState> CudaModel::new_state() {
    auto s = std::make_unique<CudaState>();
    s->window = c_.window_size;
    s->head_dim = c_.head_dim;
    s->layers.resize(layers_.size());
    for (size_t l = 0; l < layers_.size(); ++l) init_cache(s->layers[l], layers_[l]);
    if (!mtp_.empty()) init_cache(s->mtp, mtp_[0].block);
    return s;
}

template <class Item>
CudaState* CudaModel::check(const Item& it) {
    if (!it.state) throw Error("forward: item without a sequence state");
    auto* st = dynamic_cast<CudaState*>(it.state->device.p.get());
    if (!st) throw Error("forward: the sequence was not created for the CUDA forward (create it after set_device)");
    for (int32_t t : it.tokens)
        if (t < 0 || t >= c_.vocab_size)
            throw Error("forward: token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                        std::to_string(c_.vocab_size) + ")");
    return st;
}

// As Dsv4Model::linear: FP8-quantize x per 128 columns first for FP8/FP4 weights (§3.3).
// linear with the input's quantized copy already made (xq; null: none was needed).
void CudaModel::linear_xq(const float* xq, int64_t m, const ops::Weight& w, float* y) {
    if (m == 1 && pow2_ && mma_gemv(xq, w, 0, w.n, y)) return;
    be_.linear(xq, m, w, 0, w.n, y, w.n);
}

void CudaModel::linear_q(const float* x, const float* xq, int64_t m, const ops::Weight& w, float* y) {
    if (quant_ && quantized(w) && xq)
        linear_xq(xq, m, w, y);
    else
        linear(x, m, w, y, true);
}

void CudaModel::norm_q(float* x, int64_t rows, int64_t dim, const float* w, float* xq) {
    if (xq)
        rmsnorm_act_quant(x, rows, dim, w, float(c_.norm_eps), x, xq, 128, pow2_);
    else
        be_.rmsnorm(x, rows, dim, w, float(c_.norm_eps), x);
}

void CudaModel::linear(const float* x, int64_t m, const ops::Weight& w, float* y, bool quant_input) {
    if (quant_input && quant_ && quantized(w)) {
        float* xq = layer_.f(m * w.k);
        act_quant_copy(x, xq, m, w.k, 128, pow2_);
        linear_xq(xq, m, w, y);
    } else {
        be_.linear(x, m, w, 0, w.n, y, w.n);
    }
}

// compressor_step of src/model/compressor.cpp on device buffers.
void CudaModel::compressor_step(const DevCompressor& cw, DevVec& kv, DevVec& score, const float* a, const float* g,
                                int64_t p, const ops::RopeFreqs& rf, bool indexer, DevVec& out) {
    const int64_t r = cw.ratio, d = cw.d, coff = cw.overlap ? 2 : 1, width = coff * d;
    const int64_t slot = (cw.overlap ? r : 0) + p % r;
    d2d(kv.data() + slot * width, a, size_t(width) * sizeof(float));
    add_to(g, cw.ape + (p % r) * width, width, score.data() + slot * width);
    compressor_finish(cw, kv, score, p, rf, indexer, out);
}

// A compressed entry's epilogue: rmsnorm, RoPE at the block's first position, then the indexer's
// Hadamard + FP4 or the entry's FP8 (positions are set by the caller).
HeadPost CudaModel::entry_post(const DevCompressor& cw, const ops::RopeFreqs& rf, bool indexer) const {
    HeadPost hp;
    hp.norm = true;
    hp.norm_w = cw.norm;
    hp.eps = float(c_.norm_eps);
    hp.freqs = rf.freqs;
    hp.rope_dim = rf.rope_dim;
    hp.hadamard = indexer;
    if (quant_ && indexer) {
        hp.quant = HeadPost::Quant::Fp4;
        hp.qblock = 32;
    } else if (quant_) {
        hp.quant = HeadPost::Quant::E4m3;
        hp.qcols = cw.d - rf.rope_dim;
        hp.qblock = 64;
        hp.pow2 = pow2_;
    }
    return hp;
}

// A block completion as separate ops: pool into z, shift the overlap state, the entry's epilogue.
void CudaModel::finish_ops(const DevCompressor& cw, float* kv, float* score, float* z, int64_t first,
                           const ops::RopeFreqs& rf, bool indexer) {
    const int64_t r = cw.ratio, d = cw.d, width = (cw.overlap ? 2 : 1) * d;
    be_.compress_pool(kv, score, r, d, cw.overlap, z);
    if (cw.overlap) {
        d2d(kv, kv + r * width, size_t(r * width) * sizeof(float));
        d2d(score, score + r * width, size_t(r * width) * sizeof(float));
    }
    HeadPost hp = entry_post(cw, rf, indexer);
    hp.pos = iota(first);
    head_post(z, 1, d, hp, fused_);
}

// Block completions of one compressor (host jobs, and the same jobs on the device): one launch with
// the fused epilogues, else the ops job by job.
void CudaModel::finish_jobs(const DevCompressor& cw, const std::vector<CompressJob>& jobs, const CompressJob* jobs_d,
                            const ops::RopeFreqs& rf, bool indexer) {
    if (jobs.empty()) return;
    if (fused_finish() &&
        compress_finish(jobs_d, int64_t(jobs.size()), cw.ratio, cw.d, cw.overlap, entry_post(cw, rf, indexer), true))
        return;
    for (const CompressJob& j : jobs) finish_ops(cw, j.kv, j.score, j.out, j.pos, rf, indexer);
}

// The second half of compressor_step, after token p's slot is written: when p completes a block,
// pool it into a new entry of `out` and shift the overlap state.
void CudaModel::compressor_finish(const DevCompressor& cw, DevVec& kv, DevVec& score, int64_t p,
                                  const ops::RopeFreqs& rf, bool indexer, DevVec& out) {
    const int64_t r = cw.ratio;
    if ((p + 1) % r) return;
    const std::vector<CompressJob> jobs{{kv.data(), score.data(), out.append(cw.d), p + 1 - r}};
    CompressJob* jobs_d = nullptr;
    if (fused_finish()) {
        jobs_d = reinterpret_cast<CompressJob*>(core_.f(int64_t(sizeof(CompressJob) / 4)));
        h2d_staged(jobs_d, jobs.data(), sizeof(CompressJob));
    }
    finish_jobs(cw, jobs, jobs_d, rf, indexer);
}

// Attention (§6) in three parts: projections (dense, same shapes every decode step), the per-step
// core (caches, index lists, sparse attention) and the output path (dense).
CudaModel::AttnIn CudaModel::attention_proj(const DevBlock& bw, Rows& rows, const float* y, const float* yq) {
    const ModelConfig& c = c_;
    const int64_t n = rows.n, H = c.n_heads, hd = c.head_dim, rd = c.rope_head_dim, ql = c.q_lora_rank;
    const float eps = float(c.norm_eps);
    const ops::RopeFreqs rf{bw.ratio ? freqs_compressed_ : freqs_plain_, rd};
    const int64_t* pos = rows.pos_d;
    Arena& A = layer_;

    // The window-KV path and the projections of y (compressor, indexer weights and compressor) are
    // independent of the query path: at decode they run on side lanes beside it. side_layout 0 and 1:
    // all on lane 1; 2: the window-KV path on the main stream, before the query path; 3: one lane each
    // for the window-KV path, the compressor and the indexer's projections.
    const bool fork = fork_rows(o_.side_stream, n);
    const bool kv_on_main = fork && side_layout_ == 2;
    const bool lanes = fork && side_layout_ == 3;
    auto open = [&](int lane) {
        if (fork) side_begin(lanes ? lane : 1);
    };
    auto close = [&] {
        if (fork) side_end();
    };

    // Window KV path (§6.3).
    float* kv = A.f(n * hd);
    auto kv_path = [&] {
        linear_q(y, yq, n, bw.wkv, kv);
        HeadPost hp;  // rmsnorm, RoPE, FP8 of the non-RoPE part
        hp.norm = true;
        hp.norm_w = bw.kv_norm;
        hp.eps = eps;
        hp.pos = pos;
        hp.freqs = rf.freqs;
        hp.rope_dim = rd;
        if (quant_) {
            hp.quant = HeadPost::Quant::E4m3;
            hp.qcols = hd - rd;
            hp.qblock = 64;
            hp.pow2 = pow2_;
        }
        head_post(kv, n, hd, hp, fused_);
    };
    if (!kv_on_main) {
        open(1);
        kv_path();
        close();
    }

    // Compressor projections (§7.1) and the indexer's weights and compressor. side_layout ≥ 1: a
    // compressor's wkv and wgate (unquantized, same shape) in one launch, the same numbers.
    auto pair = [&](const ops::Weight& wa, const ops::Weight& wb, float* ya, float* yb) {
        if (side_layout_ >= 1 && !quantized(wa) && !quantized(wb) && linear_pair(y, n, wa, wb, ya, yb, wa.n)) return;
        linear_q(y, yq, n, wa, ya);
        linear_q(y, yq, n, wb, yb);
    };
    const DevCompressor* cw = bw.compressor.get();
    const DevIndexer* iw = bw.indexer.get();
    float *ca = nullptr, *cg = nullptr, *iq = nullptr, *iwt = nullptr, *ia = nullptr, *ig = nullptr;
    const int64_t cwidth = cw ? (cw->overlap ? 2 : 1) * cw->d : 0;
    const int64_t nih = c.index_n_heads, ihd = c.index_head_dim;
    const int64_t iwidth = iw ? 2 * iw->compressor.d : 0;
    if (cw) {
        ca = A.f(n * cwidth);
        cg = A.f(n * cwidth);
        open(2);
        pair(cw->wkv, cw->wgate, ca, cg);
        close();
    }
    if (iw) {
        iwt = A.f(n * nih);
        ia = A.f(n * iwidth);
        ig = A.f(n * iwidth);
        open(3);
        linear_q(y, yq, n, iw->weights_proj, iwt);
        const float ws = float(std::pow(double(ihd), -0.5) * std::pow(double(nih), -0.5));
        scale(iwt, n * nih, ws);
        pair(iw->compressor.wkv, iw->compressor.wgate, ia, ig);
        close();
    }
    if (kv_on_main) kv_path();

    // Query path (§6.2) and the indexer's query side (§8).
    float* qr = A.f(n * ql);
    float* q = A.f(n * H * hd);
    float* qrq = quant_ ? A.f(n * ql) : nullptr;
    linear_q(y, yq, n, bw.wq_a, qr);
    // One decode row: wq_b forms q_norm and its quantization itself (mma_gemv_normed, bitwise the two
    // launches), so it follows wq_a directly; qr stays raw, and the indexer's query (quantized input
    // only) gets its own norm launch on its side lane.
    const bool q_in_gemv = n == 1 && quant_ && pow2_ && fused_ && norm_in_gemv() && quantized(bw.wq_b) &&
                           (!iw || quantized(iw->wq_b)) && mma_gemv_normed_ok(qr, bw.q_norm, bw.wq_b);
    if (!q_in_gemv) norm_q(qr, n, ql, bw.q_norm, qrq);
    if (iw) {  // the indexer's query, from qr too: on a side lane after the projections above
        open(2);
        iq = A.f(n * nih * ihd);
        if (q_in_gemv) rmsnorm_act_quant(qr, n, ql, bw.q_norm, eps, nullptr, qrq, 128, pow2_);
        linear_q(qr, qrq, n, iw->wq_b, iq);
        HeadPost hp;  // RoPE per head, Hadamard, FP4
        hp.pos = pos;
        hp.freqs = rf.freqs;
        hp.rope_dim = rd;
        hp.heads = nih;
        hp.hadamard = true;
        if (quant_) {
            hp.quant = HeadPost::Quant::Fp4;
            hp.qblock = 32;
        }
        head_post(iq, n * nih, ihd, hp, fused_);
        close();
    }
    if (!q_in_gemv)
        linear_q(qr, qrq, n, bw.wq_b, q);
    else if (!mma_gemv_normed(qr, bw.q_norm, eps, bw.wq_b, q))
        throw Error("cuda: the normed wq_b launch refused a setting attention_proj accepted");
    {  // rmsnorm per head (no weight), RoPE
        HeadPost hp;
        hp.norm = true;
        hp.eps = eps;
        hp.pos = pos;
        hp.freqs = rf.freqs;
        hp.rope_dim = rd;
        hp.heads = H;
        head_post(q, n * H, hd, hp, fused_);
    }
    if (fork) side_join();

    mark("attn.proj");
    return AttnIn{q, kv, ca, cg, iq, iwt, ia, ig, cwidth, iwidth, A.f(n * H * hd)};
}

bool CudaModel::out_rope_in_core(const Rows& rows) const {
    if (!fused_ || per_sequence_decode()) return false;
    for (const auto& sq : rows.seqs)
        if (sq.count != 1) return false;
    return true;
}

DevCache& CudaModel::cache_of(const DevBlock& bw, const Rows& rows, size_t s) const {
    const auto& sq = rows.seqs[s];
    return bw.layer < c_.n_layers ? sq.dev->layers[size_t(bw.layer)] : sq.dev->mtp;
}

void CudaModel::attention_core(const DevBlock& bw, Rows& rows, const AttnIn& in, const DecodePlan* plan) {
    const ModelConfig& c = c_;
    const ops::Backend& be = be_;
    const int64_t H = c.n_heads, hd = c.head_dim, rd = c.rope_head_dim, W = c.window_size;
    const ops::RopeFreqs rf{bw.ratio ? freqs_compressed_ : freqs_plain_, rd};
    const DevCompressor* cw = bw.compressor.get();
    const DevIndexer* iw = bw.indexer.get();
    const int64_t nih = c.index_n_heads, ihd = c.index_head_dim, cwidth = in.cwidth, iwidth = in.iwidth;
    const float *q = in.q, *kv = in.kv, *ca = in.ca, *cg = in.cg, *iq = in.iq, *iwt = in.iwt, *ia = in.ia,
                *ig = in.ig;
    float* o = in.o;
    Arena& A = core_;
    const float scale_attn = float(std::pow(double(hd), -0.5));
    // Sequences decoding one token run batched (one launch per step for all of them); prefill chunks
    // one by one.
    std::vector<size_t> one, chunks;
    for (size_t s = 0; s < rows.seqs.size(); ++s)
        (rows.seqs[s].count == 1 && !per_sequence_decode() ? one : chunks).push_back(s);
    if (!one.empty())
        attention_decode(bw, rows, one, in, rf, o, out_rope_in_core(rows), plan ? *plan : plan_decode(bw, rows, one));
    for (size_t s : chunks) {
        const auto& sq = rows.seqs[s];
        DevCache& lc = bw.layer < c.n_layers ? sq.dev->layers[size_t(bw.layer)] : sq.dev->mtp;
        const int64_t P = sq.start, T = sq.count, b = sq.begin;
        // Keys of the window: the cached W-1 positions before this chunk, then the chunk's own.
        const int64_t n_old = std::min<int64_t>(P, W - 1);
        const int64_t na = n_old + T;
        float* kva = A.f(na * hd);
        for (int64_t i = 0; i < n_old;) {  // ring slots of consecutive positions: at most two runs
            const int64_t slot = (P - n_old + i) % W, run = std::min(n_old - i, W - slot);
            d2d(kva + i * hd, lc.window.data() + slot * hd, size_t(run * hd) * sizeof(float));
            i += run;
        }
        d2d(kva + n_old * hd, kv + b * hd, size_t(T * hd) * sizeof(float));

        // Compressors: stream the chunk's tokens; entries completed here are visible to its queries.
        if (cw)
            for (int64_t t = 0; t < T; ++t)
                compressor_step(*cw, lc.comp_kv, lc.comp_score, ca + (b + t) * cwidth, cg + (b + t) * cwidth, P + t,
                                rf, false, lc.ckv);
        if (iw)
            for (int64_t t = 0; t < T; ++t)
                compressor_step(iw->compressor, lc.icomp_kv, lc.icomp_score, ia + (b + t) * iwidth,
                                ig + (b + t) * iwidth, P + t, rf, true, lc.ikeys);
        const int64_t n_entries = cw ? lc.ckv.size() / hd : 0;

        // Attended set per query (§6.4): window positions, then compressed entries.
        const int64_t n_win = std::min<int64_t>(W, P + T);
        // With take_all the list is known without scoring, and without topk's host sync.
        const CompressedPick pick = compressed_pick(bw.ratio, c.index_topk, n_entries);
        const int64_t n_cmp = pick.count;
        const int64_t nk = n_win + n_cmp;
        const bool take_all = pick.take_all;
        std::vector<int32_t> idx(static_cast<size_t>(T * nk), -1);
        for (int64_t t = 0; t < T; ++t) {
            const int64_t p = P + t;
            int32_t* ix = idx.data() + t * nk;
            int64_t k = 0;
            for (int64_t pp = std::max<int64_t>(0, p - W + 1); pp <= p; ++pp) ix[k++] = int32_t(pp - (P - n_old));
            if (bw.ratio && (bw.ratio != 4 || take_all))
                for (int64_t j = 0; j < (p + 1) / bw.ratio; ++j) ix[n_win + j] = int32_t(na + j);
        }
        int32_t* idx_d = A.i32(T * nk);
        h2d_staged(idx_d, idx.data(), idx.size() * sizeof(int32_t));
        if (bw.ratio == 4 && n_entries > 0 && !take_all) {
            // Lightning indexer (§8): score every complete entry, keep the top-k.
            std::vector<int32_t> valid(static_cast<size_t>(T));
            for (int64_t t = 0; t < T; ++t) valid[size_t(t)] = int32_t((P + t + 1) / 4);
            int32_t* valid_d = A.i32(T);
            h2d_staged(valid_d, valid.data(), valid.size() * sizeof(int32_t));
            float* scores = A.f(T * n_entries);
            be.index_scores(iq + b * nih * ihd, iwt + b * nih, T, nih, ihd, lc.ikeys.data(), n_entries, valid_d,
                            scores);
            int32_t* sel = A.i32(T * n_cmp);
            be.topk(scores, T, n_entries, valid_d, n_cmp, sel);
            sel_to_idx(sel, T, n_cmp, idx_d, nk, n_win, int32_t(na));
        }
        be.sparse_attn(q + b * H * hd, T, H, hd, kva, na, lc.ckv.data(), idx_d, nk, bw.attn_sink, scale_attn,
                       o + b * H * hd);
        for (int64_t i = 0; i < T;) {  // later positions overwrite earlier ones when T > W, as on the host
            const int64_t slot = (P + i) % W, run = std::min(T - i, W - slot);
            d2d(lc.window.data() + slot * hd, kv + (b + i) * hd, size_t(run * hd) * sizeof(float));
            i += run;
        }
    }

    mark(one.empty() ? "attn.core(chunks)" : "attn.core");
}

// Output path (§6.6): inverse RoPE, grouped wo_a (no activation quantization), wo_b.
void CudaModel::attention_out(const DevBlock& bw, Rows& rows, float* o, float* out) {
    const ModelConfig& c = c_;
    const ops::Backend& be = be_;
    const int64_t n = rows.n, H = c.n_heads, hd = c.head_dim;
    const ops::RopeFreqs rf{bw.ratio ? freqs_compressed_ : freqs_plain_, c.rope_head_dim};
    Arena& A = layer_;
    if (!out_rope_in_core(rows)) be.rope(o, n, H, hd, rows.pos_d, rf, true);
    const int64_t G = c.o_groups, gin = (H / G) * hd, olr = c.o_lora_rank;
    float* u = A.f(n * G * olr);
    // Decode: all G slices in one launch, reading o's column slices in place (same numbers as below).
    if (!linear_groups(o, n, H * hd, bw.wo_a, G, olr, u, G * olr)) {
        float* tmp = A.f(n * gin);
        for (int64_t g = 0; g < G; ++g) {
            copy_rows(tmp, gin, o + g * gin, H * hd, n, gin);
            be.linear(tmp, n, bw.wo_a, g * olr, (g + 1) * olr, u + g * olr, G * olr);
        }
    }
    linear(u, n, bw.wo_b, out, true);
    mark("attn.out");
}

// The host's part of a batched decode step's attention core, before anything is enqueued: caches
// get room for the entries this step pools (so no pointer moves during the step) and the entries are
// counted; the key-list width and how the tables are built are chosen.
CudaModel::DecodePlan CudaModel::plan_decode(const DevBlock& bw, Rows& rows, const std::vector<size_t>& seqs) {
    const ModelConfig& c = c_;
    const int64_t hd = c.head_dim, W = c.window_size;
    const DevCompressor* cw = bw.compressor.get();
    const DevIndexer* iw = bw.indexer.get();
    auto completes = [](const DevCompressor* k, int64_t p) { return k && (p + 1) % k->ratio == 0; };
    DecodePlan pl;
    for (size_t s : seqs) {
        const int64_t P = rows.seqs[s].start;
        DevCache& lc = cache_of(bw, rows, s);
        if (completes(cw, P)) {
            lc.ckv.ensure(cw->d);
            pl.cjobs.push_back({lc.comp_kv.data(), lc.comp_score.data(), lc.ckv.append(cw->d), P + 1 - cw->ratio});
        }
        if (iw && completes(&iw->compressor, P)) {
            const DevCompressor& k = iw->compressor;
            lc.ikeys.ensure(k.d);
            pl.ijobs.push_back({lc.icomp_kv.data(), lc.icomp_score.data(), lc.ikeys.append(k.d), P + 1 - k.ratio});
        }
        if (cw) pl.max_entries = std::max<int64_t>(pl.max_entries, lc.ckv.size() / hd);
    }
    // take_all when no sequence has more than index_topk complete entries: no scores, no topk (nor its
    // host sync).
    const CompressedPick pick = compressed_pick(bw.ratio, c.index_topk, pl.max_entries);
    pl.take_all = pick.take_all;
    pl.indexer = bw.ratio == 4 && pick.count > 0 && !pick.take_all;
    pl.n_cmp = pick.count;
    if (tables_mode_ >= 1) {
        // A few list widths only (ratio 4: always index_topk; others: the entry count rounded up to
        // 64), so a step's shapes stay those of the steps around it; -1 pads.
        if (bw.ratio == 4)
            pl.n_cmp = c.index_topk;
        else if (bw.ratio)
            pl.n_cmp = (pl.max_entries + 63) / 64 * 64;
    }
    pl.nk = W + pl.n_cmp;
    // Device tables need every block completion on compress_finish (asked without launching).
    auto finish_ok = [&](const DevCompressor* k, bool indexer) {
        return !k || compress_finish(nullptr, 0, k->ratio, k->d, k->overlap,
                                     entry_post(*k, {freqs_compressed_, c.rope_head_dim}, indexer), true);
    };
    pl.device = tables_mode_ == 2 && fused_finish() && !pl.indexer && finish_ok(cw, false) &&
                finish_ok(iw ? &iw->compressor : nullptr, true);
    return pl;
}

std::vector<DecodeSeq> CudaModel::decode_seqs(const DevBlock& bw, const Rows& rows,
                                              const std::vector<size_t>& seqs) const {
    std::vector<DecodeSeq> ds(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
        DevCache& lc = cache_of(bw, rows, seqs[i]);
        ds[i] = {lc.window.data(),      lc.comp_kv.data(), lc.comp_score.data(), lc.icomp_kv.data(),
                 lc.icomp_score.data(), lc.ckv.data(),     lc.ikeys.data(),      rows.seqs[seqs[i]].begin};
    }
    return ds;
}

// Every layer's plan for a decode call (all rows one token), and one upload of the sequence tables of
// the layers that build their tables on the device: a layer's graph then reads its table from a
// buffer whose place does not change between steps of the same batch size, wherever the caches are.
void CudaModel::plan_step(Rows& rows) {
    step_plans_.clear();
    if (per_sequence_decode() || tables_mode_ != 2) return;
    for (const auto& sq : rows.seqs)
        if (sq.count != 1) return;
    std::vector<size_t> all(rows.seqs.size());
    for (size_t s = 0; s < all.size(); ++s) all[s] = s;
    // Layer l's slice is always entries [l·S, (l+1)·S) (S sequences), device tables or not, so a layer
    // switching between host and device tables (a ratio-4 layer once a sequence's entries pass
    // index_topk) moves no other layer's graph input.
    const size_t S = all.size();
    std::vector<DecodeSeq> tab(layers_.size() * S);
    bool any = false;
    for (size_t l = 0; l < layers_.size(); ++l) {
        step_plans_.push_back(plan_decode(layers_[l], rows, all));
        if (step_plans_.back().device) {
            const auto ds = decode_seqs(layers_[l], rows, all);
            std::copy(ds.begin(), ds.end(), tab.begin() + std::ptrdiff_t(l * S));
            any = true;
        }
    }
    if (!any) return;
    auto* d = reinterpret_cast<DecodeSeq*>(call_.f(int64_t(tab.size() * sizeof(DecodeSeq) / 4)));
    h2d_staged(d, tab.data(), tab.size() * sizeof(DecodeSeq));
    for (size_t l = 0; l < step_plans_.size(); ++l)
        if (step_plans_[l].device) step_plans_[l].seqtab = d + l * S;
}

// Attention of sequences appending one token each, batched. Each sequence's token is written to its
// window ring first (its slot held position p − W, outside the window), so attention reads the ring in
// place: key ids [0, W) are ring slots, W + j compressed entry j. Keys are listed oldest first, as in
// the chunk path, so every query attends the same keys in the same order.
void CudaModel::attention_decode(const DevBlock& bw, Rows& rows, const std::vector<size_t>& seqs, const AttnIn& in,
                                 const ops::RopeFreqs& rf, float* o, bool out_rope, const DecodePlan& pl) {
    const ModelConfig& c = c_;
    const ops::Backend& be = be_;
    const int64_t H = c.n_heads, hd = c.head_dim, W = c.window_size, S = int64_t(seqs.size());
    const int64_t nih = c.index_n_heads, ihd = c.index_head_dim;
    const DevCompressor* cw = bw.compressor.get();
    const DevIndexer* iw = bw.indexer.get();
    Arena& A = core_;
    const int64_t nk = pl.nk, n_cmp = pl.n_cmp, max_entries = pl.max_entries;
    const size_t nS = size_t(S);
    const int64_t jobs_per_seq = 1 + (cw ? 2 : 0) + (iw ? 2 : 0);
    const int64_t max_n = std::max({hd, in.cwidth, in.iwidth});
    const float attn_scale = float(std::pow(double(hd), -0.5));

    if (pl.device) {
        // Every table from the device's positions and the sequences' table (uploaded once per step by
        // plan_step, or here): the core can be replayed as part of a layer graph.
        const DecodeSeq* ds_d = pl.seqtab;
        if (!ds_d) {
            const auto ds = decode_seqs(bw, rows, seqs);
            auto* d = reinterpret_cast<DecodeSeq*>(A.f(int64_t(nS * sizeof(DecodeSeq) / 4)));
            h2d_staged(d, ds.data(), nS * sizeof(DecodeSeq));
            ds_d = d;
        }
        DecodeTables t;
        t.seqs = ds_d;
        t.S = S;
        t.pos = rows.pos_d;
        t.W = W;
        t.hd = hd;
        t.kv = in.kv;
        if (cw) t.comp = {cw->ratio, cw->d, cw->overlap, cw->ape, in.ca, in.cg};
        if (iw)
            t.icomp = {
                iw->compressor.ratio, iw->compressor.d, iw->compressor.overlap, iw->compressor.ape, in.ia, in.ig};
        t.nk = nk;
        t.list_ratio = bw.ratio;  // pl.device: no indexer pick, every complete entry is listed
        t.valid_ratio = bw.ratio;
        t.jobs = reinterpret_cast<CopyJob*>(A.f(int64_t(nS * jobs_per_seq * sizeof(CopyJob) / 4)));
        t.jobs_per_seq = jobs_per_seq;
        t.idx = A.i32(S * nk);
        t.qrow = A.i32(S);
        t.valid = A.i32(S);
        t.a_rows = reinterpret_cast<const float**>(A.i64(S));
        t.b_rows = reinterpret_cast<const float**>(A.i64(S));
        t.k_rows = reinterpret_cast<const float**>(A.i64(S));
        t.cjobs = reinterpret_cast<CompressJob*>(A.f(int64_t(nS * sizeof(CompressJob) / 4)));
        t.ijobs = reinterpret_cast<CompressJob*>(A.f(int64_t(nS * sizeof(CompressJob) / 4)));
        decode_tables(t);
        copy_jobs(t.jobs, S * jobs_per_seq, max_n);
        mark("dec.copy");
        // Each sequence's block completion (a job that completes nothing leaves at once).
        if (cw && !compress_finish(t.cjobs, S, cw->ratio, cw->d, cw->overlap, entry_post(*cw, rf, false), true))
            throw Error("cuda: decode: the fused compressor epilogue refused a setting plan_decode accepted");
        if (iw && !compress_finish(t.ijobs, S, iw->compressor.ratio, iw->compressor.d, iw->compressor.overlap,
                                   entry_post(iw->compressor, rf, true), true))
            throw Error("cuda: decode: the fused compressor epilogue refused a setting plan_decode accepted");
        mark("dec.compress");
        sparse_attn_rows(in.q, S, H, hd, nullptr, W, nullptr, t.idx, nk, bw.attn_sink, attn_scale, o, t.a_rows,
                         t.b_rows, t.qrow, out_rope ? rows.pos_d : nullptr, &rf);
        return;
    }

    // Ring writes and the compressors' slot writes, one launch.
    std::vector<CopyJob> jobs;
    auto slot_jobs = [&](const DevCompressor& k, DevVec& kvs, DevVec& score, const float* a, const float* g,
                         int64_t width, int64_t p) {
        const int64_t r = k.ratio, slot = (k.overlap ? r : 0) + p % r;
        jobs.push_back({kvs.data() + slot * width, a, nullptr, width});
        jobs.push_back({score.data() + slot * width, g, k.ape + (p % r) * width, width});
    };
    for (size_t s : seqs) {
        const auto& sq = rows.seqs[s];
        DevCache& lc = cache_of(bw, rows, s);
        const int64_t P = sq.start, b = sq.begin;
        jobs.push_back({lc.window.data() + (P % W) * hd, in.kv + b * hd, nullptr, hd});
        if (cw) slot_jobs(*cw, lc.comp_kv, lc.comp_score, in.ca + b * in.cwidth, in.cg + b * in.cwidth, in.cwidth, P);
        if (iw)
            slot_jobs(iw->compressor, lc.icomp_kv, lc.icomp_score, in.ia + b * in.iwidth, in.ig + b * in.iwidth,
                      in.iwidth, P);
    }

    // Key lists [S, nk]: ring slots of the window positions, then compressed entries (the ones pooled
    // below included).
    const bool take_all = pl.take_all, indexer = pl.indexer;
    std::vector<int32_t> idx(size_t(S * nk), -1), qrow(nS), valid(nS);
    std::vector<const float*> a_rows(nS), b_rows(nS), k_rows(nS);
    for (int64_t i = 0; i < S; ++i) {
        const size_t s = seqs[size_t(i)];
        const auto& sq = rows.seqs[s];
        DevCache& lc = cache_of(bw, rows, s);
        const int64_t P = sq.start;
        int32_t* ix = idx.data() + i * nk;
        int64_t k = 0;
        for (int64_t pp = std::max<int64_t>(0, P - W + 1); pp <= P; ++pp) ix[k++] = int32_t(pp % W);
        if (bw.ratio && (bw.ratio != 4 || take_all))
            for (int64_t j = 0; j < (P + 1) / bw.ratio; ++j) ix[W + j] = int32_t(W + j);
        qrow[size_t(i)] = int32_t(sq.begin);
        valid[size_t(i)] = int32_t(bw.ratio ? (P + 1) / bw.ratio : 0);
        a_rows[size_t(i)] = lc.window.data();
        b_rows[size_t(i)] = lc.ckv.data();
        k_rows[size_t(i)] = lc.ikeys.data();
    }

    // One upload: jobs | idx | qrow | valid | a_rows | b_rows | k_rows | compressor jobs, each 16-byte
    // aligned.
    std::vector<unsigned char> blob;
    auto put = [&](const void* p, size_t bytes) {
        const size_t off = (blob.size() + 15) / 16 * 16;
        blob.resize(off + (bytes + 3) / 4 * 4);
        if (bytes) std::memcpy(blob.data() + off, p, bytes);
        return off;
    };
    const size_t o_jobs = put(jobs.data(), jobs.size() * sizeof(CopyJob));
    const size_t o_idx = put(idx.data(), idx.size() * sizeof(int32_t));
    const size_t o_qrow = put(qrow.data(), qrow.size() * sizeof(int32_t));
    const size_t o_valid = put(valid.data(), valid.size() * sizeof(int32_t));
    const size_t o_a = put(a_rows.data(), nS * sizeof(float*));
    const size_t o_b = put(b_rows.data(), nS * sizeof(float*));
    const size_t o_k = indexer ? put(k_rows.data(), nS * sizeof(float*)) : 0;
    // The block completions' jobs only where compress_finish reads them (finish_jobs).
    const bool finish_d = fused_finish();
    const size_t o_cj = finish_d ? put(pl.cjobs.data(), pl.cjobs.size() * sizeof(CompressJob)) : 0;
    const size_t o_ij = finish_d ? put(pl.ijobs.data(), pl.ijobs.size() * sizeof(CompressJob)) : 0;
    auto* dev = reinterpret_cast<unsigned char*>(A.f(int64_t(blob.size() / 4)));
    h2d_staged(dev, blob.data(), blob.size());
    auto* jobs_d = reinterpret_cast<CopyJob*>(dev + o_jobs);
    auto* idx_d = reinterpret_cast<int32_t*>(dev + o_idx);
    auto* qrow_d = reinterpret_cast<int32_t*>(dev + o_qrow);
    auto* valid_d = reinterpret_cast<int32_t*>(dev + o_valid);
    auto* a_d = reinterpret_cast<const float**>(dev + o_a);
    auto* b_d = reinterpret_cast<const float**>(dev + o_b);
    auto* k_d = reinterpret_cast<const float**>(dev + o_k);

    copy_jobs(jobs_d, int64_t(jobs.size()), max_n);
    mark("dec.copy");

    // Sequences whose token completes a compressed block pool it (a few per step): one launch per
    // compressor.
    auto jobs_at = [&](size_t off) { return finish_d ? reinterpret_cast<const CompressJob*>(dev + off) : nullptr; };
    if (cw) finish_jobs(*cw, pl.cjobs, jobs_at(o_cj), rf, false);
    if (iw) finish_jobs(iw->compressor, pl.ijobs, jobs_at(o_ij), rf, true);
    mark("dec.compress");

    if (indexer) {
        // Lightning indexer over every sequence's complete entries, then one top-k for all rows.
        float* scores = A.f(S * max_entries);
        index_scores_rows(in.iq, in.iwt, qrow_d, S, nih, ihd, k_d, max_entries, valid_d, scores);
        int32_t* sel = A.i32(S * n_cmp);
        be.topk(scores, S, max_entries, valid_d, n_cmp, sel);
        sel_to_idx(sel, S, n_cmp, idx_d, nk, W, int32_t(W));
    }
    mark("dec.index");
    // With out_rope, the output's inverse RoPE (§6.6) in the merge kernel.
    sparse_attn_rows(in.q, S, H, hd, nullptr, W, nullptr, idx_d, nk, bw.attn_sink, attn_scale, o, a_d, b_d, qrow_d,
                     out_rope ? rows.pos_d : nullptr, &rf);
}

void CudaModel::moe(const DevBlock& bw, Rows& rows, const float* y, const float* yq_in, float* out, const float* res,
                    const float* post, const float* comb, float* x_out) {
    const ModelConfig& c = c_;
    const ops::Backend& be = be_;
    const int64_t n = rows.n, D = c.dim, E = c.n_routed_experts, K = c.n_activated_experts, I = c.moe_inter_dim;
    Arena& A = layer_;

    // Gate (§10.1); hash layers take their expert ids from tid2eid by token (a table on the device).
    float* logits = A.f(n * E);
    float* rw = A.f(n * K);
    int32_t* ids = A.i32(n * K);
    linear_q(y, yq_in, n, bw.gate, logits);
    if (bw.hash)
        moe_route_hash(logits, n, E, rows.tokens_d, bw.tid2eid, K, float(c.route_scale), ids, rw);
    else
        be.moe_route(logits, n, E, bw.gate_bias, nullptr, K, float(c.route_scale), ids, rw);
    mark("moe.route");

    // Input rows quantized once (the quantization is per row, so this equals quantizing per expert).
    const float* yq = yq_in;
    auto expert_input = [&](bool quant_in) -> const float* {
        if (!quant_ || !quant_in) return y;
        if (!yq) {
            float* q = A.f(n * D);
            act_quant_copy(y, q, n, D, 128, pow2_);
            yq = q;
        }
        return yq;
    };

    // The shared expert (§10.3) is independent of the routed experts: at decode it runs on the side
    // stream beside them. Its output is added last, as on the CPU.
    const float* xr = expert_input(bw.experts_quant_in);
    const ExpertWeights& sh = bw.shared;
    const float* xs = expert_input(quantized(sh.w1));
    const bool fork = fork_rows(o_.side_stream, n);
    // shared_w2_late: the shared w2 forks again after the routed experts' up launch (MoeTail::after_up).
    const bool w2_late = fork && fused_ && quant_ && quantized(sh.w2) && shared_w2_late();
    if (fork) side_begin();
    float* gu = A.f(n * 2 * I);
    float* h = A.f(n * I);
    float* so = A.f(n * D);
    // Decode: w1 and w3 in one launch (same numbers as the two linears).
    const bool xs_quant = quant_ && quantized(sh.w1) && pow2_;
    const bool pair_mma = n == 1 && xs_quant && sh.w1.n == I && mma_gemv_pair(xs, sh.w1, sh.w3, gu, gu + I);
    if (!pair_mma && (sh.w1.n != I || !linear_pair(xs, n, sh.w1, sh.w3, gu, gu + I, 2 * I))) {
        be.linear(xs, n, sh.w1, 0, I, gu, 2 * I);
        be.linear(xs, n, sh.w3, 0, I, gu + I, 2 * I);
    }
    if (quant_ && quantized(sh.w2)) {
        if (fused_) {
            swiglu_act_quant(gu, gu + I, 2 * I, n, I, float(c.swiglu_limit), nullptr, h, 128, pow2_);
        } else {
            be.swiglu(gu, gu + I, 2 * I, n, I, float(c.swiglu_limit), nullptr, h);
            be.act_quant(h, n, I, I, 128, pow2_);
        }
        if (!w2_late) linear_xq(h, n, sh.w2, so);
    } else {
        be.swiglu(gu, gu + I, 2 * I, n, I, float(c.swiglu_limit), nullptr, h);
        be.linear(h, n, sh.w2, 0, D, so, D);
    }
    if (fork) side_end();
    mark("moe.shared");

    // Routed experts: summed in ascending expert id per row (the host model's order of sums).
    if (!pow2_ && quant_ && bw.experts_quant_h)
        throw Error("cuda: the fused MoE quantizes expert activations with power-of-two scales only");
    const bool x_quant = quant_ && bw.experts_quant_in && pow2_;
    const float limit = float(c.swiglu_limit);
    const bool quant_h = quant_ && bw.experts_quant_h;
    if (fused_) {
        // The combine adds the shared expert's output (after the join) and applies hc_post.
        MoeTail tail;
        if (fork || hc_sinkhorn_aside()) tail.before_combine = [] { side_join(); };
        if (w2_late)
            tail.after_up = [&] {
                side_begin();
                linear_xq(h, n, sh.w2, so);
                side_end();
            };
        tail.add = so;
        tail.res = res;
        tail.post = post;
        tail.comb = comb;
        tail.hc = c.hc_mult;
        moe_experts(*bw.experts, xr, x_quant, n, D, I, ids, rw, K, limit, quant_h, x_out, &tail);
        mark("moe.experts");
        return;
    }
    moe_experts(*bw.experts, xr, x_quant, n, D, I, ids, rw, K, limit, quant_h, out);
    mark("moe.experts");
    if (fork || hc_sinkhorn_aside()) side_join();
    add(out, so, n * D);
    be.hc_post(out, res, post, comb, n, c.hc_mult, D, x_out);
    mark("hc_post");
}

// DSINFER_CUDA_GRAPHS=0: no CUDA graphs (every kernel launched one by one). Read once.
bool graphs_enabled() {
    static const bool on = [] {
        const char* v = std::getenv("DSINFER_CUDA_GRAPHS");
        return !(v && std::string(v) == "0");
    }();
    return on;
}

// Runs `run` (which enqueues kernels and returns the pointers its caller needs) eagerly the first time
// a key is seen; the second time it captures it into a CUDA graph, and from then on launches the graph
// and moves the layer arena as the captured run did. A part is capturable when it has no host
// synchronization and no host→device copy whose contents change per call, and allocates the same
// buffers in the same order every time (a decode block's dense parts at a given batch size).
template <class F>
std::vector<float*> CudaModel::graphed(const GraphKey& key, bool enabled, const std::vector<const void*>& inputs,
                                       F run) {
    constexpr size_t kMaxGraphs = 2048;
    constexpr int kMaxRecaptures = 64;
    if (!enabled) return run();
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
        if (graphs_.size() >= kMaxGraphs) return run();
        auto out = run();  // warm-up: scratch buffers, arena chunks, cached algorithms settle here
        graphs_[key] = GraphEntry{};
        return out;
    }
    GraphEntry& g = it->second;
    if (g.captured && g.scratch_gen != scratch_generation()) {  // a scratch buffer it uses has moved
        destroy_graph(g.exec);
        g = GraphEntry{};
    }
    if (!g.captured) {
        if (g.uncapturable) return run();
        g.before = layer_.state();
        begin_capture();
        std::vector<float*> out;
        try {
            out = run();
            g.exec = end_capture();
        } catch (const std::exception& e) {
            // Something in the part cannot be captured: run it eagerly from now on.
            side_abort();
            abort_capture();
            std::fprintf(stderr, "cuda: decode layer %d part %d runs without a CUDA graph (%s)\n", key.layer,
                         key.part, e.what());
            g.uncapturable = true;
            layer_.set_state(g.before);
            return run();
        }
        g.scratch_gen = scratch_generation();
        g.inputs = inputs;
        g.after = layer_.state();
        g.out = out;
        g.captured = true;
        layer_.set_state(g.before);
    }
    // Another arena position: not the call that was captured. Other input buffers (a batch of other
    // sequences or a cache that moved): captured again, a few times at most.
    if (layer_.state() != g.before) return run();
    if (inputs != g.inputs) {
        destroy_graph(g.exec);
        const int again = g.recaptures + 1;
        g = GraphEntry{};
        g.recaptures = again;
        if (again > kMaxRecaptures) g.uncapturable = true;
        return run();  // captured on the next call like these inputs
    }
    launch_graph(g.exec);
    layer_.set_state(g.after);
    return g.out;
}

void CudaModel::block_forward(const DevBlock& bw, Rows& rows, float* x) {
    const ModelConfig& c = c_;
    const ops::Backend& be = be_;
    const int64_t n = rows.n, D = c.dim, hc = c.hc_mult;
    const float eps = float(c.norm_eps), hc_eps = float(c.hc_eps);
    layer_.reset();
    core_.reset();
    // Decode-only calls of up to 256 sequences run the dense parts as CUDA graphs (the routed experts
    // stay on the sync-free grouped path up to that size; hash layers read their expert ids on the
    // device by the call's token ids, an input like x and the positions).
    bool decode = n <= 256 && o_.cuda_graphs && graphs_enabled() && !Sections::get().on() && !per_sequence_decode();
    for (const auto& sq : rows.seqs) decode = decode && sq.count == 1;
    const GraphKey k1{bw.layer, 1, n, quant_, pow2_, fp8_tensor_cores(), bf16_gemm()};
    GraphKey k2 = k1;
    k2.part = 2;

    const std::vector<const void*> inputs{x, rows.pos_d, rows.tokens_d};
    // Each hc_pre's Sinkhorn on its own lane (decode sizes): joined at the end of part 1 and before the
    // MoE's combine, where post and comb are read.
    const bool aside = hc_aside_ && fork_rows(o_.side_stream, n);
    const SinkhornAside aside_scope(aside);
    // Before attention's core: hc_pre, norm, projections.
    auto part1 = [&] {
        float* y = layer_.f(n * D);
        float* post = layer_.f(n * hc);
        float* comb = layer_.f(n * hc * hc);
        float* f = layer_.f(n * D);
        float* x2 = layer_.f(n * hc * D);
        be.hc_pre(x, n, hc, D, bw.hc_attn_fn, bw.hc_attn_scale, bw.hc_attn_base, c.hc_sinkhorn_iters, hc_eps, eps, y,
                  post, comb);
        float* yq = quant_ ? layer_.f(n * D) : nullptr;
        norm_q(y, n, D, bw.attn_norm, yq);
        mark("hc_pre+norm");
        const AttnIn in = attention_proj(bw, rows, y, yq);
        if (aside) side_join();  // post and comb (part 2 reads them), before a capture ends
        return std::vector<float*>{y, post, comb, f, x2, yq, in.q, in.kv, in.ca, in.cg, in.iq, in.iwt, in.ia, in.ig,
                                   in.o};
    };
    const DevCompressor* cw = bw.compressor.get();
    const DevIndexer* iw = bw.indexer.get();
    auto attn_in = [&](const std::vector<float*>& p) {
        return AttnIn{p[6],
                      p[7],
                      p[8],
                      p[9],
                      p[10],
                      p[11],
                      p[12],
                      p[13],
                      cw ? (cw->overlap ? 2 : 1) * cw->d : 0,
                      iw ? 2 * iw->compressor.d : 0,
                      p[14]};
    };
    // After it: the output path, hc_post + hc_pre, norm, MoE.
    auto part2 = [&](const std::vector<float*>& p, const AttnIn& in) {
        float *y = p[0], *post = p[1], *comb = p[2], *f = p[3], *x2 = p[4], *yq = p[5];
        attention_out(bw, rows, in.o, f);
        if (fused_) {
            hc_post_pre(f, x, post, comb, n, hc, D, x2, bw.hc_ffn_fn, bw.hc_ffn_scale, bw.hc_ffn_base,
                        c.hc_sinkhorn_iters, hc_eps, eps, y, post, comb);
        } else {
            be.hc_post(f, x, post, comb, n, hc, D, x2);
            mark("hc_post");
            be.hc_pre(x2, n, hc, D, bw.hc_ffn_fn, bw.hc_ffn_scale, bw.hc_ffn_base, c.hc_sinkhorn_iters, hc_eps, eps, y,
                      post, comb);
        }
        norm_q(y, n, D, bw.ffn_norm, yq);
        mark("hc_pre+norm");
        moe(bw, rows, y, yq, f, x2, post, comb, x);
    };
    const DecodePlan* plan =
        bw.layer < c.n_layers && size_t(bw.layer) < step_plans_.size() ? &step_plans_[size_t(bw.layer)] : nullptr;
    if (decode && plan && plan->device) {
        // Tables built on the device: the whole block, core included, is one graph (keyed by the key
        // lists' width too; the sequences' table is an input like x).
        GraphKey k3 = k1;
        k3.part = 3;
        k3.nk = plan->nk;
        std::vector<const void*> in3 = inputs;
        in3.push_back(plan->seqtab);
        graphed(k3, true, in3, [&] {
            const auto p = part1();
            const AttnIn in = attn_in(p);
            attention_core(bw, rows, in, plan);
            part2(p, in);
            return std::vector<float*>{};
        });
        return;
    }
    const std::vector<float*> p = graphed(k1, decode, inputs, part1);
    const AttnIn in = attn_in(p);
    attention_core(bw, rows, in, plan);
    graphed(k2, decode, inputs, [&] {
        part2(p, in);
        return std::vector<float*>{};
    });
}

void CudaModel::emit_logits(const float* x, const std::vector<LogitsRequest>& reqs, const float* fn,
                            const float* scale, const float* base, const float* norm) {
    if (reqs.empty()) return;
    const ModelConfig& c = c_;
    const int64_t row = c.hc_mult * c.dim, V = head_.n;
    int64_t m = 0, max_n = 0;
    for (const auto& r : reqs) {
        m += r.count;
        max_n = std::max(max_n, r.count * row);
    }
    const float* xr = x + reqs[0].first * row;
    if (reqs.size() > 1) {  // gather the rows
        float* g = call_.f(m * row);
        std::vector<CopyJob> jobs;
        int64_t off = 0;
        for (const auto& r : reqs) {
            jobs.push_back({g + off * row, x + r.first * row, nullptr, r.count * row});
            off += r.count;
        }
        auto* jobs_d = reinterpret_cast<CopyJob*>(call_.f(int64_t(jobs.size() * sizeof(CopyJob) / 4)));
        h2d_staged(jobs_d, jobs.data(), jobs.size() * sizeof(CopyJob));
        copy_jobs(jobs_d, int64_t(jobs.size()), max_n);
        xr = g;
    }
    float* h = call_.f(m * c.dim);
    float* l = call_.f(m * V);
    be_.hc_head(xr, m, c.hc_mult, c.dim, fn, scale, base, float(c.hc_eps), float(c.norm_eps), h);
    be_.rmsnorm(h, m, c.dim, norm, float(c.norm_eps), h);
    be_.linear(h, m, head_, 0, V, l, V);
    mark("head");
    // Greedy picks: one argmax per row on the device, and only the ids come back.
    bool any_argmax = false, all_logits = true;
    for (const auto& r : reqs) {
        any_argmax = any_argmax || r.argmax;
        all_logits = all_logits && r.wants_logits();
    }
    if (any_argmax) {
        int32_t* ids_d = call_.i32(m);
        argmax_rows(l, m, V, ids_d);
        argmax_host_.resize(size_t(m));
        d2h(argmax_host_.data(), ids_d, size_t(m) * sizeof(int32_t));
        int64_t off = 0;
        for (const auto& r : reqs) {
            if (r.argmax) std::copy_n(argmax_host_.begin() + off, r.count, r.argmax);
            off += r.count;
        }
    }
    // Each row's 1 / T (as the host sampler forms it) for the summary requests with draw == `draws`, 1
    // for the other rows, on the device.
    auto inv_t_on_device = [&](bool draws) {
        std::vector<float> inv_t(size_t(m), 1.0f);
        int64_t off = 0;
        for (const auto& r : reqs) {
            if (r.summary && r.summary->draw == draws) inv_t[size_t(off)] = 1.0f / r.summary->temperature;
            off += r.count;
        }
        float* d = call_.f(m);
        h2d_staged(d, inv_t.data(), size_t(m) * sizeof(float));
        return d;
    };
    // Whole-softmax draws (SummaryRequest::draw): the token comes back instead of the row.
    bool any_draw = false;
    for (const auto& r : reqs) any_draw = any_draw || (r.summary && r.summary->draw);
    if (any_draw && V <= 262144) {
        std::vector<double> u(size_t(m), -1.0);
        int64_t off = 0;
        for (const auto& r : reqs) {
            if (r.summary && r.summary->draw) u[size_t(off)] = r.summary->u;
            off += r.count;
        }
        float* inv_t_d = inv_t_on_device(true);
        auto* u_d = reinterpret_cast<double*>(call_.i64(m));
        int32_t* tok_d = call_.i32(m);
        h2d_staged(u_d, u.data(), size_t(m) * sizeof(double));
        draw_rows(l, m, V, inv_t_d, u_d, tok_d);
        std::vector<int32_t> tok(static_cast<size_t>(m));
        d2h(tok.data(), tok_d, size_t(m) * sizeof(int32_t));
        off = 0;
        for (const auto& r : reqs) {
            if (r.summary && r.summary->draw) {
                r.summary->token = tok[size_t(off)];
                r.summary->summarized = true;
            }
            off += r.count;
        }
        mark("logits.draw");
    }
    // Sampled rows a summary may serve (SummaryRequest): each row's maximum, total weight and most
    // likely `cap` tokens come back (one copy, 8 KB a row against 0.5 MB), and the row itself only when
    // its request finds the summary short. One pass over all m rows (those not asking are ignored).
    int cap = 0;
    for (const auto& r : reqs)
        if (r.summary && !r.summary->draw) cap = std::max(cap, std::clamp(r.summary->cap, 1, 1024));
    cap = V <= 262144 ? int(std::min<int64_t>(cap, V)) : 0;  // sample_summary's row limit (else the rows)
    if (cap > 0) {
        float* inv_t_d = inv_t_on_device(false);
        // One block: z [m] doubles, then mx [m], ids [m, cap], w [m, cap].
        const size_t bytes = size_t(m) * (8 + 4 + 8 * size_t(cap));
        auto* blk = reinterpret_cast<char*>(call_.i64(int64_t((bytes + 7) / 8)));
        double* z_d = reinterpret_cast<double*>(blk);
        float* mx_d = reinterpret_cast<float*>(blk + 8 * m);
        int32_t* ids_d = reinterpret_cast<int32_t*>(blk + 12 * m);
        float* w_d = reinterpret_cast<float*>(blk + 12 * m + 4 * m * cap);
        sample_summary(l, m, V, inv_t_d, cap, mx_d, z_d, ids_d, w_d);
        summary_host_.resize(bytes);
        d2h(summary_host_.data(), blk, bytes);
        const char* hb = summary_host_.data();
        int64_t off = 0;
        for (const auto& r : reqs) {
            if (r.summary && !r.summary->draw) {
                SummaryRequest& q = *r.summary;
                RowSummary& sm = q.out;
                const int qc = std::min(cap, std::clamp(q.cap, 1, 1024));
                sm.vocab = V;
                std::memcpy(&sm.z, hb + 8 * off, 8);
                std::memcpy(&sm.mx, hb + 8 * m + 4 * off, 4);
                sm.ids.resize(size_t(qc));
                sm.w.resize(size_t(qc));
                std::memcpy(sm.ids.data(), hb + 12 * m + 4 * off * cap, size_t(qc) * 4);
                std::memcpy(sm.w.data(), hb + 12 * m + 4 * m * cap + 4 * off * cap, size_t(qc) * 4);
                q.summarized = q.enough && q.enough(sm);
            }
            off += r.count;
        }
        mark("logits.summary");
    }
    auto row_wanted = [](const LogitsRequest& r) { return r.wants_logits() && !(r.summary && r.summary->summarized); };
    for (const auto& r : reqs) all_logits = all_logits && row_wanted(r);
    // Through a page-locked buffer kept across calls: a pageable destination would be staged by the
    // driver, and a fresh one faulted in page by page (batch 64: 33 MB per step). Only the rows asked
    // for as logits are copied.
    int64_t need = 0;
    for (const auto& r : reqs)
        if (row_wanted(r)) need += r.count;
    const size_t bytes = size_t(need * V) * sizeof(float);
    if (bytes > logits_host_bytes_) {
        host_free(logits_host_);
        logits_host_ = nullptr;
        logits_host_bytes_ = 0;
        logits_host_ = static_cast<float*>(host_alloc(bytes));
        logits_host_bytes_ = bytes;
    }
    if (all_logits) {
        d2h(logits_host_, l, bytes);
    } else if (need > 0) {
        int64_t off = 0, dst = 0;
        for (const auto& r : reqs) {
            if (row_wanted(r)) {
                d2h(logits_host_ + dst * V, l + off * V, size_t(r.count * V) * sizeof(float));
                dst += r.count;
            }
            off += r.count;
        }
    }
    // Into the callers' rows, side by side when there are many (batch 64: 33 MB a step).
    std::vector<std::pair<float*, const float*>> copies;
    std::vector<size_t> lens;
    int64_t dst = 0;
    for (const auto& r : reqs) {
        if (!row_wanted(r)) continue;
        copies.push_back({r.dest(V), logits_host_ + dst * V});
        lens.push_back(size_t(r.count * V) * sizeof(float));
        dst += r.count;
    }
    const int64_t nc = int64_t(copies.size());
#pragma omp parallel for schedule(static) if (nc >= 8)
    for (int64_t i = 0; i < nc; ++i) std::memcpy(copies[size_t(i)].first, copies[size_t(i)].second, lens[size_t(i)]);
    mark("logits.d2h");
}

void CudaModel::forward(std::span<ForwardItem> items) {
    const ModelConfig& c = c_;
    const int64_t D = c.dim, hc = c.hc_mult;
    quant_ = m_.options().quant_sim;
    pow2_ = c.scale_fmt_ue8m0;
    TensorCoreScope tc(o_.fp8_tensor_cores);
    Rows rows;
    for (const auto& it : items) {
        CudaState* st = check(it);
        if (it.tokens.empty()) continue;
        rows.seqs.push_back({it.state, st, rows.n, int64_t(it.tokens.size()), it.state->pos_});
        for (size_t t = 0; t < it.tokens.size(); ++t) {
            rows.tokens.push_back(it.tokens[t]);
            rows.pos.push_back(it.state->pos_ + int64_t(t));
        }
        rows.n += int64_t(it.tokens.size());
    }
    if (rows.n == 0) return;
    const int64_t n = rows.n;
    begin_uploads();
    Sections::get().start(int64_t(rows.seqs.size()) == n);
    call_.reset();
    iota(*std::max_element(rows.pos.begin(), rows.pos.end()));  // grows the table before any op is enqueued
    upload_rows(rows);
    const int32_t* tokens_d = rows.tokens_d;

    // Embedding, expanded to the hc residual streams (§4).
    float* e = call_.f(n * D);
    float* x = call_.f(n * hc * D);
    plan_step(rows);  // after x: the sequence tables' size does not move x
    be_.embed(embed_, tokens_d, n, e);
    expand_hc(e, nullptr, n, hc, D, x);

    for (int l = 0; l < c.n_layers; ++l) {
        size_t s = 0;
        for (auto& it : items) {
            if (it.tokens.empty()) continue;
            const auto& sq = rows.seqs[s++];
            if (it.layer_inputs && size_t(l) < it.layer_inputs->size() && (*it.layer_inputs)[size_t(l)])
                h2d(x + sq.begin * hc * D, (*it.layer_inputs)[size_t(l)], sizeof(float) * size_t(sq.count * hc * D));
        }
        block_forward(layers_[size_t(l)], rows, x);
        s = 0;
        for (auto& it : items) {
            if (it.tokens.empty()) continue;
            const auto& sq = rows.seqs[s++];
            if (it.layer_hidden) {
                it.layer_hidden->resize(static_cast<size_t>(c.n_layers));
                auto& dst = (*it.layer_hidden)[size_t(l)];
                dst.resize(static_cast<size_t>(sq.count * hc * D));
                d2h(dst.data(), x + sq.begin * hc * D, dst.size() * sizeof(float));
            }
        }
    }

    size_t s = 0;
    std::vector<LogitsRequest> reqs;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        const auto& sq = rows.seqs[s++];
        if (it.final_hidden) {
            it.final_hidden->resize(static_cast<size_t>(sq.count * hc * D));
            d2h(it.final_hidden->data(), x + sq.begin * hc * D, it.final_hidden->size() * sizeof(float));
        }
        if (LogitsRequest r; LogitsRequest::of(it, sq.begin, sq.count, r)) reqs.push_back(r);
    }
    emit_logits(x, reqs, hc_head_fn_, hc_head_scale_, hc_head_base_, norm_);
    s = 0;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        it.state->pos_ += rows.seqs[s++].count;
    }
}

void CudaModel::forward_mtp(std::span<MtpItem> items) {
    const ModelConfig& c = c_;
    if (mtp_.empty()) throw Error("forward_mtp: the checkpoint has no MTP block");
    const DevMtp& mw = mtp_[0];
    const int64_t D = c.dim, hc = c.hc_mult;
    const float eps = float(c.norm_eps);
    step_plans_.clear();  // the MTP block plans its own decode rows
    quant_ = m_.options().quant_sim;
    pow2_ = c.scale_fmt_ue8m0;
    TensorCoreScope tc(o_.fp8_tensor_cores);
    Rows rows;
    std::vector<float> xin_h;
    for (const auto& it : items) {
        CudaState* st = check(it);
        if (it.tokens.empty()) continue;
        const int64_t T = int64_t(it.tokens.size());
        rows.seqs.push_back({it.state, st, rows.n, T, it.state->mtp_pos_});
        for (int64_t t = 0; t < T; ++t) {
            rows.tokens.push_back(it.tokens[size_t(t)]);
            rows.pos.push_back(it.state->mtp_pos_ + t);
        }
        xin_h.insert(xin_h.end(), it.hidden, it.hidden + T * hc * D);
        rows.n += T;
    }
    if (rows.n == 0) return;
    const int64_t n = rows.n;
    begin_uploads();
    Sections::get().start(int64_t(rows.seqs.size()) == n);
    call_.reset();
    iota(*std::max_element(rows.pos.begin(), rows.pos.end()));
    upload_rows(rows);
    const int32_t* tokens_d = rows.tokens_d;
    float* xin = call_.f(n * hc * D);
    h2d_staged(xin, xin_h.data(), xin_h.size() * sizeof(float));

    // §11: e = enorm(embed(next token)); x̃_i = hnorm(X_i); Z_i = e_proj(e) + h_proj(x̃_i).
    float* e = call_.f(n * D);
    float* ep = call_.f(n * D);
    float* hp = call_.f(n * hc * D);
    float* x = call_.f(n * hc * D);
    be_.embed(embed_, tokens_d, n, e);
    be_.rmsnorm(e, n, D, mw.enorm, eps, e);
    be_.rmsnorm(xin, n * hc, D, mw.hnorm, eps, xin);
    layer_.reset();  // linear()'s quantized copies of x come from the block arena
    linear(e, n, mw.e_proj, ep, true);
    linear(xin, n * hc, mw.h_proj, hp, true);
    expand_hc(ep, hp, n, hc, D, x);

    block_forward(mw.block, rows, x);

    size_t s = 0;
    std::vector<LogitsRequest> reqs;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        const auto& sq = rows.seqs[s++];
        if (it.final_hidden) {  // the MTP block's output residual (drafting further tokens)
            it.final_hidden->resize(static_cast<size_t>(sq.count * hc * D));
            d2h(it.final_hidden->data(), x + sq.begin * hc * D, it.final_hidden->size() * sizeof(float));
        }
        if (LogitsRequest r; LogitsRequest::of(it, sq.begin, sq.count, r)) reqs.push_back(r);
    }
    emit_logits(x, reqs, mw.hc_head_fn, mw.hc_head_scale, mw.hc_head_base, mw.norm);
    s = 0;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        it.state->mtp_pos_ += rows.seqs[s++].count;
    }
}

}  // namespace

std::unique_ptr<DeviceForward> make_model_device(const Dsv4Model& model, const CudaModelOptions& opts) {
    return std::make_unique<CudaModel>(model, opts);
}

}  // namespace dsinfer::cuda
