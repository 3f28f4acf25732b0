// UTF-8 helpers and the GPT-2 byte-level alphabet used by byte-level BPE tokenizers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsinfer::text {

// Appends the UTF-8 encoding of code point `cp` (must be a Unicode scalar value).
void append_utf8(std::string& out, uint32_t cp);

// Index of the first byte that is not part of a well-formed UTF-8 sequence, or npos if `s` is valid.
size_t find_invalid_utf8(std::string_view s);

// Decodes `bytes` into valid UTF-8, replacing every maximal ill-formed subpart by U+FFFD (the
// Unicode "best practice" that Rust's String::from_utf8_lossy and Python's errors="replace" follow).
// Appends to `out` and returns how many bytes were consumed: all of them when `final` is true;
// otherwise a trailing sequence that is incomplete but could still become valid is left unconsumed
// (so that a stream decoded piece by piece gives exactly the text of decoding it whole).
size_t append_utf8_lossy(std::string& out, std::string_view bytes, bool final = true);

// Decodes one code point at s[i] of valid UTF-8; advances i.
uint32_t next_code_point(std::string_view s, size_t& i);

// The GPT-2 bytes_to_unicode table: printable bytes (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) map to the
// same code point, the other 68 bytes to U+0100 + k in increasing byte order.
struct ByteLevelAlphabet {
    std::array<uint32_t, 256> byte_to_cp{};  // byte -> code point
    std::array<int16_t, 324> cp_to_byte{};   // code point (< 324) -> byte, -1 if not in the alphabet

    static const ByteLevelAlphabet& get();
    // The byte-level spelling of raw bytes (each byte replaced by its character, UTF-8 encoded).
    std::string encode(std::string_view bytes) const;
    // The raw bytes of a byte-level spelled token; false if some character is not in the alphabet.
    bool decode(std::string_view token, std::string& bytes) const;
};

}  // namespace dsinfer::text
