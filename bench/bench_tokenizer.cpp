// Tokenizer throughput on one core: encode in MB/s of UTF-8 input on English prose and on source
// code, decode and incremental detokenization in MB/s of text out. The inputs are made from the
// repository itself (deterministic, nothing downloaded):
//   prose: the ASCII English sentences of tests/data/tokenizer/cases.json, then every Markdown file
//          (README.md, docs/*.md);
//   code:  every .cpp/.h file under src/, tools/, tests/ and bench/, in path order.
// Each corpus is cut at line ends into chunks of about 4 KiB (prompt-sized calls).
//
//   bench_tokenizer [google-benchmark flags]     run the benchmarks
//   bench_tokenizer --write-corpus=DIR           write DIR/prose.json, DIR/code.json (arrays of the
//                                                chunks) for running a peer tokenizer on the same text
// DSINFER_TOKENIZER=FILE picks another tokenizer.json (default: the test fixture).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/detokenizer.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using dsinfer::text::IncrementalDetokenizer;
using dsinfer::text::Tokenizer;

namespace {

const fs::path kRoot = DSINFER_SOURCE_DIR;

std::string slurp(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<fs::path> files_under(const fs::path& dir, std::initializer_list<const char*> exts) {
    std::vector<fs::path> out;
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        const std::string ext = e.path().extension().string();
        for (const char* x : exts)
            if (ext == x) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> chunk(const std::string& text, size_t target = 4096) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = std::min(text.size(), pos + target);
        if (end < text.size()) {
            const size_t nl = text.find('\n', end);
            end = nl == std::string::npos ? text.size() : nl + 1;
        }
        out.push_back(text.substr(pos, end - pos));
        pos = end;
    }
    return out;
}

std::vector<std::string> prose_corpus() {
    std::string text;
    const auto cases = nlohmann::json::parse(slurp(kRoot / "tests/data/tokenizer/cases.json"));
    for (const auto& c : cases.at("cases")) {
        const std::string s = c.at("text").get<std::string>();
        if (s.size() > 40 && std::all_of(s.begin(), s.end(), [](char ch) { return ch > 0 && ch != '<'; }))
            text += s + "\n";
    }
    std::vector<fs::path> md = files_under(kRoot / "docs", {".md"});
    md.insert(md.begin(), kRoot / "README.md");
    for (const auto& p : md)
        if (fs::exists(p)) text += slurp(p);
    return chunk(text);
}

std::vector<std::string> code_corpus() {
    std::string text;
    for (const char* dir : {"src", "tools", "tests", "bench"})
        for (const auto& p : files_under(kRoot / dir, {".cpp", ".h"})) text += slurp(p);
    return chunk(text);
}

struct Fixture {
    Tokenizer tok;
    std::vector<std::string> prose, code;
    std::vector<std::vector<int32_t>> prose_ids, code_ids;
};

Fixture& fixture() {
    static Fixture* f = [] {
        const char* env = std::getenv("DSINFER_TOKENIZER");
        const std::string path = env ? env : (kRoot / "tests/data/tokenizer/dsv4-tokenizer.json").string();
        auto* fx = new Fixture{Tokenizer::load(path), prose_corpus(), code_corpus(), {}, {}};
        for (const auto& s : fx->prose) fx->prose_ids.push_back(fx->tok.encode(s));
        for (const auto& s : fx->code) fx->code_ids.push_back(fx->tok.encode(s));
        return fx;
    }();
    return *f;
}

size_t total_bytes(const std::vector<std::string>& chunks) {
    size_t n = 0;
    for (const auto& c : chunks) n += c.size();
    return n;
}

size_t total_tokens(const std::vector<std::vector<int32_t>>& ids) {
    size_t n = 0;
    for (const auto& v : ids) n += v.size();
    return n;
}

void report(benchmark::State& state, size_t bytes, size_t tokens) {
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
    state.counters["MB/s"] = benchmark::Counter(static_cast<double>(state.iterations() * bytes) / 1e6,
                                                benchmark::Counter::kIsRate);
    state.counters["Mtok/s"] = benchmark::Counter(static_cast<double>(state.iterations() * tokens) / 1e6,
                                                  benchmark::Counter::kIsRate);
    state.counters["corpus_bytes"] = static_cast<double>(bytes);
    state.counters["corpus_tokens"] = static_cast<double>(tokens);
}

void encode(benchmark::State& state, const std::vector<std::string>& chunks,
            const std::vector<std::vector<int32_t>>& ids) {
    const Tokenizer& tok = fixture().tok;
    for (auto _ : state)
        for (const auto& c : chunks) benchmark::DoNotOptimize(tok.encode(c));
    report(state, total_bytes(chunks), total_tokens(ids));
}

void BM_EncodeProse(benchmark::State& state) { encode(state, fixture().prose, fixture().prose_ids); }
void BM_EncodeCode(benchmark::State& state) { encode(state, fixture().code, fixture().code_ids); }

void BM_DecodeProse(benchmark::State& state) {
    const Fixture& f = fixture();
    for (auto _ : state)
        for (const auto& ids : f.prose_ids) benchmark::DoNotOptimize(f.tok.decode(ids));
    report(state, total_bytes(f.prose), total_tokens(f.prose_ids));
}

void BM_IncrementalDetokenizeProse(benchmark::State& state) {
    const Fixture& f = fixture();
    for (auto _ : state) {
        for (const auto& ids : f.prose_ids) {
            IncrementalDetokenizer d(f.tok);
            for (int32_t id : ids) benchmark::DoNotOptimize(d.push(id));
            benchmark::DoNotOptimize(d.flush());
        }
    }
    report(state, total_bytes(f.prose), total_tokens(f.prose_ids));
}

BENCHMARK(BM_EncodeProse)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_EncodeCode)->Unit(benchmark::kMillisecond)->MinTime(1.0);
BENCHMARK(BM_DecodeProse)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_IncrementalDetokenizeProse)->Unit(benchmark::kMillisecond)->MinTime(0.5);

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// The benchmarks above run with a warm word cache (every pass after the first finds its words
// there); this is one pass over each corpus with a freshly loaded tokenizer, i.e. an empty cache.
void report_cold_pass() {
    const char* env = std::getenv("DSINFER_TOKENIZER");
    const std::string path = env ? env : (kRoot / "tests/data/tokenizer/dsv4-tokenizer.json").string();
    const Fixture& f = fixture();
    for (const auto& [name, chunks] : {std::pair{"prose", &f.prose}, std::pair{"code", &f.code}}) {
        const Tokenizer cold = Tokenizer::load(path);
        const double t0 = thread_cpu_seconds();
        for (const auto& c : *chunks) benchmark::DoNotOptimize(cold.encode(c));
        const double dt = thread_cpu_seconds() - t0;
        std::printf("cold first pass, %s: %zu bytes in %.2f ms CPU = %.2f MB/s\n", name, total_bytes(*chunks),
                    dt * 1e3, static_cast<double>(total_bytes(*chunks)) / dt / 1e6);
    }
}

int write_corpus(const fs::path& dir) {
    fs::create_directories(dir);
    const Fixture& f = fixture();
    for (const auto& [name, chunks, ids] :
         {std::tuple{"prose", &f.prose, &f.prose_ids}, std::tuple{"code", &f.code, &f.code_ids}}) {
        std::ofstream(dir / (std::string(name) + ".json")) << nlohmann::json(*chunks).dump();
        std::ofstream(dir / (std::string(name) + ".ids.json")) << nlohmann::json(*ids).dump();
        std::printf("%s: %zu chunks, %zu bytes, %zu tokens -> %s\n", name, chunks->size(), total_bytes(*chunks),
                    total_tokens(*ids), (dir / (std::string(name) + ".json")).c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--write-corpus=", 15) == 0) return write_corpus(argv[i] + 15);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    fixture();  // load before timing
    report_cold_pass();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
