// The byte-level BPE tokenizer against the Hugging Face tokenizers goldens (tests/data/tokenizer),
// the incremental detokenizer, the CLI, and the error paths.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "text/unicode_regex.h"

using dsinfer::text::IncrementalDetokenizer;
using dsinfer::text::Tokenizer;
using json = nlohmann::json;

namespace {

const std::string kTokenizerPath = std::string(DSINFER_TEST_DATA) + "/tokenizer/dsv4-tokenizer.json";

const Tokenizer& shared_tokenizer() {
    static const Tokenizer tok = Tokenizer::load(kTokenizerPath);
    return tok;
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
    std::string decoded, decoded_skip_special;
};

const std::vector<Case>& cases() {
    static const std::vector<Case> all = [] {
        std::ifstream f(std::string(DSINFER_TEST_DATA) + "/tokenizer/cases.json");
        const json j = json::parse(f);
        std::vector<Case> out;
        for (const json& c : j.at("cases"))
            out.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>(),
                           c.at("decoded").get<std::string>(), c.at("decoded_skip_special").get<std::string>()});
        return out;
    }();
    return all;
}

std::string lossy(std::string_view bytes) {
    std::string out;
    dsinfer::text::append_utf8_lossy(out, bytes, true);
    return out;
}

bool valid_utf8(std::string_view s) { return dsinfer::text::find_invalid_utf8(s) == std::string_view::npos; }

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Runs the dsinfer binary with stdin from a file; returns the exit code, stdout in `out` (and
// stderr in `err` when given).
int run_cli(const std::string& args, const std::string& input, std::string& out, std::string* err = nullptr) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("dsinfer_tok_" + std::to_string(::getpid()) + "_" + std::to_string(std::rand()));
    std::filesystem::create_directories(dir);
    const auto in_path = dir / "in.json", out_path = dir / "out.json", err_path = dir / "err.txt";
    std::ofstream(in_path, std::ios::binary) << input;
    const std::string cmd = std::string(DSINFER_BINARY) + " " + args + " < " + in_path.string() + " > " +
                            out_path.string() + " 2> " + err_path.string();
    const int rc = std::system(cmd.c_str());
    out = slurp(out_path.string());
    if (err) *err = slurp(err_path.string());
    std::filesystem::remove_all(dir);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST(Tokenizer, LoadsTheFixture) {
    const Tokenizer& tok = shared_tokenizer();
    EXPECT_EQ(tok.vocab_size(), 129280u);
    EXPECT_EQ(tok.bos_id(), 0);
    EXPECT_EQ(tok.eos_id(), 1);
    EXPECT_EQ(tok.token_to_id("<think>"), 128821);
    EXPECT_EQ(tok.token_to_id("</think>"), 128822);
    EXPECT_EQ(tok.token_to_id("｜DSML｜"), 128825);
    EXPECT_EQ(tok.token_to_id("Ġ"), 223);
    EXPECT_EQ(tok.token_to_id("no such token"), -1);
    EXPECT_EQ(tok.id_to_token(128803), "<｜User｜>");
    EXPECT_EQ(tok.id_to_token(271), "ĊĊ");
    EXPECT_TRUE(tok.is_special(1));
    EXPECT_FALSE(tok.is_special(128803));
    EXPECT_EQ(tok.added_tokens().size(), 1283u);
}

TEST(Tokenizer, EncodesEveryCase) {
    const Tokenizer& tok = shared_tokenizer();
    ASSERT_GE(cases().size(), 280u);
    size_t failures = 0;
    for (size_t i = 0; i < cases().size(); ++i) {
        const Case& c = cases()[i];
        const auto ids = tok.encode(c.text);
        if (ids != c.ids) {
            ADD_FAILURE() << "case " << i << " ids differ: " << json(c.text).dump();
            if (++failures > 10) break;
        }
    }
    EXPECT_EQ(failures, 0u);
}

TEST(Tokenizer, DecodesEveryCase) {
    const Tokenizer& tok = shared_tokenizer();
    for (size_t i = 0; i < cases().size(); ++i) {
        const Case& c = cases()[i];
        EXPECT_EQ(tok.decode(c.ids), c.decoded) << "case " << i;
        EXPECT_EQ(tok.decode(c.ids, true), c.decoded_skip_special) << "case " << i;
    }
}

TEST(Tokenizer, PublishedV4Sequences) {
    const Tokenizer& tok = shared_tokenizer();
    EXPECT_EQ(tok.encode("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ"),
              (std::vector<int32_t>{19923, 3, 223, 5464, 5008, 1175, 19, 940, 223, 19, 438, 223, 20,
                                    6113, 257, 76589, 131, 100, 76032, 1628, 76589, 131, 108, 76589, 131, 98}));
    EXPECT_EQ(tok.encode("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>"),
              (std::vector<int32_t>{128803, 30594, 128804, 128821, 36101, 128822, 7624, 1}));
    // No template and add_bos_token is not set for this file: nothing is added.
    EXPECT_EQ(tok.encode("Hello", true), tok.encode("Hello", false));
}

TEST(Tokenizer, IncrementalDetokenizerMatchesDecode) {
    const Tokenizer& tok = shared_tokenizer();
    for (bool skip : {false, true}) {
        for (size_t i = 0; i < cases().size(); ++i) {
            const Case& c = cases()[i];
            IncrementalDetokenizer detok(tok, skip);
            std::string text;
            for (int32_t id : c.ids) {
                const std::string piece = detok.push(id);
                ASSERT_TRUE(valid_utf8(piece)) << "case " << i << " id " << id;
                text += piece;
            }
            text += detok.flush();
            EXPECT_EQ(text, skip ? c.decoded_skip_special : c.decoded) << "case " << i << " skip " << skip;
        }
    }
}

TEST(Tokenizer, IncrementalDetokenizerHoldsBackPartialCharacters) {
    const Tokenizer& tok = shared_tokenizer();
    const auto& alpha = dsinfer::text::ByteLevelAlphabet::get();
    auto byte_token = [&](uint8_t b) { return tok.token_to_id(alpha.encode(std::string(1, static_cast<char>(b)))); };
    // "😀" is F0 9F 98 80: nothing comes out until the fourth byte.
    IncrementalDetokenizer detok(tok);
    EXPECT_EQ(detok.push(byte_token(0xF0)), "");
    EXPECT_EQ(detok.push(byte_token(0x9F)), "");
    EXPECT_EQ(detok.push(byte_token(0x98)), "");
    EXPECT_EQ(detok.pending_bytes(), 3u);
    EXPECT_EQ(detok.push(byte_token(0x80)), "😀");
    EXPECT_EQ(detok.pending_bytes(), 0u);
    // A character cut short by a complete one: the broken part becomes U+FFFD at once.
    EXPECT_EQ(detok.push(byte_token(0xE4)), "");
    EXPECT_EQ(detok.push(tok.token_to_id("a")), "\uFFFDa");
    // An unfinished character at the end is flushed as U+FFFD, like decode does.
    EXPECT_EQ(detok.push(byte_token(0xE4)), "");
    EXPECT_EQ(detok.push(byte_token(0xBD)), "");
    EXPECT_EQ(detok.flush(), "\uFFFD");
    EXPECT_EQ(tok.decode(std::vector<int32_t>{byte_token(0xE4), byte_token(0xBD)}), "\uFFFD");
}

TEST(Tokenizer, IncrementalDetokenizerOnRandomIds) {
    // Random ids (biased to single-byte tokens, which split characters) in random order.
    const Tokenizer& tok = shared_tokenizer();
    std::mt19937 rng(1234);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<int32_t> ids(1 + rng() % 40);
        for (int32_t& id : ids)
            id = rng() % 3 == 0 ? static_cast<int32_t>(rng() % tok.vocab_size()) : static_cast<int32_t>(3 + rng() % 256);
        for (bool skip : {false, true}) {
            IncrementalDetokenizer detok(tok, skip);
            std::string text;
            for (int32_t id : ids) {
                const std::string piece = detok.push(id);
                ASSERT_TRUE(valid_utf8(piece));
                text += piece;
            }
            text += detok.flush();
            ASSERT_EQ(text, tok.decode(ids, skip)) << "trial " << trial;
        }
    }
}

TEST(Tokenizer, LossyUtf8FollowsMaximalSubparts) {
    EXPECT_EQ(lossy("abc"), "abc");
    EXPECT_EQ(lossy("\xE4\xBD"), "\uFFFD");
    EXPECT_EQ(lossy("\xE0\x80"), "\uFFFD\uFFFD");
    EXPECT_EQ(lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // a surrogate
    EXPECT_EQ(lossy("a\xF0\x9F\x98"), "a\uFFFD");
    EXPECT_EQ(lossy("\xF0\x9F\x98x"), "\uFFFDx");
    EXPECT_EQ(lossy("\x80\xBF"), "\uFFFD\uFFFD");
    EXPECT_EQ(lossy("\xC0\xAF"), "\uFFFD\uFFFD");
    EXPECT_EQ(lossy("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");
    std::string out;
    EXPECT_EQ(dsinfer::text::append_utf8_lossy(out, "ok\xF0\x9F", false), 2u);
    EXPECT_EQ(out, "ok");
}

TEST(Tokenizer, WhitespaceFollowsOnigurumaIncludingNel) {
    // The reference engine's \s is Unicode White_Space, which has U+0085; PCRE2's does not.
    dsinfer::text::UnicodeRegex ws(R"(\s+)"), non_ws(R"(\S)");
    size_t b = 0, e = 0;
    ASSERT_TRUE(ws.find("a\xC2\x85\xE3\x80\x80z", 0, b, e));
    EXPECT_EQ(b, 1u);
    EXPECT_EQ(e, 6u);
    ASSERT_TRUE(non_ws.find("\xC2\x85 x", 0, b, e));
    EXPECT_EQ(b, 3u);
}

TEST(Tokenizer, EncodeFromTwoThreadsGivesTheSameIds) {
    // A fresh tokenizer, so both threads fill the word cache at once.
    const Tokenizer tok = Tokenizer::load(kTokenizerPath);
    std::vector<std::vector<int32_t>> got[2];
    auto work = [&](int t) {
        for (int round = 0; round < 3; ++round)
            for (const Case& c : cases()) got[t].push_back(tok.encode(c.text));
    };
    std::thread a(work, 0), b(work, 1);
    a.join();
    b.join();
    ASSERT_EQ(got[0].size(), 3 * cases().size());
    ASSERT_EQ(got[0], got[1]);
    for (size_t i = 0; i < got[0].size(); ++i) ASSERT_EQ(got[0][i], cases()[i % cases().size()].ids);
}

TEST(Tokenizer, RandomTextRoundTrips) {
    // decode(encode(s)) == s for any valid text: random mixes of scripts, digits, whitespace kinds,
    // punctuation and fragments of added tokens, on both the short-word and the long-word paths.
    const Tokenizer& tok = shared_tokenizer();
    const std::vector<std::string> atoms = {
        "a", "Z", "é", "ß", "7", "٣", "½", " ", "  ", "\t", "\n", "\r\n", "\xC2\x85", "\xC2\xA0", "\xE3\x80\x80",
        ".", "!", "'s", "<", "<｜", "｜>", "User", "<｜User｜>", "</think>", "｜DSML｜", "中", "文", "の", "カ", "한",
        "д", "ω", "😀", "👍🏽", "\u200d", "\xCC\x81", "$", "{", "}", "_", "\\", "\"", "\x01", "\x7F"};
    std::mt19937 rng(99);
    for (int trial = 0; trial < 300; ++trial) {
        std::string text;
        const size_t n = rng() % (trial % 10 == 0 ? 400 : 40);
        for (size_t i = 0; i < n; ++i) text += atoms[rng() % atoms.size()];
        const auto ids = tok.encode(text);
        ASSERT_EQ(tok.decode(ids), text) << json(text).dump();
        for (int32_t id : ids) ASSERT_TRUE(id >= 0 && static_cast<size_t>(id) < tok.vocab_size());
    }
}

TEST(Tokenizer, RejectsInvalidUtf8AndUnknownIds) {
    const Tokenizer& tok = shared_tokenizer();
    EXPECT_THROW(tok.encode("abc\xFF"), std::runtime_error);
    EXPECT_THROW(tok.decode(std::vector<int32_t>{5, 129280}), std::out_of_range);
    EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), std::out_of_range);
}

TEST(Tokenizer, LongWordsMatchAPlainBpe) {
    // Long pieces take the heap path of the merge loop, short ones the quadratic scan; both must give
    // what the textbook algorithm gives (merge the lowest-ranked adjacent pair, leftmost first).
    const Tokenizer& tok = shared_tokenizer();
    const json j = json::parse(slurp(kTokenizerPath));
    std::map<std::pair<std::string, std::string>, int> ranks;
    int r = 0;
    for (const json& m : j.at("model").at("merges")) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        ranks.emplace(std::make_pair(s.substr(0, sp), s.substr(sp + 1)), r++);
    }
    const auto& alpha = dsinfer::text::ByteLevelAlphabet::get();
    auto plain_bpe = [&](const std::string& word) {
        std::vector<std::string> syms;
        for (char c : word) syms.push_back(alpha.encode(std::string(1, c)));
        while (syms.size() > 1) {
            int best = INT32_MAX;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < syms.size(); ++i) {
                auto it = ranks.find({syms[i], syms[i + 1]});
                if (it != ranks.end() && it->second < best) {
                    best = it->second;
                    bi = i;
                }
            }
            if (best == INT32_MAX) break;
            syms[bi] += syms[bi + 1];
            syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(bi) + 1);
        }
        std::vector<int32_t> ids;
        for (const auto& s : syms) ids.push_back(tok.token_to_id(s));
        return ids;
    };
    std::mt19937 rng(7);
    const std::string letters = "etaoinshrdlucmfwypvbgkqjxz";
    for (int trial = 0; trial < 60; ++trial) {
        std::string word;
        const size_t len = 2 + rng() % 300;
        for (size_t i = 0; i < len; ++i) word += letters[rng() % (trial % 2 ? 6 : letters.size())];
        ASSERT_EQ(tok.encode(word), plain_bpe(word)) << word;
    }
    std::string cjk;  // one pre-token of 40 ideographs (120 bytes)
    for (int i = 0; i < 40; ++i) dsinfer::text::append_utf8(cjk, 0x4E00 + (i * 37) % 2000);
    EXPECT_EQ(tok.encode(cjk), plain_bpe(cjk));
}

TEST(Tokenizer, ErrorsNameTheFileAndFeature) {
    try {
        Tokenizer::load("/nonexistent/dir/tokenizer.json");
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/tokenizer.json"), std::string::npos) << e.what();
    }
    auto error_of = [](const std::string& text) {
        try {
            Tokenizer::from_json(text, "t.json");
        } catch (const std::runtime_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string byte_level_parts =
        R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
           "decoder": {"type": "ByteLevel"})";
    EXPECT_NE(error_of(R"({"model": {"type": "Unigram", "vocab": []},)" + byte_level_parts + "}").find("Unigram"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"model": {"type": "WordPiece", "vocab": {}},)" + byte_level_parts + "}").find("WordPiece"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"normalizer": {"type": "NFKC"}, "model": {"type": "BPE", "vocab": {}, "merges": []},)" +
                       byte_level_parts + "}")
                  .find("normalizer 'NFKC'"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                           "pre_tokenizer": {"type": "Whitespace"}, "decoder": {"type": "ByteLevel"}})")
                  .find("pre_tokenizer 'Whitespace'"),
              std::string::npos);
    EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]},)" + byte_level_parts +
                       "}")
                  .find("merges[0]"),
              std::string::npos);
    EXPECT_NE(error_of("{not json").find("invalid JSON"), std::string::npos);
    EXPECT_NE(error_of("{not json").find("t.json"), std::string::npos);
}

// A small byte-level tokenizer written here, for the parts the DeepSeek file does not exercise:
// GPT-2 style ByteLevel splitting with a prefix space, a post-processor template, added-token flags.
TEST(Tokenizer, SmallTokenizerWithTemplateAndAddedTokenFlags) {
    const auto& alpha = dsinfer::text::ByteLevelAlphabet::get();
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[alpha.encode(std::string(1, static_cast<char>(b)))] = b;
    vocab["Ġh"] = 256;
    vocab["Ġhi"] = 257;
    vocab["<s>"] = 258;
    json j = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"Ġ h", "Ġh i"}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {258}}, {"tokens", {"<s>"}}}}}}}},
        {"added_tokens",
         {{{"id", 258}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
          {{"id", 259}, {"content", "[R]"}, {"special", false}, {"normalized", false}, {"rstrip", true}},
          {{"id", 260}, {"content", "[L]"}, {"special", false}, {"normalized", false}, {"lstrip", true}},
          {{"id", 261}, {"content", "w"}, {"special", false}, {"normalized", true}, {"single_word", true}},
          {{"id", 262}, {"content", "qr"}, {"special", false}, {"normalized", true}},
          {{"id", 263}, {"content", "rst"}, {"special", false}, {"normalized", false}}}},
    };
    const Tokenizer tok = Tokenizer::from_json(j.dump(), "small.json");
    EXPECT_EQ(tok.vocab_size(), 264u);
    EXPECT_EQ(tok.bos_id(), 258);
    // The prefix space makes "hi" into "Ġhi".
    EXPECT_EQ(tok.encode("hi"), std::vector<int32_t>{257});
    EXPECT_EQ(tok.encode("hi", true), (std::vector<int32_t>{258, 257}));
    // rstrip takes the spaces after [R]; lstrip the spaces before [L].
    EXPECT_EQ(tok.encode("[R]   hi"), (std::vector<int32_t>{259, 257}));
    EXPECT_EQ(tok.encode("hi   [L]"), (std::vector<int32_t>{257, 260}));
    // single_word: "w" alone is the added token, inside a word it is plain text.
    EXPECT_EQ(tok.encode("w"), std::vector<int32_t>{261});
    const auto in_word = tok.encode("aw");
    EXPECT_EQ(std::count(in_word.begin(), in_word.end(), 261), 0);
    // Non-normalized added tokens are taken off the whole text before the normalized ones.
    EXPECT_EQ(tok.encode("qrst"), (std::vector<int32_t>{' ', 'q', 263}));
    EXPECT_EQ(tok.encode("qrs"), (std::vector<int32_t>{262, ' ', 's'}));
    EXPECT_EQ(tok.decode(tok.encode("<s>hi"), true), " hi");
    EXPECT_EQ(tok.decode(tok.encode("<s>hi"), false), "<s> hi");
}

TEST(Tokenizer, ReadsBosEosFromTokenizerConfig) {
    const auto& alpha = dsinfer::text::ByteLevelAlphabet::get();
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[alpha.encode(std::string(1, static_cast<char>(b)))] = b;
    json j = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"added_tokens",
         {{{"id", 256}, {"content", "[BOS]"}, {"special", true}}, {{"id", 257}, {"content", "[EOS]"}, {"special", true}}}},
    };
    const auto dir = std::filesystem::temp_directory_path() / ("dsinfer_tokcfg_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << j.dump();
    // Without a config the names are unconventional: unknown.
    Tokenizer plain = Tokenizer::load((dir / "tokenizer.json").string());
    EXPECT_EQ(plain.bos_id(), -1);
    EXPECT_EQ(plain.eos_id(), -1);
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": {"content": "[BOS]"}, "eos_token": "[EOS]", "add_bos_token": true, "add_eos_token": false})";
    Tokenizer tok = Tokenizer::load(dir.string());  // a model directory works too
    EXPECT_EQ(tok.bos_id(), 256);
    EXPECT_EQ(tok.eos_id(), 257);
    EXPECT_EQ(tok.encode("a", true), (std::vector<int32_t>{256, 'a'}));
    EXPECT_EQ(tok.encode("a", false), (std::vector<int32_t>{'a'}));
    std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "[NOPE]"})";
    EXPECT_THROW(Tokenizer::load((dir / "tokenizer.json").string()), std::runtime_error);
    std::filesystem::remove_all(dir);
}

TEST(Tokenizer, CliRoundTrip) {
    const Tokenizer& tok = shared_tokenizer();
    const std::vector<std::string> texts = {"Hello world", "<｜User｜>你好<｜Assistant｜></think>ok", "",
                                            "emoji 😀 and\ttabs\n\n", "a<｜end▁of▁sentence｜>b"};
    std::string out;
    ASSERT_EQ(run_cli("text tokenize --tokenizer " + kTokenizerPath, json(texts).dump(), out), 0);
    const json ids = json::parse(out);
    ASSERT_TRUE(ids.is_array());
    ASSERT_EQ(ids.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(ids[i].get<std::vector<int32_t>>(), tok.encode(texts[i]));

    ASSERT_EQ(run_cli("text detokenize --tokenizer " + kTokenizerPath, ids.dump(), out), 0);
    EXPECT_EQ(json::parse(out).get<std::vector<std::string>>(), texts);
    ASSERT_EQ(run_cli("text detokenize --skip-special --tokenizer " + kTokenizerPath, ids.dump(), out), 0);
    EXPECT_EQ(json::parse(out)[4].get<std::string>(), "ab");
}

TEST(Tokenizer, CliRejectsBadInput) {
    std::string out, err;
    EXPECT_NE(run_cli("text tokenize --tokenizer " + kTokenizerPath, "[\"a\", 3]", out, &err), 0);
    EXPECT_NE(err.find("element 1 is not a string"), std::string::npos) << err;
    EXPECT_NE(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[[5], [1, 129280]]", out, &err), 0);
    EXPECT_NE(err.find("element 1, id 1: 129280 is out of range"), std::string::npos) << err;
    EXPECT_NE(run_cli("text tokenize --tokenizer " + kTokenizerPath, "not json", out), 0);
    EXPECT_NE(run_cli("text tokenize --tokenizer " + kTokenizerPath, "{\"a\": 1}", out), 0);
    EXPECT_NE(run_cli("text tokenize", "[\"a\"]", out), 0);
    EXPECT_NE(run_cli("text tokenize --tokenizer /nonexistent.json", "[\"a\"]", out), 0);
    EXPECT_NE(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[[1, 2, 129280]]", out), 0);
    EXPECT_NE(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[[1, -2]]", out), 0);
    EXPECT_NE(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[[1.5]]", out), 0);
    EXPECT_NE(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[\"x\"]", out), 0);
    EXPECT_EQ(run_cli("text detokenize --tokenizer " + kTokenizerPath, "[[19923]]", out), 0);
    EXPECT_EQ(json::parse(out), json({"Hello"}));
}
