// dsinfer text encode-chat CASE.json  — the prompt of an `encode` case (tests/data/dsml), exactly, no newline
//                                       (--openai REQUEST.json [--format F]: of an OpenAI request instead)
// dsinfer text parse CASE.json [--lenient] [--seed N]
//                                     — {content, reasoning_content, tool_calls} or {error} for a `parse` case
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>

#include "command.h"
#include "text/chat.h"
#include "text/dsml.h"
#include "text/dsml_stream.h"

namespace {

using dsinfer::text::ojson;

ojson read_case(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open case file '" + path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return ojson::parse(ss.str());
    } catch (const ojson::parse_error& e) {
        throw std::runtime_error("case file '" + path + "' is not valid JSON: " + e.what());
    }
}

void check_kind(const ojson& c, const char* kind, const std::string& path) {
    auto k = c.find("kind");
    if (k != c.end() && !(k->is_string() && k->get<std::string>() == kind))
        throw std::runtime_error("case file '" + path + "' is not a '" + kind + "' case (kind: " + k->dump() + ")");
}

void print_json(const ojson& j) {
    const std::string s = j.dump(-1, ' ', false, ojson::error_handler_t::replace);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
}

int cmd_encode_chat(int argc, char** argv) {
    std::string path, format = "dsv4";
    bool openai = false, help = argc < 2;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--openai") {
            openai = true;
        } else if (a == "--format" && i + 1 < argc) {
            format = argv[++i];
        } else if (a == "--help") {
            help = true;
        } else if (!a.empty() && a[0] != '-' && path.empty()) {
            path = a;
        } else {
            throw std::runtime_error("unexpected argument '" + a + "'");
        }
    }
    if (help || path.empty()) {
        std::fprintf(stderr,
                     "usage: dsinfer text encode-chat CASE.json\n"
                     "       dsinfer text encode-chat --openai REQUEST.json [--format dsv4|dsv4-0731|dsv32]\n"
                     "Prints the prompt of a DSML `encode` case (messages, tools, thinking, drop_thinking,\n"
                     "reasoning_effort, format dsv4|dsv4-0731|dsv32) exactly, without a trailing newline.\n"
                     "--openai reads an OpenAI chat-completions request body instead (docs/dsml.md).\n");
        return help && argc >= 2 ? 0 : 2;
    }
    const ojson c = read_case(path);
    dsinfer::text::ChatEncoderInput in;
    if (openai) {
        in = dsinfer::text::chat_input_from_openai(c, dsinfer::text::chat_format_from_name(format));
    } else {
        check_kind(c, "encode", path);
        in = dsinfer::text::chat_input_from_case(c);
    }
    const std::string prompt = dsinfer::text::encode_chat(in.messages, in.options, in.context);
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    return 0;
}

int cmd_parse(int argc, char** argv) {
    std::string path;
    bool lenient = false;
    uint64_t seed = 0x5eed;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--lenient") {
            lenient = true;
        } else if (a == "--seed" && i + 1 < argc) {
            seed = std::stoull(argv[++i]);
        } else if (a == "--help") {
            path.clear();
            break;
        } else if (!a.empty() && a[0] != '-' && path.empty()) {
            path = a;
        } else {
            throw std::runtime_error("unexpected argument '" + a + "'");
        }
    }
    if (path.empty()) {
        std::fprintf(stderr,
                     "usage: dsinfer text parse CASE.json [--lenient] [--seed N]\n"
                     "Parses the model_output of a DSML `parse` case and prints {content, reasoning_content,\n"
                     "tool_calls} as JSON, or {error} when the strict parser rejects it. --lenient feeds the\n"
                     "streaming parser small random chunks (seeded by --seed) and prints the assembled result.\n");
        return 2;
    }
    const ojson c = read_case(path);
    check_kind(c, "parse", path);
    auto out = c.find("model_output");
    if (out == c.end() || !out->is_string()) throw std::runtime_error("case file '" + path + "': model_output missing");
    auto fmt = c.find("format");
    if (fmt == c.end() || !fmt->is_string()) throw std::runtime_error("case file '" + path + "': format missing");
    const auto format = dsinfer::text::chat_format_from_name(fmt->get<std::string>());
    const bool thinking = c.value("thinking", false);
    const std::string& text = out->get_ref<const std::string&>();

    if (!lenient) {
        try {
            print_json(
                dsinfer::text::parsed_message_to_json(dsinfer::text::parse_completion_strict(text, thinking, format)));
        } catch (const dsinfer::text::DsmlError& e) {
            print_json(ojson{{"error", e.what()}});
        }
        return 0;
    }
    dsinfer::text::StreamParserOptions opt;
    opt.format = format;
    opt.starts_in_reasoning = thinking;
    opt.id_seed = seed;
    if (auto tools = c.find("tools"); tools != c.end() && tools->is_array())
        for (const auto& t : *tools) opt.tools.push_back(t.contains("function") ? t["function"] : t);
    dsinfer::text::DsmlStreamParser parser(opt);
    dsinfer::text::AssembledMessage msg;
    std::mt19937_64 rng(seed);
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min<size_t>(text.size() - i, 1 + rng() % 8);
        dsinfer::text::accumulate(msg, parser.feed(std::string_view(text).substr(i, n)));
        i += n;
    }
    dsinfer::text::accumulate(msg, parser.finish());
    print_json(dsinfer::text::assembled_message_to_json(msg));
    return 0;
}

}  // namespace

DSINFER_COMMAND("text encode-chat", "print the DeepSeek chat prompt of a DSML encode case", cmd_encode_chat);
DSINFER_COMMAND("text parse", "parse the model output of a DSML parse case (strict, or --lenient streaming)",
                cmd_parse);
