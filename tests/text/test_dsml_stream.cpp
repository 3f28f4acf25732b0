// The lenient streaming parser on malformed and tricky output: what it makes of it, and that it does the
// same whatever the chunking.
#include "text/test_dsml_util.h"

using namespace dsinfer::text;
using namespace dsml_test;

namespace {

const std::string kEosS(kEos);

StreamParserOptions opts(bool thinking, ChatFormat f = ChatFormat::kDsv4, std::vector<ojson> tools = {}) {
    StreamParserOptions o;
    o.format = f;
    o.starts_in_reasoning = thinking;
    o.tools = std::move(tools);
    o.id_seed = 11;
    return o;
}

// Parses `text` with several chunkings, checks they agree and that no delta carries markup; returns the
// normalized message of the whole-text run.
ojson parse_all_ways(const std::string& text, const StreamParserOptions& o, StreamRun* whole_out = nullptr) {
    const StreamRun whole = run_stream(text, o, {text.size() + 1});
    const ojson ref = normalized(whole.message);
    expect_clean_deltas(whole, "whole");
    std::vector<std::vector<size_t>> chunkings = {{1}, {2}, {5}};
    for (uint64_t seed = 1; seed <= 4; ++seed) chunkings.push_back(random_sizes(text.size(), seed, 9));
    for (const auto& sizes : chunkings) {
        const StreamRun r = run_stream(text, o, sizes);
        EXPECT_EQ(normalized(r.message), ref) << "chunk sizes starting " << sizes[0];
        expect_clean_deltas(r, "chunked");
    }
    if (whole_out) *whole_out = whole;
    return ref;
}

std::string call_block(const std::string& block, const std::string& body) {
    return "\n\n<｜DSML｜" + block + ">\n" + body + "</｜DSML｜" + block + ">";
}

const char* kWeatherCall =
    "<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n";

}  // namespace

TEST(DsmlStream, MissingThinkEndLeavesEverythingInReasoning) {
    StreamRun r;
    const ojson m = parse_all_ways("I am still thinking about", opts(true), &r);
    EXPECT_EQ(m["reasoning_content"], "I am still thinking about");
    EXPECT_EQ(m["content"], "");
    EXPECT_TRUE(r.truncated_reasoning);
}

TEST(DsmlStream, TruncatedToolCallIsClosedAsValidJson) {
    StreamRun r;
    const ojson m = parse_all_ways(
        "Need it.</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
        "<｜DSML｜parameter name=\"city\" string=\"true\">Par",
        opts(true), &r);
    ASSERT_EQ(m["tool_calls"].size(), 1u);
    EXPECT_EQ(m["tool_calls"][0]["name"], "get_weather");
    EXPECT_EQ(m["tool_calls"][0]["arguments"], ojson({{"city", "Par"}}));
    EXPECT_EQ(m["content"], "");
    EXPECT_TRUE(r.truncated_tool_call);
    // Cut inside the closing tag: its fragment must not end up in the value.
    const ojson m2 = parse_all_ways(
        "x</think><｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" "
        "string=\"true\">v</｜DS",
        opts(true));
    EXPECT_EQ(m2["tool_calls"][0]["arguments"], ojson({{"a", "v"}}));
}

TEST(DsmlStream, TextAfterTheBlockIsDropped) {
    const ojson m = parse_all_ways(
        "R</think>Let me check." + call_block("tool_calls", kWeatherCall) + "\nand some trailing chatter" + kEosS,
        opts(true));
    EXPECT_EQ(m["content"], "Let me check.");
    ASSERT_EQ(m["tool_calls"].size(), 1u);
    EXPECT_EQ(m["tool_calls"][0]["arguments"], ojson({{"city", "Paris"}}));
}

TEST(DsmlStream, V32BlockGivenToV4IsStillACallAndNeverContent) {
    const std::string text = "Two.</think>" + call_block("function_calls", kWeatherCall) + kEosS;
    EXPECT_THROW(parse_completion_strict(text, true, ChatFormat::kDsv4), DsmlError);
    const ojson m = parse_all_ways(text, opts(true, ChatFormat::kDsv4));
    EXPECT_EQ(m["content"], "");
    EXPECT_EQ(m["reasoning_content"], "Two.");
    ASSERT_EQ(m["tool_calls"].size(), 1u);
    EXPECT_EQ(m["tool_calls"][0]["name"], "get_weather");
    // And the other way round.
    const ojson m2 =
        parse_all_ways("Two.</think>" + call_block("tool_calls", kWeatherCall) + kEosS, opts(true, ChatFormat::kDsv32));
    EXPECT_EQ(m2["tool_calls"].size(), 1u);
}

TEST(DsmlStream, ToolBlockInsideUnfinishedReasoningEndsIt) {
    const ojson m = parse_all_ways("I should call it." + call_block("tool_calls", kWeatherCall) + kEosS, opts(true));
    EXPECT_EQ(m["reasoning_content"], "I should call it.");
    EXPECT_EQ(m["content"], "");
    EXPECT_EQ(m["tool_calls"].size(), 1u);
}

TEST(DsmlStream, ExtraThinkTagsAreSkipped) {
    const ojson m = parse_all_ways("<think>R</think>A</think>B<think>C" + kEosS, opts(true));
    EXPECT_EQ(m["reasoning_content"], "R");
    EXPECT_EQ(m["content"], "ABC");
    // Chat mode: a model that opens a reasoning block anyway has it reported as reasoning.
    const ojson c = parse_all_ways("\n<think>hmm</think>Hi" + kEosS, opts(false));
    EXPECT_EQ(c["reasoning_content"], "hmm");
    EXPECT_EQ(c["content"], "Hi");
}

TEST(DsmlStream, LiteralAngleBracketsAreContent) {
    const std::string text = "a < b, x<y, <div>html</div>, <｜DSM not a tag, <thin, </thinking> and 1<2<" + kEosS;
    const ojson m = parse_all_ways(text, opts(false));
    EXPECT_EQ(m["content"], "a < b, x<y, <div>html</div>, <｜DSM not a tag, <thin, </thinking> and 1<2<");
    // A lone '<' at the very end (no EOS) is text too; a longer tag fragment is not.
    EXPECT_EQ(parse_all_ways("1 <", opts(false))["content"], "1 <");
    EXPECT_EQ(parse_all_ways("done</thi", opts(true))["reasoning_content"], "done");
    EXPECT_EQ(parse_all_ways("done\n\n<｜DSML｜tool_ca", opts(false))["content"], "done\n\n");
}

TEST(DsmlStream, EosEndsTheMessage) {
    const ojson m = parse_all_ways("R</think>Answer." + kEosS + "garbage after EOS", opts(true));
    EXPECT_EQ(m["content"], "Answer.");
}

TEST(DsmlStream, NewlinesBeforeTheBlockAreNotContentButOthersAre) {
    EXPECT_EQ(parse_all_ways("R</think>\n\nA\n\n" + kEosS, opts(true))["content"], "\n\nA\n\n");
    // Exactly the "\n\n" separator is dropped, as the strict parser does.
    const std::string text = "R</think>A\n" + call_block("tool_calls", kWeatherCall) + kEosS;
    EXPECT_EQ(parse_all_ways(text, opts(true))["content"], "A\n");
    EXPECT_EQ(parse_completion_strict(text, true, ChatFormat::kDsv4).content, "A\n");
    // Only the last two newlines wait: they could open a block.
    DsmlStreamParser p(opts(false));
    EXPECT_EQ(p.feed("A\n\n\n\n").content, "A\n\n");
    EXPECT_EQ(p.feed("\n").content, "\n");
    EXPECT_EQ(p.feed("B").content, "\n\nB");
}

TEST(DsmlStream, EmptyInvokeHasEmptyArguments) {
    StreamRun r;
    parse_all_ways(
        "</think>" + call_block("tool_calls", "<｜DSML｜invoke name=\"get_time\">\n\n</｜DSML｜invoke>\n") + kEosS,
        opts(true), &r);
    ASSERT_EQ(r.message.tool_calls.size(), 1u);
    EXPECT_EQ(r.message.tool_calls[0].arguments, "{}");
}

TEST(DsmlStream, StringValuesAreEscapedAndStreamedAsTheyArrive) {
    const std::string value = "line 1\nsays \"hi\" \\ tab\t<b>bold</b> 中文 😀";
    const std::string text = "</think>" +
                             call_block("tool_calls",
                                        "<｜DSML｜invoke name=\"write\">\n<｜DSML｜parameter name=\"text\" "
                                        "string=\"true\">" +
                                            value + "</｜DSML｜parameter>\n</｜DSML｜invoke>\n") +
                             kEosS;
    const ojson m = parse_all_ways(text, opts(true));
    EXPECT_EQ(m["tool_calls"][0]["arguments"]["text"], value);

    // Fed byte by byte, argument fragments arrive before the parameter is closed.
    DsmlStreamParser p(opts(true));
    const size_t value_end = text.find("</｜DSML｜parameter>");
    std::string args;
    for (size_t i = 0; i < value_end; ++i)
        for (const auto& tc : p.feed(text.substr(i, 1)).tool_calls) args += tc.arguments;
    EXPECT_EQ(args.rfind("{\"text\": \"line 1\\nsays \\\"hi\\\"", 0), 0u) << args;
}

TEST(DsmlStream, ArgumentTypesFollowTheSchema) {
    const ojson fn = {{"name", "f"},
                      {"parameters",
                       {{"type", "object"},
                        {"properties",
                         {{"n", {{"type", "integer"}}},
                          {"s", {{"type", "string"}}},
                          {"b", {{"type", "boolean"}}},
                          {"u", {{"anyOf", ojson::array({{{"type", "integer"}}, {{"type", "string"}}})}}},
                          {"o", {{"type", "object"}}}}}}}};
    auto param = [](const std::string& k, const std::string& s, const std::string& v) {
        return "<｜DSML｜parameter name=\"" + k + "\" string=\"" + s + "\">" + v + "</｜DSML｜parameter>\n";
    };
    const std::string body = "<｜DSML｜invoke name=\"f\">\n" + param("n", "true", "42") + param("s", "false", "hello") +
                             param("b", "false", "True") + param("u", "true", "abc") +
                             param("o", "false", "{\"k\": [1, 2]}") + param("x", "false", "not json") +
                             param("y", "false", "007") + "</｜DSML｜invoke>\n";
    const std::string text = "</think>" + call_block("tool_calls", body) + kEosS;
    const ojson with_schema = parse_all_ways(text, opts(true, ChatFormat::kDsv4, {fn}));
    EXPECT_EQ(
        with_schema["tool_calls"][0]["arguments"],
        ojson::parse(
            R"({"n": 42, "s": "hello", "b": true, "u": "abc", "o": {"k": [1, 2]}, "x": "not json", "y": "007"})"));
    // Without schemas the string attribute decides; non-JSON "false" values still come out as valid JSON.
    const ojson without = parse_all_ways(text, opts(true));
    EXPECT_EQ(
        without["tool_calls"][0]["arguments"],
        ojson::parse(
            R"({"n": "42", "s": "hello", "b": true, "u": "abc", "o": {"k": [1, 2]}, "x": "not json", "y": "007"})"));
}

TEST(DsmlStream, ParallelCallsGetIndicesAndDistinctIds) {
    StreamRun r;
    parse_all_ways(
        "</think>" + call_block("tool_calls", std::string(kWeatherCall) + kWeatherCall + kWeatherCall) + kEosS,
        opts(true), &r);
    ASSERT_EQ(r.message.tool_calls.size(), 3u);
    EXPECT_NE(r.message.tool_calls[0].id, r.message.tool_calls[1].id);
    EXPECT_NE(r.message.tool_calls[1].id, r.message.tool_calls[2].id);
    // The first delta of each call carries its id and name, later ones only argument text.
    std::vector<int> announced(3, 0);
    for (const auto& d : r.deltas)
        for (const auto& tc : d.tool_calls) {
            if (!tc.id.empty()) {
                EXPECT_EQ(tc.name, "get_weather");
                ++announced[tc.index];
            }
        }
    EXPECT_EQ(announced, std::vector<int>({1, 1, 1}));
}

TEST(DsmlStream, MissingCloseTagsStillGiveCalls) {
    // No </invoke> before the next invoke, no </tool_calls> at all, no "\n\n" before the block.
    const ojson m = parse_all_ways(
        "</think><｜DSML｜tool_calls><｜DSML｜invoke name=\"a\"><｜DSML｜parameter name=\"k\" "
        "string=\"true\">1</｜DSML｜parameter>"
        "<｜DSML｜invoke name=\"b\">" +
            kEosS,
        opts(true));
    ASSERT_EQ(m["tool_calls"].size(), 2u);
    EXPECT_EQ(m["tool_calls"][0]["arguments"], ojson({{"k", "1"}}));
    EXPECT_EQ(m["tool_calls"][1]["name"], "b");
    EXPECT_EQ(m["tool_calls"][1]["arguments"], ojson::object());
}

TEST(DsmlStream, SplitUtf8NeverProducesBrokenText) {
    const std::string text = "思考🤔</think>答案：北京 😀" + kEosS;
    StreamRun r;
    const ojson m = parse_all_ways(text, opts(true), &r);
    EXPECT_EQ(m["reasoning_content"], "思考🤔");
    EXPECT_EQ(m["content"], "答案：北京 😀");
}

TEST(DsmlStream, FinishIsFinal) {
    DsmlStreamParser p(opts(false));
    EXPECT_EQ(p.feed("Hello").content, "Hello");
    EXPECT_TRUE(p.finish().empty());
    EXPECT_TRUE(p.feed("more").empty());
    EXPECT_TRUE(p.finish().empty());
}

TEST(DsmlStream, ForcedToolPrefixOpensTheCall) {
    // tool_choice named: the runtime forces the block and invoke, the model writes the rest.
    ChatEncoderInput in;
    in.tool_choice.kind = ToolChoice::Kind::kNamed;
    in.tool_choice.name = "get_weather";
    DsmlStreamParser p(opts(false));
    AssembledMessage m;
    accumulate(m, p.feed(in.forced_tool_prefix()));
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.tool_calls[0].name, "get_weather");
    accumulate(m,
               p.feed("<｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                      "</｜DSML｜tool_calls>" +
                      kEosS));
    accumulate(m, p.finish());
    EXPECT_EQ(ojson::parse(m.tool_calls[0].arguments), ojson({{"city", "Oslo"}}));
    EXPECT_EQ(m.content, "");
}

// Random soup of tags, pieces of tags, text, newlines and multibyte characters: whatever the chunking the
// parser gives the same result, its argument texts are valid JSON and every delta is valid UTF-8 (even with
// a stray byte that is not UTF-8 in the text).
TEST(DsmlStream, RandomOutputIsChunkingInvariant) {
    const std::vector<std::string> pieces = {"text",
                                             " ",
                                             "\n",
                                             "\n\n",
                                             "<",
                                             "<｜",
                                             "</",
                                             "<think>",
                                             "</think>",
                                             "</thi",
                                             kEosS,
                                             "<｜end▁of",
                                             "<｜DSML｜tool_calls>",
                                             "</｜DSML｜tool_calls>",
                                             "<｜DSML｜function_calls>",
                                             "<｜DSML｜invoke name=\"f\">",
                                             "<｜DSML｜invoke name=\"g\">\n",
                                             "</｜DSML｜invoke>",
                                             "<｜DSML｜parameter name=\"a\" string=\"true\">",
                                             "<｜DSML｜parameter name=\"b\" string=\"false\">",
                                             "</｜DSML｜parameter>",
                                             "<｜DSML｜parameter name=\"",
                                             "42",
                                             "[1, {\"x\": null}]",
                                             "\"q\"",
                                             "中文",
                                             "😀",
                                             "\xe4",
                                             ">",
                                             "=\"",
                                             "｜DSML｜"};
    std::mt19937_64 rng(2024);
    for (int iter = 0; iter < 300; ++iter) {
        std::string text;
        const int n = 1 + static_cast<int>(rng() % 40);
        for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
        auto o = opts(rng() % 2 == 0, rng() % 3 == 0 ? ChatFormat::kDsv32 : ChatFormat::kDsv4);
        // With schemas, "b" (an array) is streamed verbatim, so its garbage may stay invalid JSON.
        const bool typed = iter % 2 == 1;
        if (typed)
            o.tools = {ojson::parse(R"({"name": "f", "parameters": {"properties": {"a": {"type": "integer"},
                "b": {"type": "array"}}}})")};
        const StreamRun whole = run_stream(text, o, {text.size() + 1});
        const ojson ref = normalized(whole.message);
        for (uint64_t seed = 1; seed <= 3; ++seed) {
            const StreamRun r = run_stream(text, o, random_sizes(text.size(), seed + iter * 7, 6));
            ASSERT_EQ(normalized(r.message), ref) << "text: " << text;
        }
        const StreamRun bytes = run_stream(text, o, {1});
        ASSERT_EQ(normalized(bytes.message), ref) << "text: " << text;
        for (const auto& tc : whole.message.tool_calls) {
            if (!typed) {
                EXPECT_FALSE(ojson::parse(tc.arguments, nullptr, false).is_discarded())
                    << tc.arguments << " from " << text;
            }
        }
        for (const auto& d : bytes.deltas) {
            EXPECT_TRUE(valid_utf8(d.content));
            EXPECT_TRUE(valid_utf8(d.reasoning_content));
            for (const auto& tc : d.tool_calls) EXPECT_TRUE(valid_utf8(tc.arguments) && valid_utf8(tc.name));
        }
    }
}

TEST(DsmlStream, WholeCompletionHelper) {
    const AssembledMessage m =
        parse_completion_lenient("R</think>Hi" + call_block("tool_calls", kWeatherCall) + kEosS, opts(true));
    EXPECT_EQ(m.reasoning_content, "R");
    EXPECT_EQ(m.content, "Hi");
    ASSERT_EQ(m.tool_calls.size(), 1u);
    EXPECT_EQ(m.tool_calls[0].arguments, "{\"city\": \"Paris\"}");
}

TEST(DsmlStream, NoCallsWhenNoneAreAllowed) {
    auto o = opts(true);
    o.emit_tool_calls = false;
    const ojson m = parse_all_ways("R</think>Let me see." + call_block("tool_calls", kWeatherCall) + kEosS, o);
    EXPECT_EQ(m["content"], "Let me see.");
    EXPECT_TRUE(m["tool_calls"].empty());
}

TEST(DsmlStream, ObjectAndArrayValuesStreamWhenTheSchemaSaysSo) {
    const ojson fn = ojson::parse(R"({"name": "f", "parameters": {"type": "object", "properties": {
        "items": {"type": "array"}, "opts": {"type": "object"}, "empty": {"type": "array"}}}})");
    const std::string text =
        "</think>" +
        call_block("tool_calls",
                   "<｜DSML｜invoke name=\"f\">\n"
                   "<｜DSML｜parameter name=\"items\" string=\"false\">\n[\"a\", {\"b\": 1}]\n</｜DSML｜parameter>\n"
                   "<｜DSML｜parameter name=\"opts\" string=\"false\">{\"x\": true}</｜DSML｜parameter>\n"
                   "<｜DSML｜parameter name=\"empty\" string=\"false\"> </｜DSML｜parameter>\n"
                   "</｜DSML｜invoke>\n") +
        kEosS;
    const auto o = opts(true, ChatFormat::kDsv4, {fn});
    EXPECT_EQ(parse_all_ways(text, o)["tool_calls"][0]["arguments"],
              ojson::parse(R"({"items": ["a", {"b": 1}], "opts": {"x": true}, "empty": null})"));
    // Fed byte by byte, the array's text arrives before its closing tag.
    DsmlStreamParser p(o);
    std::string args;
    const size_t end = text.find("]\n</｜DSML｜parameter>");
    for (size_t i = 0; i < end; ++i)
        for (const auto& tc : p.feed(text.substr(i, 1)).tool_calls) args += tc.arguments;
    EXPECT_EQ(args, "{\"items\": [\"a\", {\"b\": 1}");
}
