// CPU GEMM with weights decoded on the fly from their stored format (FP8/FP4/BF16/F32).
//
// Every output y[i, r] is a dot product over k with a fixed order: 16 lanes, lane j accumulating
// the products of elements j, j+16, j+32, ... in increasing order, then a fixed reduction tree.
// The order never depends on how many rows a call has, so batched and single rows agree bitwise.
// Weights are decoded 16 elements at a time with bit operations (exact, vectorisable); a call reads
// each weight byte once (rows of a small batch are all served by each decoded weight vector; larger
// batches decode a panel of four weight rows into a per-thread buffer and tile over the rows).
#include <omp.h>
#ifdef __AVX512F__
// GCC 12 reports its own _mm512_undefined_* helpers as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "cpu/cpu_ops.h"

namespace dsinfer::cpu {

using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

namespace {

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint8_t v16b __attribute__((vector_size(16)));
typedef uint16_t v16h __attribute__((vector_size(32)));

inline v16f load16(const float* p) {
    v16f v;
    std::memcpy(&v, p, 64);
    return v;
}
inline v16f bits_to_float(v16u u) {
    v16f f;
    std::memcpy(&f, &u, 64);
    return f;
}
// Lanes [0, n) from p, the rest zero.
inline v16f load_partial(const float* p, int64_t n) {
    float t[16] = {};
    std::memcpy(t, p, size_t(n) * 4);
    return load16(t);
}

struct E8m0Table {
    float v[256];
    E8m0Table() {
        for (int i = 0; i < 256; ++i) v[i] = e8m0_to_f32(uint8_t(i));
    }
};
const E8m0Table kE8m0;

inline float scale_value(const Weight& w, int64_t r, int64_t c) {
    if (w.scale_kind == ScaleKind::E8M0) return kE8m0.v[static_cast<const uint8_t*>(w.scale)[r * w.scale_cols + c]];
    return static_cast<const float*>(w.scale)[r * w.scale_cols + c];
}

// e4m3 bytes → float: the 7 magnitude bits placed at the top of an f32 mantissa/exponent give
// 2^(e-127)·(1+m/8) (or the subnormal m/8·2^-126 for e = 0); times 2^120 that is the e4m3 value.
// Packed e2m1 (element 2j in the low nibble of byte j): the same trick with 2^126.
#ifdef __AVX512F__
inline v16f bits_to_float(__m512i b) { return (v16f)_mm512_castsi512_ps(b); }
inline v16f decode_fp8(const uint8_t* p) {
    const __m512i u = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x7f)), 20),
                                         _mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(0x80)), 24));
    return bits_to_float(bits) * 0x1p120f;
}
inline v16f decode_fp4(const uint8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m128i dup = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
    __m512i u = _mm512_cvtepu8_epi32(dup);
    u = _mm512_and_si512(_mm512_srlv_epi32(u, _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4)),
                         _mm512_set1_epi32(0xf));
    const __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(7)), 22),
                                         _mm512_slli_epi32(_mm512_and_si512(u, _mm512_set1_epi32(8)), 28));
    return bits_to_float(bits) * 0x1p126f;
}
inline v16f decode_bf16(const uint16_t* p) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return bits_to_float(_mm512_slli_epi32(u, 16));
}
#else
inline v16f decode_fp8(const uint8_t* p) {
    v16b b;
    std::memcpy(&b, p, 16);
    v16u u = __builtin_convertvector(b, v16u);
    v16u bits = ((u & 0x7fu) << 20) | ((u & 0x80u) << 24);
    return bits_to_float(bits) * 0x1p120f;
}
inline v16f decode_fp4(const uint8_t* p) {
    typedef uint8_t v8b __attribute__((vector_size(8)));
    v8b b8;
    std::memcpy(&b8, p, 8);
    v16b b = __builtin_shufflevector(b8, b8, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    v16u u = __builtin_convertvector(b, v16u);
    const v16u shift = {0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4};
    u = (u >> shift) & 0xfu;
    v16u bits = ((u & 7u) << 22) | ((u & 8u) << 28);
    return bits_to_float(bits) * 0x1p126f;
}
inline v16f decode_bf16(const uint16_t* p) {
    v16h h;
    std::memcpy(&h, p, 32);
    return bits_to_float(__builtin_convertvector(h, v16u) << 16);
}
#endif

// Weight elements [i, i+16) of row n (i a multiple of 16, i + 16 <= k).
template <WeightFormat F>
inline v16f weight_vec_t(const Weight& w, int64_t n, int64_t i) {
    if constexpr (F == WeightFormat::F32) return load16(static_cast<const float*>(w.data) + n * w.k + i);
    if constexpr (F == WeightFormat::BF16) return decode_bf16(static_cast<const uint16_t*>(w.data) + n * w.k + i);
    if constexpr (F == WeightFormat::FP8)
        return decode_fp8(static_cast<const uint8_t*>(w.data) + n * w.k + i) * scale_value(w, n / 128, i / 128);
    if constexpr (F == WeightFormat::FP4)
        return decode_fp4(static_cast<const uint8_t*>(w.data) + n * (w.k / 2) + i / 2) * scale_value(w, n, i / 32);
    return v16f{};
}
inline v16f weight_vec(const Weight& w, int64_t n, int64_t i) {
    switch (w.fmt) {
        case WeightFormat::F32: return weight_vec_t<WeightFormat::F32>(w, n, i);
        case WeightFormat::BF16: return weight_vec_t<WeightFormat::BF16>(w, n, i);
        case WeightFormat::FP8: return weight_vec_t<WeightFormat::FP8>(w, n, i);
        case WeightFormat::FP4: return weight_vec_t<WeightFormat::FP4>(w, n, i);
    }
    return v16f{};
}

inline float reduce16(v16f acc) {
    float a[16];
    for (int j = 0; j < 16; ++j) a[j] = acc[j];
    for (int w = 8; w >= 1; w >>= 1)
        for (int j = 0; j < w; ++j) a[j] += a[j + w];
    return a[0];
}

}  // namespace

void linear_row_decode(const Weight& w, int64_t n, float* out) {
    const int64_t k = w.k;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        v16f v = weight_vec(w, n, i);
        std::memcpy(out + i, &v, 64);
    }
    for (; i < k; ++i) {  // tail (k not a multiple of 16)
        switch (w.fmt) {
            case WeightFormat::F32: out[i] = static_cast<const float*>(w.data)[n * k + i]; break;
            case WeightFormat::BF16: out[i] = bf16_to_f32(static_cast<const uint16_t*>(w.data)[n * k + i]); break;
            case WeightFormat::FP8:
                out[i] = e4m3_to_f32(static_cast<const uint8_t*>(w.data)[n * k + i]) * scale_value(w, n / 128, i / 128);
                break;
            case WeightFormat::FP4:
                out[i] = e2m1_to_f32(fp4_nibble(static_cast<const uint8_t*>(w.data) + n * (k / 2), size_t(i))) *
                         scale_value(w, n, i / 32);
                break;
        }
    }
}

float dot(const float* a, const float* b, int64_t k) {
    v16f acc = {};
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) acc += load16(a + i) * load16(b + i);
    if (i < k) acc += load_partial(a + i, k - i) * load_partial(b + i, k - i);
    return reduce16(acc);
}

namespace {

constexpr int64_t kSmallM = 4;  // up to this many rows: decode each weight vector once, use it for all rows
constexpr int64_t kPanel = 4;   // weight rows decoded together for larger batches

// y[0:M, r] for weight row n, decoding each weight vector once for the M rows (M <= kSmallM).
template <WeightFormat F, int M>
void rows_small(const float* x, const Weight& w, int64_t n, float* y, int64_t ldy) {
    const int64_t k = w.k;
    v16f acc[M] = {};
    int64_t i = 0;
    const int64_t kfull = k & ~int64_t(15);
    // Blocks of 32 (one FP4 scale, a quarter of an FP8 scale): the scale is read once per block.
    for (; i + 32 <= kfull; i += 32) {
        const v16f w0 = weight_vec_t<F>(w, n, i), w1 = weight_vec_t<F>(w, n, i + 16);
        for (int r = 0; r < M; ++r) {
            acc[r] += load16(x + r * k + i) * w0;
            acc[r] += load16(x + r * k + i + 16) * w1;
        }
    }
    for (; i < kfull; i += 16) {
        const v16f wv = weight_vec_t<F>(w, n, i);
        for (int r = 0; r < M; ++r) acc[r] += load16(x + r * k + i) * wv;
    }
    if (i < k) {  // tail: k not a multiple of 16
        std::vector<float> row(static_cast<size_t>(k));
        linear_row_decode(w, n, row.data());
        const v16f wv = load_partial(row.data() + i, k - i);
        for (int r = 0; r < M; ++r) acc[r] += load_partial(x + r * k + i, k - i) * wv;
    }
    for (int r = 0; r < M; ++r) y[r * ldy] = reduce16(acc[r]);
}

template <WeightFormat F>
void linear_small(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t work = m * (n1 - n0) * w.k;
#pragma omp parallel for schedule(static) if (work > (1 << 21))
    for (int64_t r = n0; r < n1; ++r) {
        float* yr = y + (r - n0);
        switch (m) {
            case 1: rows_small<F, 1>(x, w, r, yr, ldy); break;
            case 2: rows_small<F, 2>(x, w, r, yr, ldy); break;
            case 3: rows_small<F, 3>(x, w, r, yr, ldy); break;
            default: rows_small<F, 4>(x, w, r, yr, ldy); break;
        }
    }
}

// 4x4 tile: rows x[0:4] against decoded weight rows b[0:4] (each of length k).
void tile4x4(const float* x, int64_t k, const float* b, float* y, int64_t ldy) {
    v16f acc[4][4] = {};
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        v16f xv[4], wv[4];
        for (int r = 0; r < 4; ++r) xv[r] = load16(x + r * k + i);
        for (int c = 0; c < 4; ++c) wv[c] = load16(b + c * k + i);
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) acc[r][c] += xv[r] * wv[c];
    }
    if (i < k)
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) acc[r][c] += load_partial(x + r * k + i, k - i) * load_partial(b + c * k + i, k - i);
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) y[r * ldy + c] = reduce16(acc[r][c]);
}

}  // namespace

void linear(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t k = w.k;
    const int64_t nn = n1 - n0;
    if (nn <= 0 || m <= 0) return;
    if (m <= kSmallM) {
        switch (w.fmt) {
            case WeightFormat::F32: linear_small<WeightFormat::F32>(x, m, w, n0, n1, y, ldy); break;
            case WeightFormat::BF16: linear_small<WeightFormat::BF16>(x, m, w, n0, n1, y, ldy); break;
            case WeightFormat::FP8: linear_small<WeightFormat::FP8>(x, m, w, n0, n1, y, ldy); break;
            case WeightFormat::FP4: linear_small<WeightFormat::FP4>(x, m, w, n0, n1, y, ldy); break;
        }
        return;
    }
    const int64_t npanels = (nn + kPanel - 1) / kPanel;
#pragma omp parallel if (m * nn * k > (1 << 21))
    {
        std::vector<float> buf(static_cast<size_t>(kPanel * k));
#pragma omp for schedule(static)
        for (int64_t pnl = 0; pnl < npanels; ++pnl) {
            const int64_t r0 = n0 + pnl * kPanel;
            const int64_t rc = std::min<int64_t>(kPanel, n1 - r0);
            for (int64_t r = 0; r < rc; ++r) linear_row_decode(w, r0 + r, buf.data() + r * k);
            int64_t i = 0;
            if (rc == kPanel)
                for (; i + 4 <= m; i += 4) tile4x4(x + i * k, k, buf.data(), y + i * ldy + (r0 - n0), ldy);
            for (; i < m; ++i)
                for (int64_t r = 0; r < rc; ++r) y[i * ldy + (r0 - n0) + r] = dot(x + i * k, buf.data() + r * k, k);
        }
    }
}

}  // namespace dsinfer::cpu
