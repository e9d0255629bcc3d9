// Host entry points of the CUDA kernels; ops.cpp validates arguments and binds them to Python.
#pragma once

#include <torch/types.h>

namespace sg2 {

// See bias_act.cuh for the meaning of `mode`, `act` and the reference tensors. Empty tensors
// stand for "not given" (b, xref, yref, dy).
torch::Tensor bias_act_cuda(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& xref,
                            const torch::Tensor& yref, const torch::Tensor& dy, int64_t mode, int64_t dim,
                            int64_t act, double alpha, double gain, double clamp);

// Upsample, pad, correlate with `f` (already flipped and scaled by the gain), downsample.
torch::Tensor upfirdn2d_cuda(const torch::Tensor& x, const torch::Tensor& f, int64_t up_x, int64_t up_y,
                             int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                             int64_t pad_y1);

}  // namespace sg2
