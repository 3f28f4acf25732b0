// Engine::load: the engine over the DeepSeek-V4 model of a checkpoint directory.
#include <filesystem>
#include <stdexcept>

#include "dsinfer/engine.h"
#include "runtime/model_runner.h"

namespace dsinfer {

std::unique_ptr<Engine> Engine::load(const std::string& model_dir, const EngineOptions& opts) {
    if (!std::filesystem::exists(std::filesystem::path(model_dir) / "config.json"))
        throw std::runtime_error("model directory '" + model_dir + "' has no config.json");
    throw std::runtime_error("this build has no DeepSeek-V4 model runner yet; serve a scripted model with --scripted");
}

}  // namespace dsinfer
