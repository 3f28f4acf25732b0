// Every case of tests/data/dsml: encode cases must reproduce the prompt exactly; parse cases must give the
// reference parser's result (or its error) with the strict parser, and the same message with the lenient
// streaming parser whatever the chunking, without a piece of markup in any delta.
#include "text/test_dsml_util.h"

using namespace dsinfer::text;
using namespace dsml_test;

namespace {

bool known_format(const ojson& c) {
    auto f = c.find("format");
    if (f == c.end() || !f->is_string()) return false;
    const auto s = f->get<std::string>();
    return s == "dsv4" || s == "dsv4-0731" || s == "dsv32";
}

}  // namespace

TEST(DsmlCases, EveryCaseHasAKindAndFormatWeHandle) {
    const auto cases = load_cases();
    ASSERT_GE(cases.size(), 20u) << "tests/data/dsml is missing cases";
    for (const auto& c : cases) {
        const std::string kind = c.json.value("kind", "");
        EXPECT_TRUE(kind == "encode" || kind == "parse") << c.file << ": unhandled case kind '" << kind << "'";
        EXPECT_TRUE(known_format(c.json)) << c.file << ": unhandled format " << c.json.value("format", ojson()).dump();
    }
}

TEST(DsmlCases, EncodeCasesReproduceThePromptExactly) {
    int n = 0;
    for (const auto& c : load_cases()) {
        if (c.json.value("kind", "") != "encode") continue;
        SCOPED_TRACE(c.file);
        ++n;
        std::string prompt;
        try {
            const auto in = chat_input_from_case(c.json);
            prompt = encode_chat(in.messages, in.options, in.context);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "encode threw: " << e.what();
            continue;
        }
        const std::string expected = c.json.at("expected_prompt").get<std::string>();
        EXPECT_EQ(prompt, expected);
        if (prompt != expected) {
            size_t i = 0;
            while (i < prompt.size() && i < expected.size() && prompt[i] == expected[i]) ++i;
            ADD_FAILURE() << "first difference at byte " << i << ": got '" << prompt.substr(i, 80) << "', expected '"
                          << expected.substr(i, 80) << "'";
        }
    }
    EXPECT_GE(n, 13);
}

TEST(DsmlCases, StrictParserMatchesTheReference) {
    int n = 0;
    for (const auto& c : load_cases()) {
        if (c.json.value("kind", "") != "parse") continue;
        SCOPED_TRACE(c.file);
        ++n;
        const auto format = chat_format_from_name(c.json.at("format").get<std::string>());
        const bool thinking = c.json.value("thinking", false);
        const std::string text = c.json.at("model_output").get<std::string>();
        const bool want_error = c.json.contains("expected_error") && !c.json["expected_error"].is_null();
        if (want_error) {
            EXPECT_THROW(parse_completion_strict(text, thinking, format), DsmlError);
            continue;
        }
        try {
            const ojson got = parsed_message_to_json(parse_completion_strict(text, thinking, format));
            EXPECT_EQ(got, c.json.at("expected")) << got.dump();
        } catch (const DsmlError& e) {
            ADD_FAILURE() << "strict parser threw: " << e.what();
        }
    }
    EXPECT_GE(n, 9);
}

// The lenient parser: the same assembled message for 1-byte pieces, random pieces (several seeds), every
// split into two pieces, and the whole text at once; no markup in any delta; and for well-formed output
// the reference's message (arguments compared as JSON).
TEST(DsmlCases, LenientParserIsChunkingInvariantAndClean) {
    int n = 0;
    for (const auto& c : load_cases()) {
        if (c.json.value("kind", "") != "parse") continue;
        SCOPED_TRACE(c.file);
        ++n;
        StreamParserOptions opt;
        opt.format = chat_format_from_name(c.json.at("format").get<std::string>());
        opt.starts_in_reasoning = c.json.value("thinking", false);
        opt.tools = case_functions(c.json);
        opt.id_seed = 7;
        const std::string text = c.json.at("model_output").get<std::string>();

        const StreamRun whole = run_stream(text, opt, {text.size() + 1});
        const ojson reference = normalized(whole.message);
        expect_clean_deltas(whole, "whole");

        std::vector<std::pair<std::string, std::vector<size_t>>> chunkings = {{"1-byte", {1}}, {"3-byte", {3}}};
        for (uint64_t seed = 1; seed <= 6; ++seed)
            chunkings.push_back({"random seed " + std::to_string(seed), random_sizes(text.size(), seed, 12)});
        for (size_t cut = 1; cut < text.size(); ++cut)
            chunkings.push_back({"split at " + std::to_string(cut), {cut, text.size()}});
        for (const auto& [name, sizes] : chunkings) {
            const StreamRun r = run_stream(text, opt, sizes);
            EXPECT_EQ(normalized(r.message), reference) << name;
            EXPECT_EQ(r.truncated_reasoning, whole.truncated_reasoning) << name;
            EXPECT_EQ(r.truncated_tool_call, whole.truncated_tool_call) << name;
            for (size_t i = 0; i < r.message.tool_calls.size(); ++i)
                EXPECT_EQ(r.message.tool_calls[i].id, whole.message.tool_calls[i].id) << name;
            expect_clean_deltas(r, name);
        }

        // Every tool call is announced once, with an id and a name, and its arguments are valid JSON.
        for (const auto& tc : whole.message.tool_calls) {
            EXPECT_EQ(tc.id.rfind("call_", 0), 0u);
            EXPECT_EQ(tc.id.size(), 29u);
            EXPECT_FALSE(tc.name.empty());
            EXPECT_FALSE(ojson::parse(tc.arguments, nullptr, false).is_discarded()) << tc.arguments;
        }

        const bool want_error = c.json.contains("expected_error") && !c.json["expected_error"].is_null();
        if (!want_error) {
            EXPECT_EQ(reference, normalized_expected(c.json.at("expected")));
        } else if (c.json.contains("vllm_expected")) {
            // Graceful degradation as the case describes it, where it states the fields (a description that
            // would put markup into content yields to the no-markup rule above).
            const ojson& v = c.json["vllm_expected"];
            for (const char* field : {"content", "reasoning_content"}) {
                if (v.contains(field) &&
                    (!v[field].is_string() || markup_problem(v[field].get<std::string>()).empty())) {
                    EXPECT_EQ(reference[field], v[field].is_null() ? ojson("") : v[field]) << field;
                }
            }
            if (v.contains("tool_calls") && v["tool_calls"].is_array()) {
                EXPECT_EQ(reference["tool_calls"].size(), v["tool_calls"].size());
            }
        }
    }
    EXPECT_GE(n, 9);
}

// Streaming releases text as it comes: with 1-byte pieces the reasoning is complete before finish().
TEST(DsmlCases, LenientParserReleasesTextBeforeTheEnd) {
    for (const auto& c : load_cases()) {
        if (c.json.value("kind", "") != "parse") continue;
        const std::string text = c.json.at("model_output").get<std::string>();
        if (!c.json.value("thinking", false) || text.find("</think>") == std::string::npos) continue;
        SCOPED_TRACE(c.file);
        StreamParserOptions opt;
        opt.format = chat_format_from_name(c.json.at("format").get<std::string>());
        opt.starts_in_reasoning = true;
        DsmlStreamParser p(opt);
        std::string reasoning;
        const size_t end = text.find("</think>") + std::string("</think>").size();
        for (size_t i = 0; i < end; ++i) reasoning += p.feed(text.substr(i, 1)).reasoning_content;
        EXPECT_EQ(reasoning, text.substr(0, text.find("</think>")));
    }
}
