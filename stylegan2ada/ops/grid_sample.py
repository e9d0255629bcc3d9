"""2-D grid sampling whose backward pass is itself differentiable, for R1 through the ADA pipeline.

R1 differentiates D's gradient with respect to the real images, so every op between the images
and D (the augmentation's geometric resampling included) needs gradients of gradients. Older
PyTorch releases (2.0 among them) have no derivative for ``grid_sampler_2d_backward`` and fail with
"derivative for grid_sampler_2d_backward is not implemented"; this module does not depend on it.

The augmentation's grid is built from random matrices and never requires grad. Then sampling is
a linear map ``A`` of the input, its backward is the transposed map ``A^T`` applied to the
incoming gradient, and the backward of that is ``A`` again: the plain forward op. That identity
is all the second-order pass needs, on any PyTorch version, and it costs one forward sample.
When the grid does require grad, the native op (with whatever second-order support the installed
PyTorch has) is used instead, so nothing is silently dropped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

_INTERPOLATION = {"bilinear": 0, "nearest": 1, "bicubic": 2}
_PADDING = {"zeros": 0, "border": 1, "reflection": 2}


def grid_sample(
    input: torch.Tensor,
    grid: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> torch.Tensor:
    """Same result as ``torch.nn.functional.grid_sample`` for NCHW input and an [N, H, W, 2] grid.

    Gradients of any order flow to `input` when `grid` does not require grad; a grid that does
    require grad goes through the native op.
    """
    if mode not in _INTERPOLATION:
        raise ValueError(f"grid_sample: mode must be one of {sorted(_INTERPOLATION)}, not {mode!r}")
    if padding_mode not in _PADDING:
        raise ValueError(f"grid_sample: padding_mode must be one of {sorted(_PADDING)}, not {padding_mode!r}")
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(
            "grid_sample: expected input [N, C, H, W] and grid [N, H_out, W_out, 2], got "
            f"{tuple(input.shape)} and {tuple(grid.shape)}"
        )
    if grid.requires_grad:
        return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return _GridSample.apply(input, grid, _INTERPOLATION[mode], _PADDING[padding_mode], align_corners)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        grid: torch.Tensor,
        interpolation: int,
        padding: int,
        align_corners: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(input, grid)
        ctx.settings = (interpolation, padding, align_corners)
        return torch.grid_sampler_2d(input, grid, interpolation, padding, align_corners)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        input, grid = ctx.saved_tensors
        grad_input = None
        if ctx.needs_input_grad[0]:
            grad_input = _GridSampleBackward.apply(grad_output, input, grid, *ctx.settings)
        return grad_input, None, None, None, None


class _GridSampleBackward(torch.autograd.Function):
    """``grad_input = A^T grad_output``; its own backward is ``A`` applied to the incoming gradient."""

    @staticmethod
    def forward(
        ctx: Any,
        grad_output: torch.Tensor,
        input: torch.Tensor,
        grid: torch.Tensor,
        interpolation: int,
        padding: int,
        align_corners: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.settings = (interpolation, padding, align_corners)
        grad_input, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, interpolation, padding, align_corners, [True, False]
        )
        return grad_input

    @staticmethod
    def backward(
        ctx: Any, grad2_input: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        (grid,) = ctx.saved_tensors
        grad2_output = None
        if ctx.needs_input_grad[0]:
            grad2_output = _GridSample.apply(grad2_input, grid, *ctx.settings)
        # grad_input does not depend on `input` (sampling is linear in it) and `grid` is constant.
        return grad2_output, None, None, None, None, None
