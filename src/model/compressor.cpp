#include "model/compressor.h"

#include <cstring>
#include <limits>

namespace dsinfer {

void compressor_reset(CompressorState& s, const CompressorWeights& cw) {
    const int64_t coff = cw.overlap ? 2 : 1;
    const size_t n = static_cast<size_t>(coff * cw.ratio * coff * cw.d);
    s.kv.assign(n, 0.f);
    s.score.assign(n, -std::numeric_limits<float>::infinity());
}

int64_t compressor_slot(const CompressorWeights& cw, int64_t p) { return (cw.overlap ? cw.ratio : 0) + p % cw.ratio; }

void compressor_write(const CompressorWeights& cw, float* kv_row, float* score_row, const float* a, const float* g,
                      int64_t p) {
    const int64_t r = cw.ratio, width = (cw.overlap ? 2 : 1) * cw.d;
    const float* ape = cw.ape.get() + (p % r) * width;
    std::memcpy(kv_row, a, sizeof(float) * size_t(width));
    for (int64_t i = 0; i < width; ++i) score_row[i] = g[i] + ape[i];
}

void compressor_finish(const ops::Backend& be, const CompressorWeights& cw, const float* kv, const float* score,
                       int64_t p, const ops::RopeFreqs& rf, bool indexer, bool quant, bool pow2, float eps, float* z) {
    const int64_t r = cw.ratio, d = cw.d;
    be.compress_pool(kv, score, r, d, cw.overlap, z);
    be.rmsnorm(z, 1, d, cw.norm.get(), eps, z);
    const int64_t start = p + 1 - r;
    be.rope(z, 1, 1, d, &start, rf, false);
    if (indexer) {
        be.hadamard(z, 1, d);
        if (quant) be.fp4_quant(z, 1, d, d, 32);
    } else if (quant) {
        be.act_quant(z, 1, d - rf.rope_dim, d, 64, pow2);
    }
}

// Feeds token at position p (projections a, g of width coff·d) into a compressor; when its block
// completes, appends the finished entry (§7.2: pool, RMSNorm, RoPE at the block start, then FP8
// rounding, or Hadamard + FP4 rounding for the indexer) to `out`.
void compressor_step(const ops::Backend& be, const CompressorWeights& cw, CompressorState& st, const float* a,
                     const float* g, int64_t p, const ops::RopeFreqs& rf, bool indexer, bool quant, bool pow2,
                     float eps, std::vector<float>& out) {
    const int64_t r = cw.ratio, d = cw.d, width = (cw.overlap ? 2 : 1) * d;
    const int64_t slot = compressor_slot(cw, p);
    compressor_write(cw, st.kv.data() + slot * width, st.score.data() + slot * width, a, g, p);
    if ((p + 1) % r) return;
    std::vector<float> z(static_cast<size_t>(d));
    compressor_finish(be, cw, st.kv.data(), st.score.data(), p, rf, indexer, quant, pow2, eps, z.data());
    if (cw.overlap) {
        std::memcpy(st.kv.data(), st.kv.data() + r * width, sizeof(float) * size_t(r * width));
        std::memcpy(st.score.data(), st.score.data() + r * width, sizeof(float) * size_t(r * width));
    }
    out.insert(out.end(), z.begin(), z.end());
}

}  // namespace dsinfer
