// dsinfer replay: run the cases of a golden file and write what the engine computes under the same
// names. dsinfer compare: apply the project's bars to a replay output.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "command.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/replay.h"
#include "model_device.h"

namespace {

int replay_main(int argc, char** argv) {
    std::string model, cases, out, device = "cpu";
    dsinfer::ReplayOptions ro;
    dsinfer::ModelOptions mo;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        if (a == "--model") model = value();
        else if (a == "--cases") cases = value();
        else if (a == "--out") out = value();
        else if (a == "--layerwise") ro.layerwise = true;
        else if (a == "--no-quant-sim") mo.quant_sim = false;
        else if (a == "--chunk") ro.chunk = std::atoll(value().c_str());
        else if (a == "--threads") mo.threads = std::atoi(value().c_str());
        else if (a == "--device") device = value();
        else if (a == "--help" || a == "-h") {
            std::printf(
                "usage: dsinfer replay --model DIR --cases IN.safetensors --out OUT.safetensors\n"
                "                      [--layerwise] [--no-quant-sim] [--chunk N] [--threads N] [--device cpu|cuda]\n"
                "Runs every case C of IN (C.tokens, C.prompt_len): prefill of the prompt, then teacher-forced\n"
                "decode; writes C.prefill.logits, C.decode.logits, and where IN has them C.mtp.logits and the\n"
                "per-layer C.prefill.hidden.i / C.decode.hidden.i.\n"
                "  --layerwise     feed each layer IN's hidden state of the layer before\n"
                "  --no-quant-sim  turn every quantization simulation off\n"
                "  --chunk N       prefill in chunks of N tokens\n"
                "  --device D      cpu (default) or cuda (builds with -DDSINFER_CUDA=ON)\n");
            return 0;
        } else throw dsinfer::Error("unknown option '" + a + "' (see --help)");
    }
    if (model.empty() || cases.empty() || out.empty()) throw dsinfer::Error("--model, --cases and --out are required");
    if (ro.chunk < 0) throw dsinfer::Error("--chunk must be positive");
    auto m = dsinfer::Dsv4Model::load(model, mo);
    dsinfer::attach_device(*m, device);
    auto result = dsinfer::replay_cases(*m, cases, ro);
    dsinfer::write_tensor_map(out, result,
                              {{"dsinfer.replay.layerwise", ro.layerwise ? "true" : "false"},
                               {"dsinfer.replay.quant_sim", mo.quant_sim ? "true" : "false"},
                               {"dsinfer.replay.chunk", std::to_string(ro.chunk)},
                               {"dsinfer.replay.device", m->device_name()}});
    std::fprintf(stderr, "wrote %zu tensors to %s\n", result.size(), out.c_str());
    return 0;
}

int compare_main(int argc, char** argv) {
    std::string golden, out;
    bool noquant = false, layerwise = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&] { return dsinfer::cli::flag_value(argc, argv, i); };
        if (a == "--golden") golden = value();
        else if (a == "--out") out = value();
        else if (a == "--noquant") noquant = true;
        else if (a == "--layerwise") layerwise = true;
        else if (a == "--help" || a == "-h") {
            std::printf(
                "usage: dsinfer compare --golden G.safetensors --out O.safetensors [--noquant] [--layerwise]\n"
                "Logits: per position KL(golden||engine), mean <= 1e-2 and argmax agreement >= 0.90\n"
                "(--noquant: 2e-3 and 0.97). --layerwise: also hidden states, per position relative L2,\n"
                "median <= 1e-5 and >= 85%% of positions <= 1e-3 (implied when O comes from replay --layerwise).\n"
                "Exit code 1 when a bar fails.\n");
            return 0;
        } else throw dsinfer::Error("unknown option '" + a + "' (see --help)");
    }
    if (golden.empty() || out.empty()) throw dsinfer::Error("--golden and --out are required");
    {
        // A layerwise replay records itself; its hidden states are then held to the layer bars.
        dsinfer::SafeTensorsFile f(out);
        auto it = f.metadata().find("dsinfer.replay.layerwise");
        if (it != f.metadata().end() && it->second == "true") layerwise = true;
    }
    auto lines = dsinfer::compare_outputs(dsinfer::read_tensor_map(golden), dsinfer::read_tensor_map(out), noquant,
                                          layerwise);
    std::fputs(dsinfer::format_compare(lines).c_str(), stdout);
    bool ok = true;
    for (auto& l : lines) ok = ok && l.pass;
    std::printf("%s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}

}  // namespace

DSINFER_COMMAND("replay", "run the cases of a golden file, write what the engine computes", replay_main);
DSINFER_COMMAND("compare", "apply the correctness bars to a replay output", compare_main);
