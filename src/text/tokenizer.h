// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (the kind DeepSeek V3/V4 ship):
// added tokens split off the raw text first, then the pre-tokenizer (Split regexes, ByteLevel), then
// BPE merges by rank; decoding maps the byte-level alphabet back to bytes. Reproduces the Hugging
// Face `tokenizers` library's ids and decodings. See docs/tokenizer.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsinfer::text {

struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = true;
    bool special = false;
};

class Tokenizer {
public:
    // Loads a tokenizer.json (given a directory, its tokenizer.json). Reads bos/eos (and add_bos_token/add_eos_token) from a
    // tokenizer_config.json beside it when there is one. Throws std::runtime_error naming the file
    // and what is wrong or unsupported (model type, normalizer, pre-tokenizer, decoder...).
    static Tokenizer load(const std::string& file_or_dir);
    // Same from the JSON text; `origin` names it in errors.
    static Tokenizer from_json(std::string_view json, const std::string& origin = "tokenizer.json");

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Text (valid UTF-8, else std::runtime_error) -> ids. add_special_tokens applies the
    // post-processor's template (and add_bos_token/add_eos_token of tokenizer_config.json).
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
    // Ids -> text; byte sequences that are not valid UTF-8 become U+FFFD. With skip_special, added
    // tokens flagged `special` are left out. Throws std::out_of_range for an id with no token.
    std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

    int32_t token_to_id(std::string_view token) const;  // -1 if none
    std::string id_to_token(int32_t id) const;          // "" if none
    // One more than the largest id (model vocabulary and added tokens).
    size_t vocab_size() const;
    int32_t bos_id() const;  // -1 if unknown
    int32_t eos_id() const;  // -1 if unknown
    const std::vector<AddedToken>& added_tokens() const;
    bool is_special(int32_t id) const;  // an added token flagged special

    // The raw bytes a token decodes to (not necessarily valid UTF-8: a token may hold part of a
    // character). Throws std::out_of_range for an id with no token.
    std::string_view token_bytes(int32_t id) const;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace dsinfer::text
