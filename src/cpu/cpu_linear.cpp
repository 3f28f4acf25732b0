// CPU GEMM with weights decoded on the fly from their stored format (FP8/FP4/BF16/F32).
// Each thread owns a range of output columns; it decodes one weight row at a time into a small
// buffer and dots it with every activation row, so a call reads each weight byte once.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/dtype.h"
#include "cpu/cpu_ops.h"

namespace dsinfer::cpu {

using ops::ScaleKind;
using ops::Weight;
using ops::WeightFormat;

namespace {

inline float scale_value(const Weight& w, int64_t r, int64_t c) {
    if (w.scale_kind == ScaleKind::E8M0) return e8m0_to_f32(static_cast<const uint8_t*>(w.scale)[r * w.scale_cols + c]);
    return static_cast<const float*>(w.scale)[r * w.scale_cols + c];
}

// Decodes logical row `n` of w into out[k].
}  // namespace

void linear_row_decode(const Weight& w, int64_t n, float* out) {
    const int64_t k = w.k;
    switch (w.fmt) {
        case WeightFormat::F32: {
            const float* src = static_cast<const float*>(w.data) + n * k;
            std::copy(src, src + k, out);
            break;
        }
        case WeightFormat::BF16: {
            const uint16_t* src = static_cast<const uint16_t*>(w.data) + n * k;
            for (int64_t i = 0; i < k; ++i) out[i] = bf16_to_f32(src[i]);
            break;
        }
        case WeightFormat::FP8: {
            const uint8_t* src = static_cast<const uint8_t*>(w.data) + n * k;
            const float* table = e4m3_table();
            const int64_t sr = n / 128;
            for (int64_t kb = 0; kb * 128 < k; ++kb) {
                const float s = scale_value(w, sr, kb);
                const int64_t end = std::min<int64_t>(k, (kb + 1) * 128);
                for (int64_t i = kb * 128; i < end; ++i) out[i] = table[src[i]] * s;
            }
            break;
        }
        case WeightFormat::FP4: {
            static const float kE2m1[16] = {0.f,  0.5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                            -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
            const uint8_t* src = static_cast<const uint8_t*>(w.data) + n * (k / 2);
            for (int64_t kb = 0; kb * 32 < k; ++kb) {
                const float s = scale_value(w, n, kb);
                const int64_t end = std::min<int64_t>(k, (kb + 1) * 32);
                for (int64_t i = kb * 32; i < end; i += 2) {
                    const uint8_t b = src[i >> 1];
                    out[i] = kE2m1[b & 0xf] * s;
                    out[i + 1] = kE2m1[b >> 4] * s;
                }
            }
            break;
        }
    }
}

// Fixed-order dot product: 16 partial sums over k, then a fixed reduction tree. The order depends
// only on k, never on how many rows a call has (batch invariance).
float dot(const float* a, const float* b, int64_t k) {
    float acc[16] = {};
    int64_t i = 0;
    for (; i + 16 <= k; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i < k; ++i, ++j) acc[j] += a[i] * b[i];
    for (int w = 8; w >= 1; w >>= 1)
        for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
    return acc[0];
}

void linear(const float* x, int64_t m, const Weight& w, int64_t n0, int64_t n1, float* y, int64_t ldy) {
    const int64_t k = w.k;
    const int64_t nn = n1 - n0;
    if (nn <= 0 || m <= 0) return;
    // Four weight rows per step: each activation row is read once per four outputs.
    constexpr int64_t kRows = 4;
    const int64_t nblocks = (nn + kRows - 1) / kRows;
#pragma omp parallel if (m * nn * k > (1 << 18))
    {
        std::vector<float> buf(static_cast<size_t>(kRows * k));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t r0 = n0 + b * kRows;
            const int64_t rc = std::min<int64_t>(kRows, n1 - r0);
            for (int64_t r = 0; r < rc; ++r) linear_row_decode(w, r0 + r, buf.data() + r * k);
            for (int64_t i = 0; i < m; ++i) {
                const float* xi = x + i * k;
                float* yi = y + i * ldy + (r0 - n0);
                for (int64_t r = 0; r < rc; ++r) yi[r] = dot(xi, buf.data() + r * k, k);
            }
        }
    }
}

}  // namespace dsinfer::cpu
