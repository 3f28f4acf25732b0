// Subcommand registry of the dsinfer binary. Each cmd_*.cpp registers its commands with
// DSINFER_COMMAND at static-initialisation time; main() looks them up by name.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"

namespace dsinfer::cli {

// argv[0] is the (last word of the) subcommand's name; flags follow. A name may be two words
// ("text tokenize"); main() tries the two-word form first.
using CommandFn = int (*)(int argc, char** argv);

struct Command {
    const char* name;
    const char* summary;
    CommandFn run;
};

std::vector<Command>& command_registry();

// The model folder a command uses without --model: $DSINFER_MODEL when set and non-empty, else
// models/default (relative to the current directory).
inline std::string default_model_dir() {
    const char* env = std::getenv("DSINFER_MODEL");
    return env && *env ? std::string(env) : std::string("models/default");
}

// The value of the flag argv[i], i.e. argv[i + 1] (i moves to it); an Error naming the flag when the
// command line ends first.
inline std::string flag_value(int argc, char** argv, int& i) {
    if (i + 1 >= argc) throw Error(std::string(argv[i]) + " needs a value");
    return argv[++i];
}

struct CommandRegistrar {
    explicit CommandRegistrar(Command c) { command_registry().push_back(c); }
};

}  // namespace dsinfer::cli

#define DSINFER_CONCAT_INNER(a, b) a##b
#define DSINFER_CONCAT(a, b) DSINFER_CONCAT_INNER(a, b)
#define DSINFER_COMMAND(name, summary, fn) \
    static ::dsinfer::cli::CommandRegistrar DSINFER_CONCAT(dsinfer_cmd_, __LINE__)({name, summary, fn})
