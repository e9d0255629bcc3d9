"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, eq. 1-3).

Each sample's style scales the input channels of the shared weight; demodulation rescales each
output channel to unit expected variance, replacing AdaIN without its droplet artefacts.
"""

from __future__ import annotations

import math

import torch

from stylegan2ada.ops.conv2d_resample import conv2d_resample
from stylegan2ada.ops.upfirdn2d import Padding


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """Convolve `x` [N, I, H, W] with `weight` [O, I, kh, kw] modulated by `styles` [N, I].

    `noise` (broadcastable to the output) is added after demodulation. ``fused_modconv`` runs one
    grouped convolution with per-sample weights (fast for inference); otherwise the styles scale
    the activations around a shared-weight convolution (faster to train, same result).
    """
    batch_size = x.shape[0]
    _, in_channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"modulated_conv2d: input {tuple(x.shape)} does not match weight {tuple(weight.shape)}"
        )
    if styles.shape != (batch_size, in_channels):
        raise ValueError(
            f"modulated_conv2d: styles must have shape {(batch_size, in_channels)}, not {tuple(styles.shape)}"
        )

    # FP16 activations overflow without this pre-scaling; demodulation cancels it exactly.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (
            1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample(
            x,
            weight.to(x.dtype),
            f=resample_filter,
            up=up,
            down=down,
            padding=padding,
            flip_weight=flip_weight,
        )
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(
        x,
        w.to(x.dtype),
        f=resample_filter,
        up=up,
        down=down,
        padding=padding,
        groups=batch_size,
        flip_weight=flip_weight,
    )
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x
