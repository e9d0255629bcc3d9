"""Upsample, pad, FIR-filter and downsample 2-D images (NCHW) in one op.

Semantics follow NVlabs' upfirdn2d: zero-insertion upsampling by `up`, padding (negative values
crop), correlation with the filter flipped (i.e. a true convolution unless ``flip_filter``), then
keeping every `down`-th pixel.

The reference implementation never materialises the zero-inserted image: it splits the filter
into its `up` phases (polyphase), runs one grouped convolution at the input resolution with one
output channel per phase, and interleaves the phases; decimation is the convolution's stride.
That is the same arithmetic without the multiplications by inserted zeros, made of
differentiable PyTorch ops, so gradients of any order work. The CUDA kernel (cuda/upfirdn2d.cu)
does the same in one pass; its backward is upfirdn2d with the flipped filter and the roles of
`up` and `down` swapped, itself differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from stylegan2ada.ops import kernels_for

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


@dataclass(frozen=True)
class _AxisPlan:
    """How the reference computes one axis of upfirdn2d as a strided correlation at the input rate.

    Output ``o`` (before decimation) is ``sum_i xup[o + i - pad0] * g[i]``; it only reads real
    pixels through the taps ``i = (pad0 - o) mod up + up * m``. Grouping the outputs by ``up``
    (from ``-start``, chosen so that the phases' windows overlap best) makes each phase a
    correlation of the padded input with every up-th tap of `g`, placed in a common window.
    """

    phases: tuple[tuple[int, int, int], ...]  # per phase: first tap, offset in the window, tap count
    window: int
    pad0: int  # input padding before (negative crops) and after
    pad1: int
    stride: int  # the convolution's stride: `down` when there is no upsampling
    start: int  # interleaved index of output 0
    size: int  # outputs before decimation
    step: int  # decimation left after interleaving (upsampling with downsampling)


def _axis_plan(length: int, taps: int, up: int, down: int, pad0: int, pad1: int) -> _AxisPlan:
    size = length * up + pad0 + pad1 - taps + 1
    if up == 1:
        return _AxisPlan(((0, 0, taps),), taps, pad0, pad1, down, 0, size, 1)
    best: tuple[int, int, int, list[tuple[int, int, int]]] | None = None
    for start in range(0, -up, -1):
        phases = []  # per phase: first tap, first input index read, tap count
        for phase in range(up):
            first = (pad0 - start - phase) % up
            phases.append((first, (start + phase + first - pad0) // up, -(-(taps - first) // up)))
        low = min(shift for _, shift, count in phases if count > 0)
        window = max(shift - low + count for _, shift, count in phases if count > 0)
        if best is None or window < best[1]:
            best = (start, window, low, phases)
    start, window, low, phases = best
    groups = -(-(size - start) // up)
    return _AxisPlan(
        phases=tuple((first, shift - low, count) for first, shift, count in phases),
        window=window,
        pad0=-low,
        pad1=groups + low + window - 1 - length,
        stride=1,
        start=-start,
        size=size,
        step=down,
    )


def _phase_filters(
    g: torch.Tensor, up: tuple[int, int], plan_y: _AxisPlan, plan_x: _AxisPlan
) -> torch.Tensor:
    """[phases_y * phases_x, window_y, window_x]: each phase's taps of `g` in the common window.

    Built by slicing and padding on g's device, so no index tensor has to be copied to a GPU
    (a host-to-device copy from pageable memory would synchronise the stream on every call).
    """
    blocks = []
    for first_y, offset_y, count_y in plan_y.phases:
        for first_x, offset_x, count_x in plan_x.phases:
            taps = g[first_y :: up[1], first_x :: up[0]][:count_y, :count_x]
            pad = [offset_x, plan_x.window - offset_x - count_x, offset_y, plan_y.window - offset_y - count_y]
            blocks.append(
                F.pad(taps, pad) if count_y > 0 and count_x > 0 else g.new_zeros(plan_y.window, plan_x.window)
            )
    return torch.stack(blocks)


def _polyphase_pass(
    x: torch.Tensor,
    g: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> torch.Tensor:
    """Correlate with the 2-D filter `g` (already flipped and scaled) as upfirdn2d would."""
    batch, channels, height, width = x.shape
    plan_y = _axis_plan(height, g.shape[0], up[1], down[1], pad[2], pad[3])
    plan_x = _axis_plan(width, g.shape[1], up[0], down[0], pad[0], pad[1])
    weight = _phase_filters(g, up, plan_y, plan_x)
    phases = weight.shape[0]
    weight = weight.repeat(channels, 1, 1).unsqueeze(1)  # [channels * phases, 1, window_y, window_x]
    # Pad first, then crop: a crop may exceed the input where padding on the other side refills it.
    x = F.pad(x, [max(plan_x.pad0, 0), max(plan_x.pad1, 0), max(plan_y.pad0, 0), max(plan_y.pad1, 0)])
    x = x[
        :,
        :,
        max(-plan_y.pad0, 0) : x.shape[2] - max(-plan_y.pad1, 0),
        max(-plan_x.pad0, 0) : x.shape[3] - max(-plan_x.pad1, 0),
    ]
    x = F.conv2d(x, weight, stride=(plan_y.stride, plan_x.stride), groups=channels)
    if phases > 1:
        phases_y, phases_x = len(plan_y.phases), len(plan_x.phases)
        groups_y, groups_x = x.shape[2:]
        x = x.reshape(batch, channels, phases_y, phases_x, groups_y, groups_x)
        x = x.permute(0, 1, 4, 2, 5, 3).reshape(batch, channels, groups_y * phases_y, groups_x * phases_x)
        x = x[
            :,
            :,
            plan_y.start : plan_y.start + plan_y.size : plan_y.step,
            plan_x.start : plan_x.start + plan_x.size : plan_x.step,
        ]
    return x


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    # conv2d correlates; flipping makes it a convolution unless the caller asks otherwise.
    g = (f * (gain ** (f.ndim / 2))).to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        g = g.flip(list(range(g.ndim)))
    if g.ndim == 2:
        return _polyphase_pass(x, g, up, down, pad)
    x = _polyphase_pass(x, g[None, :], (up[0], 1), (down[0], 1), (pad[0], pad[1], 0, 0))
    return _polyphase_pass(x, g[:, None], (1, up[1]), (1, down[1]), (0, 0, pad[2], pad[3]))


@dataclass(frozen=True)
class _KernelCall:
    """One 2-D pass of the CUDA kernel: a correlation filter (flipped, scaled) and the geometry."""

    kernels: ModuleType
    up: tuple[int, int]
    down: tuple[int, int]
    pad: tuple[int, int, int, int]

    def transposed(self, in_size: tuple[int, int], out_size: tuple[int, int], f: torch.Tensor) -> _KernelCall:
        """The call whose output is the gradient of this one's input (same filter, flipped)."""
        (in_h, in_w), (out_h, out_w) = in_size, out_size
        (upx, upy), (downx, downy) = self.up, self.down
        px0, _, py0, _ = self.pad
        fh, fw = f.shape
        pad = (
            fw - px0 - 1,
            in_w * upx - out_w * downx + px0 - upx + 1,
            fh - py0 - 1,
            in_h * upy - out_h * downy + py0 - upy + 1,
        )
        return replace(self, up=self.down, down=self.up, pad=pad)


class _Upfirdn2dKernel(torch.autograd.Function):
    """A linear map whose backward is the transposed map, run by the same kernel."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, f: torch.Tensor, call: _KernelCall) -> torch.Tensor:
        y = call.kernels.upfirdn2d(x, f, *call.up, *call.down, *call.pad)
        ctx.save_for_backward(f)
        ctx.call = call
        ctx.sizes = (tuple(x.shape[2:]), tuple(y.shape[2:]))
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (f,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        transposed = ctx.call.transposed(*ctx.sizes, f)
        return _Upfirdn2dKernel.apply(dy.contiguous(), f.flip([0, 1]).contiguous(), transposed), None, None


def _upfirdn2d_kernel(
    kernels: ModuleType,
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """The CUDA path: the kernel correlates, so it gets the filter flipped and scaled like the
    reference's, in float32 (float64 for float64 input); a separable filter takes two passes."""
    g = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    g = g * (gain ** (g.ndim / 2))
    if not flip_filter:
        g = g.flip(list(range(g.ndim)))
    x = x.contiguous()
    if g.ndim == 2:
        return _Upfirdn2dKernel.apply(x, g.contiguous(), _KernelCall(kernels, up, down, pad))
    x_pass = _KernelCall(kernels, (up[0], 1), (down[0], 1), (pad[0], pad[1], 0, 0))
    y_pass = _KernelCall(kernels, (1, up[1]), (1, down[1]), (0, 0, pad[2], pad[3]))
    x = _Upfirdn2dKernel.apply(x, g[None, :].contiguous(), x_pass)
    return _Upfirdn2dKernel.apply(x, g[:, None].contiguous(), y_pass)


def _unsupported_by_kernel(x: torch.Tensor, f: torch.Tensor) -> str | None:
    if x.dtype not in (torch.float16, torch.float32, torch.float64):
        return f"{x.dtype} input (upfirdn2d kernels take float16, float32 and float64)"
    if f.requires_grad:
        return "gradients with respect to the filter"
    return None


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
    """Upsample by `up`, pad by `padding`, filter with `f`, downsample by `down` (NCHW).

    `impl` is "ref", "auto", "cuda" or None for the selected mode (`stylegan2ada.ops`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected an NCHW tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = _get_filter_size(f)
    upx, upy = _parse_scaling(up, "up")
    downx, downy = _parse_scaling(down, "down")
    pad = _parse_padding(padding)
    padded = (x.shape[2] * upy + pad[2] + pad[3], x.shape[3] * upx + pad[0] + pad[1])
    if padded[0] < fh or padded[1] < fw:
        raise ValueError(f"upfirdn2d: padded input {padded} is smaller than the filter {tuple(f.shape)}")
    kernels = kernels_for(impl, x, _unsupported_by_kernel(x, f))
    if kernels is not None:
        return _upfirdn2d_kernel(kernels, x, f, (upx, upy), (downx, downy), pad, flip_filter, gain)
    return _upfirdn2d_ref(x, f, (upx, upy), (downx, downy), pad, flip_filter, gain)


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
