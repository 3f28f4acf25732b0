// The correctness harness behind `dsinfer replay` and `dsinfer compare`: run the cases of a golden
// file the way DeepSeek's reference produced them (prefill, then teacher-forced decode one token at
// a time, and the MTP block), and compare what the engine computes against the golden with the
// project's bars (tests/data fixtures README).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/dsv4_model.h"

namespace dsinfer {

struct ReplayOptions {
    bool layerwise = false;  // feed each layer the golden's hidden state of the layer before
    int64_t chunk = 0;       // prefill in chunks of this many tokens (0: one chunk)
};

struct FloatArray {
    std::vector<int64_t> shape;
    std::vector<float> data;
};
using TensorMap = std::map<std::string, FloatArray>;

// Runs every case C of the golden file (C.tokens, C.prompt_len) and returns the engine's
// C.prefill.logits, C.decode.logits and, where the golden has them, C.prefill.hidden.i,
// C.decode.hidden.i and C.mtp.logits. Throws Error on a malformed case file.
TensorMap replay_cases(Dsv4Model& model, const std::string& cases_path, const ReplayOptions& opts);

// `metadata` goes into the file's __metadata__ (replay records how it ran: layerwise, quant_sim, chunk).
void write_tensor_map(const std::string& path, const TensorMap& m,
                      const std::map<std::string, std::string>& metadata = {});
TensorMap read_tensor_map(const std::string& path);  // every F32/I32 tensor, as float

struct CompareLine {
    std::string name;
    std::string what;  // "kl" (logits) or "rel_l2" (hidden)
    double v1 = 0, v2 = 0;  // logits: mean KL, argmax agreement; hidden: median rel L2, fraction <= 1e-3
    bool checked = true;    // false: printed for information only (no bar applies)
    bool pass = true;
    std::string message;    // set when the tensor is missing or mis-shaped
};

// Applies the bars: logits mean KL(golden||engine) <= 1e-2 and argmax agreement >= 0.90 (noquant:
// 2e-3 and 0.97); hidden states (only when `layerwise`) median relative L2 <= 1e-5 and >= 85% of
// positions <= 1e-3. Every logits tensor of the golden must be present in `out`.
std::vector<CompareLine> compare_outputs(const TensorMap& golden, const TensorMap& out, bool noquant, bool layerwise);
std::string format_compare(const std::vector<CompareLine>& lines);

}  // namespace dsinfer
