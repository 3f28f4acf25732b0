// The KV compressor's streaming state machine (dsv4-model.md §7): one token at a time, in the
// reference's state layout, emitting a finished entry whenever a block of `ratio` tokens completes.
// Prefill, chunked prefill and decode all go through it, so they produce the same entries.
#pragma once

#include <vector>

#include "model/dsv4_model.h"
#include "ops/ops.h"

namespace dsinfer {

// Sequence start: previous block empty (value 0, score −inf), as §7.3 requires.
void compressor_reset(CompressorState& st, const CompressorWeights& cw);

// Feeds the token at position p (projections a = wkv·y and g = wgate·y, width coff·d) into the
// compressor state `st` (initialised to value 0 / score −inf at sequence start). When the token
// completes its block, appends the entry (§7.2: gated pooling, RMSNorm, RoPE at the block's first
// position, then FP8 rounding of the non-rope dims, or for the indexer Hadamard + FP4 rounding;
// the rounding only when `quant`) to `out` ([n_entries, d] flattened).
void compressor_step(const ops::Backend& be, const CompressorWeights& cw, CompressorState& st, const float* a,
                     const float* g, int64_t p, const ops::RopeFreqs& rf, bool indexer, bool quant, bool pow2,
                     float eps, std::vector<float>& out);

// compressor_step in pieces, for a state kept elsewhere (the model's paged state: rows in blocks).
// Slot row of position p: (overlap ? ratio : 0) + p % ratio; rows are coff·d wide.
int64_t compressor_slot(const CompressorWeights& cw, int64_t p);
// Writes position p's row: kv_row = a, score_row = g + ape.
void compressor_write(const CompressorWeights& cw, float* kv_row, float* score_row, const float* a, const float* g,
                      int64_t p);
// When p completes its block: the entry z [d] from the whole state kv, score [coff·ratio, coff·d]
// (contiguous). The caller then moves rows [ratio, 2·ratio) to [0, ratio) when the compressor overlaps.
void compressor_finish(const ops::Backend& be, const CompressorWeights& cw, const float* kv, const float* score,
                       int64_t p, const ops::RopeFreqs& rf, bool indexer, bool quant, bool pow2, float eps, float* z);

}  // namespace dsinfer
