// dsinfer chat, driven through stdin with the scripted model: replies stream to stdout, the history
// carries over turns, thinking mode shows the reasoning before the answer.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

static std::string run(const std::string& args, const std::string& input) {
    std::string cmd = "printf '" + input + "' | " + DSINFER_BINARY + " chat " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    EXPECT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    EXPECT_EQ(pclose(p), 0) << out;
    return out;
}

TEST(ChatCli, StreamsRepliesOverTurns) {
    const std::string spec =
        "--scripted '{\"replies\": [{\"when\": \"echo:\", \"reply\": \"{{echo}}\"}], "
        "\"default_reply\": \"Pondering.</think>Hello from the script.\"}'";
    std::string out = run(spec + " --temperature 0", "Hi\\necho: two\\n");
    EXPECT_NE(out.find("Hello from the script.\nYou said: echo: two\n"), std::string::npos) << out;
    EXPECT_EQ(out.find("Pondering"), std::string::npos) << out;  // chat mode: no reasoning
    std::string thinking = run(spec + " --thinking", "Hi\\n");
    EXPECT_NE(thinking.find("Pondering.\nHello from the script."), std::string::npos) << thinking;
}
