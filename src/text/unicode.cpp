#include "text/unicode.h"

namespace dsinfer::text {

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

namespace {

// For a lead byte: how many continuation bytes follow and the allowed range of the first one
// (Unicode Table 3-7, well-formed UTF-8 byte sequences). need < 0: not a valid lead byte.
struct LeadInfo {
    int need;
    uint8_t lo, hi;
};

inline LeadInfo lead_info(uint8_t b) {
    if (b < 0x80) return {0, 0, 0};
    if (b < 0xC2) return {-1, 0, 0};
    if (b < 0xE0) return {1, 0x80, 0xBF};
    if (b == 0xE0) return {2, 0xA0, 0xBF};
    if (b == 0xED) return {2, 0x80, 0x9F};
    if (b < 0xF0) return {2, 0x80, 0xBF};
    if (b == 0xF0) return {3, 0x90, 0xBF};
    if (b < 0xF4) return {3, 0x80, 0xBF};
    if (b == 0xF4) return {3, 0x80, 0x8F};
    return {-1, 0, 0};
}

enum class SeqStatus { kValid, kInvalid, kIncomplete };

// Checks the sequence starting at s[i]; `len` gets its length when valid, else the length of the
// maximal ill-formed subpart (at least 1) or, when incomplete, the bytes present.
inline SeqStatus check_sequence(std::string_view s, size_t i, size_t& len) {
    const LeadInfo li = lead_info(static_cast<uint8_t>(s[i]));
    if (li.need < 0) {
        len = 1;
        return SeqStatus::kInvalid;
    }
    size_t j = i + 1;
    for (int k = 0; k < li.need; ++k, ++j) {
        if (j >= s.size()) {
            len = j - i;
            return SeqStatus::kIncomplete;
        }
        const uint8_t c = static_cast<uint8_t>(s[j]);
        const uint8_t lo = k == 0 ? li.lo : 0x80, hi = k == 0 ? li.hi : 0xBF;
        if (c < lo || c > hi) {
            len = j - i;
            return SeqStatus::kInvalid;
        }
    }
    len = j - i;
    return SeqStatus::kValid;
}

}  // namespace

size_t find_invalid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        if (static_cast<uint8_t>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        size_t len = 0;
        if (check_sequence(s, i, len) != SeqStatus::kValid) return i;
        i += len;
    }
    return std::string_view::npos;
}

size_t append_utf8_lossy(std::string& out, std::string_view bytes, bool final) {
    size_t i = 0, run = 0;  // bytes[run, i) is valid and not yet copied
    while (i < bytes.size()) {
        if (static_cast<uint8_t>(bytes[i]) < 0x80) {
            ++i;
            continue;
        }
        size_t len = 0;
        const SeqStatus st = check_sequence(bytes, i, len);
        if (st == SeqStatus::kValid) {
            i += len;
            continue;
        }
        out.append(bytes.data() + run, i - run);
        if (st == SeqStatus::kIncomplete && !final) return i;  // may still complete: hold it back
        out += "\xEF\xBF\xBD";                                 // U+FFFD
        i += len;
        run = i;
    }
    out.append(bytes.data() + run, i - run);
    return i;
}

uint32_t next_code_point(std::string_view s, size_t& i) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
        ++i;
        return b;
    }
    int n = b < 0xE0 ? 1 : b < 0xF0 ? 2 : 3;
    uint32_t cp = b & (0x3F >> n);
    ++i;
    for (int k = 0; k < n && i < s.size(); ++k, ++i) cp = (cp << 6) | (static_cast<uint8_t>(s[i]) & 0x3F);
    return cp;
}

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
    static const ByteLevelAlphabet table = [] {
        ByteLevelAlphabet t;
        t.cp_to_byte.fill(-1);
        uint32_t extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
            const uint32_t cp = printable ? static_cast<uint32_t>(b) : 0x100 + extra++;
            t.byte_to_cp[b] = cp;
            t.cp_to_byte[cp] = static_cast<int16_t>(b);
        }
        return t;
    }();
    return table;
}

std::string ByteLevelAlphabet::encode(std::string_view bytes) const {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) append_utf8(out, byte_to_cp[static_cast<uint8_t>(c)]);
    return out;
}

bool ByteLevelAlphabet::decode(std::string_view token, std::string& bytes) const {
    bytes.clear();
    size_t i = 0;
    while (i < token.size()) {
        const uint32_t cp = next_code_point(token, i);
        if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0) return false;
        bytes += static_cast<char>(cp_to_byte[cp]);
    }
    return true;
}

}  // namespace dsinfer::text
