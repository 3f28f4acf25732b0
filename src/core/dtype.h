// Number formats of DeepSeek-V4 checkpoints and of its quantization steps (dsv4-model.md §3):
// bf16, fp16, FP8 e4m3fn, UE8M0 scales, FP4 e2m1 (MXFP4, two per byte, low nibble first).
// Decoders are exact; encoders round to nearest, ties to even, and saturate where the format says.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace dsinfer {

// Storage types of tensors, as safetensors names them.
enum class DType : uint8_t { BF16, F16, F32, F64, F8_E4M3, F8_E8M0, I8, U8, I32, I64, Bool };

std::string_view dtype_name(DType t);
bool dtype_from_name(std::string_view name, DType* out);
size_t dtype_size(DType t);

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---- bf16 ----
inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
// Round to nearest, ties to even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// ---- fp16 (IEEE binary16) ----
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// ---- FP8 e4m3fn: bias 7, no infinities, 0x7f/0xff NaN, max finite 448 ----
float e4m3_to_f32(uint8_t b);
// Round to nearest even, saturating to +-448 (NaN -> 0x7f).
uint8_t f32_to_e4m3(float f);
inline float round_e4m3(float f) { return e4m3_to_f32(f32_to_e4m3(f)); }
// Decode table (256 entries), for hot loops.
const float* e4m3_table();

// ---- UE8M0: 2^(b-127); 255 is NaN ----
inline float e8m0_to_f32(uint8_t b) {
    if (b == 255) return std::nanf("");
    if (b == 0) return f32_from_bits(0x00400000u);  // 2^-127 (subnormal)
    return f32_from_bits(uint32_t(b) << 23);
}

// pow2ceil(x) = 2^ceil(log2 x) for x > 0 normal, computed on the bit pattern as the reference
// does: the exponent field, plus one if the mantissa is non-zero.
inline float pow2ceil(float x) {
    uint32_t u = f32_bits(x);
    uint32_t e = (u >> 23) & 0xffu;
    if (u & 0x7fffffu) e += 1;
    return f32_from_bits(e << 23);
}

// ---- FP4 e2m1: codes 0..7 -> {0, .5, 1, 1.5, 2, 3, 4, 6}, bit 3 = sign ----
inline float e2m1_to_f32(uint8_t code) {
    static constexpr float kMag[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
    float m = kMag[code & 7];
    return (code & 8) ? -m : m;
}
// Round to nearest, ties to even on the e2m1 grid, saturating to +-6 (cvt.rn.satfinite.e2m1).
uint8_t f32_to_e2m1(float f);
inline float round_e2m1(float f) { return e2m1_to_f32(f32_to_e2m1(f)); }

// Element k of a packed FP4 row: byte k/2, low nibble for even k, high nibble for odd k.
inline uint8_t fp4_nibble(const uint8_t* row, size_t k) {
    uint8_t b = row[k >> 1];
    return (k & 1) ? uint8_t(b >> 4) : uint8_t(b & 0xf);
}

}  // namespace dsinfer
