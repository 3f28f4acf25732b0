// The OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions, /v1/models, /health,
// /metrics, over an Engine and a TextCodec. Threads of httplib's pool answer requests; each
// generation streams out of its engine queue.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "dsinfer/engine.h"
#include "server/text_codec.h"

namespace dsinfer::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 8000;                  // 0 = any free port
    std::string api_key;              // empty = no authentication
    std::string model_name = "default";
    size_t max_body_bytes = 8u << 20;
    size_t max_messages = 1024;
    int max_concurrent = 256;         // requests answered at once; more get 429
    int max_n = 16;
    int drain_timeout_s = 30;         // on shutdown, in-flight requests get this long to finish
    nlohmann::json generation_defaults = nlohmann::json::object();  // from generation_config.json
};

class OpenAIServer {
public:
    OpenAIServer(Engine& engine, const TextCodec& codec, ServerOptions opts);
    ~OpenAIServer();
    // Binds the listening socket; returns the port (useful with port 0). Throws on failure.
    int bind();
    // Serves until shutdown() completes.
    void serve();
    // Stops accepting requests, lets in-flight ones finish (cancelling them after drain_timeout_s),
    // then stops the listener. Callable from any thread.
    void shutdown();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace dsinfer::server
