// CPU ops against independent scalar formulas of dsv4-model.md: quantizers, GEMM over every weight
// format, RoPE/YaRN tables and inverse, Sinkhorn, Hadamard, top-k with masking, sparse attention,
// and the compressor's streaming state machine against a one-shot computation.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cpu/cpu_ops.h"
#include "model/compressor.h"

using namespace dsinfer;

namespace {
std::vector<float> randn(size_t n, unsigned seed, float scale = 1.f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

TEST(ActQuant, Pow2ScalesPerBlock) {
    std::vector<float> x = randn(2 * 256, 1);
    x[5] = 300.f;  // block 0 of row 0: amax 300 → s = pow2ceil(300/448) = 1
    std::vector<float> q = x;
    cpu::act_quant(q.data(), 2, 256, 256, 128, true);
    for (int r = 0; r < 2; ++r)
        for (int b = 0; b < 2; ++b) {
            float amax = 1e-4f;
            for (int i = 0; i < 128; ++i) amax = std::max(amax, std::fabs(x[r * 256 + b * 128 + i]));
            const float s = pow2ceil(amax / 448.f);
            for (int i = 0; i < 128; ++i) {
                const int k = r * 256 + b * 128 + i;
                EXPECT_EQ(q[k], e4m3_to_f32(f32_to_e4m3(x[k] / s)) * s);
            }
        }
    EXPECT_EQ(q[5], 288.f);  // 300 rounds to 288 in e4m3 (quantum 32 above 256)
}

TEST(ActQuant, PlainScalesAndTinyBlocks) {
    std::vector<float> x = randn(128, 2);
    std::vector<float> q = x;
    cpu::act_quant(q.data(), 1, 128, 128, 128, false);
    float amax = 0;
    int arg = 0;
    for (int i = 0; i < 128; ++i)
        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), arg = i;
    const float s = amax / 448.f;
    EXPECT_EQ(q[arg], e4m3_to_f32(f32_to_e4m3(x[arg] / s)) * s);
    EXPECT_NEAR(std::fabs(q[arg]), amax, amax * 1e-6);  // the block maximum maps to 448
    std::vector<float> z(64, 0.f);
    z[3] = 1e-6f;  // amax clamped to 1e-4: tiny values survive as subnormal e4m3 or flush to zero
    cpu::act_quant(z.data(), 1, 64, 64, 64, true);
    EXPECT_EQ(z[0], 0.f);
    EXPECT_EQ(z[3], e4m3_to_f32(f32_to_e4m3(1e-6f / pow2ceil(1e-4f / 448.f))) * pow2ceil(1e-4f / 448.f));
}

TEST(Fp4Quant, Pow2ScalePerBlockOf32) {
    std::vector<float> x = randn(64, 3);
    std::vector<float> q = x;
    cpu::fp4_quant(q.data(), 1, 64, 64, 32);
    for (int b = 0; b < 2; ++b) {
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
        const float s = pow2ceil(amax / 6.f);
        for (int i = 0; i < 32; ++i) EXPECT_EQ(q[b * 32 + i], round_e2m1(x[b * 32 + i] / s) * s);
    }
}

TEST(Linear, EveryWeightFormatMatchesDequantizedDot) {
    const int64_t n = 200, k = 256, m = 3;  // n not a multiple of 128: partial scale tiles
    std::mt19937 rng(4);
    std::vector<float> x = randn(size_t(m * k), 5);
    std::vector<uint8_t> fp8(size_t(n * k)), fp4(size_t(n * k / 2)), e8(size_t(2 * 2)), e8r(size_t(n * k / 32));
    std::vector<float> f32s(4);
    for (auto& b : fp8) {
        b = uint8_t(rng());
        if ((b & 0x7f) == 0x7f) b = 0;
    }
    for (auto& b : fp4) b = uint8_t(rng());
    for (auto& b : e8) b = uint8_t(120 + rng() % 10);
    for (auto& b : e8r) b = uint8_t(120 + rng() % 10);
    for (auto& f : f32s) f = 0.01f * float(1 + rng() % 100);
    std::vector<uint16_t> bf(size_t(n * k));
    for (auto& h : bf) h = f32_to_bf16(std::normal_distribution<float>()(rng));

    auto check = [&](const ops::Weight& w, auto deq) {
        std::vector<float> y(size_t(m * n));
        cpu::linear(x.data(), m, w, 0, n, y.data(), n);
        for (int64_t i = 0; i < m; ++i)
            for (int64_t r = 0; r < n; ++r) {
                double s = 0, a = 0;
                for (int64_t c = 0; c < k; ++c) {
                    s += double(x[i * k + c]) * deq(r, c);
                    a += std::fabs(double(x[i * k + c]) * deq(r, c));
                }
                ASSERT_NEAR(y[i * n + r], s, 1e-5 * a + 1e-30) << r;
            }
        // A column range writes only its columns.
        std::vector<float> y2(size_t(m * 10), 7.f);
        cpu::linear(x.data(), m, w, 50, 60, y2.data(), 10);
        for (int64_t i = 0; i < m; ++i)
            for (int r = 0; r < 10; ++r) ASSERT_EQ(y2[i * 10 + r], y[i * n + 50 + r]);
    };
    ops::Weight w8{ops::WeightFormat::FP8, fp8.data(), n, k, e8.data(), ops::ScaleKind::E8M0, 2};
    check(w8, [&](int64_t r, int64_t c) {
        return double(e4m3_to_f32(fp8[r * k + c])) * e8m0_to_f32(e8[(r / 128) * 2 + c / 128]);
    });
    ops::Weight w8f{ops::WeightFormat::FP8, fp8.data(), n, k, f32s.data(), ops::ScaleKind::F32, 2};
    check(w8f, [&](int64_t r, int64_t c) { return double(e4m3_to_f32(fp8[r * k + c])) * f32s[(r / 128) * 2 + c / 128]; });
    ops::Weight w4{ops::WeightFormat::FP4, fp4.data(), n, k, e8r.data(), ops::ScaleKind::E8M0, k / 32};
    check(w4, [&](int64_t r, int64_t c) {
        return double(e2m1_to_f32(fp4_nibble(fp4.data() + r * k / 2, size_t(c)))) * e8m0_to_f32(e8r[r * (k / 32) + c / 32]);
    });
    ops::Weight wb{ops::WeightFormat::BF16, bf.data(), n, k};
    check(wb, [&](int64_t r, int64_t c) { return double(bf16_to_f32(bf[r * k + c])); });
}

TEST(Rope, YarnTableForCompressedLayers) {
    // θ = 160000, factor 16, original 65536, β 32/1: lo = 15, hi = 25 (dsv4-model.md §6.1).
    std::vector<float> f(32), plain(32);
    cpu::rope_freqs(64, 160000, 65536, 16, 32, 1, f.data());
    cpu::rope_freqs(64, 160000, 0, 16, 32, 1, plain.data());
    for (int i = 0; i < 32; ++i) {
        EXPECT_NEAR(plain[i], std::pow(160000.0, -2.0 * i / 64), 1e-6 * plain[i]);
        if (i <= 15) {
            EXPECT_EQ(f[i], plain[i]) << i;
        }
        if (i >= 25) {
            EXPECT_NEAR(f[i], plain[i] / 16, 1e-6 * plain[i]) << i;
        }
        if (i > 15 && i < 25) {
            const double ramp = (i - 15) / 10.0;
            EXPECT_NEAR(f[i], plain[i] / 16 * ramp + plain[i] * (1 - ramp), 1e-6 * plain[i]) << i;
        }
    }
}

TEST(Rope, InterleavedPairsAndInverse) {
    const int64_t heads = 3, hd = 128, rd = 64;
    std::vector<float> freqs(32);
    cpu::rope_freqs(rd, 10000, 0, 1, 32, 1, freqs.data());
    ops::RopeFreqs rf{freqs.data(), rd};
    std::vector<float> x = randn(size_t(2 * heads * hd), 6);
    std::vector<float> y = x;
    const int64_t pos[2] = {0, 37};
    cpu::rope(y.data(), 2, heads, hd, pos, rf, false);
    for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < hd; ++i) EXPECT_EQ(y[h * hd + i], x[h * hd + i]);  // position 0: identity
        const float* a = x.data() + (heads + h) * hd;
        const float* b = y.data() + (heads + h) * hd;
        for (int64_t i = 0; i < hd - rd; ++i) EXPECT_EQ(b[i], a[i]);  // nope dims untouched
        for (int64_t i = 0; i < rd / 2; ++i) {
            const double ang = double(float(37) * freqs[i]);
            const double re = a[hd - rd + 2 * i], im = a[hd - rd + 2 * i + 1];
            EXPECT_NEAR(b[hd - rd + 2 * i], re * std::cos(ang) - im * std::sin(ang), 1e-5);
            EXPECT_NEAR(b[hd - rd + 2 * i + 1], re * std::sin(ang) + im * std::cos(ang), 1e-5);
        }
    }
    cpu::rope(y.data(), 2, heads, hd, pos, rf, true);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
}

TEST(Sinkhorn, ColumnsAndRowsSumToOne) {
    const int64_t hc = 4;
    std::vector<float> mixes = randn(size_t((2 + hc) * hc), 7, 2.f), base = randn(24, 8);
    const float scale[3] = {0.7f, 1.3f, 0.9f};
    std::vector<float> pre(4), post(4), comb(16);
    cpu::hc_split_sinkhorn(mixes.data(), hc, scale, base.data(), 20, 1e-6f, pre.data(), post.data(), comb.data());
    for (int k = 0; k < 4; ++k) {
        double cs = 0, rs = 0;
        for (int j = 0; j < 4; ++j) cs += comb[j * 4 + k], rs += comb[k * 4 + j];
        EXPECT_NEAR(cs, 1.0, 1e-5);
        EXPECT_NEAR(rs, 1.0, 1e-3);
        EXPECT_NEAR(pre[k], 1 / (1 + std::exp(-(mixes[k] * 0.7 + base[k]))) + 1e-6, 1e-6);
        EXPECT_NEAR(post[k], 2 / (1 + std::exp(-(mixes[4 + k] * 1.3 + base[4 + k]))), 1e-6);
    }
}

TEST(Hadamard, SylvesterOrthonormal) {
    const int64_t n = 128;
    std::vector<float> h(size_t(n * n), 0.f);
    for (int64_t i = 0; i < n; ++i) h[i * n + i] = 1.f;
    cpu::hadamard(h.data(), n, n);  // rows: e_i · H / sqrt(n)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
            const float sign = (__builtin_popcountll(uint64_t(i & j)) & 1) ? -1.f : 1.f;
            ASSERT_NEAR(h[i * n + j], sign / std::sqrt(float(n)), 1e-6);
        }
    // H·H = n·I (normalised: applying twice is the identity).
    std::vector<float> x = randn(size_t(n), 9), y = x;
    cpu::hadamard(y.data(), 1, n);
    cpu::hadamard(y.data(), 1, n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
}

TEST(TopK, MasksAndTies) {
    // Row 0: 6 candidates of which 4 valid; k = 3. Row 1: 2 valid < k: the rest are −1.
    const float s[2 * 6] = {0.5f, 2.f, -1.f, 1.f, 9.f, 9.f, 3.f, 4.f, kNegInf, kNegInf, kNegInf, kNegInf};
    const int32_t valid[2] = {4, 2};
    int32_t idx[6];
    cpu::topk(s, 2, 6, valid, 3, idx);
    std::vector<int32_t> r0(idx, idx + 3), r1(idx + 3, idx + 6);
    std::sort(r0.begin(), r0.end());
    EXPECT_EQ(r0, (std::vector<int32_t>{0, 1, 3}));  // 9s beyond valid are never chosen
    EXPECT_EQ(r1[2], -1);
    std::sort(r1.begin(), r1.end());
    EXPECT_EQ(r1, (std::vector<int32_t>{-1, 0, 1}));
    // The choice among exact ties depends only on the candidates (not on masked columns after them).
    std::vector<float> ties(20, 0.f);
    int32_t a[4], b[4];
    const int32_t v10 = 10;
    cpu::topk(ties.data(), 1, 10, nullptr, 4, a);
    for (int i = 10; i < 20; ++i) ties[size_t(i)] = kNegInf;
    cpu::topk(ties.data(), 1, 20, &v10, 4, b);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(a[i], b[i]);
}

TEST(SparseAttn, SinkAndIndices) {
    const int64_t d = 8;
    std::vector<float> q = randn(size_t(d), 10), ka = randn(size_t(3 * d), 11), kb = randn(size_t(2 * d), 12);
    const int32_t idx[5] = {0, 2, -1, 4, -1};  // a[0], a[2], b[1]
    const float sink = 0.3f;
    std::vector<float> o(static_cast<size_t>(d));
    cpu::sparse_attn(q.data(), 1, 1, d, ka.data(), 3, kb.data(), idx, 5, &sink, 0.5f, o.data());
    const float* keys[3] = {ka.data(), ka.data() + 2 * d, kb.data() + d};
    double s[3], m = -1e30, z = 0;
    for (int j = 0; j < 3; ++j) {
        s[j] = 0;
        for (int c = 0; c < d; ++c) s[j] += double(q[c]) * keys[j][c];
        s[j] *= 0.5;
        m = std::max(m, s[j]);
    }
    for (int j = 0; j < 3; ++j) z += std::exp(s[j] - m);
    z += std::exp(sink - m);
    for (int c = 0; c < d; ++c) {
        double v = 0;
        for (int j = 0; j < 3; ++j) v += std::exp(s[j] - m) / z * keys[j][c];
        EXPECT_NEAR(o[c], v, 1e-5);
    }
}

TEST(MoeRoute, BiasSelectsButDoesNotWeight) {
    const float logits[4] = {1.f, 2.f, 0.5f, 3.f};
    const float bias[4] = {5.f, 0.f, 0.f, 0.f};
    int32_t ids[2];
    float w[2];
    cpu::moe_route(logits, 1, 4, bias, nullptr, 2, 1.5f, ids, w);
    EXPECT_EQ(ids[0], 0);  // boosted by its bias
    EXPECT_EQ(ids[1], 3);
    auto sig = [](float x) { return std::sqrt(std::log1p(std::exp(x))); };
    EXPECT_NEAR(w[0], sig(1.f) / (sig(1.f) + sig(3.f)) * 1.5, 1e-6);
    EXPECT_NEAR(w[0] + w[1], 1.5, 1e-6);
    const int32_t hash[2] = {2, 1};
    cpu::moe_route(logits, 1, 4, nullptr, hash, 2, 1.f, ids, w);
    EXPECT_EQ(ids[0], 2);
    EXPECT_NEAR(w[0], sig(0.5f) / (sig(0.5f) + sig(2.f)), 1e-6);
}

TEST(Swiglu, ClampsUpBothSidesGateAbove) {
    const float g[3] = {5.f, -5.f, 1.f}, u[3] = {-7.f, 7.f, 2.f};
    float h[3];
    cpu::swiglu(g, u, 3, 1, 3, 2.5f, nullptr, h);
    auto silu = [](float x) { return x / (1 + std::exp(-x)); };
    EXPECT_NEAR(h[0], silu(2.5f) * -2.5f, 1e-6);
    EXPECT_NEAR(h[1], silu(-5.f) * 2.5f, 1e-6);
    EXPECT_NEAR(h[2], silu(1.f) * 2.f, 1e-6);
}

// One-shot compressed entries straight from §7.2, for comparison with the streaming state machine.
static std::vector<float> one_shot(const CompressorWeights& cw, const std::vector<float>& a, const std::vector<float>& g,
                                   int64_t T, const ops::RopeFreqs& rf, bool indexer, bool quant) {
    const int64_t r = cw.ratio, d = cw.d, width = (cw.overlap ? 2 : 1) * d;
    std::vector<float> out;
    for (int64_t j = 0; (j + 1) * r <= T; ++j) {
        std::vector<float> z(static_cast<size_t>(d));
        for (int64_t c = 0; c < d; ++c) {
            std::vector<std::pair<double, double>> cand;  // (logit, value)
            if (cw.overlap && j > 0)
                for (int64_t t = (j - 1) * r; t < j * r; ++t)
                    cand.push_back({double(g[t * width + c]) + cw.ape.get()[(t % r) * width + c], a[t * width + c]});
            const int64_t off = cw.overlap ? d : 0;
            for (int64_t t = j * r; t < (j + 1) * r; ++t)
                cand.push_back(
                    {double(g[t * width + off + c]) + cw.ape.get()[(t % r) * width + off + c], a[t * width + off + c]});
            double m = -1e300, s = 0, v = 0;
            for (auto& [l, x] : cand) m = std::max(m, l);
            for (auto& [l, x] : cand) s += std::exp(l - m);
            for (auto& [l, x] : cand) v += std::exp(l - m) / s * x;
            z[size_t(c)] = float(v);
        }
        cpu::rmsnorm(z.data(), 1, d, cw.norm.get(), 1e-6f, z.data());
        const int64_t p = j * r;
        cpu::rope(z.data(), 1, 1, d, &p, rf, false);
        if (indexer) {
            cpu::hadamard(z.data(), 1, d);
            if (quant) cpu::fp4_quant(z.data(), 1, d, d, 32);
        } else if (quant) {
            cpu::act_quant(z.data(), 1, d - rf.rope_dim, d, 64, true);
        }
        out.insert(out.end(), z.begin(), z.end());
    }
    return out;
}

TEST(Compressor, StreamingEqualsOneShot) {
    const ops::Backend& be = ops::cpu_backend();
    std::vector<float> freqs(32);
    cpu::rope_freqs(64, 160000, 256, 4, 32, 1, freqs.data());
    const ops::RopeFreqs rf{freqs.data(), 64};
    for (int ratio : {4, 128}) {
        for (bool indexer : {false, true}) {
            if (indexer && ratio != 4) continue;
            CompressorWeights cw;
            cw.ratio = ratio;
            cw.d = indexer ? 64 : 128;
            cw.overlap = ratio == 4;
            const int64_t width = (cw.overlap ? 2 : 1) * cw.d;
            cw.ape.owned = randn(size_t(ratio * width), 20);
            cw.ape.data = cw.ape.owned.data();
            cw.norm.owned = randn(size_t(cw.d), 21);
            cw.norm.data = cw.norm.owned.data();
            for (int64_t T : {int64_t(3), int64_t(ratio), int64_t(2 * ratio + 3), int64_t(300)}) {
                std::vector<float> a = randn(size_t(T * width), 22), g = randn(size_t(T * width), 23);
                for (bool quant : {false, true}) {
                    CompressorState st;
                    compressor_reset(st, cw);
                    std::vector<float> streamed;
                    for (int64_t t = 0; t < T; ++t)
                        compressor_step(be, cw, st, a.data() + t * width, g.data() + t * width, t, rf, indexer, quant,
                                        true, 1e-6f, streamed);
                    std::vector<float> ref = one_shot(cw, a, g, T, rf, indexer, quant);
                    ASSERT_EQ(streamed.size(), size_t((T / ratio) * cw.d)) << "ratio " << ratio << " T " << T;
                    ASSERT_EQ(ref.size(), streamed.size());
                    // Equal to rounding; with the quantization steps a rounding may land on the other
                    // side for a rare value.
                    size_t close = 0;
                    for (size_t i = 0; i < ref.size(); ++i)
                        close += std::fabs(ref[i] - streamed[i]) <= 1e-5f * (std::fabs(ref[i]) + 1.f);  // entries are O(1) after RMSNorm
                    if (quant)
                        EXPECT_GE(double(close), 0.97 * double(ref.size())) << "ratio " << ratio << " T " << T;
                    else
                        EXPECT_EQ(close, ref.size()) << "ratio " << ratio << " T " << T;
                }
            }
        }
    }
}
