// The server's codec over the DeepSeek tokenizer and DSML encoder: a chat request becomes the
// encoder's prompt, tool_choice forces the start of a call, and the parser turns the rest of the
// model's text into an OpenAI tool call.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/text_codec.h"
#include "text/chat.h"
#include "text/dsml.h"

using namespace dsinfer::server;
using json = nlohmann::json;

namespace {
const std::string kTok = DSINFER_TEST_DATA "/tokenizer/dsv4-tokenizer.json";

json weather_request() {
    return json::parse(R"({
      "model": "m",
      "messages": [{"role": "user", "content": "Weather in Paris?"}],
      "tools": [{"type": "function", "function": {"name": "get_weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    })");
}
}  // namespace

TEST(TokenizerCodec, ChatPlanUsesTheDsmlEncoder) {
    auto codec = make_tokenizer_codec(kTok);
    json req = json::parse(R"({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                                          {"role": "user", "content": "Hi"}],
                               "chat_template_kwargs": {"thinking": false}})");
    auto plan = codec->plan_chat(req);
    ASSERT_TRUE(plan);
    auto in = dsinfer::text::chat_input_from_openai(dsinfer::text::ojson::parse(req.dump()), dsinfer::text::ChatFormat::kDsv4);
    EXPECT_EQ(plan->prompt, dsinfer::text::encode_chat(in.messages, in.options));
    EXPECT_EQ(plan->prompt, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜></think>");
    EXPECT_FALSE(plan->thinking);
    auto ids = codec->encode(plan->prompt, true);
    EXPECT_EQ(ids.front(), 0);  // BOS as its id, not as text
    auto parser = plan->make_parser();
    EXPECT_EQ(parser->feed("Hello!").content, "Hello!");
}

TEST(TokenizerCodec, NamedToolChoiceForcesTheCall) {
    auto codec = make_tokenizer_codec(kTok);
    auto plan = codec->plan_chat(weather_request());
    ASSERT_TRUE(plan);
    EXPECT_TRUE(plan->thinking);  // V4 thinks by default; the forced call closes the reasoning
    EXPECT_TRUE(plan->parse_tools);
    EXPECT_EQ(plan->forced_prefix, "</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n");
    EXPECT_TRUE(plan->prompt.ends_with(plan->forced_prefix));
    auto parser = plan->make_parser();
    std::string args, name;
    auto take = [&](const ChatDelta& d) {
        for (auto& t : d.tool_calls) {
            name += t.name;
            args += t.arguments;
        }
    };
    take(parser->feed(plan->forced_prefix));
    take(parser->feed("<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
                      "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                      "</｜DSML｜tool_calls>"));
    take(parser->finish());
    EXPECT_EQ(name, "get_weather");
    EXPECT_EQ(json::parse(args), json::parse(R"({"city": "Paris", "days": 3})"));
    EXPECT_EQ(parser->tool_calls_emitted(), 1);
}

TEST(TokenizerCodec, BadRequestsNameTheField) {
    auto codec = make_tokenizer_codec(kTok);
    json req = weather_request();
    req["tool_choice"]["function"]["name"] = "nope";
    try {
        codec->plan_chat(req);
        FAIL();
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("tool_choice"), std::string::npos) << e.what();
    }
}
