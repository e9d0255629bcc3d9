"""Custom ops of StyleGAN2-ADA and the choice of their implementation.

Every op has a reference implementation in plain PyTorch: it runs on any device, on any PyTorch
version, and supports gradients of gradients (R1 and path-length regularisation need them). The
implementation is chosen per call (``impl=``), per process (`set_impl`) or by the environment
variable ``STYLEGAN2ADA_OPS`` in {auto, ref, cuda}. Only the reference exists so far, so ``auto``
means ``ref`` and ``cuda`` is refused with a clear error instead of silently falling back.
"""

from __future__ import annotations

import os

ENV_VAR = "STYLEGAN2ADA_OPS"
IMPL_CHOICES = ("auto", "ref", "cuda")

_selected: str | None = None


def _validate(name: str, source: str) -> str:
    if name not in IMPL_CHOICES:
        raise ValueError(f"{source} must be one of {', '.join(IMPL_CHOICES)}, not {name!r}")
    if name == "cuda":
        raise RuntimeError(
            "The CUDA kernels of the stylegan2ada ops are not built yet (they need an NVIDIA GPU and a "
            f"CUDA build of torch); use the reference implementation: {ENV_VAR}=ref or auto"
        )
    return name


def set_impl(name: str) -> None:
    """Select the implementation for this process; overrides ``STYLEGAN2ADA_OPS``."""
    global _selected
    _selected = _validate(name, "set_impl(name)")


def get_impl() -> str:
    """The implementation the ops use when called with ``impl=None``: currently always ``"ref"``."""
    if _selected is not None:
        name = _selected
    else:
        name = _validate(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", f"${ENV_VAR}")
    return "ref" if name == "auto" else name


def resolve_impl(impl: str | None) -> str:
    """Turn an op's ``impl`` argument into the concrete implementation name."""
    if impl is None:
        return get_impl()
    name = _validate(impl, "impl")
    return "ref" if name == "auto" else name


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
    "modulated_conv2d",
    "resolve_impl",
    "set_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
