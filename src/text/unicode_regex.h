// A compiled Unicode regular expression (PCRE2, UTF + UCP, JIT when available) with the matching
// semantics of the Oniguruma engine that Hugging Face tokenizers use for pre-tokenizer patterns.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsinfer::text {

class UnicodeRegex {
public:
    // Compiles `pattern` (a regex, or a literal string when `literal`); throws std::runtime_error
    // naming the pattern and PCRE2's message when it does not compile.
    explicit UnicodeRegex(std::string_view pattern, bool literal = false);
    ~UnicodeRegex();
    UnicodeRegex(const UnicodeRegex&) = delete;
    UnicodeRegex& operator=(const UnicodeRegex&) = delete;
    UnicodeRegex(UnicodeRegex&& o) noexcept;
    UnicodeRegex& operator=(UnicodeRegex&&) = delete;

    // Finds the first match in `subject` at or after byte `start` (subject must be valid UTF-8; it is
    // the whole text the pattern sees, so look-arounds stop at its ends). Thread-safe.
    bool find(std::string_view subject, size_t start, size_t& match_begin, size_t& match_end) const;

    const std::string& pattern() const { return pattern_; }

    // Oniguruma's \s is Unicode White_Space, which has U+0085 (NEL); PCRE2's UCP \s lacks it.
    // Returns `pattern` with \s and \S widened/narrowed accordingly (exposed for tests).
    static std::string onig_compatible(std::string_view pattern);

private:
    std::string pattern_;
    void* code_ = nullptr;  // pcre2_code*
    bool jit_ = false;
};

}  // namespace dsinfer::text
