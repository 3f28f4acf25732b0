// The command-line interface other tools rely on: dsinfer text encode-chat / text parse.
#include <sys/wait.h>

#include <cstdio>

#include "text/test_dsml_util.h"

using namespace dsml_test;

namespace {

struct CliRun {
    int status = -1;
    std::string out;
};

CliRun run(const std::string& args) {
    CliRun r;
    const std::string cmd = std::string(DSINFER_BINARY) + " " + args + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace

TEST(DsmlCli, EncodeChatPrintsThePromptExactly) {
    for (const char* file : {"v4_official_1.json", "v32_official_main.json", "v4_prefix_wo_eos.json"}) {
        SCOPED_TRACE(file);
        const ojson c = ojson::parse(read_file(case_path(file)));
        const CliRun r = run("text encode-chat " + case_path(file));
        EXPECT_EQ(r.status, 0);
        EXPECT_EQ(r.out, c["expected_prompt"].get<std::string>());  // no trailing newline
    }
}

TEST(DsmlCli, ParsePrintsTheMessageOrTheError) {
    const std::string ok = case_path("v4_parse_parallel_tool_calls.json");
    const ojson c = ojson::parse(read_file(ok));
    CliRun r = run("text parse " + ok);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(ojson::parse(r.out), c["expected"]);

    r = run("text parse " + ok + " --lenient");
    EXPECT_EQ(r.status, 0);
    const ojson lenient = ojson::parse(r.out);
    EXPECT_EQ(lenient["content"], c["expected"]["content"]);
    EXPECT_EQ(lenient["reasoning_content"], c["expected"]["reasoning_content"]);
    ASSERT_EQ(lenient["tool_calls"].size(), 2u);
    for (size_t i = 0; i < 2; ++i)
        EXPECT_EQ(ojson::parse(lenient["tool_calls"][i]["function"]["arguments"].get<std::string>()),
                  ojson::parse(c["expected"]["tool_calls"][i]["function"]["arguments"].get<std::string>()));
    EXPECT_EQ(run("text parse --lenient --seed 99 " + ok).out, r.out);  // any chunking, same result

    const std::string bad = case_path("v4_parse_malformed_missing_think_end.json");
    r = run("text parse " + bad);
    EXPECT_EQ(r.status, 0);
    const ojson err = ojson::parse(r.out);
    ASSERT_TRUE(err.contains("error"));
    EXPECT_NE(err["error"].get<std::string>().find("</think>"), std::string::npos);
    EXPECT_EQ(ojson::parse(run("text parse --lenient " + bad).out)["reasoning_content"], "I am still thinking about");
}

TEST(DsmlCli, EncodeChatTakesAnOpenAIRequest) {
    const ojson c = ojson::parse(read_file(case_path("v32_official_main.json")));
    const ojson req = {{"messages", c["messages"]}, {"tools", c["tools"]}, {"thinking", {{"type", "enabled"}}}};
    const std::string path = ::testing::TempDir() + "dsml_cli_request.json";
    std::ofstream(path) << req.dump();
    const CliRun r = run("text encode-chat --openai " + path + " --format dsv32");
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, c["expected_prompt"].get<std::string>());
    EXPECT_NE(run("text encode-chat --openai " + path + " --format dsv9").status, 0);
}

TEST(DsmlCli, BadInputFailsWithAnError) {
    EXPECT_NE(run("text encode-chat /nonexistent/case.json").status, 0);
    EXPECT_NE(run("text encode-chat " + case_path("v4_parse_chat_plain.json")).status, 0);  // wrong kind
    EXPECT_NE(run("text parse " + case_path("v4_official_1.json")).status, 0);
    EXPECT_NE(run("text encode-chat").status, 0);
}
