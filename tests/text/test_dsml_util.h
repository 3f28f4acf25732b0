// Helpers shared by the DSML tests: the case files of tests/data/dsml and stream-feeding utilities.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "text/chat.h"
#include "text/dsml.h"
#include "text/dsml_stream.h"

namespace dsml_test {

using dsinfer::text::ojson;

struct Case {
    std::string file;
    ojson json;
};

inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Every *.json case of tests/data/dsml, sorted by file name.
inline std::vector<Case> load_cases() {
    std::vector<Case> out;
    const std::filesystem::path dir = std::filesystem::path(DSINFER_TEST_DATA) / "dsml";
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".json")
            out.push_back({e.path().filename().string(), ojson::parse(read_file(e.path()))});
    std::sort(out.begin(), out.end(), [](const Case& a, const Case& b) { return a.file < b.file; });
    return out;
}

inline std::string case_path(const std::string& file) {
    return (std::filesystem::path(DSINFER_TEST_DATA) / "dsml" / file).string();
}

// The function objects of a case's top-level tools (parse cases may carry them for argument types).
inline std::vector<ojson> case_functions(const ojson& c) {
    std::vector<ojson> fns;
    if (auto t = c.find("tools"); t != c.end() && t->is_array())
        for (const auto& tool : *t) fns.push_back(tool.contains("function") ? tool["function"] : tool);
    return fns;
}

struct StreamRun {
    dsinfer::text::AssembledMessage message;
    std::vector<dsinfer::text::ChatDelta> deltas;  // every non-empty delta, the finish() one last
    bool truncated_reasoning = false;
    bool truncated_tool_call = false;
};

// Feeds `text` in pieces of the given sizes (the last size repeats), then finish().
inline StreamRun run_stream(const std::string& text, const dsinfer::text::StreamParserOptions& opt,
                            const std::vector<size_t>& sizes) {
    dsinfer::text::DsmlStreamParser p(opt);
    StreamRun r;
    size_t i = 0, k = 0;
    while (i < text.size()) {
        const size_t n = std::min(text.size() - i, sizes[std::min(k++, sizes.size() - 1)]);
        auto d = p.feed(std::string_view(text).substr(i, n));
        i += n;
        if (!d.empty()) {
            dsinfer::text::accumulate(r.message, d);
            r.deltas.push_back(std::move(d));
        }
    }
    auto d = p.finish();
    if (!d.empty()) {
        dsinfer::text::accumulate(r.message, d);
        r.deltas.push_back(std::move(d));
    }
    r.truncated_reasoning = p.truncated_reasoning();
    r.truncated_tool_call = p.truncated_tool_call();
    return r;
}

inline std::vector<size_t> random_sizes(size_t total, uint64_t seed, size_t max_size) {
    std::mt19937_64 rng(seed);
    std::vector<size_t> s;
    for (size_t sum = 0; sum < total;) {
        s.push_back(1 + rng() % max_size);
        sum += s.back();
    }
    return s;
}

// The assembled message with each call's arguments parsed (so compact and spaced JSON compare equal)
// and ids left out.
inline ojson normalized(const dsinfer::text::AssembledMessage& m) {
    ojson calls = ojson::array();
    for (const auto& c : m.tool_calls) {
        ojson args = ojson::parse(c.arguments, nullptr, false);
        calls.push_back(
            {{"name", c.name}, {"arguments", args.is_discarded() ? ojson("<invalid JSON> " + c.arguments) : args}});
    }
    return {{"content", m.content}, {"reasoning_content", m.reasoning_content}, {"tool_calls", calls}};
}

inline ojson normalized_expected(const ojson& expected) {
    ojson calls = ojson::array();
    for (const auto& c : expected["tool_calls"]) {
        const auto& fn = c["function"];
        calls.push_back({{"name", fn["name"]}, {"arguments", ojson::parse(fn["arguments"].get<std::string>())}});
    }
    return {
        {"content", expected["content"]}, {"reasoning_content", expected["reasoning_content"]}, {"tool_calls", calls}};
}

inline bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

// Markup that must never reach a client: whole tags, and (at the end of a piece) the start of one.
inline std::string markup_problem(const std::string& s) {
    static const std::vector<std::string> whole = {"｜DSML｜", "<think>", "</think>", std::string(dsinfer::text::kEos)};
    static const std::vector<std::string> starts = {"<｜DSML｜", "</｜DSML｜", "<think>", "</think>",
                                                    std::string(dsinfer::text::kEos)};
    for (const auto& w : whole)
        if (s.find(w) != std::string::npos) return "contains '" + w + "'";
    for (const auto& m : starts)
        for (size_t len = 2; len < m.size() && len <= s.size(); ++len)
            if (s.compare(s.size() - len, len, m, 0, len) == 0) return "ends with a piece of '" + m + "'";
    if (!valid_utf8(s)) return "is not valid UTF-8";
    return {};
}

inline void expect_clean_deltas(const StreamRun& r, const std::string& what) {
    for (size_t i = 0; i < r.deltas.size(); ++i) {
        const auto& d = r.deltas[i];
        auto check = [&](const std::string& s, const char* field) {
            std::string p = markup_problem(s);
            EXPECT_TRUE(p.empty()) << what << ": delta " << i << " " << field << " " << p << ": " << s;
        };
        check(d.content, "content");
        check(d.reasoning_content, "reasoning_content");
        for (const auto& tc : d.tool_calls) {
            check(tc.arguments, "arguments");
            check(tc.name, "name");
        }
    }
}

}  // namespace dsml_test
