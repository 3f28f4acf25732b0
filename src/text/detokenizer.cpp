#include "text/detokenizer.h"

#include "text/unicode.h"

namespace dsinfer::text {

std::string IncrementalDetokenizer::push(int32_t id) {
    std::string_view bytes = tokenizer_->token_bytes(id);
    if (skip_special_ && tokenizer_->is_special(id)) return {};
    pending_ += bytes;
    std::string out;
    const size_t used = append_utf8_lossy(out, pending_, /*final=*/false);
    pending_.erase(0, used);
    return out;
}

std::string IncrementalDetokenizer::flush() {
    std::string out;
    append_utf8_lossy(out, pending_, /*final=*/true);
    pending_.clear();
    return out;
}

}  // namespace dsinfer::text
