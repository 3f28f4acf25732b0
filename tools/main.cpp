// dsinfer: one binary, many subcommands (see command.h).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "command.h"

namespace dsinfer::cli {
std::vector<Command>& command_registry() {
    static std::vector<Command> commands;
    return commands;
}
}  // namespace dsinfer::cli

static void print_usage() {
    auto cmds = dsinfer::cli::command_registry();
    std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return std::strcmp(a.name, b.name) < 0; });
    std::fprintf(stderr, "usage: dsinfer <command> [options]\n\ncommands:\n");
    for (auto& c : cmds) std::fprintf(stderr, "  %-14s %s\n", c.name, c.summary);
    std::fprintf(stderr, "\n'dsinfer <command> --help' describes a command's options.\n");
}

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
        print_usage();
        return argc < 2 ? 2 : 0;
    }
    // Two-word commands ("text tokenize") first, then one-word ones.
    std::string two = argc >= 3 ? std::string(argv[1]) + " " + argv[2] : std::string();
    for (auto& c : dsinfer::cli::command_registry()) {
        int skip = 0;
        if (!two.empty() && two == c.name)
            skip = 2;
        else if (!std::strcmp(c.name, argv[1]))
            skip = 1;
        if (skip) {
            try {
                return c.run(argc - skip, argv + skip);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "dsinfer %s: error: %s\n", c.name, e.what());
                return 1;
            }
        }
    }
    std::fprintf(stderr, "dsinfer: unknown command '%s'\n\n", argv[1]);
    print_usage();
    return 2;
}
