// Per-element math of the fused bias + activation op (see bias_act.cu for the kernel).
#pragma once

#include "common.cuh"

namespace sg2 {

// Activation codes; stylegan2ada/ops/bias_act.py uses the same numbers.
enum BiasActAct : int {
  kLinear = 0,
  kRelu = 1,
  kLrelu = 2,
  kTanh = 3,
  kSigmoid = 4,
  kElu = 5,
  kSelu = 6,
  kSoftplus = 7,
  kSwish = 8,
};

// One kernel serves the forward pass and both orders of derivative. With g the tensor passed
// as `x` and z = xref + b the pre-activation:
//   kForward   out = clamp(act(g + b) * gain)
//   kGrad      out = g * gain * act'(z) * [act(z) * gain not clamped]        g = dL/dy
//   kGradGrad  out = g * dy * gain * act''(z) * [act(z) * gain not clamped]  g = dL/d(dx)
// Activations with a second derivative (tanh and later) need z, so the caller keeps the input.
// linear, relu and lrelu have act'' = 0 and act' depends only on the sign of z, which the saved
// output yref also carries (for lrelu when alpha >= 0), so the input need not be kept alive.
enum BiasActMode : int {
  kForward = 0,
  kGrad = 1,
  kGradGrad = 2,
};

template <typename T>
struct BiasActScalars {
  int act;
  int mode;
  T alpha;
  T gain;
  T clamp;  // negative: no clamping
};

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSoftplusThreshold = 20.0;  // above it softplus is the identity, as in torch

SG2_HD bool act_uses_input(int act) { return act >= kTanh; }

template <typename T>
SG2_HD T sigmoid_(T z) {
  return T(1) / (T(1) + exp_(-z));
}

template <typename T>
SG2_HD T act_value(int act, T z, T alpha) {
  switch (act) {
    case kRelu: return z > T(0) ? z : T(0);
    case kLrelu: return z > T(0) ? z : z * alpha;
    case kTanh: return tanh_(z);
    case kSigmoid: return sigmoid_(z);
    case kElu: return z > T(0) ? z : expm1_(z);
    case kSelu: return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * expm1_(z);
    case kSoftplus: return z > T(kSoftplusThreshold) ? z : log1p_(exp_(z));
    case kSwish: return z * sigmoid_(z);
    default: return z;
  }
}

// act'(z) (order 1) or act''(z) (order 2) for the activations that keep their input.
template <typename T>
SG2_HD T act_derivative(int act, int order, T z) {
  switch (act) {
    case kTanh: {
      const T t = tanh_(z);
      const T d1 = T(1) - t * t;
      return order == 1 ? d1 : T(-2) * t * d1;
    }
    case kSigmoid: {
      const T s = sigmoid_(z);
      const T d1 = s * (T(1) - s);
      return order == 1 ? d1 : d1 * (T(1) - T(2) * s);
    }
    case kElu:
      return z > T(0) ? (order == 1 ? T(1) : T(0)) : exp_(z);
    case kSelu:
      return z > T(0) ? (order == 1 ? T(kSeluScale) : T(0)) : T(kSeluScale * kSeluAlpha) * exp_(z);
    case kSoftplus: {
      if (z > T(kSoftplusThreshold)) return order == 1 ? T(1) : T(0);
      const T s = sigmoid_(z);
      return order == 1 ? s : s * (T(1) - s);
    }
    case kSwish: {
      const T s = sigmoid_(z);
      return order == 1 ? s * (T(1) + z * (T(1) - s)) : s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s));
    }
    default: return T(0);
  }
}

// act'(z) of linear, relu and lrelu from the saved output y = clamp(act(z) * gain).
template <typename T>
SG2_HD T act_derivative_from_output(int act, T y, T alpha, T gain) {
  if (act == kLinear) return T(1);
  const bool positive = y * gain > T(0);
  return positive ? T(1) : (act == kLrelu ? alpha : T(0));
}

template <typename T>
SG2_HD T clamp_symmetric(T v, T limit) {
  return v > limit ? limit : (v < -limit ? -limit : v);  // NaN passes through, as torch.clamp
}

// One output element. `bias` is 0 when the op has no bias; xref/yref/dy are 0 when not saved.
template <typename T>
SG2_HD T bias_act_element(const BiasActScalars<T>& s, T g, T bias, T xref, T yref, T dy) {
  if (s.mode == kForward) {
    const T y = act_value(s.act, g + bias, s.alpha) * s.gain;
    return s.clamp >= T(0) ? clamp_symmetric(y, s.clamp) : y;
  }
  if (act_uses_input(s.act)) {
    const T z = xref + bias;
    // torch.clamp passes the gradient where -clamp <= value <= clamp (inclusive).
    if (s.clamp >= T(0) && !(abs_(act_value(s.act, z, s.alpha) * s.gain) <= s.clamp)) return T(0);
    const T derivative = act_derivative(s.act, s.mode == kGrad ? 1 : 2, z);
    return s.mode == kGrad ? g * s.gain * derivative : g * dy * s.gain * derivative;
  }
  if (s.mode == kGradGrad) return T(0);
  // From the output alone a value exactly at +-clamp is taken as clamped.
  if (s.clamp >= T(0) && !(abs_(yref) < s.clamp)) return T(0);
  return g * s.gain * act_derivative_from_output(s.act, yref, s.alpha, s.gain);
}

// Element i of a contiguous tensor; the bias index is (i / inner) % channels. Null pointers
// stand for tensors not given.
template <typename scalar_t, typename acc_t>
SG2_HD void bias_act_at(const BiasActScalars<acc_t>& s, int64_t i, int64_t inner, int64_t channels,
                        const scalar_t* g, const scalar_t* b, const scalar_t* xref, const scalar_t* yref,
                        const scalar_t* dy, scalar_t* out) {
  const acc_t bias = b != nullptr ? static_cast<acc_t>(b[(i / inner) % channels]) : acc_t(0);
  const acc_t x_saved = xref != nullptr ? static_cast<acc_t>(xref[i]) : acc_t(0);
  const acc_t y_saved = yref != nullptr ? static_cast<acc_t>(yref[i]) : acc_t(0);
  const acc_t dy_saved = dy != nullptr ? static_cast<acc_t>(dy[i]) : acc_t(0);
  out[i] = static_cast<scalar_t>(bias_act_element(s, static_cast<acc_t>(g[i]), bias, x_saved, y_saved, dy_saved));
}

}  // namespace sg2
