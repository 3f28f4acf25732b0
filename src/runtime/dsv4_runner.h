// The ModelRunner over the DeepSeek-V4 model of a checkpoint folder (what Engine::load uses).
#pragma once

#include <memory>
#include <string>

#include "runtime/model_runner.h"

namespace dsinfer::runtime {

// device: "cpu" (the op table on host buffers) or "cuda" (the CUDA forward; a build without
// -DDSINFER_CUDA=ON refuses it).
std::unique_ptr<ModelRunner> make_dsv4_runner(const std::string& model_dir, const std::string& device = "cpu");

}  // namespace dsinfer::runtime
