#include "core/dtype.h"

#include <array>

namespace dsinfer {

namespace {
struct DTypeInfo {
    DType type;
    std::string_view name;
    size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::BF16, "BF16", 2},    {DType::F16, "F16", 2},         {DType::F32, "F32", 4}, {DType::F64, "F64", 8},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E8M0, "F8_E8M0", 1}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::I32, "I32", 4},      {DType::I64, "I64", 8},         {DType::Bool, "BOOL", 1},
};
}  // namespace

std::string_view dtype_name(DType t) {
    for (auto& d : kDTypes)
        if (d.type == t) return d.name;
    return "?";
}

bool dtype_from_name(std::string_view name, DType* out) {
    for (auto& d : kDTypes) {
        if (d.name == name) {
            *out = d.type;
            return true;
        }
    }
    return false;
}

size_t dtype_size(DType t) {
    for (auto& d : kDTypes)
        if (d.type == t) return d.size;
    return 0;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        float v = std::ldexp(float(man), -24);
        return sign ? -v : v;
    }
    if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    float a = std::fabs(f);
    if (std::isnan(f)) return uint16_t(sign | 0x7e00u);
    if (a >= 65520.f) return uint16_t(sign | 0x7c00u);
    if (a < 6.103515625e-05f) {  // subnormal: units of 2^-24, nearest even
        float q = std::nearbyint(a * 16777216.f);
        return uint16_t(sign | uint16_t(q));
    }
    uint32_t au = f32_bits(a);
    au += 0xfffu + ((au >> 13) & 1u);
    uint32_t exp = (au >> 23) - 112;
    return uint16_t(sign | (exp << 10) | ((au >> 13) & 0x3ffu));
}

float e4m3_to_f32(uint8_t b) {
    uint32_t s = b >> 7, e = (b >> 3) & 0xfu, m = b & 7u;
    float v;
    if (e == 15 && m == 7) return std::nanf("");
    if (e == 0)
        v = std::ldexp(float(m), -9);  // (m/8) * 2^-6
    else
        v = std::ldexp(float(8 + m), int(e) - 10);  // (1+m/8) * 2^(e-7)
    return s ? -v : v;
}

const float* e4m3_table() {
    static const std::array<float, 256> table = [] {
        std::array<float, 256> t{};
        for (int i = 0; i < 256; ++i) t[i] = e4m3_to_f32(uint8_t(i));
        return t;
    }();
    return table.data();
}

uint8_t f32_to_e4m3(float f) {
    if (std::isnan(f)) return 0x7f;
    uint8_t sign = std::signbit(f) ? 0x80 : 0;
    float a = std::fabs(f);
    if (a >= 448.f) return sign | 0x7e;  // saturate
    // Quantum of the binade holding a: normals have 3 mantissa bits, exponent >= -6.
    int exp;
    std::frexp(a, &exp);  // a = frac * 2^exp, frac in [0.5, 1)
    int e = exp - 1;      // a in [2^e, 2^(e+1))
    if (e < -6) e = -6;   // subnormal range shares the quantum 2^-9
    float quantum = std::ldexp(1.f, e - 3);
    float q = std::nearbyint(a / quantum);  // nearest, ties to even (default rounding mode)
    float r = q * quantum;
    if (r >= 448.f) return sign | 0x7e;
    if (r == 0.f) return sign;
    // Encode r exactly.
    int re;
    std::frexp(r, &re);
    int be = re - 1 + 7;
    if (be <= 0) return sign | uint8_t(std::lround(r / std::ldexp(1.f, -9)));
    int m = int(std::lround(r / std::ldexp(1.f, re - 1) * 8.f)) - 8;
    return sign | uint8_t(be << 3) | uint8_t(m);
}

uint8_t f32_to_e2m1(float f) {
    uint8_t sign = std::signbit(f) ? 8 : 0;
    float a = std::fabs(f);
    if (std::isnan(f)) return 7;  // satfinite: NaN has no code; saturate
    // Grid {0, .5, 1, 1.5, 2, 3, 4, 6}; midpoints with ties to the even code.
    uint8_t c;
    if (a <= 0.25f) c = 0;        // tie at .25 -> 0 (even)
    else if (a < 0.75f) c = 1;    // .75 tie -> 1.0 (code 2, even)
    else if (a <= 1.25f) c = 2;   // 1.25 tie -> 1.0 (code 2)
    else if (a < 1.75f) c = 3;    // 1.75 tie -> 2.0 (code 4)
    else if (a <= 2.5f) c = 4;    // 2.5 tie -> 2.0 (code 4)
    else if (a < 3.5f) c = 5;     // 3.5 tie -> 4.0 (code 6)
    else if (a <= 5.f) c = 6;     // 5 tie -> 4.0 (code 6)
    else c = 7;
    return sign | c;
}

}  // namespace dsinfer
