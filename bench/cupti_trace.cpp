// CUPTI activity records for bench_cuda (cupti_trace.h).
#include "cupti_trace.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#ifdef DSINFER_CUPTI
#include <cupti.h>
#include <cxxabi.h>
#endif

namespace dsinfer::bench {

#ifdef DSINFER_CUPTI
namespace {
std::vector<KernelRecord> g_kernel_records;
#define CUPTI_CK(x)                                                                        \
    do {                                                                                   \
        CUptiResult r_ = (x);                                                              \
        if (r_ != CUPTI_SUCCESS) {                                                         \
            const char* m_ = nullptr;                                                      \
            cuptiGetResultString(r_, &m_);                                                 \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, m_ ? m_ : "?"); \
            std::exit(1);                                                                  \
        }                                                                                  \
    } while (0)
void CUPTIAPI cupti_buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
    *size = size_t(8) << 20;
    *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
    *max_records = 0;
}
std::string short_kernel_name(const char* mangled) {
    int status = 0;
    char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
    std::string n = status == 0 && d ? d : mangled;
    std::free(d);
    // "void ns::(anonymous namespace)::kernel<args>(params)" -> "kernel<args>"
    if (n.rfind("void ", 0) == 0) n = n.substr(5);
    for (size_t a; (a = n.find("(anonymous namespace)::")) != std::string::npos;) n.erase(a, 23);
    int depth = 0;
    size_t cut = n.size();
    for (size_t i = 0; i < n.size(); ++i) {
        if (n[i] == '<') ++depth;
        if (n[i] == '>') --depth;
        if (n[i] == '(' && depth == 0) {
            cut = i;
            break;
        }
    }
    n = n.substr(0, cut);
    const size_t lt = n.find('<');
    const size_t colon = n.rfind("::", lt == std::string::npos ? std::string::npos : lt);
    if (colon != std::string::npos) n = n.substr(colon + 2);
    if (n.size() > 60) n = n.substr(0, 57) + "...";
    return n;
}
void CUPTIAPI cupti_buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
    CUpti_Activity* rec = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && rec->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
        g_kernel_records.push_back({k->start, k->end, k->streamId, k->gridX * k->gridY * k->gridZ,
                                    k->blockX * k->blockY * k->blockZ, short_kernel_name(k->name)});
    }
    std::free(buffer);
}
}  // namespace

// What a kernel adds to its replay's frontier: how far its end passes every earlier end. The additions
// sum to the replay's span, so the kernels with large ones are the critical path; a kernel that ends
// inside another's time adds nothing.

void print_layer_timeline(std::vector<KernelRecord> recs, int graphs) {
    std::sort(recs.begin(), recs.end(), [](const KernelRecord& a, const KernelRecord& b) { return a.start < b.start; });
    if (recs.empty() || recs.size() % size_t(graphs) != 0) {
        std::printf("trace    %zu kernel records for %d replays: not a whole number a replay\n", recs.size(), graphs);
        return;
    }
    const size_t per = recs.size() / size_t(graphs);
    std::vector<double> spans, busy;
    std::map<std::string, std::pair<double, double>> by_name;  // total added, total duration (over replays)
    const int shown = graphs / 2;
    for (int g = 0; g < graphs; ++g) {
        const KernelRecord* r = recs.data() + size_t(g) * per;
        const uint64_t t0 = r[0].start;
        std::map<uint32_t, int> lanes;  // the graph's streams, numbered in order of first use
        uint64_t frontier = t0, last = 0;
        // busy: the union of the kernels' intervals
        std::vector<std::pair<uint64_t, uint64_t>> iv;
        if (g == shown)
            std::printf(
                "trace    replay %d of %d (%zu kernels); us from the replay's first start\n"
                "trace    %3s %4s %8s %8s %8s %8s  %6s %5s  %s\n",
                g + 1, graphs, per, "#", "lane", "start", "end", "dur", "adds", "grid", "block", "kernel");
        for (size_t i = 0; i < per; ++i) {
            const KernelRecord& k = r[i];
            const double adds = k.end > frontier ? double(k.end - frontier) * 1e-3 : 0.0;
            frontier = std::max(frontier, k.end);
            last = std::max(last, k.end);
            iv.push_back({k.start, k.end});
            auto& bn = by_name[k.name];
            bn.first += adds;
            bn.second += double(k.end - k.start) * 1e-3;
            const int lane = lanes.emplace(k.stream, int(lanes.size())).first->second;
            if (g == shown)
                std::printf("trace    %3zu %4d %8.2f %8.2f %8.2f %8.2f  %6d %5d  %s\n", i, lane,
                            double(k.start - t0) * 1e-3, double(k.end - t0) * 1e-3, double(k.end - k.start) * 1e-3,
                            adds, k.grid, k.block, k.name.c_str());
        }
        std::sort(iv.begin(), iv.end());
        uint64_t covered = 0, cs = iv[0].first, ce = iv[0].second;
        for (auto [s, e] : iv) {
            if (s > ce) {
                covered += ce - cs;
                cs = s;
                ce = e;
            } else {
                ce = std::max(ce, e);
            }
        }
        covered += ce - cs;
        spans.push_back(double(last - t0) * 1e-3);
        busy.push_back(double(covered) * 1e-3);
    }
    std::vector<double> sorted = spans;
    std::sort(sorted.begin(), sorted.end());
    double idle = 0;
    for (int g = 0; g < graphs; ++g) idle += spans[size_t(g)] - busy[size_t(g)];
    std::printf(
        "trace    span of a replay (first start to last end): median %.2f us, min %.2f, max %.2f; "
        "no kernel running %.2f us a replay on average\n",
        sorted[sorted.size() / 2], sorted.front(), sorted.back(), idle / graphs);
    std::vector<std::pair<double, std::string>> order;
    for (auto& [n, v] : by_name) order.push_back({v.first, n});
    std::sort(order.rbegin(), order.rend());
    std::printf("trace    by kernel, averaged over the replays: us added to the span (us of duration)\n");
    for (auto& [a, n] : order)
        std::printf("trace    %8.2f (%8.2f)  %s\n", a / graphs, by_name[n].second / graphs, n.c_str());
}

bool cupti_built() {
    return true;
}

void cupti_begin() {
    static const bool registered = [] {
        CUPTI_CK(cuptiActivityRegisterCallbacks(cupti_buffer_requested, cupti_buffer_completed));
        return true;
    }();
    (void)registered;
    g_kernel_records.clear();
    CUPTI_CK(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
}

std::vector<KernelRecord> cupti_end() {
    CUPTI_CK(cuptiActivityFlushAll(1));
    CUPTI_CK(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL));
    std::vector<KernelRecord> out;
    out.swap(g_kernel_records);
    return out;
}
#else
bool cupti_built() {
    return false;
}
void cupti_begin() {}
std::vector<KernelRecord> cupti_end() {
    return {};
}
void print_layer_timeline(std::vector<KernelRecord>, int) {
    std::printf("trace    built without CUPTI: run under nsys for the timeline (scripts/layer-trace.sh)\n");
}
#endif

void print_kernel_totals(const std::vector<KernelRecord>& recs, const char* label, double wall_ms, int top) {
    if (recs.empty()) {
        std::printf("%-8s %.3f ms on the host; no kernel records%s\n", label, wall_ms,
                    cupti_built() ? "" : " (built without CUPTI)");
        return;
    }
    uint64_t first = recs[0].start, last = recs[0].end;
    double total = 0;
    std::map<std::string, std::pair<int, double>> by;  // launches, us
    for (const auto& k : recs) {
        first = std::min(first, k.start);
        last = std::max(last, k.end);
        const double us = double(k.end - k.start) * 1e-3;
        total += us;
        auto& b = by[k.name];
        ++b.first;
        b.second += us;
    }
    std::printf(
        "%-8s %.3f ms on the host, %.3f ms from the first kernel's start to the last one's end; %zu "
        "launches, %.3f ms of kernel time\n",
        label, wall_ms, double(last - first) * 1e-6, recs.size(), total * 1e-3);
    std::vector<std::pair<double, std::string>> order;
    for (const auto& [n, v] : by) order.push_back({v.second, n});
    std::sort(order.rbegin(), order.rend());
    std::printf("%-8s %10s %6s %9s %6s  %s\n", label, "us", "calls", "us/call", "share", "kernel");
    int shown = 0;
    for (const auto& [us, n] : order) {
        if (shown++ == top) break;
        const auto& b = by[n];
        std::printf("%-8s %10.1f %6d %9.2f %5.1f%%  %s\n", label, us, b.first, us / b.first, 100 * us / total,
                    n.c_str());
    }
}

}  // namespace dsinfer::bench
