// Stop strings over streamed text: text is released only once it can no longer be the start of a
// stop string, so a stop string split across tokens is still caught and never shown.
#pragma once

#include <string>
#include <vector>

namespace dsinfer::runtime {

class StopStringMatcher {
public:
    explicit StopStringMatcher(std::vector<std::string> stops);

    // Appends `piece`; returns the text that is now safe to emit. After a match, matched() is true and
    // the returned text ends right before the stop string (the rest is dropped).
    std::string feed(const std::string& piece);
    // The held-back tail, at the end of generation.
    std::string flush();
    bool matched() const { return matched_; }

private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool matched_ = false;
    size_t max_len_ = 0;
};

}  // namespace dsinfer::runtime
