// Every CUDA op against the CPU op on fresh random inputs: relative L2 error bars per op, outputs
// poisoned with NaN before the call, several shapes including the real DeepSeek-V4-Flash ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <vector>

#include "core/dtype.h"
#include "cpu/cpu_ops.h"
#include "cuda/cuda_backend.h"
#include "cuda/model_kernels.h"
#include "runtime/sampler.h"

using namespace dsinfer;
using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

namespace {

std::mt19937& rng() {
    static std::mt19937 g(12345);
    return g;
}

std::vector<float> randn(size_t n, float scale = 1.f) {
    std::normal_distribution<float> d(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng());
    return v;
}

// Device buffer holding a copy of a host vector (or n poisoned floats).
struct Dev {
    void* p = nullptr;
    size_t bytes = 0;
    Dev() = default;
    explicit Dev(size_t b) : p(cuda::dmalloc(b)), bytes(b) {}
    template <class T>
    explicit Dev(const std::vector<T>& v) : Dev(v.size() * sizeof(T)) {
        cuda::h2d(p, v.data(), bytes);
    }
    ~Dev() { cuda::dfree(p); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    Dev(Dev&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; }
    float* f() { return static_cast<float*>(p); }
    int32_t* i() { return static_cast<int32_t*>(p); }
    template <class T>
    std::vector<T> get() const {
        std::vector<T> v(bytes / sizeof(T));
        cuda::sync();
        cuda::d2h(v.data(), p, bytes);
        return v;
    }
};

Dev poisoned(size_t n) {
    Dev d(n * 4);
    cuda::dfill_nan(d.f(), n);
    return d;
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
    EXPECT_EQ(got.size(), ref.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(got[i])) return INFINITY;  // poisoned output left unwritten, or NaN produced
        const double d = double(got[i]) - double(ref[i]);
        num += d * d;
        den += double(ref[i]) * double(ref[i]);
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

#define EXPECT_REL(got, ref, bar)                                                     \
    do {                                                                              \
        const double e_ = rel_l2((got), (ref));                                       \
        EXPECT_LE(e_, (bar)) << "relative L2 error " << e_ << " above bar " << (bar); \
        std::printf("    rel L2 %-28s %.3e (bar %.0e)\n", #got, e_, double(bar));    \
    } while (0)

// Exact float32 GEMMs for m > 16 (the model forward's default) for one scope.
class TensorCoresOff {
public:
    TensorCoresOff() : prev_(cuda::fp8_tensor_cores()) { cuda::set_fp8_tensor_cores(false); }
    ~TensorCoresOff() { cuda::set_fp8_tensor_cores(prev_); }

private:
    bool prev_;
};

class CudaOps : public ::testing::Test {
protected:
    void SetUp() override {
        if (!cuda::available()) GTEST_SKIP() << "no CUDA device";
    }
};

// A random weight in a stored format, host side (owning storage).
struct HostWeight {
    std::vector<uint8_t> data, scale;
    Weight w;
};

// narrow: codes and scales from a narrow range (FP8 magnitudes 1..7.5, block scales 2^-7 or 2^-6), so
// that with make_moe_data's inputs every product is a multiple of one quantum and every sum over
// k ≤ 4096 is exact in float32, whatever the order.
HostWeight make_weight(WeightFormat fmt, int64_t n, int64_t k, ScaleKind sk = ScaleKind::E8M0, bool narrow = false) {
    HostWeight h;
    std::uniform_int_distribution<int> byte(0, 255);
    h.w.fmt = fmt;
    h.w.n = n;
    h.w.k = k;
    switch (fmt) {
        case WeightFormat::F32: {
            auto v = randn(size_t(n * k), 0.05f);
            h.data.resize(v.size() * 4);
            std::memcpy(h.data.data(), v.data(), h.data.size());
            break;
        }
        case WeightFormat::BF16: {
            auto v = randn(size_t(n * k), 0.05f);
            h.data.resize(v.size() * 2);
            for (size_t i = 0; i < v.size(); ++i) {
                const uint16_t b = f32_to_bf16(v[i]);
                std::memcpy(h.data.data() + 2 * i, &b, 2);
            }
            break;
        }
        case WeightFormat::FP8: {
            h.data.resize(size_t(n * k));
            for (auto& b : h.data) {
                do b = uint8_t(byte(rng()));
                while ((b & 0x7f) == 0x7f);  // no NaN codes
                if (narrow) b = uint8_t((b & 0x87) | ((7 + (b >> 3) % 3) << 3));  // exponent field 7..9
            }
            const int64_t sr = (n + 127) / 128, sc = (k + 127) / 128;
            h.w.scale_cols = sc;
            h.w.scale_kind = sk;
            std::uniform_int_distribution<int> e(narrow ? 120 : 118, narrow ? 121 : 124);
            if (sk == ScaleKind::E8M0) {
                h.scale.resize(size_t(sr * sc));
                for (auto& s : h.scale) s = uint8_t(e(rng()));
            } else {
                h.scale.resize(size_t(sr * sc) * 4);
                std::uniform_real_distribution<float> u(0.001f, 0.02f);
                for (int64_t i = 0; i < sr * sc; ++i) {
                    const float f = u(rng());
                    std::memcpy(h.scale.data() + 4 * i, &f, 4);
                }
            }
            break;
        }
        case WeightFormat::FP4: {
            h.data.resize(size_t(n * k / 2));
            for (auto& b : h.data) b = uint8_t(byte(rng()));
            h.w.scale_cols = k / 32;
            h.w.scale_kind = sk;
            if (sk == ScaleKind::F32) {  // not a published format; the kernels accept it
                h.scale.resize(size_t(n * k / 32) * 4);
                std::uniform_real_distribution<float> u(0.001f, 0.02f);
                for (int64_t i = 0; i < n * k / 32; ++i) {
                    const float f = u(rng());
                    std::memcpy(h.scale.data() + 4 * i, &f, 4);
                }
                break;
            }
            h.scale.resize(size_t(n * k / 32));
            std::uniform_int_distribution<int> e(narrow ? 120 : 118, narrow ? 121 : 125);
            for (auto& s : h.scale) s = uint8_t(e(rng()));
            break;
        }
    }
    h.w.data = h.data.data();
    h.w.scale = h.scale.empty() ? nullptr : h.scale.data();
    return h;
}

struct DevWeight {
    Weight w;
    explicit DevWeight(const Weight& host) : w(cuda::upload_weight(host)) {}
    ~DevWeight() { cuda::free_weight(w); }
};

void check_linear(WeightFormat fmt, int64_t m, int64_t n, int64_t k, bool quant_x, double bar,
                  ScaleKind sk = ScaleKind::E8M0, int64_t n0 = 0, int64_t n1 = -1) {
    if (n1 < 0) n1 = n;
    SCOPED_TRACE(testing::Message() << "fmt " << int(fmt) << " m " << m << " n " << n << " k " << k << " rows ["
                                    << n0 << "," << n1 << ")");
    std::printf("  linear fmt=%d m=%lld n=%lld k=%lld quant_x=%d\n", int(fmt), (long long)m, (long long)n,
                (long long)k, int(quant_x));
    HostWeight hw = make_weight(fmt, n, k, sk);
    auto x = randn(size_t(m * k));
    if (quant_x) cpu::act_quant(x.data(), m, k, k, 128, true);
    const int64_t nn = n1 - n0, ldy = nn + 4;  // a row stride wider than the slice
    std::vector<float> ref(size_t(m * ldy), 0.f);
    cpu::linear(x.data(), m, hw.w, n0, n1, ref.data(), ldy);
    DevWeight dw(hw.w);
    Dev dx(x);
    Dev dy = poisoned(size_t(m * ldy));
    cuda::backend().linear(dx.f(), m, dw.w, n0, n1, dy.f(), ldy);
    auto got = dy.get<float>();
    // Compare the written columns only (the padding stays poisoned).
    std::vector<float> g2, r2;
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < nn; ++j) {
            g2.push_back(got[size_t(i * ldy + j)]);
            r2.push_back(ref[size_t(i * ldy + j)]);
        }
    EXPECT_REL(g2, r2, bar);
}

// Routed experts for the MoE tests: ne experts (w1, w3 [inter, d], w2 [d, inter]) on the host and the
// device, act_quant'ed inputs x [t, d], and k distinct expert ids per token with weights.
// The data make w1/w3 exact in float32 in any summation order: x = ±(8..15)/8 (e4m3 values that
// act_quant leaves as they are) and narrow weights (make_weight) give products that are multiples of
// one quantum (2^-13 for FP8, 2^-11 for FP4) below 2^-2, so sums over d ≤ 4096 stay below 2^23 quanta.
// g and u are then bitwise the CPU's, and h differs only by the ulps of the activation's exp.
// w2's sums are float32 in another order (its input h spans many binades).
struct MoeData {
    std::vector<HostWeight> hw;
    std::vector<cuda::ExpertWeights> dev;
    std::vector<float> x;
    std::vector<int32_t> ids;
    std::vector<float> w;
};

MoeData make_moe_data(int64_t t, int64_t d, int64_t inter, int64_t ne, int64_t k, WeightFormat fmt) {
    MoeData m;
    for (int64_t e = 0; e < ne; ++e) {
        m.hw.push_back(make_weight(fmt, inter, d, ScaleKind::E8M0, true));
        m.hw.push_back(make_weight(fmt, inter, d, ScaleKind::E8M0, true));
        m.hw.push_back(make_weight(fmt, d, inter, ScaleKind::E8M0, true));
    }
    for (int64_t e = 0; e < ne; ++e)
        m.dev.push_back({cuda::upload_weight(m.hw[size_t(3 * e)].w), cuda::upload_weight(m.hw[size_t(3 * e + 1)].w),
                         cuda::upload_weight(m.hw[size_t(3 * e + 2)].w)});
    std::uniform_int_distribution<int> mant(8, 15), sign(0, 1);
    m.x.resize(size_t(t * d));
    for (auto& v : m.x) v = float(mant(rng())) / 8.f * (sign(rng()) ? -1.f : 1.f);
    const std::vector<float> before = m.x;
    cpu::act_quant(m.x.data(), t, d, d, 128, true);
    if (m.x != before) ADD_FAILURE() << "make_moe_data: act_quant changed x";
    m.ids.resize(size_t(t * k));
    m.w.resize(size_t(t * k));
    for (int64_t i = 0; i < t; ++i) {
        std::vector<int32_t> all(static_cast<size_t>(ne));
        for (int64_t e = 0; e < ne; ++e) all[size_t(e)] = int32_t(e);
        std::shuffle(all.begin(), all.end(), rng());
        for (int64_t j = 0; j < k; ++j) {
            m.ids[size_t(i * k + j)] = all[size_t(j)];
            m.w[size_t(i * k + j)] = 0.1f + 0.2f * float(j);
        }
    }
    return m;
}

// top-k results [t, k] compared row by row as sets (the order within a row is not part of the op).
void expect_same_rows_as_sets(const std::vector<int32_t>& ref, const std::vector<int32_t>& got, int64_t t, int64_t n,
                              int64_t k) {
    for (int64_t i = 0; i < t; ++i) {
        std::multiset<int32_t> a(ref.begin() + i * k, ref.begin() + (i + 1) * k),
            b(got.begin() + i * k, got.begin() + (i + 1) * k);
        EXPECT_EQ(a, b) << "row " << i << " (t " << t << " n " << n << " k " << k << ")";
    }
}

// The CPU composition of the routed experts (the model's run_expert): experts in ascending id, each on
// its rows (w1, w3, SwiGLU with the routing weight, act_quant of h when quant_h, w2); out += expert output.
std::vector<float> moe_reference(const MoeData& md, int64_t t, int64_t d, int64_t inter, int64_t ne, int64_t k,
                                 bool quant_h) {
    std::vector<float> ref(size_t(t * d), 0.f);
    for (int64_t e = 0; e < ne; ++e)
        for (int64_t i = 0; i < t; ++i)
            for (int64_t j = 0; j < k; ++j) {
                if (md.ids[size_t(i * k + j)] != e) continue;
                std::vector<float> gu(size_t(2 * inter)), h(static_cast<size_t>(inter)), o(static_cast<size_t>(d));
                cpu::linear(md.x.data() + i * d, 1, md.hw[size_t(3 * e)].w, 0, inter, gu.data(), 2 * inter);
                cpu::linear(md.x.data() + i * d, 1, md.hw[size_t(3 * e + 1)].w, 0, inter, gu.data() + inter, 2 * inter);
                cpu::swiglu(gu.data(), gu.data() + inter, 2 * inter, 1, inter, 10.f, &md.w[size_t(i * k + j)],
                            h.data());
                if (quant_h) cpu::act_quant(h.data(), 1, inter, inter, 128, true);
                cpu::linear(h.data(), 1, md.hw[size_t(3 * e + 2)].w, 0, d, o.data(), d);
                for (int64_t c = 0; c < d; ++c) ref[size_t(i * d + c)] += o[size_t(c)];
            }
    return ref;
}

// Scales routing weights (by 1.001, as often as needed) until no element of any pair's h lies within a
// relative 1e-5 of an e4m3 rounding boundary or of a change of its block's power-of-two scale, so
// that the ulp-level differences of the activation (exp on the GPU and on the CPU) cannot turn into
// whole e4m3 steps (1/16 relative) when h is act_quant'ed. Returns how many pairs were moved.
int nudge_off_e4m3_boundaries(MoeData& md, int64_t t, int64_t d, int64_t inter, int64_t k) {
    int moved = 0;
    for (int64_t p = 0; p < t * k; ++p) {
        const int64_t e = md.ids[size_t(p)], i = p / k;
        std::vector<float> gu(size_t(2 * inter));
        cpu::linear(md.x.data() + i * d, 1, md.hw[size_t(3 * e)].w, 0, inter, gu.data(), 2 * inter);
        cpu::linear(md.x.data() + i * d, 1, md.hw[size_t(3 * e + 1)].w, 0, inter, gu.data() + inter, 2 * inter);
        for (int tries = 0;; ++tries) {
            std::vector<float> h(static_cast<size_t>(inter));
            cpu::swiglu(gu.data(), gu.data() + inter, 2 * inter, 1, inter, 10.f, &md.w[size_t(p)], h.data());
            std::vector<float> q = h, lo = h, hi = h;
            for (auto& v : lo) v *= 1.f - 1e-5f;
            for (auto& v : hi) v *= 1.f + 1e-5f;
            cpu::act_quant(q.data(), 1, inter, inter, 128, true);
            cpu::act_quant(lo.data(), 1, inter, inter, 128, true);
            cpu::act_quant(hi.data(), 1, inter, inter, 128, true);
            if (q == lo && q == hi) break;
            if (tries == 0) ++moved;
            if (tries == 200) {
                ADD_FAILURE() << "pair " << p << " stays near an e4m3 boundary";
                break;
            }
            md.w[size_t(p)] *= 1.001f;
        }
    }
    return moved;
}

void free_moe_weights(MoeData& md) {
    for (auto& e : md.dev) {
        cuda::free_weight(e.w1);
        cuda::free_weight(e.w3);
        cuda::free_weight(e.w2);
    }
}

// Routed experts on the GPU with their CPU reference: make_moe_data nudged off the e4m3 boundaries,
// moe_reference with h quantized; run() is moe_experts (x act_quant'ed, h quantized, limit 10) into a
// poisoned output of `out` floats (t · d, or the residual's size with a tail).
struct RoutedExperts {
    int64_t t, d, inter, ne, k;
    MoeData md;
    std::vector<float> ref;
    std::optional<cuda::ExpertTable> table;
    Dev dx, di, dw;
    RoutedExperts(WeightFormat fmt, int64_t t_, int64_t d_ = 4096, int64_t inter_ = 2048, int64_t ne_ = 8,
                  int64_t k_ = 6)
        : t(t_), d(d_), inter(inter_), ne(ne_), k(k_), md(make_moe_data(t, d, inter, ne, k, fmt)),
          ref((nudge_off_e4m3_boundaries(md, t, d, inter, k), moe_reference(md, t, d, inter, ne, k, true))),
          table(std::in_place, md.dev), dx(md.x), di(md.ids), dw(md.w) {}
    ~RoutedExperts() {
        table.reset();
        free_moe_weights(md);
    }
    RoutedExperts(const RoutedExperts&) = delete;
    RoutedExperts& operator=(const RoutedExperts&) = delete;
    std::vector<float> run(const cuda::MoeTail* tail = nullptr, size_t out = 0) {
        Dev dout = poisoned(out ? out : ref.size());
        cuda::moe_experts(*table, dx.f(), true, t, d, inter, di.i(), dw.f(), k, 10.f, true, dout.f(), tail);
        return dout.get<float>();
    }
};

}  // namespace

// Sets the BF16 tensor-core switch (and its row threshold) for one scope.
class Bf16Scope {
public:
    Bf16Scope(bool on, int64_t min_rows = 0) : on_(cuda::bf16_gemm()), rows_(cuda::bf16_gemm_min_rows()) {
        cuda::set_bf16_gemm(on);
        cuda::set_bf16_gemm_min_rows(min_rows);
    }
    ~Bf16Scope() {
        cuda::set_bf16_gemm(on_);
        cuda::set_bf16_gemm_min_rows(rows_);
    }

private:
    bool on_;
    int64_t rows_;
};

// Weight-streaming GEMV (m ≤ 16): float32 math, only the summation order differs from the CPU.
TEST_F(CudaOps, LinearGemvFlashShapes) {
    Bf16Scope gemv_only(false);
    check_linear(WeightFormat::FP8, 1, 1024, 4096, true, 1e-5);    // wq_a
    check_linear(WeightFormat::FP8, 1, 32768, 1024, true, 1e-5);   // wq_b
    check_linear(WeightFormat::FP8, 1, 512, 4096, true, 1e-5);     // wkv
    check_linear(WeightFormat::FP8, 2, 4096, 8192, true, 1e-5);    // wo_b
    check_linear(WeightFormat::FP8, 3, 2048, 4096, false, 1e-5);   // shared w1, unquantized x
    check_linear(WeightFormat::FP8, 8, 4096, 2048, true, 1e-5);    // shared w2
    check_linear(WeightFormat::FP8, 13, 1024, 4096, true, 1e-5);
    check_linear(WeightFormat::FP8, 16, 1024, 4096, true, 1e-5, ScaleKind::E8M0, 256, 768);  // wo_a group slice
    check_linear(WeightFormat::FP8, 4, 1024, 4096, true, 1e-5, ScaleKind::F32);               // Flash-Base scales
    check_linear(WeightFormat::FP4, 1, 2048, 4096, true, 1e-5);    // routed w1/w3
    check_linear(WeightFormat::FP4, 5, 4096, 2048, true, 1e-5);    // routed w2
    check_linear(WeightFormat::BF16, 1, 256, 4096, false, 1e-5);   // gate
    check_linear(WeightFormat::BF16, 2, 1000, 4096, false, 1e-5);  // head slice
    check_linear(WeightFormat::F32, 3, 300, 512, false, 1e-5);
    check_linear(WeightFormat::FP8, 1, 128, 256, true, 1e-5);      // tiny model
    check_linear(WeightFormat::FP8, 1, 200, 96, true, 1e-5);       // odd k: tiled fallback
}

// FP8 tensor cores (cuBLASLt block scaling) for m > 16: the products are exact, but Hopper's FP8 MMA
// accumulates inside each 128-wide k block with fewer mantissa bits than float32 (cuBLASLt promotes
// to float32 between blocks); measured 1.5e-4 (FP4) to 2.4e-4 (FP8) relative L2, so the bar is 5e-4.
// A wrong scale layout or block would give errors of order 1.
TEST_F(CudaOps, LinearTensorCoreFlashShapes) {
    Bf16Scope fp8_and_tiled_only(false);
    check_linear(WeightFormat::FP8, 64, 1024, 4096, true, 5e-4);
    check_linear(WeightFormat::FP8, 256, 4096, 8192, true, 5e-4);
    check_linear(WeightFormat::FP8, 100, 2048, 4096, true, 5e-4);        // m not a multiple of 16
    check_linear(WeightFormat::FP8, 48, 1024, 4096, true, 5e-4, ScaleKind::F32);
    check_linear(WeightFormat::FP4, 80, 2048, 4096, true, 5e-4);         // FP4 → FP8 re-encode
    check_linear(WeightFormat::FP4, 32, 4096, 2048, true, 5e-4);
    check_linear(WeightFormat::FP8, 40, 1024, 4096, true, 5e-4, ScaleKind::E8M0, 256, 512);
    // x not on the FP8 grid (wo_a is fed unquantized): the device detects it and redoes it exactly.
    check_linear(WeightFormat::FP8, 64, 1024, 4096, false, 1e-5);
    check_linear(WeightFormat::FP8, 1200, 4096, 256, false, 1e-5);       // more tiles (1216) than the fallback's grid
    check_linear(WeightFormat::BF16, 70, 384, 512, false, 1e-5);         // tiled float32 path
}

// BF16 tensor cores with float32 accuracy (weights exact in bf16, x split into three bf16 terms): every
// product is exact and sums are float32, so the bar is the GEMV's. x unquantized too (all 24 bits of
// its mantissa must survive the split). Non-power-of-two F32 scales fall back to the float32 paths.
TEST_F(CudaOps, LinearBf16TensorCore) {
    Bf16Scope bf16(true, 2);
    TensorCoresOff exact;
    for (bool qx : {true, false}) {
        check_linear(WeightFormat::FP8, 2, 1024, 4096, qx, 1e-5);    // wq_a, batch 2
        check_linear(WeightFormat::FP8, 8, 32768, 1024, qx, 1e-5);   // wq_b, batch 8
        check_linear(WeightFormat::FP8, 64, 4096, 8192, qx, 1e-5);   // wo_b, batch 64
        check_linear(WeightFormat::FP8, 300, 512, 4096, qx, 1e-5);   // wkv, prefill chunk
        check_linear(WeightFormat::FP8, 16, 1024, 4096, qx, 1e-5, ScaleKind::E8M0, 256, 768);  // wo_a slice
        check_linear(WeightFormat::FP4, 5, 2048, 4096, qx, 1e-5);    // routed w1
        check_linear(WeightFormat::FP4, 100, 4096, 2048, qx, 1e-5);  // routed w2, prefill
        check_linear(WeightFormat::BF16, 8, 1000, 4096, qx, 1e-5);   // head slice
        check_linear(WeightFormat::BF16, 70, 384, 512, qx, 1e-5);
    }
    check_linear(WeightFormat::FP8, 48, 1024, 4096, true, 1e-5, ScaleKind::F32);  // not pow2: float32 fallback
    check_linear(WeightFormat::FP8, 33, 200, 96, true, 1e-5);                     // k not a multiple of 128
}

TEST_F(CudaOps, ActQuantFp4QuantHadamard) {
    for (auto [rows, cols, block, pow2] : std::vector<std::tuple<int64_t, int64_t, int64_t, bool>>{
             {1, 4096, 128, true}, {7, 448, 64, true}, {5, 1000, 128, false}, {33, 2048, 128, true}}) {
        auto x = randn(size_t(rows * cols), 3.f);
        x[0] = 0.f;
        auto ref = x;
        cpu::act_quant(ref.data(), rows, cols, cols, block, pow2);
        Dev d(x);
        cuda::backend().act_quant(d.f(), rows, cols, cols, block, pow2);
        EXPECT_REL(d.get<float>(), ref, 1e-7);
        // Into another buffer: bitwise the in-place result, the source untouched.
        Dev src(x), dst = poisoned(x.size());
        cuda::act_quant_copy(src.f(), dst.f(), rows, cols, block, pow2);
        const auto got = dst.get<float>(), inplace = d.get<float>(), kept = src.get<float>();
        EXPECT_EQ(std::memcmp(got.data(), inplace.data(), got.size() * sizeof(float)), 0);
        EXPECT_EQ(std::memcmp(kept.data(), x.data(), x.size() * sizeof(float)), 0);
    }
    for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 128}, {3, 100}, {256, 128}}) {
        auto x = randn(size_t(rows * cols));
        auto ref = x;
        cpu::fp4_quant(ref.data(), rows, cols, cols, 32);
        Dev d(x);
        cuda::backend().fp4_quant(d.f(), rows, cols, cols, 32);
        EXPECT_REL(d.get<float>(), ref, 1e-7);
    }
    for (auto [rows, n] : std::vector<std::pair<int64_t, int64_t>>{{64, 128}, {5, 64}, {3, 1024}}) {
        auto x = randn(size_t(rows * n));
        auto ref = x;
        cpu::hadamard(ref.data(), rows, n);
        Dev d(x);
        cuda::backend().hadamard(d.f(), rows, n);
        EXPECT_REL(d.get<float>(), ref, 1e-6);
    }
}

TEST_F(CudaOps, RmsnormRope) {
    for (auto [rows, dim, weighted] : std::vector<std::tuple<int64_t, int64_t, bool>>{
             {1, 4096, true}, {64, 512, false}, {7, 1024, true}, {300, 256, true}}) {
        auto x = randn(size_t(rows * dim), 2.f), w = randn(static_cast<size_t>(dim));
        std::vector<float> ref(x.size());
        cpu::rmsnorm(x.data(), rows, dim, weighted ? w.data() : nullptr, 1e-6f, ref.data());
        Dev dx(x), dw(w);
        Dev dy = poisoned(x.size());
        cuda::backend().rmsnorm(dx.f(), rows, dim, weighted ? dw.f() : nullptr, 1e-6f, dy.f());
        EXPECT_REL(dy.get<float>(), ref, 1e-6);
    }
    for (auto [rows, heads, hd, base, yarn] : std::vector<std::tuple<int64_t, int64_t, int64_t, double, bool>>{
             {1, 64, 512, 160000.0, true},
             {5, 1, 512, 10000.0, false},
             {9, 64, 128, 160000.0, true},
             {3, 13, 192, 10000.0, false}}) {  // a part-filled group of heads
        std::vector<float> freqs(32);
        cpu::rope_freqs(64, base, yarn ? 65536 : 0, 16, 32, 1, freqs.data());
        std::vector<int64_t> pos(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) pos[size_t(r)] = r * 977 + 3;
        for (bool inverse : {false, true}) {
            auto x = randn(size_t(rows * heads * hd));
            auto ref = x;
            ops::RopeFreqs rf{freqs.data(), 64};
            cpu::rope(ref.data(), rows, heads, hd, pos.data(), rf, inverse);
            Dev d(x), df(freqs), dp(pos);
            ops::RopeFreqs drf{df.f(), 64};
            cuda::backend().rope(d.f(), rows, heads, hd, static_cast<const int64_t*>(dp.p), drf, inverse);
            EXPECT_REL(d.get<float>(), ref, 1e-6);
        }
    }
}

TEST_F(CudaOps, HyperConnections) {
    const int64_t hc = 4, mix = 24;
    for (auto [t, d] : std::vector<std::pair<int64_t, int64_t>>{{1, 4096}, {5, 256}, {33, 4096}}) {
        auto x = randn(size_t(t * hc * d)), fn = randn(size_t(mix * hc * d), 0.02f);
        std::vector<float> scale = {0.5f, 0.7f, 0.9f};
        auto base = randn(size_t(mix), 0.5f);
        std::vector<float> y(size_t(t * d)), post(size_t(t * hc)), comb(size_t(t * hc * hc));
        cpu::hc_pre(x.data(), t, hc, d, fn.data(), scale.data(), base.data(), 20, 1e-6f, 1e-6f, y.data(), post.data(),
                    comb.data());
        Dev dx(x), dfn(fn), ds(scale), db(base);
        Dev dy = poisoned(y.size()), dpost = poisoned(post.size()), dcomb = poisoned(comb.size());
        cuda::backend().hc_pre(dx.f(), t, hc, d, dfn.f(), ds.f(), db.f(), 20, 1e-6f, 1e-6f, dy.f(), dpost.f(),
                               dcomb.f());
        EXPECT_REL(dy.get<float>(), y, 1e-5);
        EXPECT_REL(dpost.get<float>(), post, 1e-5);
        EXPECT_REL(dcomb.get<float>(), comb, 1e-5);

        auto f = randn(size_t(t * d));
        std::vector<float> out(size_t(t * hc * d));
        cpu::hc_post(f.data(), x.data(), post.data(), comb.data(), t, hc, d, out.data());
        Dev df(f), dpo(post), dco(comb);
        Dev dout = poisoned(out.size());
        cuda::backend().hc_post(df.f(), dx.f(), dpo.f(), dco.f(), t, hc, d, dout.f());
        EXPECT_REL(dout.get<float>(), out, 1e-6);

        auto hfn = randn(size_t(hc * hc * d), 0.02f), hbase = randn(size_t(hc), 0.5f);
        std::vector<float> hy(size_t(t * d));
        cpu::hc_head(x.data(), t, hc, d, hfn.data(), scale.data(), hbase.data(), 1e-6f, 1e-6f, hy.data());
        Dev dhfn(hfn), dhb(hbase);
        Dev dhy = poisoned(hy.size());
        cuda::backend().hc_head(dx.f(), t, hc, d, dhfn.f(), ds.f(), dhb.f(), 1e-6f, 1e-6f, dhy.f());
        EXPECT_REL(dhy.get<float>(), hy, 1e-5);
    }
}

TEST_F(CudaOps, EmbedSwiglu) {
    HostWeight table = make_weight(WeightFormat::BF16, 1000, 512);
    std::vector<int32_t> ids = {0, 999, 17, 17, 512};
    std::vector<float> ref(ids.size() * 512);
    cpu::embed(table.w, ids.data(), int64_t(ids.size()), ref.data());
    DevWeight dt(table.w);
    Dev di(ids);
    Dev dout = poisoned(ref.size());
    cuda::backend().embed(dt.w, di.i(), int64_t(ids.size()), dout.f());
    EXPECT_REL(dout.get<float>(), ref, 0.0);

    for (auto [rows, n, weighted] : std::vector<std::tuple<int64_t, int64_t, bool>>{{1, 2048, true}, {37, 128, false}}) {
        auto gu = randn(size_t(rows * 2 * n), 6.f), rw = randn(static_cast<size_t>(rows));
        std::vector<float> h(size_t(rows * n));
        cpu::swiglu(gu.data(), gu.data() + n, 2 * n, rows, n, 10.f, weighted ? rw.data() : nullptr, h.data());
        Dev dgu(gu), drw(rw);
        Dev dh = poisoned(h.size());
        cuda::backend().swiglu(dgu.f(), dgu.f() + n, 2 * n, rows, n, 10.f, weighted ? drw.f() : nullptr, dh.f());
        EXPECT_REL(dh.get<float>(), h, 1e-6);
    }
}

TEST_F(CudaOps, CompressPool) {
    for (auto [ratio, d, overlap] : std::vector<std::tuple<int64_t, int64_t, bool>>{
             {4, 512, true}, {128, 512, false}, {4, 128, true}}) {
        const int64_t coff = overlap ? 2 : 1;
        auto kv = randn(size_t(coff * ratio * coff * d)), score = randn(size_t(coff * ratio * coff * d), 2.f);
        if (overlap)
            for (int64_t c = 0; c < coff * d; ++c) score[size_t(c)] = -INFINITY;  // an empty previous-block slot
        std::vector<float> z(static_cast<size_t>(d));
        cpu::compress_pool(kv.data(), score.data(), ratio, d, overlap, z.data());
        Dev dkv(kv), ds(score);
        Dev dz = poisoned(z.size());
        cuda::backend().compress_pool(dkv.f(), ds.f(), ratio, d, overlap, dz.f());
        EXPECT_REL(dz.get<float>(), z, 1e-6);
    }
}

TEST_F(CudaOps, IndexerScoresTopk) {
    for (auto [t, h, dh, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>>{
             {1, 64, 128, 4096, 512}, {3, 64, 128, 300, 512}, {17, 4, 64, 100, 8}, {2, 64, 128, 20000, 512}}) {
        auto q = randn(size_t(t * h * dh)), w = randn(size_t(t * h)), keys = randn(size_t(n * dh));
        std::vector<int32_t> valid(static_cast<size_t>(t));
        for (int64_t i = 0; i < t; ++i) valid[size_t(i)] = int32_t(std::max<int64_t>(1, n - i * 7));
        std::vector<float> scores(size_t(t * n));
        cpu::index_scores(q.data(), w.data(), t, h, dh, keys.data(), n, valid.data(), scores.data());
        Dev dq(q), dw(w), dk(keys), dv(valid);
        Dev ds = poisoned(scores.size());
        cuda::backend().index_scores(dq.f(), dw.f(), t, h, dh, dk.f(), n, dv.i(), ds.f());
        auto got = ds.get<float>();
        // −inf entries must match exactly; the rest within the bar.
        std::vector<float> g2, r2;
        for (size_t i = 0; i < scores.size(); ++i) {
            if (std::isinf(scores[i])) {
                EXPECT_TRUE(std::isinf(got[i]) && got[i] < 0) << "entry " << i;
            } else {
                g2.push_back(got[i]);
                r2.push_back(scores[i]);
            }
        }
        EXPECT_REL(g2, r2, 1e-5);

        // top-k over each row's valid candidates, on the CPU's scores (distinct values): the same set.
        std::vector<int32_t> ref(size_t(t * k));
        cpu::topk(scores.data(), t, n, valid.data(), k, ref.data());
        Dev dsc(scores);
        Dev didx(size_t(t * k) * 4);
        cuda::backend().topk(dsc.f(), t, n, dv.i(), k, didx.i());
        auto gi = didx.get<int32_t>();
        expect_same_rows_as_sets(ref, gi, t, n, k);
    }
}

// Ties at the k-th score (indexer scores tie exactly at zero): the GPU picks the same set as the
// CPU op, which reproduces PyTorch's CPU topk. Rows in both of its regimes (k·64 <= n: partial sort;
// else selection), with per-row candidate counts, −inf tails and rows without ties.
TEST_F(CudaOps, TopkTiesMatchCpu) {
    for (auto [t, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 1000, 64}, {4, 100, 8}, {3, 4096, 16}, {5, 300, 512}, {2, 40, 4}}) {
        std::vector<float> s(size_t(t * n), 0.f);
        std::uniform_int_distribution<int> coin(0, 3);
        for (int64_t i = 0; i < t; ++i)
            for (int64_t j = 0; j < n; ++j) {
                const int c = coin(rng());
                // a quarter distinct positives, some negatives, the rest exactly 0 (the tie)
                s[size_t(i * n + j)] = c == 0 ? 1.f + float(j) : (c == 1 ? -1.f - float(j % 5) : 0.f);
            }
        for (int64_t j = 0; j < n; ++j) s[size_t(j)] = j % 9 ? 0.f : 2.f;  // row 0: many ties
        std::vector<int32_t> valid(static_cast<size_t>(t));
        for (int64_t i = 0; i < t; ++i) valid[size_t(i)] = int32_t(std::max<int64_t>(1, n - i * 13));
        if (t > 2) {
            for (int64_t j = n / 2; j < n; ++j) s[size_t(2 * n + j)] = -INFINITY;  // fewer finite than k
        }
        std::vector<int32_t> ref(size_t(t * k));
        cpu::topk(s.data(), t, n, valid.data(), k, ref.data());
        Dev ds(s), dv(valid);
        Dev di(size_t(t * k) * 4);
        cuda::backend().topk(ds.f(), t, n, dv.i(), k, di.i());
        auto got = di.get<int32_t>();
        expect_same_rows_as_sets(ref, got, t, n, k);
    }
}

TEST_F(CudaOps, SparseAttentionWithSink) {
    // (t, h, d, window keys, compressed keys, per-query attended count)
    for (auto [t, h, d, na, nb, nk] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>>{
             {1, 64, 512, 128, 512, 640},    // Flash decode, ratio-4 layer
             {1, 64, 512, 128, 8192, 8320},  // Flash decode, ratio-128 layer at 1M
             {1, 64, 512, 128, 0, 128},      // Flash decode, window layer
             {37, 64, 512, 200, 50, 150},    // prefill chunk
             {5, 4, 128, 16, 8, 24},         // tiny model
             {3, 5, 64, 20, 10, 30},         // an odd head count: a warp with one live head
             {2, 24, 256, 64, 100, 120}}) {  // a partial block of heads
        auto q = randn(size_t(t * h * d), 0.3f), kva = randn(size_t(na * d)), kvb = randn(size_t(std::max<int64_t>(nb, 1) * d));
        auto sink = randn(static_cast<size_t>(h));
        std::vector<int32_t> idx(size_t(t * nk));
        std::uniform_int_distribution<int32_t> pick(0, int32_t(na + nb - 1));
        for (auto& v : idx) v = pick(rng());
        for (int64_t i = 0; i < t; ++i) idx[size_t(i * nk + (i % nk))] = -1;  // padding entries
        if (t > 3) std::fill(idx.begin() + 3 * nk, idx.begin() + 4 * nk, -1);  // a query with no keys
        std::vector<float> ref(size_t(t * h * d));
        const float scale = 1.f / std::sqrt(float(d));
        cpu::sparse_attn(q.data(), t, h, d, kva.data(), na, kvb.data(), idx.data(), nk, sink.data(), scale, ref.data());
        Dev dq(q), da(kva), db(kvb), di(idx), dsk(sink);
        const bool was = cuda::attn_tiled();
        for (bool tiled : {true, false}) {  // the register-tiled kernel (the default) and the warp-a-head one
            SCOPED_TRACE(testing::Message()
                         << "t " << t << " h " << h << " d " << d << " nk " << nk << " tiled " << tiled);
            cuda::set_attn_tiled(tiled);
            Dev dout = poisoned(ref.size());
            cuda::backend().sparse_attn(dq.f(), t, h, d, da.f(), na, db.f(), di.i(), nk, dsk.f(), scale, dout.f());
            EXPECT_REL(dout.get<float>(), ref, 1e-5);
        }
        cuda::set_attn_tiled(was);
    }
}

TEST_F(CudaOps, MoeRoute) {
    for (auto [t, e, k, hash] : std::vector<std::tuple<int64_t, int64_t, int64_t, bool>>{
             {1, 256, 6, false}, {50, 256, 6, false}, {7, 8, 2, false}, {9, 256, 6, true}}) {
        auto logits = randn(size_t(t * e), 2.f), bias = randn(size_t(e), 0.1f);
        std::vector<int32_t> hid(size_t(t * k));
        std::uniform_int_distribution<int32_t> pick(0, int32_t(e - 1));
        for (auto& v : hid) v = pick(rng());
        std::vector<int32_t> ids(size_t(t * k));
        std::vector<float> w(size_t(t * k));
        cpu::moe_route(logits.data(), t, e, bias.data(), hash ? hid.data() : nullptr, k, 1.5f, ids.data(), w.data());
        Dev dl(logits), db(bias), dh(hid);
        Dev di(size_t(t * k) * 4);
        Dev dw = poisoned(w.size());
        cuda::backend().moe_route(dl.f(), t, e, db.f(), hash ? dh.i() : nullptr, k, 1.5f, di.i(), dw.f());
        EXPECT_EQ(di.get<int32_t>(), ids);
        EXPECT_REL(dw.get<float>(), w, 1e-6);
    }
}

// Fused routed experts against the CPU composition of the same ops (the model's run_expert).
TEST_F(CudaOps, MoeExperts) {
    for (auto [t, d, inter, ne, k, fmt] :
         std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, WeightFormat>>{
             {1, 4096, 2048, 16, 6, WeightFormat::FP4},   // Flash decode (16 of the 256 experts)
             {4, 4096, 2048, 16, 6, WeightFormat::FP4},   // decode batch 4
             {2, 4096, 2048, 8, 6, WeightFormat::FP8},    // Flash-Base experts
             {96, 4096, 2048, 8, 6, WeightFormat::FP4},   // decode batch 96: still grouped GEMV (576 pairs)
             {360, 4096, 2048, 8, 6, WeightFormat::FP4},  // prefill (2160 pairs): sorted by expert, tensor cores
             {9, 256, 128, 8, 2, WeightFormat::FP8}}) {   // tiny model
        SCOPED_TRACE(testing::Message() << "t " << t << " d " << d << " inter " << inter);
        // h is quantized in every case: w1/w3 are exact on make_moe_data's data and the routing weights
        // are moved off e4m3 boundaries, so no element of h can flip a whole e4m3 step.
        const bool quant_h = true;
        MoeData md = make_moe_data(t, d, inter, ne, k, fmt);
        if (t * k <= 2048)
            std::printf("  pairs moved off e4m3 boundaries: %d of %lld\n",
                        nudge_off_e4m3_boundaries(md, t, d, inter, k), (long long)(t * k));
        auto& [hw, dev, x, ids, w] = md;
        const std::vector<float> ref = moe_reference(md, t, d, inter, ne, k, quant_h);
        {
            cuda::ExpertTable table(dev);
            Dev dx(x), di(ids), dw(w);
            Dev dout = poisoned(ref.size());
            cuda::moe_experts(table, dx.f(), true, t, d, inter, di.i(), dw.f(), k, 10.f, quant_h, dout.f());
            // Up to 2048 pairs (grouped GEMV) it is float32 math up to summation order (measured ~1e-7).
            // Beyond, the prefill path runs w1/w3 on FP8 tensor cores (2e-4, see LinearTensorCore); the FP8
            // quantization of h then turns those small differences into whole e4m3 steps (1/16 relative)
            // for the few elements near a rounding boundary: measured 3e-3, bar 1e-2.
            EXPECT_REL(dout.get<float>(), ref, t * k > 2048 ? 1e-2 : 1e-5);
        }
        free_moe_weights(md);
    }
}

// Rows whose width is not a multiple of 4 take the scalar rmsnorm kernel (the others the float4 one).
// Kept after the earlier tests so their random streams stay as they were (new tests go below).
TEST_F(CudaOps, RmsnormUnaligned) {
    const int64_t rows = 3, dim = 130;
    auto x = randn(size_t(rows * dim), 2.f), w = randn(static_cast<size_t>(dim));
    std::vector<float> ref(x.size());
    cpu::rmsnorm(x.data(), rows, dim, w.data(), 1e-6f, ref.data());
    Dev dx(x), dw(w);
    Dev dy = poisoned(x.size());
    cuda::backend().rmsnorm(dx.f(), rows, dim, dw.f(), 1e-6f, dy.f());
    EXPECT_REL(dy.get<float>(), ref, 1e-6);
}

// ---- Decode kernels that must reproduce earlier kernels bitwise (appended last so the random
// streams of the tests above stay as they were) ----

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

size_t first_diff(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
    return std::min(a.size(), b.size());
}

#define EXPECT_SAME_BITS(got, want)                                                                       \
    do {                                                                                                  \
        const auto& g_ = (got);                                                                           \
        const auto& w_ = (want);                                                                          \
        EXPECT_TRUE(same_bits(g_, w_)) << #got << " differs from " << #want << " first at element "       \
                                       << first_diff(g_, w_) << " of " << w_.size();                      \
    } while (0)

}  // namespace

// hc_pre's decode finish over d/256 + 1 blocks per token gives bitwise what the one-block finish
// gives (every block recomputes rs and pre with the same reductions), and stays within the CPU bar.
TEST_F(CudaOps, HcPreWideFinishBitwise) {
    const int64_t hc = 4, mix = 24;
    for (auto [t, d] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 4096}, {2, 4096}, {32, 4096}, {3, 1000}, {5, 256}, {1, 100}}) {
        SCOPED_TRACE(testing::Message() << "t " << t << " d " << d);
        auto x = randn(size_t(t * hc * d)), fn = randn(size_t(mix * hc * d), 0.02f);
        std::vector<float> scale = {0.5f, 0.7f, 0.9f};
        auto base = randn(size_t(mix), 0.5f);
        std::vector<float> y(size_t(t * d)), post(size_t(t * hc)), comb(size_t(t * hc * hc));
        cpu::hc_pre(x.data(), t, hc, d, fn.data(), scale.data(), base.data(), 20, 1e-6f, 1e-6f, y.data(), post.data(),
                    comb.data());
        Dev dx(x), dfn(fn), ds(scale), db(base);
        // 0: wide finish; 1: one-block finish; 2: wide finish with the Sinkhorn on its side lane (joined
        // before reading post and comb).
        std::vector<float> got[3][3];
        for (int mode = 0; mode < 3; ++mode) {
            cuda::set_one_block_hc_finish(mode == 1);
            cuda::set_hc_sinkhorn_aside(mode == 2);
            Dev dy = poisoned(y.size()), dpost = poisoned(post.size()), dcomb = poisoned(comb.size());
            cuda::backend().hc_pre(dx.f(), t, hc, d, dfn.f(), ds.f(), db.f(), 20, 1e-6f, 1e-6f, dy.f(), dpost.f(),
                                   dcomb.f());
            got[mode][0] = dy.get<float>();  // the main stream's work only: y needs no join
            cuda::side_join();
            got[mode][1] = dpost.get<float>();
            got[mode][2] = dcomb.get<float>();
        }
        cuda::set_one_block_hc_finish(false);
        cuda::set_hc_sinkhorn_aside(false);
        EXPECT_REL(got[0][0], y, 1e-5);
        EXPECT_REL(got[0][1], post, 1e-5);
        EXPECT_REL(got[0][2], comb, 1e-5);
        for (int mode = 1; mode < 3; ++mode) {
            SCOPED_TRACE(testing::Message() << "mode " << mode);
            EXPECT_SAME_BITS(got[mode][0], got[0][0]);
            EXPECT_SAME_BITS(got[mode][1], got[0][1]);
            EXPECT_SAME_BITS(got[mode][2], got[0][2]);
        }
    }
}

// linear_groups (DeepSeek's grouped wo_a in one launch) against the per-group linear() calls on
// copied column slices, as the model ran it: bitwise equal, and within the GEMV bar of the CPU.
TEST_F(CudaOps, LinearGroupsMatchLinear) {
    Bf16Scope gemv_only(false);  // linear() on the GEMV path, which these launches group
    cuda::set_mma_split(false);  // one row: else the split tensor-core GEMV (MmaGemvSplit) runs
    struct Case {
        WeightFormat fmt;
        ScaleKind sk;
        int64_t m, groups, rows, gin;
    };
    for (const Case& c : std::vector<Case>{
             {WeightFormat::FP8, ScaleKind::E8M0, 1, 8, 1024, 4096},   // Flash wo_a, decode
             {WeightFormat::FP8, ScaleKind::E8M0, 2, 8, 1024, 4096},
             {WeightFormat::FP8, ScaleKind::E8M0, 5, 8, 1024, 4096},   // two row chunks (4 + 1)
             {WeightFormat::FP8, ScaleKind::E8M0, 16, 8, 1024, 4096},  // kGemvMaxRows
             {WeightFormat::FP8, ScaleKind::F32, 3, 8, 1024, 4096},    // Flash-Base scales
             {WeightFormat::FP8, ScaleKind::E8M0, 3, 4, 96, 256},      // groups not on 128-row scale blocks
             {WeightFormat::FP4, ScaleKind::E8M0, 2, 3, 64, 512},
             {WeightFormat::BF16, ScaleKind::E8M0, 1, 2, 40, 128}}) {
        SCOPED_TRACE(testing::Message() << "fmt " << int(c.fmt) << " m " << c.m << " groups " << c.groups << " rows "
                                        << c.rows << " gin " << c.gin);
        std::printf("  linear_groups fmt=%d m=%lld groups=%lld rows=%lld gin=%lld\n", int(c.fmt), (long long)c.m,
                    (long long)c.groups, (long long)c.rows, (long long)c.gin);
        HostWeight hw = make_weight(c.fmt, c.groups * c.rows, c.gin, c.sk);
        const int64_t ldx = c.groups * c.gin + 8, ldy = c.groups * c.rows + 4;  // strides wider than the data
        auto x = randn(size_t(c.m * ldx));
        // CPU reference: each group's x slice copied out, as the model's fallback path does.
        std::vector<float> ref(size_t(c.m * ldy), 0.f);
        std::vector<std::vector<float>> xg(static_cast<size_t>(c.groups));
        for (int64_t g = 0; g < c.groups; ++g) {
            auto& s = xg[size_t(g)];
            s.resize(size_t(c.m * c.gin));
            for (int64_t i = 0; i < c.m; ++i)
                std::memcpy(s.data() + i * c.gin, x.data() + i * ldx + g * c.gin, size_t(c.gin) * 4);
            cpu::linear(s.data(), c.m, hw.w, g * c.rows, (g + 1) * c.rows, ref.data() + g * c.rows, ldy);
        }
        DevWeight dw(hw.w);
        Dev dx(x);
        Dev dy = poisoned(size_t(c.m * ldy)), dy_old = poisoned(size_t(c.m * ldy));
        ASSERT_TRUE(cuda::linear_groups(dx.f(), c.m, ldx, dw.w, c.groups, c.rows, dy.f(), ldy));
        for (int64_t g = 0; g < c.groups; ++g) {
            Dev ds(xg[size_t(g)]);
            cuda::backend().linear(ds.f(), c.m, dw.w, g * c.rows, (g + 1) * c.rows, dy_old.f() + g * c.rows, ldy);
            cuda::sync();  // ds is freed at the end of this iteration
        }
        auto got = dy.get<float>(), old = dy_old.get<float>();
        std::vector<float> g2, o2, r2;
        for (int64_t i = 0; i < c.m; ++i)
            for (int64_t j = 0; j < c.groups * c.rows; ++j) {
                g2.push_back(got[size_t(i * ldy + j)]);
                o2.push_back(old[size_t(i * ldy + j)]);
                r2.push_back(ref[size_t(i * ldy + j)]);
            }
        EXPECT_SAME_BITS(g2, o2);
        EXPECT_REL(g2, r2, 1e-5);
        for (int64_t i = 0; i < c.m; ++i)  // the padding columns stay untouched
            for (int64_t j = c.groups * c.rows; j < ldy; ++j) EXPECT_TRUE(std::isnan(got[size_t(i * ldy + j)]));
    }
    // Outside the GEMV path it declines and writes nothing: the caller runs linear().
    HostWeight hw = make_weight(WeightFormat::FP8, 4 * 128, 256);
    DevWeight dw(hw.w);
    Dev dx = poisoned(size_t(17 * 4 * 256)), dy = poisoned(size_t(17 * 4 * 128));
    EXPECT_FALSE(cuda::linear_groups(dx.f(), 17, 4 * 256, dw.w, 4, 128, dy.f(), 4 * 128));
    EXPECT_FALSE(cuda::linear_groups(dx.f(), 1, 9 * 256, dw.w, 9, 32, dy.f(), 9 * 32));  // > kMaxLinearGroups
    EXPECT_FALSE(cuda::linear_groups(dx.f(), 1, 4 * 256, dw.w, 4, 256, dy.f(), 4 * 256));  // rows past w.n
    cuda::set_mma_split(true);                                                             // the default
}

// linear_pair (shared expert w1 and w3 in one launch) against two linear() calls: bitwise equal.
TEST_F(CudaOps, LinearPairMatchesLinear) {
    Bf16Scope gemv_only(false);  // linear() on the GEMV path, which these launches group
    struct Case {
        WeightFormat fmt;
        ScaleKind sk;
        int64_t m, n, k;
        bool quant_x;
    };
    for (const Case& c : std::vector<Case>{
             {WeightFormat::FP8, ScaleKind::E8M0, 1, 2048, 4096, true},   // Flash shared w1/w3, decode
             {WeightFormat::FP8, ScaleKind::E8M0, 3, 2048, 4096, false},  // unquantized x
             {WeightFormat::FP8, ScaleKind::E8M0, 16, 2048, 4096, true},  // kGemvMaxRows: 4 row chunks
             {WeightFormat::FP8, ScaleKind::F32, 2, 2048, 4096, true},    // Flash-Base scales
             {WeightFormat::FP8, ScaleKind::E8M0, 1, 128, 256, true},     // tiny model
             {WeightFormat::BF16, ScaleKind::E8M0, 5, 200, 96, false},
             {WeightFormat::BF16, ScaleKind::E8M0, 1, 1024, 4096, false},  // Flash compressor wkv/wgate, decode
             {WeightFormat::BF16, ScaleKind::E8M0, 1, 256, 4096, false},   // Flash indexer compressor
             {WeightFormat::BF16, ScaleKind::E8M0, 3, 1024, 4096, false}}) {
        SCOPED_TRACE(testing::Message() << "fmt " << int(c.fmt) << " m " << c.m << " n " << c.n << " k " << c.k);
        std::printf("  linear_pair fmt=%d m=%lld n=%lld k=%lld\n", int(c.fmt), (long long)c.m, (long long)c.n,
                    (long long)c.k);
        HostWeight ha = make_weight(c.fmt, c.n, c.k, c.sk), hb = make_weight(c.fmt, c.n, c.k, c.sk);
        auto x = randn(size_t(c.m * c.k));
        if (c.quant_x) cpu::act_quant(x.data(), c.m, c.k, c.k, 128, true);
        const int64_t ldy = 2 * c.n;
        std::vector<float> ref(size_t(c.m * ldy));
        cpu::linear(x.data(), c.m, ha.w, 0, c.n, ref.data(), ldy);
        cpu::linear(x.data(), c.m, hb.w, 0, c.n, ref.data() + c.n, ldy);
        DevWeight da(ha.w), db(hb.w);
        Dev dx(x);
        Dev dy = poisoned(size_t(c.m * ldy)), dy_old = poisoned(size_t(c.m * ldy));
        ASSERT_TRUE(cuda::linear_pair(dx.f(), c.m, da.w, db.w, dy.f(), dy.f() + c.n, ldy));
        cuda::backend().linear(dx.f(), c.m, da.w, 0, c.n, dy_old.f(), ldy);
        cuda::backend().linear(dx.f(), c.m, db.w, 0, c.n, dy_old.f() + c.n, ldy);
        auto got = dy.get<float>();
        EXPECT_SAME_BITS(got, dy_old.get<float>());
        EXPECT_REL(got, ref, 1e-5);
    }
    HostWeight ha = make_weight(WeightFormat::FP8, 256, 256), hb = make_weight(WeightFormat::FP8, 128, 256);
    DevWeight da(ha.w), db(hb.w);
    Dev dx = poisoned(size_t(17 * 256)), dy = poisoned(size_t(17 * 512));
    EXPECT_FALSE(cuda::linear_pair(dx.f(), 1, da.w, db.w, dy.f(), dy.f() + 256, 512));   // shapes differ
    EXPECT_FALSE(cuda::linear_pair(dx.f(), 17, da.w, da.w, dy.f(), dy.f() + 256, 512));  // m > kGemvMaxRows
}

// Hash routing with the ids read on the device by token from a tid2eid table: bitwise the op with the
// table's rows gathered on the host (repeated tokens included).
TEST_F(CudaOps, MoeRouteHashTable) {
    const int64_t vocab = 1000, e = 256, k = 6, t = 11;
    std::vector<int32_t> table(static_cast<size_t>(vocab * k)), tokens(static_cast<size_t>(t)),
        gathered(static_cast<size_t>(t * k));
    std::uniform_int_distribution<int32_t> pick(0, int32_t(e - 1)), tok(0, int32_t(vocab - 1));
    for (auto& v : table) v = pick(rng());
    for (auto& v : tokens) v = tok(rng());
    tokens[3] = tokens[7];
    tokens[0] = int32_t(vocab - 1);
    for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < k; ++j) gathered[size_t(i * k + j)] = table[size_t(tokens[size_t(i)] * k + j)];
    auto logits = randn(size_t(t * e), 2.f);
    Dev dl(logits), dt(table), dtok(tokens), dg(gathered);
    Dev di(size_t(t * k) * 4), dref(size_t(t * k) * 4);
    Dev dw = poisoned(size_t(t * k)), dwref = poisoned(size_t(t * k));
    cuda::moe_route_hash(dl.f(), t, e, dtok.i(), dt.i(), k, 1.5f, di.i(), dw.f());
    cuda::backend().moe_route(dl.f(), t, e, nullptr, dg.i(), k, 1.5f, dref.i(), dwref.f());
    EXPECT_EQ(di.get<int32_t>(), gathered);
    EXPECT_EQ(dref.get<int32_t>(), gathered);
    EXPECT_SAME_BITS(dw.get<float>(), dwref.get<float>());
}

// Device greedy picks: the first index of each row's maximum, as a left-to-right scan with `>` finds
// it (ties to the lowest index, NaNs never taken, a NaN at index 0 kept), at the real vocabulary width
// and at widths below and around one block's 1024 threads.
TEST_F(CudaOps, ArgmaxRowsMatchScan) {
    auto scan = [](const float* r, int64_t n) {
        int32_t best = 0;
        for (int32_t j = 1; j < int32_t(n); ++j)
            if (r[j] > r[best]) best = j;
        return best;
    };
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t n : {int64_t(129280), int64_t(1), int64_t(7), int64_t(1024), int64_t(1025), int64_t(5000)}) {
        SCOPED_TRACE(testing::Message() << "n " << n);
        const int64_t rows = 9;
        auto l = randn(size_t(rows * n), 3.f);
        auto row = [&](int64_t r) { return l.data() + r * n; };
        std::uniform_int_distribution<int64_t> at(0, n - 1);
        // 1: the maximum twice (the lower index wins), far apart when n allows.
        {
            const int64_t a = at(rng()), b = at(rng());
            row(1)[a] = row(1)[b] = 50.f;
        }
        // 2: every entry the same (index 0).
        std::fill(row(2), row(2) + n, 0.25f);
        // 3: all -inf but one NaN somewhere (index 0: the NaN is never taken).
        std::fill(row(3), row(3) + n, -inf);
        row(3)[at(rng())] = nan;
        // 4: a NaN at index 0 (kept), a larger value later.
        row(4)[0] = nan;
        row(4)[n - 1] = 100.f;
        // 5: NaNs around a maximum that is the last entry.
        for (int64_t j = 0; j < n; j += 3) row(5)[j] = nan;
        row(5)[0] = -1.f;
        row(5)[n - 1] = 60.f;
        // 6: +inf twice.
        row(6)[at(rng())] = inf;
        row(6)[n - 1] = inf;
        // 7: the maximum only in the first and last entries.
        row(7)[0] = row(7)[n - 1] = 40.f;
        std::vector<int32_t> want(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) want[size_t(r)] = scan(row(r), n);
        Dev dl(l);
        Dev out = poisoned(size_t(rows));
        cuda::argmax_rows(dl.f(), rows, n, out.i());
        EXPECT_EQ(out.get<int32_t>(), want);
    }
}

// The device summary of logits rows (sample_summary) is the host sampler's (runtime::summarize_row):
// the same maximum, the same tokens in the same order while they have weight, bitwise the same
// weights (the exponential is the same operations, sampler.cpp compiled without contraction), and
// bitwise the same total weight (the same sums in the same order: chunks of 256 as eight float lanes,
// then pairwise in double; rows of 129280 = 505 chunks, 3000, and 1001 with a chunk ending inside a
// group of eight). Rows: noise, a peaked row like a language model's, ties across the cut (lowest index
// first), -inf entries, several temperatures.
TEST_F(CudaOps, SampleSummaryMatchesHost) {
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t n : {int64_t(129280), int64_t(3000), int64_t(1001)})
        for (int cap : {1, 64, 256, 1024}) {
            if (cap > n) continue;
            SCOPED_TRACE(testing::Message() << "n " << n << " cap " << cap);
            const int64_t rows = 5;
            auto l = randn(size_t(rows * n), 3.f);
            auto row = [&](int64_t r) { return l.data() + r * n; };
            for (int64_t j = 0; j < n; ++j) row(1)[j] = row(1)[j] * 0.5f - 6.f;  // peaked: 40 likely tokens
            for (int i = 0; i < 40; ++i) row(1)[(i * 3203 + 17) % n] = 4.0f + float(i % 11) * 0.7f;
            for (int64_t j = 0; j < n; ++j) row(2)[j] = float(int(row(2)[j] * 4.f)) / 4.f;  // many ties
            for (int64_t j = 0; j < n; j += 2) row(3)[j] = -inf;                            // half masked
            const std::vector<float> temps = {1.0f, 0.6f, 1.5f, 0.8f, 1.0f};
            std::vector<float> inv_t;
            for (float t : temps) inv_t.push_back(1.0f / t);
            Dev dl(l), dt(inv_t);
            Dev mx = poisoned(size_t(rows)), w = poisoned(size_t(rows * cap)), ids(size_t(rows * cap) * 4),
                z(size_t(rows) * 8);
            cuda::sample_summary(dl.f(), rows, n, dt.f(), cap, mx.f(), static_cast<double*>(z.p), ids.i(), w.f());
            const auto gm = mx.get<float>(), gw = w.get<float>();
            const auto gi = ids.get<int32_t>();
            const auto gz = z.get<double>();
            for (int64_t r = 0; r < rows; ++r) {
                SCOPED_TRACE(testing::Message() << "row " << r);
                const RowSummary h =
                    runtime::summarize_row(std::span<const float>(row(r), size_t(n)), temps[size_t(r)], size_t(cap));
                EXPECT_EQ(gm[size_t(r)], h.mx);
                EXPECT_EQ(gz[size_t(r)], h.z);
                for (int k = 0; k < cap && h.w[size_t(k)] > 0; ++k) {
                    ASSERT_EQ(gi[size_t(r * cap + k)], h.ids[size_t(k)]) << k;
                    EXPECT_EQ(gw[size_t(r * cap + k)], h.w[size_t(k)]) << k;
                }
            }
        }
}

// The select's two variants (set_topk_segments: warp-aggregated histograms and the compaction by
// segments, against one block scan per 1024 entries) give the same picks in the same order: the
// indexer's top-k over rows with exact ties, -inf tails and per-row candidate counts, and the sample
// summaries of Flash-size rows (a flat one: most keys in one histogram bin).
TEST_F(CudaOps, TopkSegmentsMatchRounds) {
    const float inf = std::numeric_limits<float>::infinity();
    for (auto [t, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {3, 40, 4}, {2, 1000, 64}, {4, 4096, 512}, {2, 20000, 512}, {2, 129280, 1024}}) {
        SCOPED_TRACE(testing::Message() << "t " << t << " n " << n << " k " << k);
        std::vector<float> s(size_t(t * n));
        std::uniform_int_distribution<int> coin(0, 3);
        for (int64_t i = 0; i < t; ++i)
            for (int64_t j = 0; j < n; ++j) {
                const int c = coin(rng());
                s[size_t(i * n + j)] = c == 0 ? 1.f + float(j % 97) : (c == 1 ? -inf : 0.f);
            }
        std::vector<int32_t> valid(static_cast<size_t>(t));
        for (int64_t i = 0; i < t; ++i) valid[size_t(i)] = int32_t(std::max<int64_t>(1, n - i * 13));
        Dev ds(s), dv(valid);
        std::vector<std::vector<int32_t>> got;
        for (bool seg : {false, true}) {
            cuda::set_topk_segments(seg);
            Dev out(size_t(t * k) * 4);
            cuda::backend().topk(ds.f(), t, n, dv.i(), k, out.i());
            got.push_back(out.get<int32_t>());
        }
        EXPECT_EQ(got[0], got[1]);
    }
    const int64_t rows = 3, n = 129280;
    const int cap = 1024;
    auto l = randn(size_t(rows * n), 3.f);
    for (int64_t j = 0; j < n; ++j) l[size_t(n + j)] *= 0.01f;                        // flat
    for (int64_t j = 0; j < n; ++j) l[size_t(2 * n + j)] = float(int(l[size_t(j)] * 4.f)) / 4.f;  // ties
    const std::vector<float> inv_t = {1.0f, 1.0f / 0.6f, 1.0f};
    Dev dl(l), dt(inv_t);
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<float>> ws;
    for (bool seg : {false, true}) {
        cuda::set_topk_segments(seg);
        Dev mx(size_t(rows) * 4), w(size_t(rows * cap) * 4), id(size_t(rows * cap) * 4), z(size_t(rows) * 8);
        cuda::sample_summary(dl.f(), rows, n, dt.f(), cap, mx.f(), static_cast<double*>(z.p), id.i(), w.f());
        ids.push_back(id.get<int32_t>());
        ws.push_back(w.get<float>());
    }
    cuda::set_topk_segments(true);  // the default
    EXPECT_EQ(ids[0], ids[1]);
    EXPECT_EQ(ws[0], ws[1]);
}

// The device's whole-softmax draw (draw_rows) is the host sampler's (runtime::draw_whole_row): the same
// token for every row and uniform, bitwise, over rows of 129280 (505 chunks), 3000 and 1001 tokens
// (a chunk ending inside a group of eight): noise, a peaked row, a flat row, a row half -inf, and
// uniforms at 0, near 1 and between; rows with a negative uniform get -1.
TEST_F(CudaOps, DrawRowsMatchHost) {
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t n : {int64_t(129280), int64_t(3000), int64_t(1001)}) {
        SCOPED_TRACE(testing::Message() << "n " << n);
        const std::vector<double> us = {0.0, 0.5, 0.999999, 0.123456789, 0.87654321, 0.3, 0.7, -1.0};
        const int64_t rows = int64_t(us.size());
        auto l = randn(size_t(rows * n), 3.f);
        auto row = [&](int64_t r) { return l.data() + r * n; };
        for (int64_t j = 0; j < n; ++j) row(1)[j] = row(1)[j] * 0.5f - 6.f;  // peaked: 40 likely tokens
        for (int i = 0; i < 40; ++i) row(1)[(i * 3203 + 17) % n] = 4.0f + float(i % 11) * 0.7f;
        for (int64_t j = 0; j < n; ++j) row(2)[j] *= 0.03f;                 // flat
        for (int64_t j = 0; j < n; j += 2) row(3)[j] = -inf;                // half masked
        const std::vector<float> temps = {1.0f, 0.6f, 1.5f, 0.8f, 1.0f, 2.0f, 0.3f, 1.0f};
        std::vector<float> inv_t;
        for (float t : temps) inv_t.push_back(1.0f / t);
        Dev dl(l), dt(inv_t), du(us), out(size_t(rows) * 4);
        cuda::draw_rows(dl.f(), rows, n, dt.f(), static_cast<const double*>(du.p), out.i());
        const auto got = out.get<int32_t>();
        for (int64_t r = 0; r < rows; ++r) {
            SCOPED_TRACE(testing::Message() << "row " << r);
            if (us[size_t(r)] < 0) {
                EXPECT_EQ(got[size_t(r)], -1);
                continue;
            }
            EXPECT_EQ(got[size_t(r)], runtime::draw_whole_row(std::span<const float>(row(r), size_t(n)),
                                                              temps[size_t(r)], us[size_t(r)]));
        }
    }
}

// Uploads through h2d_staged with parameter uploads on and off: every size lands intact (kernel
// parameters up to 8 KB, staging beyond and for sizes that are not 4-byte multiples), in stream order
// with the kernels around them.
TEST_F(CudaOps, ParamUploadMatchesStaged) {
    for (int mode : {1, 0}) {
        cuda::set_param_upload(mode);
        for (size_t bytes : {size_t(4), size_t(100), size_t(8192), size_t(8196), size_t(6), size_t(40000)}) {
            SCOPED_TRACE(testing::Message() << "mode " << mode << " bytes " << bytes);
            std::vector<unsigned char> src(bytes);
            for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<unsigned char>(i * 7 + bytes + mode);
            Dev d = poisoned((bytes + 3) / 4);
            cuda::begin_uploads();
            cuda::h2d_staged(d.p, src.data(), bytes);
            src.assign(bytes, 0);  // the upload holds its own copy from the call on
            auto got = d.get<unsigned char>();
            got.resize(bytes);
            for (size_t i = 0; i < bytes; ++i)
                ASSERT_EQ(got[i], static_cast<unsigned char>(i * 7 + bytes + mode)) << "byte " << i;
        }
    }
    cuda::set_param_upload(0);
}

// Split-k GEMVs on the main stream and every side lane at once: each lane keeps its own arrival
// counters and partial sums, so every result is bitwise the one computed alone. (Shared counters let
// one GEMV's last block add up another's partials early.)
TEST_F(CudaOps, SideLanesKeepSplitGemvsApart) {
    Bf16Scope gemv_only(false);
    constexpr int kUsers = cuda::kLanes;  // the main stream and each side lane
    std::vector<HostWeight> hw;
    std::vector<std::unique_ptr<DevWeight>> dw;
    std::vector<std::unique_ptr<Dev>> dx, alone, shared;
    constexpr int64_t m = 3, n = 1024, k = 4096;  // few row blocks: the multi-row GEMV splits k
    for (int l = 0; l < kUsers; ++l) {
        hw.push_back(make_weight(WeightFormat::BF16, n, k));
        dw.push_back(std::make_unique<DevWeight>(hw.back().w));
        dx.push_back(std::make_unique<Dev>(randn(size_t(m * k))));
        alone.push_back(std::make_unique<Dev>(poisoned(size_t(m * n))));
        cuda::backend().linear(dx[size_t(l)]->f(), m, dw[size_t(l)]->w, 0, n, alone[size_t(l)]->f(), n);
    }
    for (int round = 0; round < 20; ++round) {
        shared.clear();
        for (int l = 0; l < kUsers; ++l) shared.push_back(std::make_unique<Dev>(poisoned(size_t(m * n))));
        for (int rep = 0; rep < 4; ++rep)
            for (int l = 0; l < kUsers; ++l) {
                if (l) cuda::side_begin(l);
                cuda::backend().linear(dx[size_t(l)]->f(), m, dw[size_t(l)]->w, 0, n, shared[size_t(l)]->f(), n);
                if (l) cuda::side_end();
            }
        cuda::side_join();
        for (int l = 0; l < kUsers; ++l) {
            SCOPED_TRACE(testing::Message() << "round " << round << " lane " << l);
            EXPECT_SAME_BITS(shared[size_t(l)]->get<float>(), alone[size_t(l)]->get<float>());
        }
    }
    EXPECT_THROW(cuda::side_begin(cuda::kLanes), std::runtime_error);
}

// The MoE decode path's grouped GEMVs give bitwise the same output for 2, 4 and 8 weight rows per
// warp (the default choice is checked against the CPU by MoeExperts).
TEST_F(CudaOps, MoeGroupedRowsPerWarpBitwise) {
    for (auto [t, d, inter, ne, k, fmt] : std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, WeightFormat>>{
             {1, 4096, 2048, 16, 6, WeightFormat::FP4},   // Flash decode
             {3, 4096, 2048, 16, 6, WeightFormat::FP4},   // decode batch 3
             {2, 4096, 2048, 8, 6, WeightFormat::FP8},    // Flash-Base experts
             {1, 256, 96, 8, 2, WeightFormat::FP8}}) {    // rows not a multiple of 64; split k
        SCOPED_TRACE(testing::Message() << "t " << t << " d " << d << " inter " << inter);
        const bool quant_h = true;
        MoeData md = make_moe_data(t, d, inter, ne, k, fmt);
        auto& [hw, dev, x, ids, w] = md;
        {
            cuda::ExpertTable table(dev);
            Dev dx(x), di(ids), dw(w);
            std::vector<float> out[3];
            const int rpw[3] = {2, 4, 8};
            for (int r = 0; r < 3; ++r) {
                cuda::set_grouped_gemv_rows_per_warp(rpw[r]);
                Dev dout = poisoned(size_t(t * d));
                // x_quant false: the multi-row GEMV whose rows per warp this test varies.
                cuda::moe_experts(table, dx.f(), false, t, d, inter, di.i(), dw.f(), k, 10.f, quant_h, dout.f());
                out[r] = dout.get<float>();
                for (float v : out[r]) ASSERT_TRUE(std::isfinite(v)) << "rows per warp " << rpw[r];
            }
            cuda::set_grouped_gemv_rows_per_warp(0);
            EXPECT_SAME_BITS(out[1], out[0]);
            EXPECT_SAME_BITS(out[2], out[0]);
        }
        free_moe_weights(md);
    }
}

// rmsnorm_act_quant: bitwise rmsnorm() then act_quant() of a copy (the model's "rmsnorm, then a
// linear on a quantized copy"), y within rmsnorm's CPU bar and yq = the CPU's act_quant of y.
TEST_F(CudaOps, RmsnormActQuantFused) {
    struct Case {
        int64_t rows, dim, block;
        bool weighted, pow2, with_y;
    };
    for (const Case& c : std::vector<Case>{
             {1, 4096, 128, true, true, true},     // Flash attn/ffn norm before wq_a, wkv, experts
             {1, 1024, 128, true, true, true},     // Flash q_norm before wq_b
             {4, 4096, 128, true, true, false},    // decode batch 4, no plain copy
             {3, 1000, 128, true, false, true},    // partial last block; non-pow2 scales
             {64, 512, 64, false, true, true},     // half-warp blocks
             {2, 16384, 128, true, true, true},    // widest one-pass row
             {2, 16388, 128, true, true, true},    // too wide: rmsnorm + act_quant
             {3, 130, 128, true, true, true},      // dim % 4 != 0: the two ops
             {2, 768, 96, true, true, true}}) {    // block/4 not a power of two: the two ops
        SCOPED_TRACE(testing::Message() << "rows " << c.rows << " dim " << c.dim << " block " << c.block);
        std::printf("  rmsnorm_act_quant rows=%lld dim=%lld block=%lld\n", (long long)c.rows, (long long)c.dim,
                    (long long)c.block);
        auto x = randn(size_t(c.rows * c.dim), 2.f), w = randn(static_cast<size_t>(c.dim));
        const float* wp = c.weighted ? w.data() : nullptr;
        std::vector<float> ref(x.size());
        cpu::rmsnorm(x.data(), c.rows, c.dim, wp, 1e-6f, ref.data());
        Dev dx(x), dw(w);
        float* dwp = c.weighted ? dw.f() : nullptr;
        // The unfused sequence on the device.
        Dev dy_old = poisoned(x.size()), dq_old = poisoned(x.size());
        cuda::backend().rmsnorm(dx.f(), c.rows, c.dim, dwp, 1e-6f, dy_old.f());
        cuda::d2d(dq_old.p, dy_old.p, x.size() * 4);
        cuda::backend().act_quant(dq_old.f(), c.rows, c.dim, c.dim, c.block, c.pow2);
        // Fused.
        Dev dy = poisoned(x.size()), dq = poisoned(x.size());
        cuda::rmsnorm_act_quant(dx.f(), c.rows, c.dim, dwp, 1e-6f, c.with_y ? dy.f() : nullptr, dq.f(), c.block,
                                c.pow2);
        auto q = dq.get<float>(), y_old = dy_old.get<float>();
        EXPECT_SAME_BITS(q, dq_old.get<float>());
        if (c.with_y) {
            auto y = dy.get<float>();
            EXPECT_SAME_BITS(y, y_old);
            EXPECT_REL(y, ref, 1e-6);
        } else {
            for (float v : dy.get<float>()) ASSERT_TRUE(std::isnan(v)) << "y written though not asked for";
        }
        auto qref = y_old;
        cpu::act_quant(qref.data(), c.rows, c.dim, c.dim, c.block, c.pow2);
        EXPECT_REL(q, qref, 1e-7);
    }
    // In place (yq = x), as a model would call it on its activation buffer.
    auto x = randn(size_t(2 * 4096), 2.f), w = randn(size_t(4096));
    Dev dx(x), dw(w), dref(x);
    Dev dy = poisoned(x.size());
    cuda::backend().rmsnorm(dref.f(), 2, 4096, dw.f(), 1e-6f, dref.f());
    cuda::backend().act_quant(dref.f(), 2, 4096, 4096, 128, true);
    cuda::rmsnorm_act_quant(dx.f(), 2, 4096, dw.f(), 1e-6f, dy.f(), dx.f(), 128, true);
    EXPECT_SAME_BITS(dx.get<float>(), dref.get<float>());
}

// Single-row linears (the slice GEMV with x in registers): every slice count from one to sixteen
// warps, slices cut short by k, row counts that leave a round part-filled, row windows [n0, n1),
// and a launch small enough that the grid has one block.
TEST_F(CudaOps, LinearSingleRowShapes) {
    Bf16Scope gemv_only(false);
    for (int mode : {2, 1, 0}) {  // every launch on the slice GEMV, the default choice, none
        std::printf("  slice gemv mode %d\n", mode);
        cuda::set_slice_gemv(mode);
        check_linear(WeightFormat::FP8, 1, 4096, 8192, true, 1e-5);   // wo_b: 8 slices
        check_linear(WeightFormat::FP8, 1, 1024, 16384, true, 1e-5);  // Pro wo_b: 16 slices, 16-warp blocks
        check_linear(WeightFormat::FP8, 1, 301, 7168, true, 1e-5);    // Pro hidden: 7 slices, odd row count
        // half a slice, a window of rows
        check_linear(WeightFormat::FP8, 1, 640, 1536, false, 1e-5, ScaleKind::F32, 128, 512);
        check_linear(WeightFormat::FP4, 1, 4096, 2048, true, 1e-5);  // routed w2
        check_linear(WeightFormat::FP4, 1, 3072, 7168, true, 1e-5);  // Pro routed w1
        check_linear(WeightFormat::FP4, 1, 130, 1056, true, 1e-5);   // 32 elements into the second slice
        check_linear(WeightFormat::BF16, 1, 1000, 4096, false, 1e-5, ScaleKind::E8M0, 200, 1000);  // head window
        check_linear(WeightFormat::BF16, 1, 77, 2056, false, 1e-5);  // 3 slices, the last 8 elements long
        check_linear(WeightFormat::FP8, 1, 3, 128, true, 1e-5);      // one block, most of its groups idle
    }
    cuda::set_slice_gemv(-1);
}

// The routed experts' grouped launches (device job arrays, x per token) on the slice GEMV, against
// the CPU composition as in MoeExperts; at t = 200 there are more jobs than slice groups, so runs of
// chunks cross from job to job (x reloaded).
TEST_F(CudaOps, MoeExpertsSliceGemv) {
    cuda::set_slice_gemv(2);
    for (auto [t, fmt] :
         std::vector<std::pair<int64_t, WeightFormat>>{{1, WeightFormat::FP4},
                                                       {3, WeightFormat::FP8},
                                                       {40, WeightFormat::FP4},
                                                       {200, WeightFormat::FP4}}) {  // more jobs than groups
        SCOPED_TRACE(testing::Message() << "t " << t);
        const int64_t d = 1024, inter = 512, ne = 8, k = 6;
        MoeData md = make_moe_data(t, d, inter, ne, k, fmt);
        const std::vector<float> ref = moe_reference(md, t, d, inter, ne, k, false);
        {
            cuda::ExpertTable table(md.dev);
            Dev dx(md.x), di(md.ids), dw(md.w);
            Dev dout = poisoned(ref.size());
            cuda::moe_experts(table, dx.f(), false, t, d, inter, di.i(), dw.f(), k, 10.f, false, dout.f());
            EXPECT_REL(dout.get<float>(), ref, 1e-5);
        }
        free_moe_weights(md);
    }
    cuda::set_slice_gemv(-1);
}

// The tensor-core GEMV (gemv_mma.cu) against the CPU linear on act_quant'ed x: the real Flash/Pro
// shapes, a tile split over 8 warps (wo_b), row counts that leave the last tile part-filled, a row
// window, F32 scales, x blocks that are all zero or tiny, and the pair launch of the shared expert.
TEST_F(CudaOps, MmaGemv) {
    struct Case {
        WeightFormat fmt;
        int64_t n, k, n0, n1;
        ScaleKind sk;
    };
    const Case cases[] = {
        {WeightFormat::FP4, 2048, 4096, 0, 2048, ScaleKind::E8M0},    // routed w1 / w3
        {WeightFormat::FP4, 4096, 2048, 0, 4096, ScaleKind::E8M0},    // routed w2
        {WeightFormat::FP4, 3072, 7168, 0, 3072, ScaleKind::E8M0},    // Pro routed w1
        {WeightFormat::FP4, 130, 1024, 0, 130, ScaleKind::E8M0},      // last tile two rows long
        {WeightFormat::FP4, 300, 384, 37, 300, ScaleKind::E8M0},      // window starting inside a tile
        {WeightFormat::FP4, 1024, 2048, 0, 1024, ScaleKind::F32},     // F32 scales
        {WeightFormat::FP8, 1024, 4096, 0, 1024, ScaleKind::E8M0},    // wq_a
        {WeightFormat::FP8, 32768, 1024, 0, 32768, ScaleKind::E8M0},  // wq_b
        {WeightFormat::FP8, 4096, 8192, 0, 4096, ScaleKind::E8M0},    // wo_b: 8 warps a tile
        {WeightFormat::FP8, 1024, 16384, 0, 1024, ScaleKind::E8M0},   // Pro wo_b: the largest k
        {WeightFormat::FP8, 640, 1536, 128, 512, ScaleKind::F32},     // F32 scales (Flash-Base), window
        {WeightFormat::FP8, 3, 128, 0, 3, ScaleKind::E8M0},           // one round, one part-filled tile
    };
    cuda::set_mma_gemv(2);  // the small cases too
    for (const Case& cs : cases)
        for (bool e4 : {false, true}) {  // FP4 decoded by shifts to f16, or through e4m3
            if (e4 && cs.fmt != WeightFormat::FP4) continue;
            cuda::set_mma_fp4_e4m3(e4);
            SCOPED_TRACE(testing::Message() << "fmt " << int(cs.fmt) << " n " << cs.n << " k " << cs.k << " rows ["
                                            << cs.n0 << "," << cs.n1 << ") e4m3 " << e4);
            HostWeight hw = make_weight(cs.fmt, cs.n, cs.k, cs.sk);
            auto x = randn(size_t(cs.k));
            std::fill(x.begin(), x.begin() + 128, 0.f);  // a zero block
            if (cs.k >= 384)
                for (int64_t i = 256; i < 384; ++i) x[size_t(i)] *= 1e-6f;  // a tiny block
            cpu::act_quant(x.data(), 1, cs.k, cs.k, 128, true);
            const int64_t nn = cs.n1 - cs.n0;
            std::vector<float> ref(static_cast<size_t>(nn));
            cpu::linear(x.data(), 1, hw.w, cs.n0, cs.n1, ref.data(), nn);
            DevWeight dw(hw.w);
            Dev dx(x);
            Dev dy = poisoned(static_cast<size_t>(nn + 8));
            ASSERT_TRUE(cuda::mma_gemv(dx.f(), dw.w, cs.n0, cs.n1, dy.f()));
            auto got = dy.get<float>();
            for (int64_t i = nn; i < nn + 8; ++i)  // nothing written past the window
                EXPECT_TRUE(std::isnan(got[size_t(i)])) << "element " << i;
            got.resize(static_cast<size_t>(nn));
            EXPECT_REL(got, ref, 1e-5);
            if (cs.fmt == WeightFormat::FP4)  // the paired scale loads, refilled early and late: the same bits
                for (int cfg : {5, 6}) {
                    SCOPED_TRACE(testing::Message() << "cfg " << cfg);
                    cuda::set_mma_cfg(cfg);
                    Dev dz = poisoned(static_cast<size_t>(nn + 8));
                    ASSERT_TRUE(cuda::mma_gemv(dx.f(), dw.w, cs.n0, cs.n1, dz.f()));
                    cuda::set_mma_cfg(-1);
                    auto got2 = dz.get<float>();
                    for (int64_t i = nn; i < nn + 8; ++i) EXPECT_TRUE(std::isnan(got2[size_t(i)])) << "element " << i;
                    got2.resize(static_cast<size_t>(nn));
                    EXPECT_SAME_BITS(got2, got);
                }
        }
    cuda::set_mma_fp4_e4m3(false);  // the default
    // The pair launch (shared expert w1 and w3).
    HostWeight ha = make_weight(WeightFormat::FP8, 2048, 4096), hb = make_weight(WeightFormat::FP8, 2048, 4096);
    auto x = randn(4096);
    cpu::act_quant(x.data(), 1, 4096, 4096, 128, true);
    std::vector<float> ra(2048), rb(2048);
    cpu::linear(x.data(), 1, ha.w, 0, 2048, ra.data(), 2048);
    cpu::linear(x.data(), 1, hb.w, 0, 2048, rb.data(), 2048);
    DevWeight da(ha.w), db(hb.w);
    Dev dx(x);
    Dev ya = poisoned(2048), yb = poisoned(2048);
    ASSERT_TRUE(cuda::mma_gemv_pair(dx.f(), da.w, db.w, ya.f(), yb.f()));
    EXPECT_REL(ya.get<float>(), ra, 1e-5);
    EXPECT_REL(yb.get<float>(), rb, 1e-5);
    // Switched off, for a weight it cannot stream, or (by default) too small a launch, it launches
    // nothing and says so.
    cuda::set_mma_gemv(0);
    EXPECT_FALSE(cuda::mma_gemv(dx.f(), da.w, 0, 2048, ya.f()));
    cuda::set_mma_gemv(1);
    EXPECT_FALSE(cuda::mma_gemv(dx.f(), da.w, 0, 512, ya.f()));
    HostWeight hbf = make_weight(WeightFormat::BF16, 64, 4096);
    DevWeight dbf(hbf.w);
    EXPECT_FALSE(cuda::mma_gemv(dx.f(), dbf.w, 0, 64, ya.f()));
}

// The tensor-core GEMV with the norm formed inside (mma_gemv_normed, a raw row in): bitwise
// rmsnorm_act_quant then mma_gemv, under both register configurations, and within the bar of the CPU's
// rmsnorm, act_quant and linear. Widths: Flash q_norm (1024, a thread a float4), the attention norm
// (4096, four stand-in threads a thread), Pro's 7168 (a partial last stand-in thread), 384 (fewer than
// a block of stand-in threads); F32-scaled FP8 and an FP4 weight too.
TEST_F(CudaOps, MmaGemvNormedMatchesTwoLaunches) {
    struct Case {
        WeightFormat fmt;
        int64_t n, k;
        ScaleKind sk;
    };
    const Case cases[] = {
        {WeightFormat::FP8, 32768, 1024, ScaleKind::E8M0},  // Flash wq_b after q_norm
        {WeightFormat::FP8, 1024, 4096, ScaleKind::E8M0},   // Flash wq_a after attn_norm
        {WeightFormat::FP8, 1536, 7168, ScaleKind::E8M0},   // Pro wq_a
        {WeightFormat::FP8, 768, 384, ScaleKind::F32},      // short row, F32 scales
        {WeightFormat::FP4, 2048, 4096, ScaleKind::E8M0},   // FP4
        {WeightFormat::FP8, 1024, 16384, ScaleKind::E8M0},  // the widest row
    };
    for (const Case& cs : cases) {
        SCOPED_TRACE(testing::Message() << "fmt " << int(cs.fmt) << " n " << cs.n << " k " << cs.k);
        HostWeight hw = make_weight(cs.fmt, cs.n, cs.k, cs.sk);
        auto x = randn(size_t(cs.k), 3.f), nw = randn(size_t(cs.k));
        for (int64_t i = 0; i < 128; ++i) x[size_t(i)] *= 1e-5f;  // a block far below the others
        std::vector<float> xq(x.size()), ref(static_cast<size_t>(cs.n));
        cpu::rmsnorm(x.data(), 1, cs.k, nw.data(), 1e-6f, xq.data());
        cpu::act_quant(xq.data(), 1, cs.k, cs.k, 128, true);
        cpu::linear(xq.data(), 1, hw.w, 0, cs.n, ref.data(), cs.n);
        DevWeight dw(hw.w);
        Dev dx(x), dnw(nw), dq = poisoned(x.size());
        cuda::rmsnorm_act_quant(dx.f(), 1, cs.k, dnw.f(), 1e-6f, nullptr, dq.f(), 128, true);
        for (int cfg : {1, 0}) {
            SCOPED_TRACE(testing::Message() << "cfg " << cfg);
            cuda::set_mma_cfg(cfg);
            Dev y_two = poisoned(size_t(cs.n)), y_one = poisoned(size_t(cs.n + 8));
            ASSERT_TRUE(cuda::mma_gemv(dq.f(), dw.w, 0, cs.n, y_two.f()));
            ASSERT_TRUE(cuda::mma_gemv_normed(dx.f(), dnw.f(), 1e-6f, dw.w, y_one.f()));
            auto one = y_one.get<float>();
            for (int64_t i = cs.n; i < cs.n + 8; ++i)  // nothing written past the rows
                EXPECT_TRUE(std::isnan(one[size_t(i)])) << "element " << i;
            one.resize(size_t(cs.n));
            EXPECT_SAME_BITS(one, y_two.get<float>());
            EXPECT_REL(one, ref, 1e-5);
        }
        cuda::set_mma_cfg(-1);
        // The input row is left as it was (the norm is formed in shared memory only).
        EXPECT_SAME_BITS(dx.get<float>(), x);
    }
    // Where it does not apply it launches nothing and says so: no norm weight, a misaligned row, too
    // wide a row, too few rows.
    HostWeight hw = make_weight(WeightFormat::FP8, 1024, 4096);
    DevWeight dw(hw.w);
    Dev dx(randn(4096 + 4)), dnw(randn(4096)), dy = poisoned(1024);
    EXPECT_FALSE(cuda::mma_gemv_normed(dx.f(), nullptr, 1e-6f, dw.w, dy.f()));
    EXPECT_FALSE(cuda::mma_gemv_normed(dx.f() + 1, dnw.f(), 1e-6f, dw.w, dy.f()));
    HostWeight hwide = make_weight(WeightFormat::FP8, 1024, 16384 + 128);
    DevWeight dwide(hwide.w);
    EXPECT_FALSE(cuda::mma_gemv_normed(dx.f(), dnw.f(), 1e-6f, dwide.w, dy.f()));
    HostWeight hsmall = make_weight(WeightFormat::FP8, 512, 4096);
    DevWeight dsmall(hsmall.w);
    EXPECT_FALSE(cuda::mma_gemv_normed(dx.f(), dnw.f(), 1e-6f, dsmall.w, dy.f()));
    for (float v : dy.get<float>()) ASSERT_TRUE(std::isnan(v)) << "written by a refused launch";
}

// The tensor-core GEMV's split mode (any float32 x as two f16 terms) through linear_groups at one row,
// against the CPU linear per group: Flash and Pro wo_a, an FP4 weight, rows that leave a tile part-filled,
// x with wide-ranging magnitudes inside a block, a zero block and a tiny block. Its error must stay at
// float32 level: x as one f16 term (what dropping the lo terms leaves) is ≈ 2^-12 relative, far past the
// 1e-5 bar.
TEST_F(CudaOps, MmaGemvSplit) {
    struct Case {
        WeightFormat fmt;
        int64_t groups, rows, gin;
        ScaleKind sk;
    };
    const Case cases[] = {
        {WeightFormat::FP8, 8, 1024, 4096, ScaleKind::E8M0},  // Flash wo_a
        {WeightFormat::FP8, 8, 1024, 8192, ScaleKind::E8M0},  // k at the split mode's limit
        {WeightFormat::FP8, 8, 1536, 4096, ScaleKind::F32},   // Flash-Base scales
        {WeightFormat::FP8, 3, 48, 256, ScaleKind::E8M0},     // rows on 16 but not 128
        {WeightFormat::FP4, 2, 130, 1024, ScaleKind::E8M0},   // last tile two rows long
    };
    cuda::set_mma_gemv(2);  // the small cases too
    cuda::set_mma_split(true);
    for (const Case& c : cases)
        for (bool e4 : {false, true}) {  // FP4 decoded by shifts to f16, or through e4m3
            if (e4 && c.fmt != WeightFormat::FP4) continue;
            cuda::set_mma_fp4_e4m3(e4);
            SCOPED_TRACE(testing::Message() << "fmt " << int(c.fmt) << " groups " << c.groups << " rows " << c.rows
                                            << " gin " << c.gin << " e4m3 " << e4);
            HostWeight hw = make_weight(c.fmt, c.groups * c.rows, c.gin, c.sk);
            auto x = randn(size_t(c.groups * c.gin));
            for (size_t i = 0; i < x.size(); ++i) x[i] *= std::ldexp(1.f, int(i % 17) - 8);  // 2^-8 .. 2^8 in a block
            std::fill(x.begin(), x.begin() + 128, 0.f);                                      // a zero block
            for (int64_t i = 256; i < 384; ++i) x[size_t(i)] *= 1e-6f;                       // a tiny block
            const int64_t ny = c.groups * c.rows;
            std::vector<float> ref(static_cast<size_t>(ny));
            for (int64_t g = 0; g < c.groups; ++g)
                cpu::linear(x.data() + g * c.gin, 1, hw.w, g * c.rows, (g + 1) * c.rows, ref.data() + g * c.rows, ny);
            DevWeight dw(hw.w);
            Dev dx(x);
            Dev dy = poisoned(size_t(ny + 8));
            ASSERT_TRUE(cuda::mma_gemv_groups_split(dx.f(), dw.w, c.groups, c.rows, dy.f()));
            auto got = dy.get<float>();
            for (int64_t i = ny; i < ny + 8; ++i) EXPECT_TRUE(std::isnan(got[size_t(i)])) << "element " << i;
            got.resize(size_t(ny));
            EXPECT_REL(got, ref, 1e-5);
            // linear_groups at one row takes it (bitwise the same launch).
            Dev dy2 = poisoned(size_t(ny));
            ASSERT_TRUE(cuda::linear_groups(dx.f(), 1, c.groups * c.gin, dw.w, c.groups, c.rows, dy2.f(), ny));
            EXPECT_SAME_BITS(dy2.get<float>(), got);
        }
    cuda::set_mma_fp4_e4m3(false);
    // Declines: switched off, k past 8192, rows across a 16-row tile of two groups.
    cuda::set_mma_split(false);
    HostWeight hw = make_weight(WeightFormat::FP8, 8 * 1024, 4096);
    DevWeight dw(hw.w);
    Dev dx = poisoned(size_t(8 * 4096)), dy = poisoned(size_t(8 * 1024));
    EXPECT_FALSE(cuda::mma_gemv_groups_split(dx.f(), dw.w, 8, 1024, dy.f()));
    cuda::set_mma_split(true);
    HostWeight hk = make_weight(WeightFormat::FP8, 256, 16384);
    DevWeight dk(hk.w);
    Dev dxk = poisoned(size_t(16384));
    EXPECT_FALSE(cuda::mma_gemv_groups_split(dxk.f(), dk.w, 1, 256, dy.f()));
    EXPECT_FALSE(cuda::mma_gemv_groups_split(dx.f(), dw.w, 2, 24, dy.f()));
    cuda::set_mma_gemv(1);
}

// The routed experts with and without the tensor-core GEMV (act_quant'ed x, quantized h) agree with
// the CPU composition; with it off the multi-row GEMV runs.
TEST_F(CudaOps, MoeExpertsMmaOnOff) {
    RoutedExperts ex(WeightFormat::FP4, 2);
    for (int mode : {1, 2, 0}) {  // tensor-core GEMV (FP4 by shifts, through e4m3), off
        SCOPED_TRACE(testing::Message() << "mode " << mode);
        cuda::set_mma_gemv(mode ? 1 : 0);
        cuda::set_mma_fp4_e4m3(mode == 2);
        EXPECT_REL(ex.run(), ex.ref, 1e-5);
    }
    cuda::set_mma_gemv(1);
    cuda::set_mma_fp4_e4m3(false);
}

// The tensor-core GEMV's forced variants on the routed experts (FP4, E8M0 scales): 2 (scale bytes loaded
// ahead with the weights) and 4 (staged in shared memory) bitwise 1; 0 and 3 (other depths and blocks
// per SM) within the CPU bar.
TEST_F(CudaOps, MmaCfgVariants) {
    for (int64_t t : {1, 2}) {
        SCOPED_TRACE(testing::Message() << "t " << t);
        RoutedExperts ex(WeightFormat::FP4, t);
        std::vector<float> got[9];
        for (int cfg : {1, 2, 0, 3, 4, 5, 6, 7, 8}) {
            SCOPED_TRACE(testing::Message() << "cfg " << cfg);
            cuda::set_mma_cfg(cfg);
            got[cfg] = ex.run();
            EXPECT_REL(got[cfg], ex.ref, 1e-5);
        }
        cuda::set_mma_cfg(-1);
        EXPECT_SAME_BITS(got[2], got[1]);
        EXPECT_SAME_BITS(got[4], got[1]);
        EXPECT_SAME_BITS(got[5], got[1]);
        EXPECT_SAME_BITS(got[6], got[1]);
        EXPECT_SAME_BITS(got[7], got[0]);
        EXPECT_SAME_BITS(got[8], got[0]);
    }
}

// One activation row through each launch kind of the tensor-core GEMV that takes x as given: plain (rows
// n0.. of the weight; y poisoned 8 elements past its end), normed and split into two groups of half the
// rows, for tests that compare two settings bitwise. FP4 and FP8, E8M0 and F32 scales, the widest k, a row
// count that is not a multiple of 16; x's 128-blocks spread over many binades, one zero and one tiny.
struct MmaRowCase {
    WeightFormat fmt;
    int64_t n, k;
    ScaleKind sk;
};
const MmaRowCase kMmaRowCases[] = {
    {WeightFormat::FP4, 2048, 4096, ScaleKind::E8M0}, {WeightFormat::FP4, 1000, 2048, ScaleKind::F32},
    {WeightFormat::FP8, 4096, 8192, ScaleKind::E8M0}, {WeightFormat::FP8, 32768, 1024, ScaleKind::E8M0},
    {WeightFormat::FP8, 1024, 16384, ScaleKind::E8M0}, {WeightFormat::FP8, 640, 1536, ScaleKind::F32},
};
struct MmaRowLaunches {
    int64_t n, k;
    HostWeight hw;
    DevWeight dw;
    std::vector<float> ref;  // the CPU linear of act_quant(x)
    Dev dx, dq, dnw, dx2;
    static std::vector<float> spread_x(int64_t k) {
        auto x = randn(size_t(k));
        for (size_t i = 0; i < x.size(); ++i) x[i] *= std::ldexp(1.f, int(i % 23) - 11);
        std::fill(x.begin(), x.begin() + 128, 0.f);                           // a zero block
        for (int64_t i = 256; i < 384 && i < k; ++i) x[size_t(i)] *= 1e-30f;  // a tiny block
        return x;
    }
    static std::vector<float> quantized(std::vector<float> x) {
        cpu::act_quant(x.data(), 1, int64_t(x.size()), int64_t(x.size()), 128, true);
        return x;
    }
    explicit MmaRowLaunches(const MmaRowCase& cs, const std::vector<float>& x)
        : n(cs.n), k(cs.k), hw(make_weight(cs.fmt, cs.n, cs.k, cs.sk)), dw(hw.w), ref(size_t(cs.n)), dx(x),
          dq(quantized(x)), dnw(randn(size_t(cs.k))), dx2(randn(size_t(2 * cs.k))) {
        const auto xq = quantized(x);
        cpu::linear(xq.data(), 1, hw.w, 0, n, ref.data(), n);
    }
    explicit MmaRowLaunches(const MmaRowCase& cs) : MmaRowLaunches(cs, spread_x(cs.k)) {}
    std::vector<float> plain(int64_t n0 = 0) {
        Dev dy = poisoned(size_t(n + 8));
        EXPECT_TRUE(cuda::mma_gemv(dq.f(), dw.w, n0, n, dy.f()));
        return dy.get<float>();
    }
    // plain()'s rows against the CPU, and the poison past them.
    void check_plain(const std::vector<float>& got, int64_t n0 = 0) const {
        for (int64_t i = n - n0; i < n + 8; ++i) EXPECT_TRUE(std::isnan(got[size_t(i)])) << "element " << i;
        EXPECT_REL(std::vector<float>(got.begin(), got.begin() + (n - n0)),
                   std::vector<float>(ref.begin() + n0, ref.end()), 1e-5);
    }
    std::vector<float> normed() {
        Dev dy = poisoned(size_t(n));
        EXPECT_TRUE(cuda::mma_gemv_normed(dx.f(), dnw.f(), 1e-6f, dw.w, dy.f()));
        return dy.get<float>();
    }
    bool has_split() const { return k <= 8192 && n % 2 == 0; }
    std::vector<float> split() {  // two groups of half the rows (set_mma_split(true) first)
        Dev dy = poisoned(size_t(n));
        EXPECT_TRUE(cuda::mma_gemv_groups_split(dx2.f(), dw.w, 2, n / 2, dy.f()));
        return dy.get<float>();
    }
};

// x staged with redux maxima (set_mma_fast_stage) against the staging by shuffle trees, bitwise, through
// every launch kind that takes it: MmaRowLaunches' and one token's routed experts, under both register
// builds (cfg 1 and 0).
TEST_F(CudaOps, MmaFastStageMatches) {
    auto run = [](bool fast, int cfg, auto&& launch) {
        cuda::set_mma_fast_stage(fast);
        cuda::set_mma_cfg(cfg);
        auto out = launch();
        cuda::set_mma_fast_stage(true);  // the defaults
        cuda::set_mma_cfg(-1);
        return out;
    };
    cuda::set_mma_gemv(2);  // the small launches too
    for (const MmaRowCase& cs : kMmaRowCases) {
        SCOPED_TRACE(testing::Message() << "fmt " << int(cs.fmt) << " n " << cs.n << " k " << cs.k);
        MmaRowLaunches l(cs);
        for (int cfg : {1, 0}) {
            SCOPED_TRACE(testing::Message() << "cfg " << cfg);
            const auto fast = run(true, cfg, [&] { return l.plain(); });
            EXPECT_SAME_BITS(fast, run(false, cfg, [&] { return l.plain(); }));
            l.check_plain(fast);
            EXPECT_SAME_BITS(run(true, cfg, [&] { return l.normed(); }), run(false, cfg, [&] { return l.normed(); }));
            if (l.has_split()) {
                cuda::set_mma_split(true);
                EXPECT_SAME_BITS(run(true, cfg, [&] { return l.split(); }), run(false, cfg, [&] { return l.split(); }));
            }
        }
    }
    cuda::set_mma_split(true);  // the defaults
    cuda::set_mma_gemv(1);
    // One token's routed experts (the grouped launches with device job tables).
    RoutedExperts ex(WeightFormat::FP4, 1);
    auto experts = [&] { return ex.run(); };
    const auto fast = run(true, 1, experts);
    EXPECT_SAME_BITS(fast, run(false, 1, experts));
    EXPECT_REL(fast, ex.ref, 1e-5);
}

// Weights fed through shared memory by bulk copies (cfg 7 and 8) against the register build with the
// same warps per tile (cfg 0), bitwise, through every launch kind: one row (FP4 and FP8, E8M0 and F32
// scales, the widest k, a row count that is not a multiple of 16, a launch starting at row 16), the
// normed launch, the split launch, one token's routed experts (job tables) and several tokens' (launches
// that build their own jobs, FP4 and FP8). Then the per-launch choice (set_mma_bulk): taken by launches of
// at most the given blocks an SM only, bitwise the default's results.
TEST_F(CudaOps, MmaBulkMatches) {
    auto run = [](int cfg, auto&& launch) {
        cuda::set_mma_cfg(cfg);
        auto out = launch();
        cuda::set_mma_cfg(-1);
        return out;
    };
    const std::pair<int, int> pairs[] = {{7, 0}, {8, 0}};  // bulk, registers
    cuda::set_mma_gemv(2);  // the small launches too
    for (const MmaRowCase& cs : kMmaRowCases) {
        SCOPED_TRACE(testing::Message() << "fmt " << int(cs.fmt) << " n " << cs.n << " k " << cs.k);
        MmaRowLaunches l(cs);
        const int64_t n0 = cs.n > 64 ? 16 : 0;  // a launch that starts at row 16
        for (auto [bulk, regs] : pairs) {
            SCOPED_TRACE(testing::Message() << "cfg " << bulk << " against " << regs);
            const auto got = run(bulk, [&] { return l.plain(n0); });
            EXPECT_SAME_BITS(got, run(regs, [&] { return l.plain(n0); }));
            l.check_plain(got, n0);
            EXPECT_SAME_BITS(run(bulk, [&] { return l.normed(); }), run(regs, [&] { return l.normed(); }));
            if (l.has_split()) {
                cuda::set_mma_split(true);
                EXPECT_SAME_BITS(run(bulk, [&] { return l.split(); }), run(regs, [&] { return l.split(); }));
            }
        }
    }
    cuda::set_mma_gemv(1);  // the defaults
    for (WeightFormat fmt : {WeightFormat::FP4, WeightFormat::FP8})
        for (int64_t t : {1, 3}) {
            SCOPED_TRACE(testing::Message() << "experts fmt " << int(fmt) << " t " << t);
            RoutedExperts ex(fmt, t);
            auto experts = [&] { return ex.run(); };
            cuda::set_mma_moe(t > 1);  // several tokens: the launches that build their own jobs
            for (auto [bulk, regs] : pairs) {
                SCOPED_TRACE(testing::Message() << "cfg " << bulk << " against " << regs);
                const auto got = run(bulk, experts);
                EXPECT_SAME_BITS(got, run(regs, experts));
                EXPECT_REL(got, ex.ref, 1e-5);
            }
            cuda::set_mma_moe(false);
        }
    // The per-launch choice: wq_a-like [1024 x 4096] FP8 (64 tiles, one block each) takes it; wq_b-like
    // [32768 x 1024] (2048 tiles, at least 256 blocks) only with 2 blocks an SM allowed.
    for (int64_t n : {int64_t(1024), int64_t(32768)}) {
        SCOPED_TRACE(testing::Message() << "per launch, n " << n);
        MmaRowLaunches l({WeightFormat::FP8, n, n == 1024 ? 4096 : 1024, ScaleKind::E8M0});
        const auto def = l.plain();
        for (int bulk : {7, 8})
            for (int per_sm : {1, 9}) {
                cuda::set_mma_bulk(bulk, per_sm);
                const uint64_t before = cuda::mma_bulk_launches();
                EXPECT_SAME_BITS(l.plain(), def);
                EXPECT_EQ(cuda::mma_bulk_launches() - before, n == 1024 || per_sm == 9 ? 1u : 0u)
                    << "cfg " << bulk << " per SM " << per_sm;
                cuda::set_mma_bulk(0);
            }
    }
}

// Routed experts whose GEMV launches build their own jobs (and stage SwiGLU + act_quant in the down
// launch) against the job-table kernels, bitwise, and against the CPU composition: FP4 and FP8 experts,
// one and several tokens, with and without the combine's tail.
TEST_F(CudaOps, MoeJobsInLaunchMatchTables) {
    const int64_t d = 4096, hc = 4;
    for (WeightFormat fmt : {WeightFormat::FP4, WeightFormat::FP8})
        for (int64_t t : {1, 3}) {
            SCOPED_TRACE(testing::Message() << "fmt " << int(fmt) << " t " << t);
            RoutedExperts ex(fmt, t, d);
            auto add = randn(size_t(t * d)), res = randn(size_t(t * hc * d));
            auto post = randn(size_t(t * hc), 0.5f), comb = randn(size_t(t * hc * hc), 0.3f);
            Dev dadd(add), dres(res), dpost(post), dcomb(comb);
            cuda::MoeTail tail;
            tail.add = dadd.f();
            tail.res = dres.f();
            tail.post = dpost.f();
            tail.comb = dcomb.f();
            tail.hc = hc;
            std::vector<float> plain[2], tailed[2];
            for (int on : {0, 1}) {
                cuda::set_mma_moe(on == 1);
                plain[on] = ex.run();
                tailed[on] = ex.run(&tail, res.size());
            }
            cuda::set_mma_moe(false);
            EXPECT_SAME_BITS(plain[1], plain[0]);
            EXPECT_SAME_BITS(tailed[1], tailed[0]);
            EXPECT_REL(plain[1], ex.ref, 1e-5);
        }
}

// ---- Fused epilogues: bitwise the ops they replace ----

// head_post against rmsnorm / rope / hadamard / act_quant / fp4_quant run one after another, for each
// way the model uses it, plus shapes that take the unfused path.
TEST_F(CudaOps, HeadPostMatchesOps) {
    struct Case {
        const char* what;
        int64_t rows, dim, heads;
        bool norm, weighted, rope, inverse, hadamard;
        cuda::HeadPost::Quant quant;
        int64_t qcols, qblock;
        bool pow2;
    };
    using Q = cuda::HeadPost::Quant;
    const int64_t rd = 64;
    for (const Case& c : std::vector<Case>{
             {"q, decode", 64, 512, 64, true, false, true, false, false, Q::None, 0, 0, true},
             {"q, 3 tokens", 3 * 64, 512, 64, true, false, true, false, false, Q::None, 0, 0, true},
             {"window kv", 3, 512, 1, true, true, true, false, false, Q::E4m3, 448, 64, true},
             {"window kv, non-pow2 scales", 2, 512, 1, true, true, true, false, false, Q::E4m3, 448, 64, false},
             {"indexer q", 2 * 64, 128, 64, false, false, true, false, true, Q::Fp4, 0, 32, true},
             {"indexer entry", 1, 128, 1, true, true, true, false, true, Q::Fp4, 0, 32, true},
             {"compressed entry", 1, 512, 1, true, true, true, false, false, Q::E4m3, 448, 64, true},
             {"inverse rope only", 2 * 8, 512, 8, false, false, true, true, false, Q::None, 0, 0, true},
             {"norm + hadamard, 4096", 2, 4096, 1, true, true, false, false, true, Q::None, 0, 0, true},
             {"dim % 4 != 0: the ops", 3, 130, 1, true, true, false, false, false, Q::E4m3, 128, 64, true},
             {"qblock 96: the ops", 2, 768, 1, true, true, true, false, false, Q::E4m3, 672, 96, true}}) {
        SCOPED_TRACE(c.what);
        auto x = randn(size_t(c.rows * c.dim), 3.f), w = randn(size_t(c.dim));
        std::vector<float> freqs(size_t(rd / 2));
        for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = std::pow(10000.f, -2.f * float(i) / float(rd));
        const int64_t npos = c.rows / c.heads;
        std::vector<int64_t> pos(static_cast<size_t>(npos));
        for (int64_t i = 0; i < npos; ++i) pos[size_t(i)] = 7 + 40961 * i;
        Dev dw(w), df(freqs), dp(pos), dref(x), dgot(x);
        cuda::HeadPost hp;
        hp.norm = c.norm;
        hp.norm_w = c.weighted ? dw.f() : nullptr;
        hp.eps = 1e-6f;
        if (c.rope) {
            hp.pos = static_cast<const int64_t*>(dp.p);
            hp.freqs = df.f();
            hp.rope_dim = rd;
            hp.inverse = c.inverse;
            hp.heads = c.heads;
        }
        hp.hadamard = c.hadamard;
        hp.quant = c.quant;
        hp.qcols = c.qcols;
        hp.qblock = c.qblock;
        hp.pow2 = c.pow2;
        const ops::Backend& be = cuda::backend();
        if (c.norm) be.rmsnorm(dref.f(), c.rows, c.dim, hp.norm_w, 1e-6f, dref.f());
        if (c.rope) be.rope(dref.f(), npos, c.heads, c.dim, hp.pos, ops::RopeFreqs{df.f(), rd}, c.inverse);
        if (c.hadamard) be.hadamard(dref.f(), c.rows, c.dim);
        if (c.quant == Q::E4m3) be.act_quant(dref.f(), c.rows, c.qcols, c.dim, c.qblock, c.pow2);
        if (c.quant == Q::Fp4) be.fp4_quant(dref.f(), c.rows, c.dim, c.dim, c.qblock);
        cuda::head_post(dgot.f(), c.rows, c.dim, hp);
        const auto got = dgot.get<float>(), ref = dref.get<float>();
        EXPECT_SAME_BITS(got, ref);
        EXPECT_FALSE(same_bits(got, x)) << "nothing was applied";
    }
}

// compress_finish (pool, overlap shift and the entry's epilogue for several sequences in one launch)
// against compress_pool, the shift copies and head_post job by job: the Flash main compressor (ratio 4
// with overlap, FP8 entry), the indexer's (Hadamard + FP4) and a ratio-128 one (no overlap).
TEST_F(CudaOps, CompressFinishMatchesOps) {
    struct Case {
        const char* what;
        int64_t ratio, d;
        bool overlap, indexer;
    };
    using Q = cuda::HeadPost::Quant;
    const int64_t rd = 64;
    for (const Case& c : std::vector<Case>{{"main, ratio 4", 4, 512, true, false},
                                           {"indexer, ratio 4", 4, 128, true, true},
                                           {"main, ratio 128", 128, 512, false, false}}) {
        SCOPED_TRACE(c.what);
        const int64_t coff = c.overlap ? 2 : 1, width = coff * c.d, state = coff * c.ratio * width, jobs = 3;
        std::vector<float> freqs(size_t(rd / 2));
        for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = std::pow(10000.f, -2.f * float(i) / float(rd));
        auto kv = randn(size_t(jobs * state), 2.f), score = randn(size_t(jobs * state), 3.f);
        auto w = randn(size_t(c.d));
        Dev dw(w), df(freqs);
        Dev kv_ref(kv), sc_ref(score), kv_got(kv), sc_got(score);
        Dev out_ref = poisoned(size_t(jobs * c.d)), out_got = poisoned(size_t(jobs * c.d));
        cuda::HeadPost hp;
        hp.norm = true;
        hp.norm_w = dw.f();
        hp.eps = 1e-6f;
        hp.freqs = df.f();
        hp.rope_dim = rd;
        hp.hadamard = c.indexer;
        hp.quant = c.indexer ? Q::Fp4 : Q::E4m3;
        hp.qblock = c.indexer ? 32 : 64;
        hp.qcols = c.indexer ? 0 : c.d - rd;
        const std::vector<int64_t> first{0, 4096, 1000000};
        std::vector<cuda::CompressJob> hjobs;
        for (int64_t j = 0; j < jobs; ++j) {
            hjobs.push_back({kv_got.f() + j * state, sc_got.f() + j * state, out_got.f() + j * c.d, first[size_t(j)]});
            float *k = kv_ref.f() + j * state, *s = sc_ref.f() + j * state, *z = out_ref.f() + j * c.d;
            cuda::backend().compress_pool(k, s, c.ratio, c.d, c.overlap, z);
            if (c.overlap) {
                cuda::d2d(k, k + c.ratio * width, size_t(c.ratio * width) * 4);
                cuda::d2d(s, s + c.ratio * width, size_t(c.ratio * width) * 4);
            }
            Dev pos(std::vector<int64_t>{first[size_t(j)]});
            cuda::HeadPost one = hp;
            one.pos = static_cast<const int64_t*>(pos.p);
            cuda::head_post(z, 1, c.d, one);
            cuda::sync();
        }
        Dev djobs(hjobs);
        ASSERT_TRUE(cuda::compress_finish(static_cast<const cuda::CompressJob*>(djobs.p), jobs, c.ratio, c.d, c.overlap,
                                          hp, true));
        EXPECT_SAME_BITS(out_got.get<float>(), out_ref.get<float>());
        EXPECT_SAME_BITS(kv_got.get<float>(), kv_ref.get<float>());
        EXPECT_SAME_BITS(sc_got.get<float>(), sc_ref.get<float>());
        // The pooled entry against the CPU op (before its epilogue): the job's first one.
        std::vector<float> z(size_t(c.d));
        cpu::compress_pool(kv.data(), score.data(), c.ratio, c.d, c.overlap, z.data());
        Dev zc = poisoned(size_t(c.d));
        Dev k0(std::vector<float>(kv.begin(), kv.begin() + state)),
            s0(std::vector<float>(score.begin(), score.begin() + state));
        cuda::backend().compress_pool(k0.f(), s0.f(), c.ratio, c.d, c.overlap, zc.f());
        EXPECT_REL(zc.get<float>(), z, 1e-6);
    }
}

// swiglu_act_quant against swiglu then act_quant: the routed experts' (routing weights, limit) and the
// shared expert's (neither) uses, a partial last block, non-pow2 scales, a block too wide to fuse.
TEST_F(CudaOps, SwigluActQuantMatchesOps) {
    struct Case {
        int64_t rows, n, ld, block;
        float limit;
        bool row_w, pow2;
    };
    for (const Case& c : std::vector<Case>{{6, 2048, 4096, 128, 10.f, true, true},
                                           {1, 2048, 4096, 128, 0.f, false, true},
                                           {5, 1000, 2000, 128, 10.f, true, true},
                                           {3, 512, 1024, 64, 10.f, false, false},
                                           {2, 768, 1536, 256, 10.f, true, true}}) {
        SCOPED_TRACE(testing::Message() << "rows " << c.rows << " n " << c.n << " block " << c.block);
        auto gu = randn(size_t(c.rows * c.ld), 4.f), rw = randn(size_t(c.rows), 0.5f);
        Dev dgu(gu), drw(rw);
        const float* rwp = c.row_w ? drw.f() : nullptr;
        Dev dref = poisoned(size_t(c.rows * c.n)), dgot = poisoned(size_t(c.rows * c.n));
        cuda::backend().swiglu(dgu.f(), dgu.f() + c.ld / 2, c.ld, c.rows, c.n, c.limit, rwp, dref.f());
        cuda::backend().act_quant(dref.f(), c.rows, c.n, c.n, c.block, c.pow2);
        cuda::swiglu_act_quant(dgu.f(), dgu.f() + c.ld / 2, c.ld, c.rows, c.n, c.limit, rwp, dgot.f(), c.block, c.pow2);
        const auto got = dgot.get<float>();
        EXPECT_SAME_BITS(got, dref.get<float>());
        for (float v : got) ASSERT_FALSE(std::isnan(v));
    }
}

// hc_post_pre against hc_post then hc_pre, with post/comb both read and overwritten (as the model
// calls it), at decode sizes (folded) and above (the two ops).
TEST_F(CudaOps, HcPostPreMatchesOps) {
    const int64_t hc = 4, mix = 24, d = 4096;
    for (int64_t t : {int64_t(1), int64_t(3), int64_t(40)}) {
        SCOPED_TRACE(testing::Message() << "t " << t);
        auto f = randn(size_t(t * d)), res = randn(size_t(t * hc * d)), fn = randn(size_t(mix * hc * d), 0.02f);
        auto post = randn(size_t(t * hc), 0.5f), comb = randn(size_t(t * hc * hc), 0.3f);
        std::vector<float> scale = {0.5f, 0.7f, 0.9f};
        auto base = randn(size_t(mix), 0.5f);
        Dev df(f), dres(res), dfn(fn), ds(scale), db(base);
        std::vector<float> out[2], y[2], po[2], co[2];
        for (int fused = 0; fused < 2; ++fused) {
            Dev dpost(post), dcomb(comb), dout = poisoned(res.size()), dy = poisoned(f.size());
            if (fused) {
                cuda::hc_post_pre(df.f(), dres.f(), dpost.f(), dcomb.f(), t, hc, d, dout.f(), dfn.f(), ds.f(), db.f(),
                                  20, 1e-6f, 1e-6f, dy.f(), dpost.f(), dcomb.f());
            } else {
                cuda::backend().hc_post(df.f(), dres.f(), dpost.f(), dcomb.f(), t, hc, d, dout.f());
                cuda::backend().hc_pre(dout.f(), t, hc, d, dfn.f(), ds.f(), db.f(), 20, 1e-6f, 1e-6f, dy.f(), dpost.f(),
                                       dcomb.f());
            }
            out[fused] = dout.get<float>();
            y[fused] = dy.get<float>();
            po[fused] = dpost.get<float>();
            co[fused] = dcomb.get<float>();
        }
        EXPECT_SAME_BITS(out[1], out[0]);
        EXPECT_SAME_BITS(y[1], y[0]);
        EXPECT_SAME_BITS(po[1], po[0]);
        EXPECT_SAME_BITS(co[1], co[0]);
        EXPECT_FALSE(same_bits(po[0], post)) << "hc_pre did not write post";
    }
}

// moe_experts with a tail (the shared expert's add and hc_post folded into the combine) against
// moe_experts, add and hc_post one by one: decode (grouped GEMVs) and prefill (sorted) sizes.
TEST_F(CudaOps, MoeTailMatchesOps) {
    const int64_t hc = 4, k = 6;
    struct Case {
        int64_t t, d, inter, ne;
    };
    for (const Case& c : std::vector<Case>{{2, 4096, 2048, 8}, {400, 256, 128, 16}}) {
        SCOPED_TRACE(testing::Message() << "t " << c.t);
        MoeData md = make_moe_data(c.t, c.d, c.inter, c.ne, k, WeightFormat::FP4);
        {
            cuda::ExpertTable table(md.dev);
            Dev dx(md.x), di(md.ids), dw(md.w);
            auto add = randn(size_t(c.t * c.d)), res = randn(size_t(c.t * hc * c.d));
            auto post = randn(size_t(c.t * hc), 0.5f), comb = randn(size_t(c.t * hc * hc), 0.3f);
            Dev dadd(add), dres(res), dpost(post), dcomb(comb);
            Dev df = poisoned(size_t(c.t * c.d)), dref = poisoned(res.size()), dgot = poisoned(res.size());
            cuda::moe_experts(table, dx.f(), true, c.t, c.d, c.inter, di.i(), dw.f(), k, 10.f, true, df.f());
            cuda::add(df.f(), dadd.f(), c.t * c.d);
            cuda::backend().hc_post(df.f(), dres.f(), dpost.f(), dcomb.f(), c.t, hc, c.d, dref.f());
            int called = 0;
            cuda::MoeTail tail;
            tail.before_combine = [&] { ++called; };
            tail.add = dadd.f();
            tail.res = dres.f();
            tail.post = dpost.f();
            tail.comb = dcomb.f();
            tail.hc = hc;
            cuda::moe_experts(table, dx.f(), true, c.t, c.d, c.inter, di.i(), dw.f(), k, 10.f, true, dgot.f(), &tail);
            EXPECT_EQ(called, 1);
            const auto got = dgot.get<float>();
            EXPECT_SAME_BITS(got, dref.get<float>());
            for (float v : got) ASSERT_FALSE(std::isnan(v));
        }
        free_moe_weights(md);
    }
}

// sparse_attn_rows with the output's inverse RoPE in its merge kernel against the same call without it
// followed by the op table's rope (inverse), over pointer tables and query rows as the model's batched
// decode uses them; a query with no keys stays zero.
TEST_F(CudaOps, AttentionOutRopeMatchesOps) {
    const int64_t h = 64, d = 512, na = 128, nb = 256, nk = 300, rd = 64, rows = 3;
    const int64_t t = 3;  // queries at rows 2, 0 and 1 of the output
    auto q = randn(size_t(rows * h * d), 0.3f), kva = randn(size_t(na * d)), kvb = randn(size_t(nb * d));
    auto sink = randn(static_cast<size_t>(h));
    std::vector<int32_t> idx(size_t(t * nk));
    std::uniform_int_distribution<int32_t> pick(0, int32_t(na + nb - 1));
    for (auto& v : idx) v = pick(rng());
    std::fill(idx.begin() + nk, idx.begin() + 2 * nk, -1);  // the second query attends nothing
    std::vector<int32_t> qrow = {2, 0, 1};
    std::vector<int64_t> pos = {11, 5000, 777777};
    std::vector<float> freqs(size_t(rd / 2));
    for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = std::pow(10000.f, -2.f * float(i) / float(rd));
    Dev dq(q), da(kva), db(kvb), di(idx), dsk(sink), dqr(qrow), dp(pos), df(freqs);
    std::vector<const float*> ar = {da.f(), da.f(), da.f()}, br = {db.f(), db.f(), db.f()};
    Dev dar(ar), dbr(br);
    const auto* a_rows = static_cast<const float* const*>(dar.p);
    const auto* b_rows = static_cast<const float* const*>(dbr.p);
    const ops::RopeFreqs rf{df.f(), rd};
    const auto* pos_d = static_cast<const int64_t*>(dp.p);
    const float scale = 1.f / std::sqrt(float(d));
    Dev dref(std::vector<float>(size_t(rows * h * d), 0.f)), dgot(std::vector<float>(size_t(rows * h * d), 0.f));
    cuda::sparse_attn_rows(dq.f(), t, h, d, nullptr, na, nullptr, di.i(), nk, dsk.f(), scale, dref.f(), a_rows, b_rows,
                           dqr.i());
    cuda::backend().rope(dref.f(), rows, h, d, pos_d, rf, true);
    cuda::sparse_attn_rows(dq.f(), t, h, d, nullptr, na, nullptr, di.i(), nk, dsk.f(), scale, dgot.f(), a_rows, b_rows,
                           dqr.i(), pos_d, &rf);
    const auto got = dgot.get<float>(), ref = dref.get<float>();
    EXPECT_SAME_BITS(got, ref);
    for (int64_t r = 0; r < rows; ++r) {
        int64_t n = 0;
        for (int64_t c = 0; c < h * d; ++c)
            n += std::memcmp(&got[size_t(r * h * d + c)], &ref[size_t(r * h * d + c)], 4) != 0;
        EXPECT_EQ(n, 0) << "row " << r << ": elements that differ";
    }
    for (int64_t c = 0; c < h * d; ++c) ASSERT_EQ(got[size_t(c)], 0.f) << "row 0 (no keys) at " << c;
    bool moved = false;
    for (int64_t c = 0; c < h * d; ++c) moved = moved || got[size_t(2 * h * d + c)] != 0.f;
    EXPECT_TRUE(moved);
}
