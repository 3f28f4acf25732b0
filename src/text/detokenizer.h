// Streaming detokenization: ids go in one at a time, text comes out as soon as it is complete.
#pragma once

#include <cstdint>
#include <string>

#include "text/tokenizer.h"

namespace dsinfer::text {

// Turns a stream of ids into text pieces. Bytes of a UTF-8 character split across tokens are held
// back until the character is complete, so no piece ever ends in a broken sequence; the pieces
// concatenated (with flush()) equal Tokenizer::decode of the whole id sequence.
class IncrementalDetokenizer {
public:
    explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false)
        : tokenizer_(&tokenizer), skip_special_(skip_special) {}

    // The text completed by this id (possibly empty). Throws std::out_of_range for an unknown id.
    std::string push(int32_t id);
    // Whatever is held back, as text (an unfinished character becomes U+FFFD); the stream restarts.
    std::string flush();
    // Bytes held back waiting for the rest of a character (at most 3).
    size_t pending_bytes() const { return pending_.size(); }

private:
    const Tokenizer* tokenizer_;
    bool skip_special_;
    std::string pending_;
};

}  // namespace dsinfer::text
