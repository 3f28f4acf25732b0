// Encoder rules beyond the case files, with expectations written from the rules of docs/dsml.md, and the
// Python-compatible JSON text the prompts embed.
#include "text/test_dsml_util.h"

using namespace dsinfer::text;

namespace {

ChatMessage msg(std::string role, std::string content) {
    ChatMessage m;
    m.role = std::move(role);
    m.content = std::move(content);
    return m;
}

ChatMessage assistant(std::string content, std::string reasoning = "") {
    ChatMessage m = msg("assistant", std::move(content));
    m.reasoning_content = std::move(reasoning);
    return m;
}

EncodeOptions v4(bool thinking) {
    EncodeOptions o;
    o.thinking = thinking;
    return o;
}

const std::string B(kBos), E(kEos), U(kUserToken), A(kAssistantToken);

}  // namespace

TEST(DsmlJson, PythonJsonDumps) {
    EXPECT_EQ(py_json_dumps(ojson::parse(R"({"b": 1, "a": [true, null, "x"], "c": {}})")),
              R"({"b": 1, "a": [true, null, "x"], "c": {}})");
    auto f = [](double d) { return py_json_dumps(ojson(d)); };
    EXPECT_EQ(f(1.0), "1.0");
    EXPECT_EQ(f(0.5), "0.5");
    EXPECT_EQ(f(-0.0), "-0.0");
    EXPECT_EQ(f(0.1), "0.1");
    EXPECT_EQ(f(0.0001), "0.0001");
    EXPECT_EQ(f(0.00001), "1e-05");
    EXPECT_EQ(f(1.5e-7), "1.5e-07");
    EXPECT_EQ(f(1e15), "1000000000000000.0");
    EXPECT_EQ(f(1234567890123456.0), "1234567890123456.0");
    EXPECT_EQ(f(1e16), "1e+16");
    EXPECT_EQ(f(1.25e300), "1.25e+300");
    EXPECT_EQ(f(123456789.125), "123456789.125");
    EXPECT_EQ(py_json_dumps(ojson::parse("[1e2, -7, 18446744073709551615]")), "[100.0, -7, 18446744073709551615]");
    EXPECT_EQ(py_json_string("a\"b\\c\n\t\x01\x1f/中文😀\x7f"), "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/中文😀\x7f\"");
}

TEST(DsmlEncode, ReasoningEffortPrefix) {
    const std::vector<ChatMessage> m = {msg("user", "Q")};
    EncodeOptions o = v4(true);
    o.reasoning_effort = "max";
    const std::string p = encode_chat(m, o);
    EXPECT_EQ(p.rfind(B + "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n", 0), 0u);
    EXPECT_NE(p.find("no assumption is left unchecked.\n\n" + U + "Q" + A + "<think>"), std::string::npos);
    o.reasoning_effort = "high";
    EXPECT_EQ(encode_chat(m, o), B + U + "Q" + A + "<think>");
    o.thinking = false;
    o.reasoning_effort = "max";
    EXPECT_EQ(encode_chat(m, o), B + U + "Q" + A + "</think>");  // never in chat mode
    o.reasoning_effort = "low";
    EXPECT_THROW(encode_chat(m, o), DsmlError);  // not a value of the original V4 table

    EncodeOptions n = v4(true);
    n.format = ChatFormat::kDsv4_0731;
    n.reasoning_effort = "low";
    EXPECT_EQ(encode_chat(m, n), B + U + "Q" + A + "<think>");
    n.reasoning_effort = "high";
    EXPECT_EQ(encode_chat(m, n).rfind(B + "Reasoning Effort: Absolute maximum", 0), 0u);
    n.reasoning_effort = "max";
    EXPECT_EQ(encode_chat(m, n).rfind(B + "Reasoning Effort: Beyond maximum \u2014 exhaustive", 0), 0u);
    // The prefix goes before a system prompt.
    EXPECT_NE(encode_chat({msg("system", "S"), msg("user", "Q")}, n).find("undiscovered.\n\nS" + U), std::string::npos);
}

TEST(DsmlEncode, DropThinkingOffKeepsEveryTurnsReasoning) {
    const std::vector<ChatMessage> m = {msg("user", "Hi"), assistant("Hello!", "greet"), msg("user", "Bye")};
    EncodeOptions o = v4(true);
    EXPECT_EQ(encode_chat(m, o), B + U + "Hi" + A + "</think>Hello!" + E + U + "Bye" + A + "<think>");
    o.drop_thinking = false;
    EXPECT_EQ(encode_chat(m, o), B + U + "Hi" + A + "<think>greet</think>Hello!" + E + U + "Bye" + A + "<think>");
    // Chat mode never shows reasoning.
    EXPECT_EQ(encode_chat(m, v4(false)), B + U + "Hi" + A + "</think>Hello!" + E + U + "Bye" + A + "</think>");
}

TEST(DsmlEncode, ToolsAnywhereKeepReasoning) {
    ChatMessage dev = msg("developer", "D");
    dev.tools = {ojson{{"name", "t"}}};
    const std::vector<ChatMessage> m = {msg("user", "Hi"), assistant("Hello!", "greet"), dev};
    const std::string p = encode_chat(m, v4(true));
    EXPECT_NE(p.find(U + "Hi" + A + "<think>greet</think>Hello!" + E + U + "D\n\n## Tools\n\n"), std::string::npos);
    const std::string tail = "tool calls.\n" + A + "<think>";
    EXPECT_EQ(p.substr(p.size() - tail.size()), tail);
}

TEST(DsmlEncode, EarlierDeveloperMessagesAreDroppedWithReasoning) {
    const std::vector<ChatMessage> m = {msg("developer", "D1"), assistant("A1", "r1"), msg("user", "Q")};
    EXPECT_EQ(encode_chat(m, v4(true)), B + "A1" + E + U + "Q" + A + "<think>");
    EXPECT_EQ(encode_chat(m, v4(false)), B + U + "D1" + A + "</think>A1" + E + U + "Q" + A + "</think>");
}

TEST(DsmlEncode, ToolResultsAndUserTextShareOneTurn) {
    ChatMessage call = assistant("", "r");
    call.tool_calls = {{"c1", "f", "{}"}, {"c2", "f", "{\"x\": 1.0}"}};
    ChatMessage t1 = msg("tool", "one"), t2 = msg("tool", "two");
    t1.tool_call_id = "c1";
    t2.tool_call_id = "c2";
    const std::vector<ChatMessage> m = {msg("user", "Q"), call, t2, t1, msg("user", "and?"), msg("user", "more")};
    const std::string p = encode_chat(m, v4(false));
    EXPECT_EQ(
        p, B + U + "Q" + A +
               "</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n\n</｜DSML｜invoke>\n"
               "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"x\" string=\"false\">1.0</｜DSML｜parameter>\n"
               "</｜DSML｜invoke>\n</｜DSML｜tool_calls>" +
               E + U + "<tool_result>one</tool_result>\n\n<tool_result>two</tool_result>\n\nand?\n\nmore" + A +
               "</think>");
    // Tool content given as parts: text parts joined, others marked.
    ChatMessage tp = msg("tool", "");
    tp.tool_call_id = "c1";
    tp.content_parts = std::vector<ContentPart>{{"text", "a"}, {"image_url", ""}, {"text", "b"}};
    EXPECT_NE(encode_chat({msg("user", "Q"), call, tp}, v4(false))
                  .find("<tool_result>a\n\n[Unsupported image_url]\n\nb</tool_result>"),
              std::string::npos);
}

TEST(DsmlEncode, ToolArguments) {
    ChatMessage call = assistant("");
    call.tool_calls = {{"", "f", "not json"}};
    EXPECT_NE(encode_chat({msg("user", "Q"), call}, v4(false))
                  .find("<｜DSML｜parameter name=\"arguments\" string=\"true\">not json</｜DSML｜parameter>"),
              std::string::npos);
    EncodeOptions o32 = v4(false);
    o32.format = ChatFormat::kDsv32;
    EXPECT_THROW(encode_chat({msg("user", "Q"), call}, o32), DsmlError);
    call.tool_calls = {{"", "f", "[1, 2]"}};
    EXPECT_THROW(encode_chat({msg("user", "Q"), call}, v4(false)), DsmlError);
    call.tool_calls = {{"", "f", R"({"s": "multi\nline \"raw\"", "o": {"b": [1, 2.5, null]}, "e": ""})"}};
    EXPECT_NE(encode_chat({msg("user", "Q"), call}, v4(false))
                  .find("<｜DSML｜parameter name=\"s\" string=\"true\">multi\nline \"raw\"</｜DSML｜parameter>\n"
                        "<｜DSML｜parameter name=\"o\" string=\"false\">{\"b\": [1, 2.5, null]}</｜DSML｜parameter>\n"
                        "<｜DSML｜parameter name=\"e\" string=\"true\"></｜DSML｜parameter>"),
              std::string::npos);
}

TEST(DsmlEncode, TasksAndReminders) {
    ChatMessage q = msg("user", "find");
    q.task = "query";
    EXPECT_EQ(encode_chat({q}, v4(true)), B + U + "find<｜query｜>");
    q.task = "action";
    EXPECT_EQ(encode_chat({q}, v4(true)), B + U + "find" + A + "<think><｜action｜>");
    q.task = "bogus";
    EXPECT_THROW(encode_chat({q}, v4(true)), DsmlError);
    // A reminder after the user turn: the transition comes first, then the reminder.
    EXPECT_EQ(encode_chat({msg("user", "Q"), msg("latest_reminder", "2026-01-01")}, v4(false)),
              B + U + "Q" + A + "</think><｜latest_reminder｜>2026-01-01");
}

TEST(DsmlEncode, Errors) {
    EXPECT_THROW(encode_chat({msg("developer", "")}, v4(true)), DsmlError);
    EXPECT_THROW(encode_chat({msg("robot", "x")}, v4(true)), DsmlError);
    EncodeOptions o32 = v4(true);
    o32.format = ChatFormat::kDsv32;
    EXPECT_THROW(encode_chat({msg("user", "Q"), msg("tool", "r")}, o32), DsmlError);
    EXPECT_THROW(encode_chat({msg("latest_reminder", "x")}, o32), DsmlError);
    EXPECT_THROW(chat_format_from_name("dsv5"), std::invalid_argument);
}

TEST(DsmlEncode, ContextEncodesOnlyTheNewMessages) {
    ChatMessage sys = msg("system", "S");
    sys.tools = {ojson{{"name", "t"}}};
    const std::vector<ChatMessage> ctx = {sys, msg("user", "Q")};
    const std::vector<ChatMessage> next = {assistant("A1", "r1")};
    std::vector<ChatMessage> all = ctx;
    all.insert(all.end(), next.begin(), next.end());
    const std::string full = encode_chat(all, v4(true));
    const std::string head = encode_chat(ctx, v4(true));
    ASSERT_EQ(full.rfind(head, 0), 0u);
    EXPECT_EQ(encode_chat(next, v4(true), ctx), full.substr(head.size()));
    EXPECT_EQ(encode_chat(next, v4(true), ctx), "r1</think>A1" + E);
}

TEST(DsmlEncode, V32Rules) {
    EncodeOptions o = v4(true);
    o.format = ChatFormat::kDsv32;
    ChatMessage dev = msg("developer", "Hi");
    dev.response_format = {{"type", "json_object"}};
    EXPECT_EQ(encode_chat({dev}, o),
              B + U +
                  "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to "
                  "reply:\n{\"type\": \"json_object\"}\n\n# The user's message is: Hi" +
                  A + "<think>");
    // Reasoning is shown only after the last user message, whatever drop_thinking says.
    const std::vector<ChatMessage> m = {msg("user", "Hi"), assistant("Hello!", "greet"), msg("user", "Bye"),
                                        assistant("Ciao", "part")};
    o.drop_thinking = false;
    EXPECT_EQ(encode_chat(m, o),
              B + U + "Hi" + A + "</think>Hello!" + E + U + "Bye" + A + "<think>part</think>Ciao" + E);
    ChatMessage with_wo = assistant("partial");
    with_wo.wo_eos = true;
    EXPECT_EQ(encode_chat({msg("user", "Q"), with_wo}, v4(false)), B + U + "Q" + A + "</think>partial");
    o.thinking = false;  // V3.2 has no continuation mode: the turn is closed
    EXPECT_EQ(encode_chat({msg("user", "Q"), with_wo}, o), B + U + "Q" + A + "</think>partial" + E);
}
