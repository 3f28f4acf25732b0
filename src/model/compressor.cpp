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

// Feeds token at position p (projections a, g of width coff·d) into a compressor; when its block
// completes, appends the finished entry (§7.2: pool, RMSNorm, RoPE at the block start, then FP8
// rounding, or Hadamard + FP4 rounding for the indexer) to `out`.
void compressor_step(const ops::Backend& be, const CompressorWeights& cw, CompressorState& st, const float* a,
                     const float* g, int64_t p, const ops::RopeFreqs& rf, bool indexer, bool quant, bool pow2,
                     float eps, std::vector<float>& out) {
    const int64_t r = cw.ratio, d = cw.d, coff = cw.overlap ? 2 : 1, width = coff * d;
    const int64_t slot = (cw.overlap ? r : 0) + p % r;
    const float* ape = cw.ape.get() + (p % r) * width;
    std::memcpy(st.kv.data() + slot * width, a, sizeof(float) * size_t(width));
    float* sc = st.score.data() + slot * width;
    for (int64_t i = 0; i < width; ++i) sc[i] = g[i] + ape[i];
    if ((p + 1) % r) return;
    std::vector<float> z(static_cast<size_t>(d));
    be.compress_pool(st.kv.data(), st.score.data(), r, d, cw.overlap, z.data());
    if (cw.overlap) {
        std::memcpy(st.kv.data(), st.kv.data() + r * width, sizeof(float) * size_t(r * width));
        std::memcpy(st.score.data(), st.score.data() + r * width, sizeof(float) * size_t(r * width));
    }
    be.rmsnorm(z.data(), 1, d, cw.norm.get(), eps, z.data());
    const int64_t start = p + 1 - r;
    be.rope(z.data(), 1, 1, d, &start, rf, false);
    if (indexer) {
        be.hadamard(z.data(), 1, d);
        if (quant) be.fp4_quant(z.data(), 1, d, d, 32);
    } else if (quant) {
        be.act_quant(z.data(), 1, d - rf.rope_dim, d, 64, pow2);
    }
    out.insert(out.end(), z.begin(), z.end());
}


}  // namespace dsinfer
