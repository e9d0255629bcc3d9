"""Upsample, pad, FIR-filter and downsample 2-D images (NCHW) in one op.

Semantics follow NVlabs' upfirdn2d: zero-insertion upsampling by `up`, padding (negative values
crop), correlation with the filter flipped (i.e. a true convolution unless ``flip_filter``), then
keeping every `down`-th pixel. The reference implementation is made of differentiable PyTorch
ops, so gradients of any order work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylegan2ada.ops import resolve_impl

FilterLike = torch.Tensor | Sequence[float] | Sequence[Sequence[float]] | float | None
IntPair = int | Sequence[int]
Padding = int | Sequence[int]


def _parse_scaling(scaling: IntPair, name: str) -> tuple[int, int]:
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f"upfirdn2d: {name} must be >= 1, not {list(scaling)}")
    return sx, sy


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """int -> all sides; [px, py] -> x and y; [x0, x1, y0, y1] as is."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) != 4:
        raise ValueError(f"upfirdn2d: padding must be an int, [px, py] or [x0, x1, y0, y1], not {padding}")
    return padding[0], padding[1], padding[2], padding[3]


def _get_filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"upfirdn2d: filter must be 1-D (separable) or 2-D, got shape {tuple(f.shape)}")
    return f.shape[-1], f.shape[0]


def setup_filter(
    f: FilterLike,
    device: torch.device | str | None = None,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn a filter description (e.g. ``[1, 3, 3, 1]``) into the float32 tensor upfirdn2d expects.

    A 1-D filter stays separable (applied along x then y) when `separable` is True or, by default,
    when it has 8 or more taps; otherwise it becomes the outer product with itself. `normalize`
    makes the taps sum to 1 and `gain` scales the overall 2-D response.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"setup_filter: expected a scalar, 1-D or 2-D filter, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError("setup_filter: a 2-D filter cannot be separable")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 1,
    down: IntPair = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Upsample by `up`, pad by `padding`, filter with `f`, downsample by `down` (NCHW)."""
    resolve_impl(impl)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected an NCHW tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    _get_filter_size(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    batch, channels, height, width = x.shape

    # Zero insertion: each pixel followed by (up - 1) zeros along each axis.
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(batch, channels, height * upy, width * upx)

    # Pad positive amounts, crop negative ones.
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if x.shape[2] < f.shape[0] or x.shape[3] < f.shape[-1]:
        raise ValueError(
            f"upfirdn2d: padded input {tuple(x.shape[2:])} is smaller than the filter {tuple(f.shape)}"
        )

    # conv2d correlates; flipping makes it a convolution unless the caller asks otherwise.
    f = (f * (gain ** (f.ndim / 2))).to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=channels)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=channels)
        x = F.conv2d(x, f.unsqueeze(3), groups=channels)

    return x[:, :, ::downy, ::downx]


def filter2d(
    x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False, gain: float = 1
) -> torch.Tensor:
    """Filter without changing the size (apart from `padding`): the filter is centred."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: IntPair = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Upsample by `up` with the filter as interpolation kernel; output size is input size * up."""
    upx, upy = _parse_scaling(up, "up")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: IntPair = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """Low-pass with the filter, then keep every `down`-th pixel; output size is input size / down."""
    downx, downy = _parse_scaling(down, "down")
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain)
