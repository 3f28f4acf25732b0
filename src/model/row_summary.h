// Sampling without the whole logits row: what a pass over a row can hand on instead of it, and a
// forward item's request for that.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace dsinfer {

// A logits row's maximum, its total weight z = sum of exp((l - max) / T), and the `cap` most likely
// tokens (by logit, ties by lowest id) with their weights exp((l - max) / T): a few KB instead of a
// 0.5 MB Flash row. runtime::summarize_row computes it on the host; cuda::sample_summary on the
// device, the same ids and weights bit for bit.
struct RowSummary {
    int64_t vocab = 0;
    float mx = 0;
    double z = 0;
    std::vector<int32_t> ids;
    std::vector<float> w;
};

// A request for one logits row's summary instead of the row. A forward that summarizes where its
// logits are (the GPU forward) fills `out`, asks `enough`, and when it returns true delivers no row
// and sets `summarized`; otherwise, and for a forward that does not summarize (the host's), the row
// comes as asked and `summarized` stays false.
//
// With `draw` (a request whose sampling filters nothing), the forward that can instead draws the token
// itself from the row's whole softmax at `temperature` for the request's uniform `u` (drawn from its
// stream beforehand): the token runtime::draw_whole_row gives, in `token`, with `summarized` set and no
// row delivered; `enough` and `out` are not used.
struct SummaryRequest {
    float temperature = 1;
    int cap = 1024;  // tokens kept (1 .. 1024)
    std::function<bool(const RowSummary&)> enough;
    RowSummary out;
    bool draw = false;
    double u = 0;
    int32_t token = -1;
    bool summarized = false;
};

}  // namespace dsinfer
