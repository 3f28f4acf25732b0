#include "model/dsv4_model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "cpu/cpu_ops.h"
#include "io/progress.h"
#include "model/checkpoint_layout.h"
#include "model/compressor.h"

namespace dsinfer {

namespace {

bool quantized(const ops::Weight& w) { return w.fmt == ops::WeightFormat::FP8 || w.fmt == ops::WeightFormat::FP4; }

// The block layout of every cache of a sequence (see KvLayout).
std::shared_ptr<KvLayout> build_layout(const Dsv4Weights& w, const ModelConfig& c) {
    auto L = std::make_shared<KvLayout>();
    int max_ratio = 1;
    for (const auto& bw : w.layers) max_ratio = std::max(max_ratio, bw.ratio);
    for (const auto& m : w.mtp) max_ratio = std::max(max_ratio, m.block.ratio);
    L->block_tokens = std::max(max_ratio, 16);  // as KvGeometry: the largest compress ratio
    const int64_t B = L->block_tokens;
    struct Want {
        int64_t width, rows;
        float init;
    };
    std::vector<Want> want;
    auto region = [&](int64_t width, int64_t rows, float init) {
        want.push_back({width, rows, init});
        return int(want.size()) - 1;
    };
    auto add = [&](const BlockWeights& bw) {
        KvLayout::Cache k;
        k.ratio = bw.ratio;
        k.head_dim = c.head_dim;
        k.window = c.window_size;
        k.window_region = region(c.head_dim, c.window_size, 0.f);
        auto comp = [&](const CompressorWeights& cw, int& kv, int& score, int64_t& off) {
            if (B % cw.ratio) throw Error(c.source + ": compress ratio " + std::to_string(cw.ratio) +
                                          " does not divide the largest one (" + std::to_string(B) + ")");
            const int64_t coff = cw.overlap ? 2 : 1;
            kv = region(coff * cw.d, coff * cw.ratio, 0.f);
            score = region(coff * cw.d, coff * cw.ratio, -std::numeric_limits<float>::infinity());
            off = L->growth_floats;
            L->growth_floats += B / cw.ratio * cw.d;
        };
        if (bw.compressor) comp(*bw.compressor, k.comp_kv, k.comp_score, k.ckv_offset);
        if (bw.indexer) {
            comp(bw.indexer->compressor, k.icomp_kv, k.icomp_score, k.ikeys_offset);
            k.index_head_dim = bw.indexer->compressor.d;
        }
        L->caches.push_back(k);
    };
    for (const auto& bw : w.layers) add(bw);
    L->n_main = w.layers.size();
    if (!w.mtp.empty()) add(w.mtp[0].block);
    int64_t widest = 1;
    for (const auto& r : want) widest = std::max(widest, r.width);
    L->block_floats = std::max(L->growth_floats, widest);
    // Pack the regions: a region that fits in a block is kept whole in one block; a larger one is
    // laid out row by row over as many blocks as it needs.
    const int64_t BF = L->block_floats;
    int64_t blk = 0, off = 0;
    for (const auto& r : want) {
        KvLayout::Region g;
        g.width = r.width;
        g.rows = r.rows;
        g.init = r.init;
        g.rows_per_block = BF / r.width;
        if (r.width * r.rows <= BF) {
            if (off + r.width * r.rows > BF) ++blk, off = 0;
            g.block = blk;
            g.offset = off;
            g.rows_first = r.rows;
            off += r.width * r.rows;
        } else {
            if (off + r.width > BF) ++blk, off = 0;
            g.block = blk;
            g.offset = off;
            g.rows_first = (BF - off) / r.width;
            const int64_t rest = r.rows - g.rows_first;
            const int64_t more = (rest + g.rows_per_block - 1) / g.rows_per_block;
            blk += more;
            off = (rest - (more - 1) * g.rows_per_block) * r.width;
        }
        L->regions.push_back(g);
    }
    L->fixed_blocks = blk + (off > 0 ? 1 : 0);
    return L;
}
}  // namespace

// ---- SequenceState: block tables over a KvStore ----

SequenceState::SequenceState(const SequenceState& o)
    : pos_(o.pos_), mtp_pos_(o.mtp_pos_), device(o.device), store(o.store), layout(o.layout) {
    if (!layout) return;
    const int64_t BF = layout->block_floats;
    try {
        fixed.reserve(o.fixed.size());
        for (int32_t b : o.fixed) {
            fixed.push_back(store->allocate());
            std::memcpy(store->data(fixed.back()), store->data(b), sizeof(float) * size_t(BF));
        }
        growth.reserve(o.growth.size());
        for (int32_t b : o.growth) {
            store->retain(b);
            growth.push_back(b);
        }
    } catch (...) {
        for (int32_t b : fixed) store->release(b);
        for (int32_t b : growth) store->release(b);
        throw;
    }
}

SequenceState::~SequenceState() {
    if (!store) return;
    for (int32_t b : fixed) store->release(b);
    for (int32_t b : growth) store->release(b);
}

size_t SequenceState::memory_bytes() const {
    size_t b = sizeof(*this) + (device.p ? device.p->bytes() : 0);
    if (layout) b += (fixed.size() + growth.size()) * size_t(layout->block_bytes());
    return b;
}

void SequenceState::blocks_held(std::vector<int32_t>& out) const {
    out.insert(out.end(), fixed.begin(), fixed.end());
    out.insert(out.end(), growth.begin(), growth.end());
}

namespace {
// Growth blocks covering positions [from, n) of a sequence that are missing or shared (their next
// write copies them); with `apply`, they are allocated / copied.
int64_t grow(SequenceState& s, int64_t from, int64_t n, bool apply) {
    const KvLayout& L = *s.layout;
    if (!L.grows() || n <= from) return 0;
    const int64_t B = L.block_tokens, first = from / B, last = (n + B - 1) / B;
    int64_t need = 0;
    for (int64_t k = first; k < last; ++k) {
        if (k < int64_t(s.growth.size())) {
            const int32_t old = s.growth[size_t(k)];
            if (s.store->refcount(old) <= 1) continue;
            ++need;
            if (apply) {
                const int32_t nb = s.store->allocate();
                std::memcpy(s.store->data(nb), s.store->data(old), sizeof(float) * size_t(L.block_floats));
                s.growth[size_t(k)] = nb;
                s.store->release(old);
            }
        } else {
            ++need;
            if (apply) s.growth.push_back(s.store->allocate());
        }
    }
    return need;
}

bool mtp_grows(const SequenceState& s) {
    if (s.layout->caches.size() <= s.layout->n_main) return false;
    const auto& k = s.layout->caches.back();
    return s.mtp_pos_ < s.pos_ && (k.ckv_offset >= 0 || k.ikeys_offset >= 0);
}
}  // namespace

int64_t SequenceState::blocks_needed(int64_t n) const {
    if (!layout) return 0;
    const int64_t from = mtp_grows(*this) ? mtp_pos_ : pos_;
    return grow(const_cast<SequenceState&>(*this), from, n, false);
}

void SequenceState::reserve(int64_t n) {
    if (!layout) return;
    grow(*this, mtp_grows(*this) ? mtp_pos_ : pos_, n, true);
}

void SequenceState::reserve_mtp(int64_t n) {
    if (!layout || layout->caches.size() <= layout->n_main) return;
    const auto& k = layout->caches.back();
    if (k.ckv_offset >= 0 || k.ikeys_offset >= 0) grow(*this, mtp_pos_, n, true);
}

namespace {
void copy_rows(const SequenceState& s, int region, std::vector<float>& out) {
    out.clear();
    if (region < 0) return;
    const auto& r = s.layout->regions[size_t(region)];
    out.resize(size_t(r.rows * r.width));
    for (int64_t j = 0; j < r.rows; ++j)
        std::memcpy(out.data() + j * r.width, s.row(region, j), sizeof(float) * size_t(r.width));
}

void put_rows(SequenceState& s, int region, const std::vector<float>& in) {
    if (region < 0) return;
    const auto& r = s.layout->regions[size_t(region)];
    for (int64_t j = 0; j < r.rows; ++j)
        std::memcpy(s.row(region, j), in.data() + j * r.width, sizeof(float) * size_t(r.width));
}

}  // namespace

LayerCache SequenceState::cache_copy(size_t i) const {
    LayerCache lc;
    if (!layout || i >= layout->caches.size()) return lc;
    const KvLayout::Cache& k = layout->caches[i];
    lc.window_size = k.window;
    lc.head_dim = k.head_dim;
    copy_rows(*this, k.window_region, lc.window);
    copy_rows(*this, k.comp_kv, lc.comp.kv);
    copy_rows(*this, k.comp_score, lc.comp.score);
    copy_rows(*this, k.icomp_kv, lc.icomp.kv);
    copy_rows(*this, k.icomp_score, lc.icomp.score);
    if (k.ratio) {
        const int64_t n = (i < layout->n_main ? pos_ : mtp_pos_) / k.ratio, per = layout->block_tokens / k.ratio;
        auto entries = [&](int64_t off, int64_t width, std::vector<float>& out) {
            if (off < 0) return;
            out.resize(size_t(n * width));
            for (int64_t e = 0; e < n; ++e)
                std::memcpy(out.data() + e * width, entry(off, per, width, e), sizeof(float) * size_t(width));
        };
        entries(k.ckv_offset, k.head_dim, lc.ckv);
        entries(k.ikeys_offset, k.index_head_dim, lc.ikeys);
    }
    return lc;
}

namespace {
SequenceMark::Layer mark_layer(const SequenceState& s, const KvLayout::Cache& k, int64_t pos, int64_t n_future) {
    SequenceMark::Layer m;
    const int64_t W = k.window, hd = k.head_dim, n = std::min(n_future, W);
    m.ring.resize(static_cast<size_t>(n * hd));
    for (int64_t t = 0; t < n; ++t)
        std::memcpy(m.ring.data() + t * hd, s.row(k.window_region, (pos + t) % W), sizeof(float) * size_t(hd));
    copy_rows(s, k.comp_kv, m.comp.kv);
    copy_rows(s, k.comp_score, m.comp.score);
    copy_rows(s, k.icomp_kv, m.icomp.kv);
    copy_rows(s, k.icomp_score, m.icomp.score);
    return m;
}

void rollback_layer(SequenceState& s, const KvLayout::Cache& k, const SequenceMark::Layer& m, int64_t pos) {
    const int64_t hd = k.head_dim, W = k.window, n = int64_t(m.ring.size()) / std::max<int64_t>(hd, 1);
    for (int64_t t = 0; t < n; ++t)
        std::memcpy(s.row(k.window_region, (pos + t) % W), m.ring.data() + t * hd, sizeof(float) * size_t(hd));
    put_rows(s, k.comp_kv, m.comp.kv);
    put_rows(s, k.comp_score, m.comp.score);
    put_rows(s, k.icomp_kv, m.icomp.kv);
    put_rows(s, k.icomp_score, m.icomp.score);
}
}  // namespace

SequenceMark SequenceState::mark(int64_t n_future) const {
    if (n_future < 0) throw Error("SequenceState::mark: n_future must be >= 0");
    SequenceMark m;
    m.pos = pos_;
    m.mtp_pos = mtp_pos_;
    m.n_future = n_future;
    if (device.p) {
        m.device = device.p->mark(pos_, mtp_pos_, n_future);
        if (!m.device) throw Error("SequenceState::mark: this device forward cannot roll sequences back");
        return m;
    }
    if (!layout) return m;
    for (size_t l = 0; l < layout->n_main; ++l) m.layers.push_back(mark_layer(*this, layout->caches[l], pos_, n_future));
    if (layout->caches.size() > layout->n_main) m.mtp = mark_layer(*this, layout->caches.back(), mtp_pos_, n_future);
    return m;
}

void SequenceState::rollback(const SequenceMark& m) {
    const size_t n_main = layout ? layout->n_main : 0;
    if (pos_ < m.pos || pos_ - m.pos > m.n_future || mtp_pos_ < m.mtp_pos || mtp_pos_ - m.mtp_pos > m.n_future ||
        m.layers.size() != n_main || bool(device.p) != bool(m.device))
        throw Error("SequenceState::rollback: " + std::to_string(pos_ - m.pos) + " tokens (MTP " +
                    std::to_string(mtp_pos_ - m.mtp_pos) + ") were appended since the mark, which covers " +
                    std::to_string(m.n_future));
    if (device.p) {
        device.p->rollback(m.device.get(), m.pos, m.mtp_pos);
        pos_ = m.pos;
        mtp_pos_ = m.mtp_pos;
        return;
    }
    // Compressed entries past the marked positions stay in their blocks, unreferenced: the entry
    // counts follow from the positions, and the next tokens overwrite them.
    for (size_t l = 0; l < n_main; ++l) rollback_layer(*this, layout->caches[l], m.layers[l], m.pos);
    if (layout && layout->caches.size() > n_main) rollback_layer(*this, layout->caches.back(), m.mtp, m.mtp_pos);
    pos_ = m.pos;
    mtp_pos_ = m.mtp_pos;
}

// The rows of one forward call: every item's tokens, in item order.
struct Dsv4Model::Rows {
    struct Seq {
        SequenceState* state;
        int64_t begin, count, start;  // rows [begin, begin+count) are positions [start, start+count)
    };
    int64_t n = 0;
    bool mtp = false;
    std::vector<int32_t> tokens;
    std::vector<int64_t> pos;
    std::vector<Seq> seqs;
};

Dsv4Model::~Dsv4Model() = default;

std::unique_ptr<Dsv4Model> Dsv4Model::load(const std::string& dir, const ModelOptions& opts) {
    std::unique_ptr<Dsv4Model> m(new Dsv4Model());
    m->cfg_ = load_model_config(dir);
    m->opts_ = opts;
    if (opts.threads > 0) omp_set_num_threads(opts.threads);
    ProgressLine progress("loading");  // shows per-shard progress on a terminal only
    m->ckpt_ = Checkpoint::open(dir, &ProgressLine::checkpoint_callback, &progress);
    // The census names every missing, unexpected, mis-shaped or mis-typed tensor with its file, from
    // the headers alone, before any weight is bound.
    validate_checkpoint(m->cfg_, *m->ckpt_);
    m->w_ = bind_dsv4_weights(*m->ckpt_, m->cfg_);
    m->be_ = &ops::cpu_backend();
    m->layout_ = build_layout(m->w_, m->cfg_);
    // Growable default store: chunks of about 16 MiB.
    m->store_ = std::make_shared<KvStore>(m->layout_->block_floats, 0,
                                          std::max<int64_t>(4, (int64_t(16) << 20) / m->layout_->block_bytes()));
    const ModelConfig& c = m->cfg_;
    if (c.n_mtp_layers > 1)
        throw Error(c.source + ": num_nextn_predict_layers = " + std::to_string(c.n_mtp_layers) +
                    "; only one MTP block is supported");
    if (c.rope_head_dim <= 0 || c.rope_head_dim % 2 || c.rope_head_dim > c.head_dim ||
        c.rope_head_dim > c.index_head_dim)
        throw Error(c.source + ": qk_rope_head_dim must be even and at most head_dim and index_head_dim");
    const bool has_indexer = std::any_of(c.compress_ratios.begin(), c.compress_ratios.end(), [](int r) { return r == 4; });
    if (has_indexer && (c.index_head_dim <= 0 || (c.index_head_dim & (c.index_head_dim - 1))))
        throw Error(c.source + ": index_head_dim = " + std::to_string(c.index_head_dim) +
                    " must be a power of two (the indexer's Hadamard rotation)");
    const int64_t half = c.rope_head_dim / 2;
    m->freqs_plain_.resize(static_cast<size_t>(half));
    m->freqs_compressed_.resize(static_cast<size_t>(half));
    // Pure-window layers (and the MTP block): plain RoPE, no YaRN; compressed layers: YaRN (§6.1).
    cpu::rope_freqs(c.rope_head_dim, c.rope_theta, 0, 1, c.beta_fast, c.beta_slow, m->freqs_plain_.data());
    cpu::rope_freqs(c.rope_head_dim, c.compress_rope_theta, c.original_seq_len, c.rope_factor, c.beta_fast,
                    c.beta_slow, m->freqs_compressed_.data());
    return m;
}

std::unique_ptr<SequenceState> Dsv4Model::new_sequence() const {
    auto s = std::make_unique<SequenceState>();
    if (dev_) {
        s->device.p = dev_->new_state();
        return s;
    }
    s->store = store_;
    s->layout = layout_;
    const KvLayout& L = *layout_;
    try {
        for (int64_t b = 0; b < L.fixed_blocks; ++b) s->fixed.push_back(store_->allocate());
    } catch (...) {
        for (int32_t b : s->fixed) store_->release(b);
        s->fixed.clear();
        throw;
    }
    for (size_t r = 0; r < L.regions.size(); ++r) {
        const auto& g = L.regions[r];
        for (int64_t j = 0; j < g.rows; ++j) {
            float* p = s->row(int(r), j);
            std::fill(p, p + g.width, g.init);
        }
    }
    return s;
}

std::shared_ptr<KvStore> Dsv4Model::make_kv_store(int64_t budget_bytes) {
    const KvLayout& L = *layout_;
    const int64_t n = budget_bytes / L.block_bytes();
    if (n < L.fixed_blocks + 1)
        throw Error("KV cache budget of " + std::to_string(budget_bytes) + " bytes is too small: one sequence needs " +
                    std::to_string((L.fixed_blocks + 1) * L.block_bytes()) + " bytes");
    store_ = std::make_shared<KvStore>(L.block_floats, n);
    return store_;
}

// y[m, n] = x · Wᵀ; when quantization simulation is on and W is FP8/FP4, x is first FP8-quantized
// per 128 columns (§3.3), as the reference's linear() does.
void Dsv4Model::linear(const float* x, int64_t m, const ops::Weight& w, float* y, bool quant_input) {
    if (quant_input && opts_.quant_sim && quantized(w)) {
        std::vector<float> xq(x, x + m * w.k);
        be_->act_quant(xq.data(), m, w.k, w.k, 128, cfg_.scale_fmt_ue8m0);
        be_->linear(xq.data(), m, w, 0, w.n, y, w.n);
    } else {
        be_->linear(x, m, w, 0, w.n, y, w.n);
    }
}

void Dsv4Model::attention(const BlockWeights& bw, Rows& rows, const float* y, float* out) {
    const ModelConfig& c = cfg_;
    const ops::Backend& be = *be_;
    const int64_t n = rows.n, H = c.n_heads, hd = c.head_dim, rd = c.rope_head_dim, ql = c.q_lora_rank;
    const int64_t W = c.window_size;
    const bool quant = opts_.quant_sim, pow2 = c.scale_fmt_ue8m0;
    const float eps = float(c.norm_eps);
    const ops::RopeFreqs rf{bw.ratio ? freqs_compressed_.data() : freqs_plain_.data(), rd};
    const int64_t* pos = rows.pos.data();

    // Query path (§6.2).
    std::vector<float> qr(static_cast<size_t>(n * ql)), q(static_cast<size_t>(n * H * hd));
    linear(y, n, bw.wq_a, qr.data(), true);
    be.rmsnorm(qr.data(), n, ql, bw.q_norm.get(), eps, qr.data());
    linear(qr.data(), n, bw.wq_b, q.data(), true);
    be.rmsnorm(q.data(), n * H, hd, nullptr, eps, q.data());
    be.rope(q.data(), n, H, hd, pos, rf, false);

    // Window KV path (§6.3).
    std::vector<float> kv(static_cast<size_t>(n * hd));
    linear(y, n, bw.wkv, kv.data(), true);
    be.rmsnorm(kv.data(), n, hd, bw.kv_norm.get(), eps, kv.data());
    be.rope(kv.data(), n, 1, hd, pos, rf, false);
    if (quant) be.act_quant(kv.data(), n, hd - rd, hd, 64, pow2);

    // Compressor projections (§7.1) and the indexer's query side (§8).
    const CompressorWeights* cw = bw.compressor.get();
    const IndexerWeights* iw = bw.indexer.get();
    std::vector<float> ca, cg, iq, iwt, ia, ig;
    const int64_t cwidth = cw ? (cw->overlap ? 2 : 1) * cw->d : 0;
    const int64_t nih = c.index_n_heads, ihd = c.index_head_dim;
    const int64_t iwidth = iw ? 2 * iw->compressor.d : 0;
    if (cw) {
        ca.resize(static_cast<size_t>(n * cwidth));
        cg.resize(static_cast<size_t>(n * cwidth));
        linear(y, n, cw->wkv, ca.data(), true);
        linear(y, n, cw->wgate, cg.data(), true);
    }
    if (iw) {
        iq.resize(static_cast<size_t>(n * nih * ihd));
        linear(qr.data(), n, iw->wq_b, iq.data(), true);
        be.rope(iq.data(), n, nih, ihd, pos, rf, false);
        be.hadamard(iq.data(), n * nih, ihd);
        if (quant) be.fp4_quant(iq.data(), n * nih, ihd, ihd, 32);
        iwt.resize(static_cast<size_t>(n * nih));
        linear(y, n, iw->weights_proj, iwt.data(), true);
        const float ws = float(std::pow(double(ihd), -0.5) * std::pow(double(nih), -0.5));
        for (auto& v : iwt) v *= ws;
        ia.resize(static_cast<size_t>(n * iwidth));
        ig.resize(static_cast<size_t>(n * iwidth));
        linear(y, n, iw->compressor.wkv, ia.data(), true);
        linear(y, n, iw->compressor.wgate, ig.data(), true);
    }

    std::vector<float> o(static_cast<size_t>(n * H * hd));
    const float scale = float(std::pow(double(hd), -0.5));
    // Sequences are independent (own caches, own rows of q/kv/o): several of them run in parallel;
    // the ops inside then run on one thread each (no nested parallelism).
    const int64_t n_seqs = int64_t(rows.seqs.size());
#pragma omp parallel for schedule(dynamic, 1) if (n_seqs > 1)
    for (int64_t s = 0; s < n_seqs; ++s) {
        const auto& sq = rows.seqs[size_t(s)];
        SequenceState& st = *sq.state;
        const KvLayout& L = *st.layout;
        const KvLayout::Cache& kc = L.caches[std::min<size_t>(size_t(bw.layer), L.n_main)];
        const int64_t P = sq.start, T = sq.count, b = sq.begin;
        // Keys of the window: the cached W-1 positions before this chunk, then the chunk's own.
        const int64_t n_old = std::min<int64_t>(P, W - 1);
        const int64_t na = n_old + T;
        std::vector<float> kva(static_cast<size_t>(na * hd));
        for (int64_t i = 0; i < n_old; ++i) {
            const int64_t p = P - n_old + i;
            std::memcpy(kva.data() + i * hd, st.row(kc.window_region, p % W), sizeof(float) * size_t(hd));
        }
        std::memcpy(kva.data() + n_old * hd, kv.data() + b * hd, sizeof(float) * size_t(T * hd));

        // Compressors: stream the chunk's tokens; entries completed here are visible to its queries.
        // The state's rows and the entries live in the sequence's blocks (reserved before the layers ran).
        std::vector<float> gkv, gsc;
        auto stream = [&](const CompressorWeights& w, int kv_reg, int sc_reg, const float* a_all, const float* g_all,
                          bool indexer, int64_t off) {
            const int64_t r = w.ratio, d = w.d, width = (w.overlap ? 2 : 1) * d, per = L.block_tokens / r;
            const bool contiguous = L.regions[size_t(kv_reg)].contiguous() && L.regions[size_t(sc_reg)].contiguous();
            for (int64_t t = 0; t < T; ++t) {
                const int64_t p = P + t, slot = compressor_slot(w, p);
                compressor_write(w, st.row(kv_reg, slot), st.row(sc_reg, slot), a_all + (b + t) * width,
                                 g_all + (b + t) * width, p);
                if ((p + 1) % r) continue;
                const float *pk, *ps;
                if (contiguous) {
                    pk = st.row(kv_reg, 0);
                    ps = st.row(sc_reg, 0);
                } else {
                    copy_rows(st, kv_reg, gkv);
                    copy_rows(st, sc_reg, gsc);
                    pk = gkv.data();
                    ps = gsc.data();
                }
                compressor_finish(be, w, pk, ps, p, rf, indexer, quant, pow2, eps, st.entry(off, per, d, (p + 1) / r - 1));
                if (w.overlap)
                    for (int64_t i = 0; i < r; ++i) {
                        std::memcpy(st.row(kv_reg, i), st.row(kv_reg, r + i), sizeof(float) * size_t(width));
                        std::memcpy(st.row(sc_reg, i), st.row(sc_reg, r + i), sizeof(float) * size_t(width));
                    }
            }
        };
        if (cw) stream(*cw, kc.comp_kv, kc.comp_score, ca.data(), cg.data(), false, kc.ckv_offset);
        if (iw) stream(iw->compressor, kc.icomp_kv, kc.icomp_score, ia.data(), ig.data(), true, kc.ikeys_offset);
        const int64_t n_entries = cw ? (P + T) / bw.ratio : 0;
        const int64_t per = bw.ratio ? L.block_tokens / bw.ratio : 0;

        // Attended set per query (§6.4): window positions, then compressed entries.
        const int64_t n_win = std::min<int64_t>(W, P + T);
        const int64_t n_cmp = compressed_pick(bw.ratio, c.index_topk, n_entries).count;
        const int64_t nk = n_win + n_cmp;
        std::vector<int32_t> idx(static_cast<size_t>(T * nk), -1);
        for (int64_t t = 0; t < T; ++t) {
            const int64_t p = P + t;
            int32_t* ix = idx.data() + t * nk;
            int64_t k = 0;
            for (int64_t pp = std::max<int64_t>(0, p - W + 1); pp <= p; ++pp) ix[k++] = int32_t(pp - (P - n_old));
            if (bw.ratio && bw.ratio != 4)
                for (int64_t j = 0; j < (p + 1) / bw.ratio; ++j) ix[n_win + j] = int32_t(na + j);
        }
        if (bw.ratio == 4 && n_entries > 0) {
            // Lightning indexer (§8): score every complete entry, keep the top-k. Queries go in blocks
            // so the score matrix stays small for long contexts; keys are scored block by block where
            // they lie (each score is independent of the others).
            constexpr int64_t kQueryBlock = 64;
            const int64_t qb = std::min(T, kQueryBlock), n_seg = (n_entries + per - 1) / per;
            std::vector<int32_t> valid(static_cast<size_t>(qb)), vseg(static_cast<size_t>(qb));
            std::vector<float> scores(static_cast<size_t>(qb * n_entries));
            std::vector<float> seg(n_seg > 1 ? static_cast<size_t>(qb * per) : 0);
            std::vector<int32_t> sel(static_cast<size_t>(qb * n_cmp));
            for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
                const int64_t tb = std::min(kQueryBlock, T - t0);
                for (int64_t t = 0; t < tb; ++t) valid[t] = int32_t((P + t0 + t + 1) / 4);
                const float* qp = iq.data() + (b + t0) * nih * ihd;
                const float* wp = iwt.data() + (b + t0) * nih;
                if (n_seg == 1) {
                    be.index_scores(qp, wp, tb, nih, ihd, st.entry(kc.ikeys_offset, per, ihd, 0), n_entries,
                                    valid.data(), scores.data());
                } else {
                    for (int64_t k = 0; k < n_seg; ++k) {
                        const int64_t e0 = k * per, ne = std::min(per, n_entries - e0);
                        for (int64_t t = 0; t < tb; ++t)
                            vseg[t] = int32_t(std::clamp<int64_t>(valid[t] - e0, 0, ne));
                        be.index_scores(qp, wp, tb, nih, ihd, st.entry(kc.ikeys_offset, per, ihd, e0), ne,
                                        vseg.data(), seg.data());
                        for (int64_t t = 0; t < tb; ++t)
                            std::memcpy(scores.data() + t * n_entries + e0, seg.data() + t * ne,
                                        sizeof(float) * size_t(ne));
                    }
                }
                be.topk(scores.data(), tb, n_entries, valid.data(), n_cmp, sel.data());
                for (int64_t t = 0; t < tb; ++t)
                    for (int64_t j = 0; j < n_cmp; ++j) {
                        const int32_t e = sel[t * n_cmp + j];
                        idx[(t0 + t) * nk + n_win + j] = e < 0 ? -1 : int32_t(na + e);
                    }
            }
        }
        // The compressed entries the queries attend, gathered from their blocks (ratio 128: all of
        // them; ratio 4: those the indexer picked), renumbered in order of first use.
        std::vector<float> cmp;
        if (n_cmp > 0) {
            std::vector<int32_t> slot(static_cast<size_t>(n_entries), -1);
            int32_t used = 0;
            for (int64_t t = 0; t < T; ++t)
                for (int64_t j = 0; j < n_cmp; ++j) {
                    int32_t& x = idx[t * nk + n_win + j];
                    if (x < 0) continue;
                    int32_t& m = slot[size_t(x - na)];
                    if (m < 0) m = used++;
                    x = int32_t(na + m);
                }
            cmp.resize(static_cast<size_t>(used) * size_t(hd));
            for (int64_t e = 0; e < n_entries; ++e)
                if (slot[size_t(e)] >= 0)
                    std::memcpy(cmp.data() + slot[size_t(e)] * hd, st.entry(kc.ckv_offset, per, hd, e),
                                sizeof(float) * size_t(hd));
        }
        be.sparse_attn(q.data() + b * H * hd, T, H, hd, kva.data(), na, cmp.data(), idx.data(), nk,
                       bw.attn_sink.get(), scale, o.data() + b * H * hd);
        for (int64_t t = 0; t < T; ++t)
            std::memcpy(st.row(kc.window_region, (P + t) % W), kv.data() + (b + t) * hd, sizeof(float) * size_t(hd));
    }

    // Output path (§6.6): inverse RoPE, grouped wo_a (no activation quantization), wo_b.
    be.rope(o.data(), n, H, hd, pos, rf, true);
    const int64_t G = c.o_groups, gin = (H / G) * hd, olr = c.o_lora_rank;
    std::vector<float> u(static_cast<size_t>(n * G * olr)), tmp(static_cast<size_t>(n * gin));
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t i = 0; i < n; ++i)
            std::memcpy(tmp.data() + i * gin, o.data() + i * H * hd + g * gin, sizeof(float) * size_t(gin));
        be.linear(tmp.data(), n, bw.wo_a, g * olr, (g + 1) * olr, u.data() + g * olr, G * olr);
    }
    linear(u.data(), n, bw.wo_b, out, true);
}

void Dsv4Model::moe(const BlockWeights& bw, Rows& rows, const float* y, float* out) {
    const ModelConfig& c = cfg_;
    const ops::Backend& be = *be_;
    const int64_t n = rows.n, D = c.dim, E = c.n_routed_experts, K = c.n_activated_experts, I = c.moe_inter_dim;
    const bool quant = opts_.quant_sim, pow2 = c.scale_fmt_ue8m0;

    // Gate (§10.1).
    std::vector<float> logits(static_cast<size_t>(n * E)), rw(static_cast<size_t>(n * K));
    std::vector<int32_t> ids(static_cast<size_t>(n * K)), hash;
    linear(y, n, bw.gate, logits.data(), true);
    if (bw.hash) {
        hash.resize(static_cast<size_t>(n * K));
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < K; ++j) {
                const int64_t off = int64_t(rows.tokens[i]) * K + j;
                const int64_t e = bw.tid2eid->dtype == DType::I64
                                      ? reinterpret_cast<const int64_t*>(bw.tid2eid->data)[off]
                                      : reinterpret_cast<const int32_t*>(bw.tid2eid->data)[off];
                if (e < 0 || e >= E) throw Error("tensor '" + bw.tid2eid->name + "' holds expert id out of range");
                hash[i * K + j] = int32_t(e);
            }
    }
    be.moe_route(logits.data(), n, E, bw.hash ? nullptr : bw.gate_bias.get(), bw.hash ? hash.data() : nullptr, K,
                 float(c.route_scale), ids.data(), rw.data());

    // Input rows quantized once (the quantization is per row, so this equals quantizing per expert).
    std::vector<float> yq;
    auto expert_input = [&](const ExpertWeights& ew) -> const float* {
        if (!quant || !quantized(ew.w1)) return y;
        if (yq.empty()) {
            yq.assign(y, y + n * D);
            be.act_quant(yq.data(), n, D, D, 128, pow2);
        }
        return yq.data();
    };
    auto run_expert = [&](const ExpertWeights& ew, const float* x, int64_t m, const float* row_w, float* dst) {
        std::vector<float> gu(static_cast<size_t>(m * 2 * I)), h(static_cast<size_t>(m * I));
        be.linear(x, m, ew.w1, 0, I, gu.data(), 2 * I);
        be.linear(x, m, ew.w3, 0, I, gu.data() + I, 2 * I);
        be.swiglu(gu.data(), gu.data() + I, 2 * I, m, I, float(c.swiglu_limit), row_w, h.data());
        if (quant && quantized(ew.w2)) be.act_quant(h.data(), m, I, I, 128, pow2);
        be.linear(h.data(), m, ew.w2, 0, D, dst, D);
    };

    std::fill(out, out + n * D, 0.f);
    // Routed experts in ascending id order, each on the rows routed to it (the reference's order of sums).
    std::vector<std::vector<std::pair<int32_t, float>>> by_expert(static_cast<size_t>(E));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < K; ++j) by_expert[size_t(ids[i * K + j])].push_back({int32_t(i), rw[i * K + j]});
    for (int64_t e = 0; e < E; ++e) {
        const auto& list = by_expert[size_t(e)];
        if (list.empty()) continue;
        const ExpertWeights& ew = bw.experts[size_t(e)];
        const float* src = expert_input(ew);
        const int64_t m = int64_t(list.size());
        std::vector<float> xin(static_cast<size_t>(m * D)), wts(static_cast<size_t>(m)), res(static_cast<size_t>(m * D));
        for (int64_t r = 0; r < m; ++r) {
            std::memcpy(xin.data() + r * D, src + int64_t(list[r].first) * D, sizeof(float) * size_t(D));
            wts[r] = list[r].second;
        }
        run_expert(ew, xin.data(), m, wts.data(), res.data());
        for (int64_t r = 0; r < m; ++r) {
            float* dst = out + int64_t(list[r].first) * D;
            for (int64_t k = 0; k < D; ++k) dst[k] += res[r * D + k];
        }
    }
    // Shared expert (§10.3), added last.
    std::vector<float> sh(static_cast<size_t>(n * D));
    run_expert(bw.shared, expert_input(bw.shared), n, nullptr, sh.data());
    for (int64_t k = 0; k < n * D; ++k) out[k] += sh[k];
}

void Dsv4Model::block_forward(const BlockWeights& bw, Rows& rows, std::vector<float>& x) {
    const ModelConfig& c = cfg_;
    const ops::Backend& be = *be_;
    const int64_t n = rows.n, D = c.dim, hc = c.hc_mult;
    const float eps = float(c.norm_eps), hc_eps = float(c.hc_eps);
    std::vector<float> y(static_cast<size_t>(n * D)), post(static_cast<size_t>(n * hc)), comb(static_cast<size_t>(n * hc * hc)), f(static_cast<size_t>(n * D));
    std::vector<float> x2(x.size());

    be.hc_pre(x.data(), n, hc, D, bw.hc_attn_fn.get(), bw.hc_attn_scale.get(), bw.hc_attn_base.get(),
              c.hc_sinkhorn_iters, hc_eps, eps, y.data(), post.data(), comb.data());
    be.rmsnorm(y.data(), n, D, bw.attn_norm.get(), eps, y.data());
    attention(bw, rows, y.data(), f.data());
    be.hc_post(f.data(), x.data(), post.data(), comb.data(), n, hc, D, x2.data());

    be.hc_pre(x2.data(), n, hc, D, bw.hc_ffn_fn.get(), bw.hc_ffn_scale.get(), bw.hc_ffn_base.get(),
              c.hc_sinkhorn_iters, hc_eps, eps, y.data(), post.data(), comb.data());
    be.rmsnorm(y.data(), n, D, bw.ffn_norm.get(), eps, y.data());
    moe(bw, rows, y.data(), f.data());
    be.hc_post(f.data(), x2.data(), post.data(), comb.data(), n, hc, D, x.data());
}

void Dsv4Model::head_logits(const float* x, int64_t m, const float* fn, const float* scale, const float* base,
                            const float* norm, float* logits) {
    const ModelConfig& c = cfg_;
    std::vector<float> h(static_cast<size_t>(m * c.dim));
    be_->hc_head(x, m, c.hc_mult, c.dim, fn, scale, base, float(c.hc_eps), float(c.norm_eps), h.data());
    be_->rmsnorm(h.data(), m, c.dim, norm, float(c.norm_eps), h.data());
    be_->linear(h.data(), m, w_.head, 0, w_.head.n, logits, w_.head.n);
}

void Dsv4Model::emit_logits(const std::vector<float>& x, const std::vector<LogitsRequest>& reqs, const float* fn,
                            const float* scale, const float* base, const float* norm) {
    const int64_t width = int64_t(cfg_.hc_mult) * cfg_.dim, V = cfg_.vocab_size;
    int64_t total = 0;
    for (const auto& r : reqs) total += r.count;
    if (total == 0) return;
    std::vector<float> xs, lg;
    const float* xr = x.data() + reqs[0].first * width;
    if (reqs.size() > 1) {
        xs.resize(static_cast<size_t>(total * width));
        int64_t o = 0;
        for (const auto& r : reqs) {
            std::memcpy(xs.data() + o * width, x.data() + r.first * width, sizeof(float) * size_t(r.count * width));
            o += r.count;
        }
        xr = xs.data();
    }
    // One request wanting only logits: straight into its destination.
    const bool direct = reqs.size() == 1 && reqs[0].wants_logits() && !reqs[0].argmax;
    if (!direct) lg.resize(static_cast<size_t>(total * V));
    float* l = direct ? reqs[0].dest(V) : lg.data();
    head_logits(xr, total, fn, scale, base, norm, l);
    if (direct) return;
    int64_t o = 0;
    for (const auto& r : reqs) {
        if (r.wants_logits()) std::copy(lg.begin() + o * V, lg.begin() + (o + r.count) * V, r.dest(V));
        // A left-to-right scan with `>`: the lowest index of the maximum (what greedy sampling picks).
        for (int64_t i = 0; r.argmax && i < r.count; ++i) {
            const float* row = l + (o + i) * V;
            int32_t best = 0;
            for (int32_t j = 1; j < int32_t(V); ++j)
                if (row[j] > row[best]) best = j;
            r.argmax[i] = best;
        }
        o += r.count;
    }
}

namespace {
template <class Item>
void check_items(std::span<Item> items) {
    for (size_t i = 0; i < items.size(); ++i)
        for (size_t j = i + 1; j < items.size(); ++j)
            if (items[i].state && items[i].state == items[j].state && !items[i].tokens.empty() &&
                !items[j].tokens.empty())
                throw Error("forward: items " + std::to_string(i) + " and " + std::to_string(j) +
                            " share one sequence state (give a sequence's tokens as one item)");
}

template <class Item>
void check_tokens(const Item& it, const ModelConfig& c) {
    if (!it.state) throw Error("forward: item without a sequence state");
    if (it.state->device.p) throw Error("forward: the sequence was created for a device forward, not the host one");
    if (!it.state->layout) throw Error("forward: the sequence has no caches (create it with new_sequence)");
    for (int32_t t : it.tokens)
        if (t < 0 || t >= c.vocab_size)
            throw Error("forward: token id " + std::to_string(t) + " is outside the vocabulary [0, " +
                        std::to_string(c.vocab_size) + ")");
}
}  // namespace

void Dsv4Model::forward(std::span<ForwardItem> items) {
    const ModelConfig& c = cfg_;
    const int64_t D = c.dim, hc = c.hc_mult;
    check_items(items);
    if (dev_) return dev_->forward(items);
    Rows rows;
    for (const auto& it : items) {
        check_tokens(it, c);
        if (it.tokens.empty()) continue;
        rows.seqs.push_back({it.state, rows.n, int64_t(it.tokens.size()), it.state->pos_});
        for (size_t t = 0; t < it.tokens.size(); ++t) {
            rows.tokens.push_back(it.tokens[t]);
            rows.pos.push_back(it.state->pos_ + int64_t(t));
        }
        rows.n += int64_t(it.tokens.size());
    }
    if (rows.n == 0) return;
    const int64_t n = rows.n;
    // Every growth block the step writes, allocated (or copied when shared) before anything changes:
    // a bounded store that runs out throws here and leaves every sequence as it was.
    for (const auto& sq : rows.seqs) {
        if (sq.state->layout.get() != layout_.get()) throw Error("forward: the sequence was created by another model");
        sq.state->reserve(sq.start + sq.count);
    }

    // Embedding, expanded to the hc residual streams (§4).
    std::vector<float> e(static_cast<size_t>(n * D)), x(static_cast<size_t>(n * hc * D));
    be_->embed(w_.embed, rows.tokens.data(), n, e.data());
    for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < hc; ++h)
            std::memcpy(x.data() + (i * hc + h) * D, e.data() + i * D, sizeof(float) * size_t(D));

    for (int l = 0; l < c.n_layers; ++l) {
        size_t s = 0;
        for (auto& it : items) {
            if (it.tokens.empty()) continue;
            const auto& sq = rows.seqs[s++];
            if (it.layer_inputs && size_t(l) < it.layer_inputs->size() && (*it.layer_inputs)[size_t(l)])
                std::memcpy(x.data() + sq.begin * hc * D, (*it.layer_inputs)[size_t(l)],
                            sizeof(float) * size_t(sq.count * hc * D));
        }
        block_forward(w_.layers[size_t(l)], rows, x);
        s = 0;
        for (auto& it : items) {
            if (it.tokens.empty()) continue;
            const auto& sq = rows.seqs[s++];
            if (it.layer_hidden) {
                it.layer_hidden->resize(static_cast<size_t>(c.n_layers));
                (*it.layer_hidden)[size_t(l)].assign(x.begin() + sq.begin * hc * D,
                                                     x.begin() + (sq.begin + sq.count) * hc * D);
            }
        }
    }

    size_t s = 0;
    std::vector<LogitsRequest> reqs;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        const auto& sq = rows.seqs[s++];
        if (it.final_hidden)
            it.final_hidden->assign(x.begin() + sq.begin * hc * D, x.begin() + (sq.begin + sq.count) * hc * D);
        if (LogitsRequest r; LogitsRequest::of(it, sq.begin, sq.count, r)) reqs.push_back(r);
        it.state->pos_ += sq.count;
    }
    emit_logits(x, reqs, w_.hc_head_fn.get(), w_.hc_head_scale.get(), w_.hc_head_base.get(), w_.norm.get());
}

void Dsv4Model::forward_mtp(std::span<MtpItem> items) {
    const ModelConfig& c = cfg_;
    if (w_.mtp.empty()) throw Error("forward_mtp: the checkpoint has no MTP block");
    const MtpWeights& mw = w_.mtp[0];
    const int64_t D = c.dim, hc = c.hc_mult;
    const float eps = float(c.norm_eps);
    check_items(items);
    if (dev_) return dev_->forward_mtp(items);
    Rows rows;
    rows.mtp = true;
    std::vector<float> xin;
    for (const auto& it : items) {
        check_tokens(it, c);
        if (it.tokens.empty()) continue;
        const int64_t T = int64_t(it.tokens.size());
        rows.seqs.push_back({it.state, rows.n, T, it.state->mtp_pos_});
        for (int64_t t = 0; t < T; ++t) {
            rows.tokens.push_back(it.tokens[size_t(t)]);
            rows.pos.push_back(it.state->mtp_pos_ + t);
        }
        xin.insert(xin.end(), it.hidden, it.hidden + T * hc * D);
        rows.n += T;
    }
    if (rows.n == 0) return;
    const int64_t n = rows.n;
    for (const auto& sq : rows.seqs) {
        if (sq.state->layout.get() != layout_.get()) throw Error("forward_mtp: the sequence was created by another model");
        sq.state->reserve_mtp(sq.start + sq.count);
    }

    // §11: e = enorm(embed(next token)); x̃_i = hnorm(X_i); Z_i = e_proj(e) + h_proj(x̃_i).
    std::vector<float> e(static_cast<size_t>(n * D)), ep(static_cast<size_t>(n * D)), hp(static_cast<size_t>(n * hc * D)), x(static_cast<size_t>(n * hc * D));
    be_->embed(w_.embed, rows.tokens.data(), n, e.data());
    be_->rmsnorm(e.data(), n, D, mw.enorm.get(), eps, e.data());
    be_->rmsnorm(xin.data(), n * hc, D, mw.hnorm.get(), eps, xin.data());
    linear(e.data(), n, mw.e_proj, ep.data(), true);
    linear(xin.data(), n * hc, mw.h_proj, hp.data(), true);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t h = 0; h < hc; ++h)
            for (int64_t k = 0; k < D; ++k) x[(i * hc + h) * D + k] = ep[i * D + k] + hp[(i * hc + h) * D + k];

    block_forward(mw.block, rows, x);

    size_t s = 0;
    std::vector<LogitsRequest> reqs;
    for (auto& it : items) {
        if (it.tokens.empty()) continue;
        const auto& sq = rows.seqs[s++];
        if (LogitsRequest r; LogitsRequest::of(it, sq.begin, sq.count, r)) reqs.push_back(r);
        if (it.final_hidden)
            it.final_hidden->assign(x.begin() + sq.begin * hc * D, x.begin() + (sq.begin + sq.count) * hc * D);
        it.state->mtp_pos_ += sq.count;
    }
    emit_logits(x, reqs, mw.hc_head_fn.get(), mw.hc_head_scale.get(), mw.hc_head_base.get(), mw.norm.get());
}

}  // namespace dsinfer
