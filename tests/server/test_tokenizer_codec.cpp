// The server's chat plan (DeepSeek-V4's DSML encoder and streaming parser) with the codecs that map
// its text to ids: a chat request becomes the encoder's prompt, tool_choice forces the start of a
// call, and the parser turns the rest of the model's text into an OpenAI tool call.
#include <gtest/gtest.h>

#include <algorithm>
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
    auto plan = plan_dsv4_chat(req);
    auto in = dsinfer::text::chat_input_from_openai(dsinfer::text::ojson::parse(req.dump()), dsinfer::text::ChatFormat::kDsv4);
    EXPECT_EQ(plan.prompt, dsinfer::text::encode_chat(in.messages, in.options));
    EXPECT_EQ(plan.prompt, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜></think>");
    EXPECT_FALSE(plan.thinking);
    auto ids = codec->encode(plan.prompt, true);
    EXPECT_EQ(ids.front(), 0);  // BOS as its id, not as text
    auto parser = plan.make_parser();
    EXPECT_EQ(parser->feed("Hello!").content, "Hello!");
}

TEST(TokenizerCodec, NamedToolChoiceForcesTheCall) {
    auto plan = plan_dsv4_chat(weather_request());
    EXPECT_TRUE(plan.thinking);  // V4 thinks by default; the forced call closes the reasoning
    EXPECT_TRUE(plan.parse_tools);
    EXPECT_EQ(plan.forced_prefix, "</think>\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n");
    EXPECT_TRUE(plan.prompt.ends_with(plan.forced_prefix));
    auto parser = plan.make_parser();
    std::string args, name;
    auto take = [&](const ChatDelta& d) {
        for (auto& t : d.tool_calls) {
            name += t.name;
            args += t.arguments;
        }
    };
    take(parser->feed(plan.forced_prefix));
    take(parser->feed("<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
                      "<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
                      "</｜DSML｜tool_calls>"));
    take(parser->finish());
    EXPECT_EQ(name, "get_weather");
    EXPECT_EQ(json::parse(args), json::parse(R"({"city": "Paris", "days": 3})"));
    EXPECT_EQ(parser->tool_calls_emitted(), 1);
}

TEST(TokenizerCodec, BadRequestsNameTheField) {
    json req = weather_request();
    req["tool_choice"]["function"]["name"] = "nope";
    try {
        plan_dsv4_chat(req);
        FAIL();
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("tool_choice"), std::string::npos) << e.what();
    }
}

// The byte codec (models without a tokenizer) maps the same prompt to ids: the chat markers as their
// own ids, everything else (DSML markup included) byte by byte, and back to the same text.
TEST(ByteCodec, CarriesTheDsv4PromptAndOutput) {
    auto codec = make_byte_codec();
    auto plan = plan_dsv4_chat(weather_request());
    auto ids = codec->encode(plan.prompt, true);
    EXPECT_EQ(ids.front(), kByteBos);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), kByteUser), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), kByteAssistant), 1);
    // The generation prompt opens the reasoning and the forced call closes it at once.
    auto a = std::find(ids.begin(), ids.end(), kByteAssistant);
    ASSERT_LT(a + 2, ids.end());
    EXPECT_EQ(a[1], kByteThink);
    EXPECT_EQ(a[2], kByteThinkEnd);
    auto detok = codec->detokenizer();
    std::string back;
    for (int32_t id : ids) back += detok->push(id);
    back += detok->flush();
    EXPECT_EQ(back, plan.prompt);
    // Without allow_special the markers are plain bytes.
    auto plain = codec->encode("<think>", false);
    EXPECT_EQ(plain.size(), 7u);
    EXPECT_EQ(plain.front(), 2 + '<');
    // Thinking (V4's default): reasoning until </think>, then content, EOS not shown.
    json req = json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "Hi"}]})");
    auto chat = plan_dsv4_chat(req);
    EXPECT_TRUE(chat.thinking);
    auto parser = chat.make_parser();
    std::string reasoning, content;
    auto out = codec->detokenizer();
    for (int32_t id : codec->encode("Hmm.</think>Héllo<｜end▁of▁sentence｜>", true)) {
        auto d = parser->feed(out->push(id));
        reasoning += d.reasoning;
        content += d.content;
    }
    auto d = parser->finish();
    reasoning += d.reasoning;
    content += d.content;
    EXPECT_EQ(reasoning, "Hmm.");
    EXPECT_EQ(content, "Héllo");
}

// tool_choice "none": the tools are not declared and a tool-call block the model writes anyway is
// consumed, reaching the client neither as content nor as a call (so finish_reason stays "stop").
TEST(ChatPlan, ToolChoiceNoneEmitsNoCalls) {
    json req = weather_request();
    req["tool_choice"] = "none";
    req["chat_template_kwargs"] = {{"thinking", false}};
    auto plan = plan_dsv4_chat(req);
    EXPECT_FALSE(plan.parse_tools);
    EXPECT_TRUE(plan.forced_prefix.empty());
    EXPECT_EQ(plan.prompt.find("get_weather"), std::string::npos);
    auto parser = plan.make_parser();
    std::string content;
    size_t calls = 0;
    for (auto d : {parser->feed("Sure.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
                                "<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n"
                                "</｜DSML｜invoke>\n</｜DSML｜tool_calls>"),
                   parser->finish()}) {
        content += d.content;
        calls += d.tool_calls.size();
    }
    EXPECT_EQ(content, "Sure.");
    EXPECT_EQ(calls, 0u);
    EXPECT_EQ(parser->tool_calls_emitted(), 0);
}
