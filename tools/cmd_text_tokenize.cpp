// dsinfer text tokenize / text detokenize: batch access to the tokenizer over JSON on stdin/stdout.
//   dsinfer text tokenize --tokenizer FILE               ["text", ...]      -> [[id, ...], ...]
//   dsinfer text detokenize --tokenizer FILE [--skip-special]  [[id, ...], ...] -> ["text", ...]
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "command.h"
#include "text/tokenizer.h"

namespace {

using json = nlohmann::json;

struct Options {
    std::string tokenizer;
    bool skip_special = false;
    bool help = false;
};

Options parse_options(int argc, char** argv, bool allow_skip_special) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--tokenizer" && i + 1 < argc) {
            o.tokenizer = argv[++i];
        } else if (a.rfind("--tokenizer=", 0) == 0) {
            o.tokenizer = a.substr(std::strlen("--tokenizer="));
        } else if (allow_skip_special && a == "--skip-special") {
            o.skip_special = true;
        } else if (a == "--help" || a == "-h") {
            o.help = true;
        } else {
            throw std::runtime_error("unknown argument '" + a + "' (see --help)");
        }
    }
    if (!o.help && o.tokenizer.empty()) throw std::runtime_error("--tokenizer FILE is required");
    return o;
}

json read_stdin_json() {
    std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw std::runtime_error(std::string("stdin: invalid JSON: ") + e.what());
    }
}

int run_tokenize(int argc, char** argv) {
    const Options o = parse_options(argc, argv, false);
    if (o.help) {
        std::fprintf(stderr,
                     "usage: dsinfer text tokenize --tokenizer FILE\n"
                     "Reads a JSON array of strings on stdin and writes a JSON array of id arrays\n"
                     "(no special tokens added) on stdout.\n");
        return 0;
    }
    const json in = read_stdin_json();
    if (!in.is_array()) throw std::runtime_error("stdin: expected a JSON array of strings");
    for (size_t i = 0; i < in.size(); ++i)
        if (!in[i].is_string()) throw std::runtime_error("stdin: element " + std::to_string(i) + " is not a string");
    const auto tok = dsinfer::text::Tokenizer::load(o.tokenizer);
    json out = json::array();
    for (const json& s : in) out.push_back(tok.encode(s.get_ref<const std::string&>(), false));
    std::cout << out.dump() << "\n";
    return std::cout.good() ? 0 : 1;
}

int run_detokenize(int argc, char** argv) {
    const Options o = parse_options(argc, argv, true);
    if (o.help) {
        std::fprintf(stderr,
                     "usage: dsinfer text detokenize --tokenizer FILE [--skip-special]\n"
                     "Reads a JSON array of id arrays on stdin and writes a JSON array of strings on\n"
                     "stdout; --skip-special leaves out the special tokens.\n");
        return 0;
    }
    const json in = read_stdin_json();
    if (!in.is_array()) throw std::runtime_error("stdin: expected a JSON array of id arrays");
    const auto tok = dsinfer::text::Tokenizer::load(o.tokenizer);
    json out = json::array();
    std::vector<int32_t> ids;
    for (size_t i = 0; i < in.size(); ++i) {
        const json& a = in[i];
        if (!a.is_array()) throw std::runtime_error("stdin: element " + std::to_string(i) + " is not an array of ids");
        ids.clear();
        for (size_t k = 0; k < a.size(); ++k) {
            const json& v = a[k];
            const std::string where = "stdin: element " + std::to_string(i) + ", id " + std::to_string(k);
            if (!v.is_number_integer()) throw std::runtime_error(where + " is not an integer");
            const int64_t id = v.get<int64_t>();
            if (id < 0 || static_cast<uint64_t>(id) >= tok.vocab_size() || tok.id_to_token(static_cast<int32_t>(id)).empty())
                throw std::runtime_error(where + ": " + std::to_string(id) + " is out of range (vocabulary size " +
                                         std::to_string(tok.vocab_size()) + ")");
            ids.push_back(static_cast<int32_t>(id));
        }
        out.push_back(tok.decode(ids, o.skip_special));
    }
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    return std::cout.good() ? 0 : 1;
}

}  // namespace

DSINFER_COMMAND("text tokenize", "JSON array of strings on stdin -> JSON array of id arrays", run_tokenize);
DSINFER_COMMAND("text detokenize", "JSON array of id arrays on stdin -> JSON array of strings", run_detokenize);
