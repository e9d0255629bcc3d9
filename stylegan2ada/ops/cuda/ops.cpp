// Python bindings of the stylegan2ada CUDA kernels, with the argument checks that keep a wrong
// call from reaching a kernel. The Python wrappers (bias_act.py, upfirdn2d.py) are the API.
#include <torch/extension.h>

#include <cstdlib>
#include <limits>

#include "ops.h"

namespace {

constexpr int64_t kModes = 3;
constexpr int64_t kActivations = 9;
constexpr int64_t kFirstActivationUsingInput = 3;  // tanh: see bias_act.cuh
constexpr int64_t kLinear = 0;
constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

void check_input(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(x.is_contiguous(), name, " must be contiguous");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat16 || dtype == torch::kFloat32 || dtype == torch::kFloat64, name,
              " must be float16, float32 or float64");
}

// An optional tensor is empty (not given) or matches `like` in shape, dtype and device.
void check_like(const torch::Tensor& t, const torch::Tensor& like, const char* name) {
  if (t.numel() == 0) return;
  TORCH_CHECK(t.device() == like.device() && t.scalar_type() == like.scalar_type(), name,
              " must have the dtype and device of x");
  TORCH_CHECK(t.sizes() == like.sizes(), name, " must have the shape of x");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

torch::Tensor bias_act(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& xref,
                       const torch::Tensor& yref, const torch::Tensor& dy, int64_t mode, int64_t dim, int64_t act,
                       double alpha, double gain, double clamp) {
  check_input(x, "bias_act: x");
  TORCH_CHECK(mode >= 0 && mode < kModes, "bias_act: mode must be 0, 1 or 2");
  TORCH_CHECK(act >= 0 && act < kActivations, "bias_act: unknown activation code ", act);
  if (b.numel() > 0) {
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must have shape [x.shape[dim]]");
    TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type(),
                "bias_act: b must have the dtype and device of x");
    TORCH_CHECK(b.is_contiguous(), "bias_act: b must be contiguous");
  }
  check_like(xref, x, "bias_act: xref");
  check_like(yref, x, "bias_act: yref");
  check_like(dy, x, "bias_act: dy");
  if (mode > 0) {
    const bool uses_input = act >= kFirstActivationUsingInput;
    TORCH_CHECK(!uses_input || xref.numel() > 0, "bias_act: this activation's gradient needs xref");
    TORCH_CHECK(uses_input || (act == kLinear && clamp < 0) || yref.numel() > 0,
                "bias_act: this activation's gradient needs yref");
    TORCH_CHECK(mode != 2 || dy.numel() > 0, "bias_act: the second-order pass needs dy");
  }
  return sg2::bias_act_cuda(x, b, xref, yref, dy, mode, dim, act, alpha, gain, clamp);
}

torch::Tensor upfirdn2d(const torch::Tensor& x, const torch::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                        int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1) {
  check_input(x, "upfirdn2d: x");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be NCHW");
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: f must be a non-empty 2-D filter");
  TORCH_CHECK(f.device() == x.device() && f.is_contiguous(), "upfirdn2d: f must be contiguous, on x's device");
  const auto filter_dtype = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  TORCH_CHECK(f.scalar_type() == filter_dtype, "upfirdn2d: f must be ", filter_dtype, " for ", x.scalar_type(),
              " input");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d: up and down must be >= 1");
  const int64_t padded_w = x.size(3) * up_x + pad_x0 + pad_x1;
  const int64_t padded_h = x.size(2) * up_y + pad_y0 + pad_y1;
  TORCH_CHECK(padded_w >= f.size(1) && padded_h >= f.size(0),
              "upfirdn2d: the padded input is smaller than the filter");
  TORCH_CHECK(x.size(2) * up_y + std::abs(pad_y0) + std::abs(pad_y1) <= kMaxInt &&
                  x.size(3) * up_x + std::abs(pad_x0) + std::abs(pad_x1) <= kMaxInt && f.numel() <= kMaxInt,
              "upfirdn2d: image or filter too large");
  return sg2::upfirdn2d_cuda(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "CUDA kernels of stylegan2ada.ops (bias_act, upfirdn2d)";
  m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp, forward and derivatives");
  m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR-filter and downsample NCHW images");
}
