// OpenAI chat-completions requests -> encoder inputs -> prompts.
#include "text/test_dsml_util.h"

using namespace dsinfer::text;
using namespace dsml_test;

namespace {

std::string prompt_of(const ojson& request, ChatFormat f = ChatFormat::kDsv4) {
    const auto in = chat_input_from_openai(request, f);
    return encode_chat(in.messages, in.options);
}

// The ChatRequestError message of a request, or "" when it is accepted.
std::string error_of(const ojson& request, ChatFormat f = ChatFormat::kDsv4) {
    try {
        prompt_of(request, f);
    } catch (const ChatRequestError& e) {
        return e.what();
    }
    return "";
}

const ojson kWeatherTool = ojson::parse(R"({"type": "function", "function": {"name": "get_weather",
    "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})");
const ojson kTimeTool = ojson::parse(R"({"type": "function", "function": {"name": "get_time", "parameters": {}}})");

const std::string B(kBos), E(kEos), U(kUserToken), A(kAssistantToken);

}  // namespace

// An OpenAI request carrying the same conversation as an official case encodes to the case's prompt.
TEST(DsmlChat, OpenAIRequestsReproduceTheCasePrompts) {
    for (const char* file : {"v4_official_1.json", "v4_parallel_tool_calls_results_sorted.json",
                             "v4_tool_call_mixed_param_types.json", "v4_official_2.json"}) {
        SCOPED_TRACE(file);
        const ojson c = ojson::parse(read_file(case_path(file)));
        ojson req = {{"model", "deepseek-v4"}, {"messages", c["messages"]}};
        if (c.contains("tools")) req["tools"] = c["tools"];
        if (!c.value("thinking", false)) req["thinking"] = {{"type", "disabled"}};
        EXPECT_EQ(prompt_of(req), c["expected_prompt"].get<std::string>());
    }
}

TEST(DsmlChat, ContentPartsAreJoinedAndNonTextPartsRefused) {
    ojson req = ojson::parse(
        R"({"messages": [{"role": "system", "content": [{"type": "text", "text": "S1"}, {"type": "text", "text": "S2"}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]}],
        "thinking": {"type": "disabled"}})");
    EXPECT_EQ(prompt_of(req), B + "S1\nS2" + U + "Hello\nworld" + A + "</think>");
    req["messages"][1]["content"][1] = {{"type", "image_url"}, {"image_url", {{"url", "x.png"}}}};
    const std::string err = error_of(req);
    EXPECT_NE(err.find("messages[1].content[1].type"), std::string::npos) << err;
    EXPECT_NE(err.find("image_url"), std::string::npos) << err;
}

TEST(DsmlChat, ToolMessagesBecomeToolResults) {
    ojson req = ojson::parse(R"({"messages": [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
            {"id": "b", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "Rome: 20C"}]},
        {"role": "tool", "tool_call_id": "a", "content": "Oslo: 5C"}],
        "thinking": {"type": "disabled"}})");
    req["tools"] = {kWeatherTool};
    const std::string p = prompt_of(req);
    EXPECT_NE(
        p.find(E + U + "<tool_result>Oslo: 5C</tool_result>\n\n<tool_result>Rome: 20C</tool_result>" + A + "</think>"),
        std::string::npos)
        << p;
    EXPECT_EQ(p.rfind(B + "\n\n## Tools\n\n", 0), 0u);  // tools on an inserted empty system message

    ojson bad = req;
    bad["messages"][3]["tool_call_id"] = "zzz";
    EXPECT_NE(error_of(bad).find("messages[3].tool_call_id"), std::string::npos);
    bad = req;
    bad["messages"][3].erase("tool_call_id");
    EXPECT_NE(error_of(bad).find("messages[3].tool_call_id: missing"), std::string::npos);
    bad = req;
    bad["messages"].erase(1);
    EXPECT_NE(error_of(bad).find("must follow an assistant message with tool_calls"), std::string::npos);
}

TEST(DsmlChat, EmptyArgumentsAreAnEmptyInvoke) {
    ojson req = ojson::parse(R"({"messages": [{"role": "user", "content": "time?"},
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t", "content": "12:00"}], "thinking": {"type": "disabled"}})");
    req["tools"] = {kTimeTool};
    EXPECT_NE(prompt_of(req).find("<｜DSML｜invoke name=\"get_time\">\n\n</｜DSML｜invoke>"), std::string::npos);
    req["messages"][1]["tool_calls"][0]["function"]["arguments"] = "[1]";
    EXPECT_NE(error_of(req).find("must be a JSON object"), std::string::npos);
}

TEST(DsmlChat, ToolChoice) {
    ojson req = {{"messages", {{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "Q"}}}},
                 {"tools", {kWeatherTool, kTimeTool}}};
    // auto (the default with tools): both declared, on the existing system message.
    auto in = chat_input_from_openai(req, ChatFormat::kDsv4);
    EXPECT_EQ(in.tool_choice.kind, ToolChoice::Kind::kAuto);
    std::string p = encode_chat(in.messages, in.options);
    EXPECT_EQ(p.rfind(B + "S\n\n## Tools\n\n", 0), 0u);
    EXPECT_NE(p.find("\"name\": \"get_time\""), std::string::npos);
    EXPECT_TRUE(in.forced_tool_prefix().empty());

    // named: only that function is declared, and the answer can be forced to call it.
    req["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_time"}}}};
    in = chat_input_from_openai(req, ChatFormat::kDsv4);
    p = encode_chat(in.messages, in.options);
    EXPECT_EQ(p.find("\"name\": \"get_weather\""), std::string::npos);
    EXPECT_NE(p.find("\"name\": \"get_time\""), std::string::npos);
    EXPECT_EQ(in.forced_tool_prefix(), "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_time\">\n");
    ASSERT_EQ(in.tools.size(), 1u);

    req["tool_choice"] = "required";
    in = chat_input_from_openai(req, ChatFormat::kDsv32);
    EXPECT_EQ(in.forced_tool_prefix(), "\n\n<｜DSML｜function_calls>\n");
    EXPECT_EQ(in.tools.size(), 2u);

    // none: nothing is declared.
    req["tool_choice"] = "none";
    in = chat_input_from_openai(req, ChatFormat::kDsv4);
    EXPECT_EQ(encode_chat(in.messages, in.options).find("## Tools"), std::string::npos);

    req["tool_choice"] = {{"type", "function"}, {"function", {{"name", "nope"}}}};
    EXPECT_NE(error_of(req).find("'nope' is not among the tools"), std::string::npos);
    req["tool_choice"] = "sometimes";
    EXPECT_NE(error_of(req).find("tool_choice"), std::string::npos);
    req.erase("tools");
    req["tool_choice"] = "required";
    EXPECT_NE(error_of(req).find("requires tools"), std::string::npos);
}

TEST(DsmlChat, ThinkingSwitchesAndEffort) {
    const ojson base = {{"messages", {{{"role", "user"}, {"content", "Q"}}}}};
    EXPECT_EQ(prompt_of(base), B + U + "Q" + A + "<think>");                       // V4: thinking by default
    EXPECT_EQ(prompt_of(base, ChatFormat::kDsv32), B + U + "Q" + A + "</think>");  // V3.2: chat by default
    ojson r = base;
    r["thinking"] = {{"type", "disabled"}};
    EXPECT_EQ(prompt_of(r), B + U + "Q" + A + "</think>");
    r = base;
    r["chat_template_kwargs"] = {{"enable_thinking", false}};
    EXPECT_EQ(prompt_of(r), B + U + "Q" + A + "</think>");
    r = base;
    r["reasoning_effort"] = "none";
    EXPECT_EQ(prompt_of(r), B + U + "Q" + A + "</think>");
    r["reasoning_effort"] = "max";
    EXPECT_EQ(prompt_of(r).rfind(B + "Reasoning Effort: Absolute maximum", 0), 0u);
    EXPECT_EQ(prompt_of(r, ChatFormat::kDsv4_0731).rfind(B + "Reasoning Effort: Beyond maximum", 0), 0u);
    r["reasoning_effort"] = "medium";
    EXPECT_EQ(prompt_of(r), B + U + "Q" + A + "<think>");
    EXPECT_EQ(prompt_of(r, ChatFormat::kDsv4_0731), B + U + "Q" + A + "<think>");
    r["reasoning_effort"] = "extreme";
    EXPECT_NE(error_of(r).find("reasoning_effort"), std::string::npos);

    // drop_thinking through chat_template_kwargs.
    ojson multi = {{"messages",
                    {{{"role", "user"}, {"content", "Hi"}},
                     {{"role", "assistant"}, {"content", "Hello"}, {"reasoning_content", "r"}},
                     {{"role", "user"}, {"content", "Q"}}}}};
    EXPECT_EQ(prompt_of(multi), B + U + "Hi" + A + "</think>Hello" + E + U + "Q" + A + "<think>");
    multi["chat_template_kwargs"] = {{"drop_thinking", false}};
    EXPECT_EQ(prompt_of(multi), B + U + "Hi" + A + "<think>r</think>Hello" + E + U + "Q" + A + "<think>");
}

TEST(DsmlChat, PrefixContinuesTheLastAssistantMessage) {
    ojson req = ojson::parse(R"({"messages": [{"role": "user", "content": "Write quicksort"},
        {"role": "assistant", "content": "```python\n", "prefix": true}], "thinking": {"type": "disabled"}})");
    const auto in = chat_input_from_openai(req, ChatFormat::kDsv4);
    const std::string p = encode_chat(in.messages, in.options);
    EXPECT_EQ(p, B + U + "Write quicksort" + A + "</think>```python\n");
    EXPECT_FALSE(in.parser_options(p).starts_in_reasoning);
    req["messages"].push_back({{"role", "user"}, {"content", "again"}});
    EXPECT_NE(error_of(req).find("only the last message"), std::string::npos);
}

TEST(DsmlChat, ResponseFormatIsRenderedInTheSystemPrompt) {
    ojson req = ojson::parse(R"({"messages": [{"role": "user", "content": "Ada"}], "thinking": {"type": "disabled"},
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"}}}})");
    EXPECT_EQ(prompt_of(req),
              B +
                  "\n\n## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"
                  "{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"p\", \"schema\": {\"type\": "
                  "\"object\"}}}" +
                  U + "Ada" + A + "</think>");
    req["response_format"] = {{"type", "text"}};
    EXPECT_EQ(prompt_of(req), B + U + "Ada" + A + "</think>");
    req["response_format"] = {{"type", "yaml"}};
    EXPECT_NE(error_of(req).find("response_format.type"), std::string::npos);
}

TEST(DsmlChat, ParserOptionsFollowThePrompt) {
    const ojson req = {{"messages", {{{"role", "user"}, {"content", "Q"}}}}, {"tools", {kWeatherTool}}};
    const auto in = chat_input_from_openai(req, ChatFormat::kDsv4);
    const std::string p = encode_chat(in.messages, in.options);
    const auto o = in.parser_options(p);
    EXPECT_TRUE(o.starts_in_reasoning);
    EXPECT_TRUE(o.emit_tool_calls);
    ASSERT_EQ(o.tools.size(), 1u);
    ojson none = req;
    none["tool_choice"] = "none";
    const auto in_none = chat_input_from_openai(none, ChatFormat::kDsv4);
    EXPECT_FALSE(in_none.parser_options(encode_chat(in_none.messages, in_none.options)).emit_tool_calls);
    EXPECT_EQ(o.tools[0]["name"], "get_weather");
}

TEST(DsmlChat, RequestsTheEncoderWouldRefuseAreRequestErrors) {
    EXPECT_NE(error_of({{"messages", {{{"role", "developer"}, {"content", ""}}}}}).find("messages[0].content"),
              std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"role", "latest_reminder"}, {"content", "x"}}}}}, ChatFormat::kDsv32)
                  .find("messages[0].role"),
              std::string::npos);
    const ojson bad_args = ojson::parse(R"({"messages": [{"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{oops"}}]}]})");
    EXPECT_NE(error_of(bad_args, ChatFormat::kDsv32).find("not valid JSON"), std::string::npos);
    EXPECT_EQ(error_of(bad_args, ChatFormat::kDsv4), "");  // V4 keeps them as one raw parameter
}

TEST(DsmlChat, InvalidRequestsNameTheField) {
    EXPECT_NE(error_of(ojson::object()).find("messages: missing"), std::string::npos);
    EXPECT_NE(error_of({{"messages", ojson::array()}}).find("messages"), std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"content", "x"}}}}}).find("messages[0].role: missing"), std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}).find("messages[0].role"),
              std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"role", "user"}, {"content", 5}}}}}).find("messages[0].content"),
              std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"tools", {{{"type", "function"}}}}})
                  .find("tools[0].function"),
              std::string::npos);
    EXPECT_NE(error_of({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"tools", {kWeatherTool, kWeatherTool}}})
                  .find("duplicate tool name"),
              std::string::npos);
    EXPECT_NE(
        error_of({{"messages",
                   {{{"role", "assistant"}, {"tool_calls", {{{"id", "1"}, {"function", {{"arguments", "{}"}}}}}}}}}})
            .find("messages[0].tool_calls[0].function.name: missing"),
        std::string::npos);
}

// A case file may split the conversation into an already-encoded `context` and new `messages` (how
// DeepSeek's tests render one assistant turn): the new part is the tail of the whole prompt.
TEST(DsmlChat, CaseContextEncodesTheTail) {
    for (const char* file : {"v4_official_1.json", "v4_official_2.json", "v32_official_main.json"}) {
        SCOPED_TRACE(file);
        const ojson c = ojson::parse(read_file(case_path(file)));
        const std::string whole = c["expected_prompt"].get<std::string>();
        ojson split = c;
        const size_t n = c["messages"].size();
        split["context"] = ojson(std::vector<ojson>(c["messages"].begin(), c["messages"].begin() + (n - 1)));
        split["messages"] = ojson::array({c["messages"][n - 1]});
        ojson head = c;
        head["messages"] = split["context"];
        const auto in_head = chat_input_from_case(head);
        const std::string prefix = encode_chat(in_head.messages, in_head.options);
        const auto in = chat_input_from_case(split);
        ASSERT_EQ(in.context.size(), n - 1 + (c["messages"][0]["role"] == "system" ? 0 : 1));
        const std::string tail = encode_chat(in.messages, in.options, in.context);
        ASSERT_LT(prefix.size(), whole.size());
        EXPECT_EQ(whole.substr(0, prefix.size()), prefix);
        EXPECT_EQ(tail, whole.substr(prefix.size()));
    }
}
