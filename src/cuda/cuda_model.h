// The DeepSeek-V4 forward on the GPU: the CPU model's forward (src/model/dsv4_model.cpp) step for
// step through the CUDA op table, with the weights uploaded once in their stored formats and every
// activation and per-sequence cache (window ring, compressed KV, indexer keys, compressor state,
// the MTP block's cache) in device memory. Attach it with
//   model->set_device(dsinfer::cuda::make_model_device(*model));
// then create sequences (they carry the device caches). Plain C++ header.
#pragma once

#include <memory>

#include "model/dsv4_model.h"

namespace dsinfer::cuda {

struct CudaModelOptions {
    // FP8/FP4 GEMMs with more than kGemvMaxRows rows (prefill) on FP8 tensor cores: much faster, but
    // their reduced-precision accumulation moves the prefill hidden states by a median 3e-3 relative
    // (measured on the tiny checkpoint), above the layer-by-layer replay bar (1e-5); end-to-end bars
    // still hold. Off (default): exact float32 everywhere, as the host forward.
    bool fp8_tensor_cores = false;
    // Decode calls (one token per sequence, up to 256 sequences) run each block's two dense parts as
    // CUDA graphs, captured the second time a shape is seen; attention's per-step core runs eagerly.
    // Same kernels, same results. DSINFER_CUDA_GRAPHS=0 turns them off process-wide.
    bool cuda_graphs = true;
    // Calls of up to 16 rows run independent parts of a block (the window-KV and compressor / indexer
    // projections beside the query path, the indexer's query beside wq_b; the shared expert beside the
    // routed experts) on a second stream. Same kernels, same results (docs/cuda.md, "Second stream at
    // decode"). DSINFER_CUDA_SIDE_STREAM=0 or 1 turns it off or on process-wide.
    bool side_stream = true;
    // Per-row epilogues in one launch each (cuda_backend.h): q's norm + RoPE, the window KV's norm +
    // RoPE + quantization, the indexer query's RoPE + Hadamard + FP4, a compressed entry's four steps,
    // SwiGLU + quantization, hc_post folded into the next hc_pre and into the MoE combine (with the
    // shared expert's add). Bitwise the same results as the ops one by one. DSINFER_CUDA_FUSED=0 or 1
    // turns them off or on process-wide.
    bool fused_epilogues = true;
    // How a decode step's attention projections use the second stream (with side_stream): 0, the window
    // KV path and every projection of y for the compressor and indexer on the side stream, one launch
    // each; 1, the same with each compressor's wkv and wgate (BF16, same shape) in one launch; 2, as 1
    // with the window KV path moved to the main stream (before wq_a), so the two streams carry more
    // even loads; 3, as 1 with three side lanes (window KV; the compressor, then the indexer's query;
    // the indexer's weights and compressor), so the small projections overlap each other. Same results
    // bit for bit. DSINFER_CUDA_SIDE_LAYOUT=0|1|2|3 overrides it process-wide.
    int side_layout = 0;
    // How a decode step's attention core gets its tables (window-ring and compressor-slot copies, key
    // lists, block completions): 0 (default), built on the host at the exact widths and uploaded in one
    // piece per layer, block completions as separate ops. 2, built on the device from the positions,
    // with key lists of a few fixed widths (ratio-4 layers: window + index_topk; others: the entry
    // count rounded up to 64; -1 pads) and block completions in one compress_finish launch per
    // compressor, so that a whole layer — core included — runs as one CUDA graph; a ratio-4 layer whose
    // indexer picks entries keeps host tables and an eager core. 1, 2's widths and compress_finish
    // with tables from the host (bitwise 2: a test reference). 2 and 1 have not run on a GPU yet
    // (docs/notes.md). DSINFER_CUDA_DECODE_TABLES=0|1|2 overrides it process-wide.
    int decode_tables = 0;
    // Decode steps (with side_stream) run each hc_pre's Sinkhorn (post, comb: needed only by the
    // sublayer's hc_post) on its own side lane while the main stream goes on with the sublayer's input.
    // Same results bit for bit. DSINFER_CUDA_HC_ASIDE=0|1 overrides it process-wide.
    bool hc_sinkhorn_aside = false;
};

// Uploads the model's weights; the model must outlive the returned object (it reads the model's
// config, options and host-side tables such as the hash layers' tid2eid on every call).
std::unique_ptr<DeviceForward> make_model_device(const Dsv4Model& model, const CudaModelOptions& opts = {});

}  // namespace dsinfer::cuda
