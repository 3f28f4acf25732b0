// The op table of the CUDA backend.
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.h"

namespace dsinfer::cuda {

const ops::Backend& backend() {
    static const ops::Backend b = {
        "cuda",     cuda::linear,   cuda::act_quant,     cuda::fp4_quant, cuda::hadamard,    cuda::rmsnorm,
        cuda::rope, cuda::hc_pre,   cuda::hc_post,       cuda::hc_head,   cuda::embed,       cuda::compress_pool,
        cuda::index_scores, cuda::topk, cuda::sparse_attn, cuda::moe_route, cuda::swiglu,
    };
    return b;
}

}  // namespace dsinfer::cuda
