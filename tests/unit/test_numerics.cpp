// Number formats everything stands on (dsv4-model.md §3): e4m3, e8m0, e2m1 decode and encode for
// every code, rounding ties, saturation, FP4 nibble order, pow2ceil.
#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"

using namespace dsinfer;

namespace {
// Independent decode from the bit fields of §3.1.
double e4m3_ref(int b) {
    const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double v = e == 0 ? (m / 8.0) * std::ldexp(1.0, -6) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
    return s ? -v : v;
}
}  // namespace

TEST(E4M3, DecodesEveryCode) {
    for (int b = 0; b < 256; ++b) {
        if ((b & 0x7f) == 0x7f) {
            EXPECT_TRUE(std::isnan(e4m3_to_f32(uint8_t(b)))) << b;
            continue;
        }
        EXPECT_EQ(double(e4m3_to_f32(uint8_t(b))), e4m3_ref(b)) << b;
        EXPECT_EQ(e4m3_table()[b], e4m3_to_f32(uint8_t(b)));
    }
    EXPECT_EQ(e4m3_to_f32(0x7e), 448.f);
    EXPECT_EQ(e4m3_to_f32(0x01), std::ldexp(1.f, -9));
}

TEST(E4M3, EncodeRoundTripsEveryCode) {
    for (int b = 0; b < 256; ++b) {
        if ((b & 0x7f) == 0x7f) continue;
        EXPECT_EQ(int(f32_to_e4m3(e4m3_to_f32(uint8_t(b)))), b) << b;
    }
}

TEST(E4M3, RoundsToNearestTiesToEven) {
    // Midpoints between every pair of adjacent positive codes go to the code with even mantissa.
    for (int b = 0; b < 0x7e; ++b) {
        const double lo = e4m3_ref(b), hi = e4m3_ref(b + 1);
        const float mid = float((lo + hi) / 2);
        const int expect = (b % 2 == 0) ? b : b + 1;
        EXPECT_EQ(int(f32_to_e4m3(mid)), expect) << "between " << lo << " and " << hi;
        EXPECT_EQ(int(f32_to_e4m3(-mid)), expect | 0x80);
        // Just off the midpoint: nearest.
        EXPECT_EQ(int(f32_to_e4m3(std::nextafter(mid, 0.f))), b);
        EXPECT_EQ(int(f32_to_e4m3(std::nextafter(mid, 1000.f))), b + 1);
    }
}

TEST(E4M3, Saturates) {
    EXPECT_EQ(f32_to_e4m3(448.f), 0x7e);
    EXPECT_EQ(f32_to_e4m3(464.f), 0x7e);  // the midpoint to the (absent) next code
    EXPECT_EQ(f32_to_e4m3(1e9f), 0x7e);
    EXPECT_EQ(f32_to_e4m3(-1e9f), 0xfe);
    EXPECT_EQ(f32_to_e4m3(INFINITY), 0x7e);
    EXPECT_EQ(f32_to_e4m3(0.f), 0x00);
    EXPECT_EQ(f32_to_e4m3(std::ldexp(1.f, -11)), 0x00);  // below half the smallest subnormal
}

TEST(E8M0, Decodes) {
    EXPECT_EQ(e8m0_to_f32(127), 1.f);
    EXPECT_EQ(e8m0_to_f32(128), 2.f);
    EXPECT_EQ(e8m0_to_f32(120), 1.f / 128);
    EXPECT_EQ(e8m0_to_f32(254), std::ldexp(1.f, 127));
    EXPECT_EQ(e8m0_to_f32(1), std::ldexp(1.f, -126));
    EXPECT_EQ(e8m0_to_f32(0), std::ldexp(1.f, -127));
    EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
    for (int b = 1; b < 255; ++b) EXPECT_EQ(e8m0_to_f32(uint8_t(b)), std::ldexp(1.f, b - 127));
}

TEST(E2M1, DecodesEveryCode) {
    const float mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    for (int c = 0; c < 16; ++c) EXPECT_EQ(e2m1_to_f32(uint8_t(c)), (c & 8 ? -1.f : 1.f) * mag[c & 7]) << c;
    EXPECT_EQ(e2m1_to_f32(8), 0.f);  // −0 decodes as zero
    for (int c = 0; c < 16; ++c) {
        if (c == 8) continue;
        EXPECT_EQ(int(f32_to_e2m1(e2m1_to_f32(uint8_t(c)))), c) << c;
    }
}

TEST(E2M1, TiesToEvenAndSaturates) {
    // Midpoints: 0.25→0, 0.75→1, 1.25→1, 1.75→2, 2.5→2, 3.5→4, 5→4.
    EXPECT_EQ(round_e2m1(0.25f), 0.f);
    EXPECT_EQ(round_e2m1(0.75f), 1.f);
    EXPECT_EQ(round_e2m1(1.25f), 1.f);
    EXPECT_EQ(round_e2m1(1.75f), 2.f);
    EXPECT_EQ(round_e2m1(2.5f), 2.f);
    EXPECT_EQ(round_e2m1(3.5f), 4.f);
    EXPECT_EQ(round_e2m1(5.f), 4.f);
    EXPECT_EQ(round_e2m1(-5.f), -4.f);
    EXPECT_EQ(round_e2m1(0.26f), 0.5f);
    EXPECT_EQ(round_e2m1(5.01f), 6.f);
    EXPECT_EQ(round_e2m1(6.f), 6.f);
    EXPECT_EQ(round_e2m1(7.f), 6.f);
    EXPECT_EQ(round_e2m1(1e9f), 6.f);
    EXPECT_EQ(round_e2m1(-1e9f), -6.f);
}

TEST(E2M1, NibbleOrderLowFirst) {
    const uint8_t row[2] = {0x21, 0xf9};  // elements: 1, 2, 9, 15
    EXPECT_EQ(fp4_nibble(row, 0), 1);
    EXPECT_EQ(fp4_nibble(row, 1), 2);
    EXPECT_EQ(fp4_nibble(row, 2), 9);
    EXPECT_EQ(fp4_nibble(row, 3), 15);
    EXPECT_EQ(e2m1_to_f32(fp4_nibble(row, 3)), -6.f);
}

TEST(Pow2Ceil, RoundsUpToPowersOfTwo) {
    EXPECT_EQ(pow2ceil(1.f), 1.f);
    EXPECT_EQ(pow2ceil(1.5f), 2.f);
    EXPECT_EQ(pow2ceil(0.3f), 0.5f);
    EXPECT_EQ(pow2ceil(std::nextafter(2.f, 3.f)), 4.f);
    EXPECT_EQ(pow2ceil(std::ldexp(1.f, -20)), std::ldexp(1.f, -20));
    EXPECT_EQ(pow2ceil(1e-4f / 448.f), std::ldexp(1.f, -22));  // the smallest activation scale
    for (int e = -30; e < 30; ++e) {
        const float p = std::ldexp(1.f, e);
        EXPECT_EQ(pow2ceil(p), p);
        EXPECT_EQ(pow2ceil(p * 1.0001f), 2 * p);
    }
}

TEST(BF16, RoundsToNearestEven) {
    EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.f)), 1.f);
    EXPECT_EQ(round_bf16(1.f + std::ldexp(1.f, -8)), 1.f);  // tie → even
    EXPECT_EQ(round_bf16(1.f + 3 * std::ldexp(1.f, -8)), 1.f + std::ldexp(1.f, -6));
}
