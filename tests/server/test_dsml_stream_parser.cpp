// The server's streaming DSML parser against the parse fixtures of tests/data/dsml (fed whole and in
// pieces of every size from 1 byte up), and the stand-in chat renderer against the simple encode
// fixtures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "server/text_codec.h"

using namespace dsinfer::server;
using json = nlohmann::json;

namespace {

json load(const std::string& name) {
    std::ifstream f(std::string(DSINFER_TEST_DATA) + "/dsml/" + name);
    EXPECT_TRUE(f.good()) << name;
    return json::parse(f);
}

struct Parsed {
    std::string reasoning, content;
    std::vector<ToolCallDelta> calls;
};

Parsed run(const std::string& text, bool thinking, size_t piece) {
    auto p = make_dsml_stream_parser(thinking, true);
    Parsed out;
    auto take = [&](const ChatDelta& d) {
        out.reasoning += d.reasoning;
        out.content += d.content;
        for (auto& c : d.tool_calls) out.calls.push_back(c);
    };
    for (size_t i = 0; i < text.size(); i += piece) take(p->feed(text.substr(i, piece)));
    take(p->finish());
    return out;
}

// The model's text as the server sees it: the end-of-sequence token is not part of the output.
std::string strip_eos(std::string s) {
    const std::string eos = "<｜end▁of▁sentence｜>";
    if (s.size() >= eos.size() && s.compare(s.size() - eos.size(), eos.size(), eos) == 0) s.resize(s.size() - eos.size());
    return s;
}

}  // namespace

TEST(DsmlStreamParser, WellFormedFixtures) {
    int n = 0;
    for (auto& e : std::filesystem::directory_iterator(std::string(DSINFER_TEST_DATA) + "/dsml")) {
        std::string name = e.path().filename().string();
        if (name.rfind("v4_parse_", 0) != 0) continue;
        json fx = load(name);
        if (!fx["expected_error"].is_null()) continue;
        ++n;
        const std::string text = strip_eos(fx["model_output"].get<std::string>());
        const json& exp = fx["expected"];
        for (size_t piece : {text.size() + 1, (size_t)1, (size_t)2, (size_t)3, (size_t)7, (size_t)16}) {
            Parsed got = run(text, fx["thinking"].get<bool>(), piece);
            SCOPED_TRACE(name + " piece " + std::to_string(piece));
            EXPECT_EQ(got.reasoning, exp.value("reasoning_content", ""));
            EXPECT_EQ(got.content, exp["content"].is_null() ? "" : exp["content"].get<std::string>());
            const json calls = exp.value("tool_calls", json::array());
            ASSERT_EQ(got.calls.size(), calls.size());
            for (size_t i = 0; i < calls.size(); ++i) {
                EXPECT_EQ(got.calls[i].index, (int)i);
                EXPECT_EQ(got.calls[i].id.rfind("call_", 0), 0u);
                EXPECT_EQ(got.calls[i].name, calls[i]["function"]["name"].get<std::string>());
                EXPECT_EQ(json::parse(got.calls[i].arguments),
                          json::parse(calls[i]["function"]["arguments"].get<std::string>()));
            }
        }
    }
    EXPECT_GE(n, 5);
}

TEST(DsmlStreamParser, MalformedFixturesDoNotThrowOrLeakMarkers) {
    for (const char* name : {"v4_parse_malformed_missing_think_end.json", "v4_parse_malformed_truncated_tool_call.json"}) {
        json fx = load(name);
        const std::string text = strip_eos(fx["model_output"].get<std::string>());
        for (size_t piece : {(size_t)1, (size_t)5, text.size() + 1}) {
            Parsed got = run(text, fx["thinking"].get<bool>(), piece);
            EXPECT_EQ(got.content.find("｜DSML｜"), std::string::npos) << name;
            EXPECT_EQ(got.content.find("</think>"), std::string::npos) << name;
        }
    }
}

TEST(DsmlStreamParser, HoldsBackPartialMarkers) {
    auto p = make_dsml_stream_parser(false, true);
    EXPECT_EQ(p->feed("Sure.\n").content, "Sure.");
    EXPECT_EQ(p->feed("\n<｜DS").content, "");  // could be the start of a tool block
    ChatDelta d = p->feed("ML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
    ASSERT_EQ(d.tool_calls.size(), 1u);
    EXPECT_EQ(d.tool_calls[0].arguments, "{}");
    EXPECT_EQ(p->tool_calls_emitted(), 1);
    // A false alarm is released.
    auto q = make_dsml_stream_parser(false, true);
    std::string all = q->feed("a <｜DS").content;
    all += q->feed("x").content;
    all += q->finish().content;
    EXPECT_EQ(all, "a <｜DSx");
    // Without tools the block is plain content.
    auto r = make_dsml_stream_parser(false, false);
    EXPECT_EQ(r->feed("\n\n<｜DSML｜tool_calls>").content + r->finish().content, "\n\n<｜DSML｜tool_calls>");
}

TEST(RenderDsmlChat, SimpleEncodeFixtures) {
    for (const char* name : {"v4_chat_single_user.json", "v4_chat_system_user.json", "v4_thinking_single_user.json"}) {
        json fx = load(name);
        ChatOptions o;
        o.thinking = fx["thinking"].get<bool>();
        EXPECT_EQ(render_dsml_chat(fx["messages"], o), fx["expected_prompt"].get<std::string>()) << name;
    }
    EXPECT_THROW(render_dsml_chat(json::parse(R"([{"role": "wizard", "content": "x"}])"), {}), std::invalid_argument);
}
