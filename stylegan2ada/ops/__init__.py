"""Custom ops of StyleGAN2-ADA and the choice of their implementation.

Every op has a reference implementation in plain PyTorch: it runs on any device, on any PyTorch
version, and supports gradients of gradients (R1 and path-length regularisation need them).
`bias_act` and `upfirdn2d` also have CUDA kernels (`stylegan2ada/ops/cuda`, built on first use by
`stylegan2ada.ops.build`). The implementation is chosen per call (``impl=``), per process
(`set_impl`) or by the environment variable ``STYLEGAN2ADA_OPS``:

- ``auto`` (default): the kernels for CUDA tensors when they build, else the reference ops after
  one warning that names the reason; CPU tensors always use the reference ops, silently.
- ``ref``: always the reference ops.
- ``cuda``: always the kernels; anything that prevents them is a RuntimeError, not a fallback.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from stylegan2ada.ops import build

ENV_VAR = "STYLEGAN2ADA_OPS"
IMPL_CHOICES = ("auto", "ref", "cuda")

_selected: str | None = None


def _validate(name: str, source: str) -> str:
    if name not in IMPL_CHOICES:
        raise ValueError(f"{source} must be one of {', '.join(IMPL_CHOICES)}, not {name!r}")
    return name


def _require_kernels() -> ModuleType:
    try:
        return build.load_kernels()
    except build.KernelsUnavailable as error:
        raise RuntimeError(
            f"The CUDA kernels of stylegan2ada.ops cannot be used: {error}. "
            f"Use {ENV_VAR}=auto to fall back to the reference ops, or {ENV_VAR}=ref."
        ) from error


def selected_impl() -> str:
    """The selected mode ("auto", "ref" or "cuda") as given, without building anything."""
    if _selected is not None:
        return _selected
    return _validate(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", f"${ENV_VAR}")


def set_impl(name: str) -> None:
    """Select the implementation for this process; overrides ``STYLEGAN2ADA_OPS``.

    ``"cuda"`` builds or loads the kernels right away, so a machine that cannot run them fails
    here with the reason rather than in the middle of a run.
    """
    global _selected
    name = _validate(name, "set_impl(name)")
    if name == "cuda":
        _require_kernels()
    _selected = name


def resolve_impl(impl: str | None = None) -> str:
    """The implementation ("ref" or "cuda") a CUDA tensor gets for this ``impl`` argument.

    None means the selected mode. May build the kernels; raises RuntimeError for "cuda" when
    they cannot be used.
    """
    mode = selected_impl() if impl is None else _validate(impl, "impl")
    if mode == "ref":
        return "ref"
    if mode == "cuda":
        _require_kernels()
        return "cuda"
    if not torch.cuda.is_available():  # no CUDA tensor can exist: nothing to warn about
        return "ref"
    return "cuda" if build.try_load_kernels() is not None else "ref"


def get_impl() -> str:
    """The implementation ops use for CUDA tensors when called with ``impl=None``: "ref" or "cuda"."""
    return resolve_impl(None)


def kernels_for(impl: str | None, x: torch.Tensor, unsupported: str | None = None) -> ModuleType | None:
    """The CUDA kernels when this call should use them, else None for the reference op.

    `unsupported` names what the kernels cannot handle in this call (e.g. a dtype): ``auto``
    then quietly uses the reference op and ``cuda`` raises.
    """
    mode = selected_impl() if impl is None else _validate(impl, "impl")
    if mode == "ref":
        return None
    if mode == "auto":
        if x.device.type != "cuda" or unsupported is not None:
            return None
        return build.try_load_kernels()
    if x.device.type != "cuda":
        raise RuntimeError(f"The CUDA kernels of stylegan2ada.ops need CUDA tensors, got one on {x.device}")
    if unsupported is not None:
        raise RuntimeError(f"The CUDA kernels of stylegan2ada.ops do not support {unsupported}")
    return _require_kernels()


from stylegan2ada.ops.bias_act import bias_act
from stylegan2ada.ops.conv2d_resample import conv2d_resample
from stylegan2ada.ops.modulated_conv2d import modulated_conv2d
from stylegan2ada.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "get_impl",
    "kernels_for",
    "modulated_conv2d",
    "resolve_impl",
    "selected_impl",
    "set_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
