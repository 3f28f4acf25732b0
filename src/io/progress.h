// Progress of long work (loading shards, writing checkpoints) on a terminal: one line per step on
// stderr, only when stderr is a terminal, so logs and pipes stay clean.
#pragma once

#include <cstddef>
#include <string>

namespace dsinfer {

class ProgressLine {
  public:
    // what: the verb shown before each step ("loading", "writing"). force: show even if stderr is
    // not a terminal.
    explicit ProgressLine(std::string what, bool force = false);
    bool enabled() const { return enabled_; }
    // Step `done` of `total` finished (1-based); item names it (a file).
    void step(size_t done, size_t total, const std::string& item);

    // A Checkpoint::open progress callback; user must point to a ProgressLine.
    static void checkpoint_callback(size_t done, size_t total, const std::string& path, void* user);

  private:
    std::string what_;
    bool enabled_;
    double start_;
};

// "12.3 GB" / "512.0 MB" / "1.5 kB" (decimal units).
std::string human_bytes(double bytes);
// Count with thousands separators: 69,187.
std::string with_commas(unsigned long long n);

}  // namespace dsinfer
