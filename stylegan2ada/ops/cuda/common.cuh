// Helpers shared by the kernels. The per-element and per-tile logic is written as inline
// functions that compile both for the device (nvcc) and for the host (any C++ compiler), so the
// same code can be exercised on a machine without a GPU.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SG2_HD __host__ __device__ __forceinline__
#else
#define SG2_HD inline
#endif

namespace sg2 {

// Accumulation type: half inputs are computed in float, float in float, double in double.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// Overloads that pick the float or double math routine; both exist on host and device.
SG2_HD float exp_(float v) { return expf(v); }
SG2_HD double exp_(double v) { return exp(v); }
SG2_HD float expm1_(float v) { return expm1f(v); }
SG2_HD double expm1_(double v) { return expm1(v); }
SG2_HD float log1p_(float v) { return log1pf(v); }
SG2_HD double log1p_(double v) { return log1p(v); }
SG2_HD float tanh_(float v) { return tanhf(v); }
SG2_HD double tanh_(double v) { return tanh(v); }
SG2_HD float abs_(float v) { return fabsf(v); }
SG2_HD double abs_(double v) { return fabs(v); }

// Floor division and a non-negative remainder for a possibly negative numerator (b > 0).
SG2_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
SG2_HD int pos_mod(int a, int b) { return a - floor_div(a, b) * b; }

}  // namespace sg2
