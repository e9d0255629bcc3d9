"""Fused bias + activation + gain + clamp, as used after every layer of StyleGAN2-ADA.

The reference implementation composes differentiable PyTorch ops, so autograd provides gradients
of any order. Default gains (sqrt(2) for ReLU-like activations) keep activations at unit variance
with equalised-learning-rate weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylegan2ada.ops import resolve_impl


@dataclass(frozen=True)
class Activation:
    """An activation with the default alpha and gain StyleGAN2-ADA uses for it."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


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
        impl: "ref", "auto", "cuda" or None for `stylegan2ada.ops.get_impl()`.
    """
    resolve_impl(impl)
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
        x = x + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
