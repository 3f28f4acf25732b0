// The ModelRunner over the DeepSeek-V4 model of a checkpoint folder (what Engine::load uses).
#pragma once

#include <memory>
#include <string>

#include "runtime/model_runner.h"

namespace dsinfer::runtime {

std::unique_ptr<ModelRunner> make_dsv4_runner(const std::string& model_dir);

}  // namespace dsinfer::runtime
