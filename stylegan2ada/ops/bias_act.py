"""Fused bias + activation + gain + clamp, as used after every layer of StyleGAN2-ADA.

The reference implementation composes differentiable PyTorch ops, so autograd provides gradients
of any order. The CUDA kernel (cuda/bias_act.cu) does the whole op in one pass over memory; its
autograd functions below supply the first and second derivatives (R1 and path-length
regularisation differentiate through the backward pass). Default gains (sqrt(2) for ReLU-like
activations) keep activations at unit variance with equalised-learning-rate weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from stylegan2ada.ops import kernels_for

KERNEL_DTYPES = (torch.float16, torch.float32, torch.float64)
# First kernel code of the activations whose second derivative is not zero (tanh, see
# cuda/bias_act.cuh): their kernel derivatives need the input, the others only the output.
_FIRST_CODE_KEEPING_INPUT = 3


@dataclass(frozen=True)
class Activation:
    """An activation with the default alpha and gain StyleGAN2-ADA uses for it, and its code in
    the CUDA kernel."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    kernel_code: int

    @property
    def kernel_keeps_input(self) -> bool:
        return self.kernel_code >= _FIRST_CODE_KEEPING_INPUT


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0, 0),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2), 1),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), 2),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0, 3),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 4),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0, 5),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0, 6),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0, 7),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 8),
}


@dataclass(frozen=True)
class _KernelCall:
    """The non-tensor arguments of one bias_act kernel call."""

    kernels: ModuleType
    dim: int
    act: Activation
    alpha: float
    gain: float
    clamp: float

    def run(
        self,
        g: torch.Tensor,
        b: torch.Tensor,
        xref: torch.Tensor,
        yref: torch.Tensor,
        dy: torch.Tensor,
        mode: int,
    ) -> torch.Tensor:
        return self.kernels.bias_act(
            g, b, xref, yref, dy, mode, self.dim, self.act.kernel_code, self.alpha, self.gain, self.clamp
        )

    def reduce_to_bias(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sum([i for i in range(grad.ndim) if i != self.dim])


class _BiasActKernel(torch.autograd.Function):
    """y = kernel(x, b); the backward is `_BiasActKernelGrad`, itself differentiable once more."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, b: torch.Tensor, call: _KernelCall) -> torch.Tensor:
        empty = x.new_empty([0])
        y = call.run(x, b, empty, empty, empty, mode=0)
        keeps_output = not call.act.kernel_keeps_input and (call.act.kernel_code != 0 or call.clamp >= 0)
        ctx.save_for_backward(
            x if call.act.kernel_keeps_input else empty,
            b if call.act.kernel_keeps_input else empty,
            y if keeps_output else empty,
        )
        ctx.call = call
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, b, y = ctx.saved_tensors
        call: _KernelCall = ctx.call
        dx = _BiasActKernelGrad.apply(dy.contiguous(), x, b, y, call)
        db = call.reduce_to_bias(dx) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActKernelGrad(torch.autograd.Function):
    """dx = dy * gain * act'(x + b) * [not clamped], with its own derivatives for dy and x, b."""

    @staticmethod
    def forward(
        ctx: Any, dy: torch.Tensor, x: torch.Tensor, b: torch.Tensor, y: torch.Tensor, call: _KernelCall
    ) -> torch.Tensor:
        dx = call.run(dy, b, x, y, dy.new_empty([0]), mode=1)
        ctx.save_for_backward(dy, x, b, y)
        ctx.call = call
        return dx

    @staticmethod
    def backward(ctx: Any, d_dx: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        dy, x, b, y = ctx.saved_tensors
        call: _KernelCall = ctx.call
        d_dx = d_dx.contiguous()
        d_dy = _BiasActKernelGrad.apply(d_dx, x, b, y, call) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if call.act.kernel_keeps_input and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = call.run(d_dx, b, x, y, dy, mode=2)
            d_b = call.reduce_to_bias(d_x) if ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None, None


def _unsupported_by_kernel(x: torch.Tensor, act: str, alpha: float) -> str | None:
    if x.dtype not in KERNEL_DTYPES:
        return f"{x.dtype} input (bias_act kernels take float16, float32 and float64)"
    if act == "lrelu" and alpha < 0:
        return "lrelu with a negative alpha (its derivative comes from the output's sign)"
    return None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Compute ``clamp(act(x + b) * gain, -clamp, clamp)``.

    Args:
        x: input of any shape.
        b: bias of shape ``[x.shape[dim]]``, broadcast along `dim`; None adds nothing.
        dim: the axis of `x` that `b` runs along.
        act: one of `ACTIVATIONS`.
        alpha: slope parameter (lrelu: 0.2 by default).
        gain: output scale; None uses the activation's default gain.
        clamp: clamp the output to [-clamp, clamp]; None (or negative) does not clamp.
        impl: "ref", "auto", "cuda" or None for the selected mode (`stylegan2ada.ops`).
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown activation {act!r}; choose one of {', '.join(ACTIVATIONS)}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if b is not None:
        if b.ndim != 1 or not -x.ndim <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: bias of shape {tuple(b.shape)} does not match dim {dim} of input {tuple(x.shape)}"
            )
        dim = dim % x.ndim
    kernels = kernels_for(impl, x, _unsupported_by_kernel(x, act, alpha))
    if kernels is not None:
        bias = x.new_empty([0]) if b is None else b.to(x.dtype).contiguous()
        call = _KernelCall(kernels, dim if b is not None else 0, spec, alpha, gain, clamp)
        return _BiasActKernel.apply(x.contiguous(), bias, call)
    if b is not None:
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
