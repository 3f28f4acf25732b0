// The engine's error type: a message that says what is wrong and where (file, tensor, field).
#pragma once

#include <stdexcept>
#include <string>

namespace dsinfer {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace dsinfer
