#include "io/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace dsinfer {

namespace {
double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

ProgressLine::ProgressLine(std::string what, bool force)
    : what_(std::move(what)), enabled_(force || isatty(STDERR_FILENO)), start_(now_s()) {}

void ProgressLine::step(size_t done, size_t total, const std::string& item) {
    if (!enabled_) return;
    std::fprintf(stderr, "%s %zu/%zu %s (%.1f s)\n", what_.c_str(), done, total, item.c_str(), now_s() - start_);
    std::fflush(stderr);
}

void ProgressLine::checkpoint_callback(size_t done, size_t total, const std::string& path, void* user) {
    static_cast<ProgressLine*>(user)->step(done, total, path);
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    int u = 0;
    while (b >= 1000 && u < 5) {
        b /= 1000;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

std::string with_commas(unsigned long long n) {
    std::string s = std::to_string(n);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
    return s;
}

}  // namespace dsinfer
