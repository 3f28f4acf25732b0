// The CLI interface other tools rely on: dsinfer replay writes the golden's names, dsinfer compare
// applies the bars and reports through its exit code; bad input fails with a message.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "io/safetensors.h"

namespace {

const std::string kBin = DSINFER_BINARY;
const std::string kDir = std::string(DSINFER_TEST_DATA) + "/dsv4-tiny-flash";

int run(const std::string& args, std::string* out = nullptr) {
    std::string cmd = kBin + " " + args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    std::string text;
    while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
    int status = pclose(p);
    if (out) *out = text;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(Cli, ReplayThenCompare) {
    const std::string out = "/tmp/dsinfer_cli_replay_" + std::to_string(::getpid()) + ".safetensors";
    std::string text;
    ASSERT_EQ(run("replay --model " + kDir + " --cases " + kDir + "/golden-noquant.safetensors --out " + out +
                  " --no-quant-sim --chunk 64 --threads 1",
                  &text),
              0)
        << text;
    dsinfer::SafeTensorsFile f(out);
    std::vector<std::string> names;
    for (const auto& t : f.tensors()) names.push_back(t.name);
    for (const char* n : {"long.prefill.logits", "long.decode.logits", "long.mtp.logits", "short.prefill.logits",
                          "short.decode.logits"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    // This golden holds no hidden states, so none are written (the quantized golden's are, see test_replay).
    EXPECT_EQ(std::find(names.begin(), names.end(), "long.prefill.hidden.0"), names.end());
    EXPECT_EQ(names.size(), size_t(5));
    EXPECT_EQ(run("compare --noquant --golden " + kDir + "/golden-noquant.safetensors --out " + out, &text), 0) << text;
    EXPECT_NE(text.find("PASS"), std::string::npos);
    // The quantized golden differs from a no-quant run by more than the no-quant bars allow.
    EXPECT_EQ(run("compare --noquant --golden " + kDir + "/golden.safetensors --out " + out, &text), 1) << text;
    EXPECT_NE(text.find("FAIL"), std::string::npos);
    std::remove(out.c_str());
}

TEST(Cli, BadInputFailsWithMessage) {
    std::string text;
    EXPECT_NE(run("replay --model /nonexistent --cases x --out y", &text), 0);
    EXPECT_NE(text.find("/nonexistent"), std::string::npos) << text;
    EXPECT_NE(run("replay --model " + kDir + " --cases /nonexistent.safetensors --out /tmp/x", &text), 0);
    EXPECT_NE(text.find("nonexistent.safetensors"), std::string::npos) << text;
    EXPECT_NE(run("replay --bogus", &text), 0);
    EXPECT_NE(text.find("--bogus"), std::string::npos) << text;
    EXPECT_NE(run("generate --model " + kDir + " --prompt-ids \"5 99999\"", &text), 0);
    EXPECT_NE(text.find("99999"), std::string::npos) << text;
    EXPECT_EQ(run("generate --model " + kDir + " --prompt-ids \"0 5 7\" --max-tokens 3", &text), 0) << text;
    EXPECT_NE(text.find("output:"), std::string::npos) << text;
    // A tokenizer whose ids do not fit the model is refused.
    EXPECT_NE(run("generate --model " + kDir + " --tokenizer " + std::string(DSINFER_TEST_DATA) +
                      "/tokenizer/dsv4-tokenizer.json --prompt hi",
                  &text),
              0);
    EXPECT_NE(text.find("vocabulary"), std::string::npos) << text;
}
