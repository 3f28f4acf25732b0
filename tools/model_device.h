// --device for the commands that run the model: cpu (the op table on host buffers) or cuda (the
// forward of src/cuda/cuda_model.h, present when built with -DDSINFER_CUDA=ON).
#pragma once

#include <string>

#include "core/error.h"
#include "model/dsv4_model.h"
#ifdef DSINFER_CUDA
#include "cuda/cuda_model.h"
#endif

namespace dsinfer {

inline void attach_device(Dsv4Model& m, const std::string& device) {
    if (device == "cpu") return;
    if (device != "cuda") throw Error("--device '" + device + "': expected cpu or cuda");
#ifdef DSINFER_CUDA
    m.set_device(cuda::make_model_device(m));
#else
    throw Error("--device cuda: this dsinfer was built without the CUDA backend (cmake -DDSINFER_CUDA=ON)");
#endif
}

}  // namespace dsinfer
