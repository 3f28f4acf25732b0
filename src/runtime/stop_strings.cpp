#include "runtime/stop_strings.h"

#include <algorithm>

namespace dsinfer::runtime {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
    for (auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

std::string StopStringMatcher::feed(const std::string& piece) {
    if (matched_) return {};
    pending_ += piece;
    if (stops_.empty()) {
        std::string out;
        out.swap(pending_);
        return out;
    }
    size_t first = std::string::npos;
    for (auto& s : stops_) first = std::min(first, pending_.find(s));
    if (first != std::string::npos) {
        matched_ = true;
        std::string out = pending_.substr(0, first);
        pending_.clear();
        return out;
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    size_t hold = 0;
    for (auto& s : stops_)
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k)
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                hold = k;
                break;
            }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
}

std::string StopStringMatcher::flush() {
    std::string out;
    if (!matched_) out.swap(pending_);
    return out;
}

}  // namespace dsinfer::runtime
