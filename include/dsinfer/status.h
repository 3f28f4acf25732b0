// Outcome of an engine call: a code a server can map to an HTTP status, and a message naming what
// was wrong.
#pragma once

#include <string>
#include <utility>

namespace dsinfer {

enum class StatusCode {
    ok,
    invalid_argument,    // the request is malformed or names something that does not fit the model
    not_found,           // an unknown model or route
    resource_exhausted,  // the request can never fit (prompt longer than the context or the KV pool)
    unavailable,         // the engine is shutting down
    cancelled,
    internal,
};

struct Status {
    StatusCode code = StatusCode::ok;
    std::string message;

    bool ok() const { return code == StatusCode::ok; }
    static Status success() { return {}; }
    static Status error(StatusCode c, std::string msg) { return {c, std::move(msg)}; }
};

}  // namespace dsinfer
