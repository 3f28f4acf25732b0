// A scripted model for end-to-end tests of the server: the byte codec plus a runner whose replies
// are fixed texts chosen by what the last user turn contains. Spec (JSON, inline or a file path):
//   {"replies": [{"when": "weather", "reply": "<reasoning></think>answer or DSML"}], "peak": 40,
//    "default_reply": "...", "step_delay_ms": 0, "max_context": 4096, "granularity": 16}
// A reply is what the model writes after the generation prompt: in thinking mode reasoning, then
// </think>, then the answer; in chat mode the part before </think> is left out. After the reply the
// model writes the end-of-sequence token. Text the prompt already holds of the answer (the forced
// start of a tool call) counts as written. The reply "{{echo}}" answers "You said: " + the user turn;
// "{{fail}}" in a reply makes the model's step throw once the text before it is written (failures).
// A prompt without an assistant turn (/v1/completions) is continued with the alphabet, from the
// letter after the prompt's last one. Prompts are DeepSeek-V4 chats, ids from the byte codec.
#pragma once

#include <memory>
#include <string>

#include "runtime/model_runner.h"

namespace dsinfer::server {

std::unique_ptr<runtime::ModelRunner> make_scripted_model(const std::string& spec);

}  // namespace dsinfer::server
