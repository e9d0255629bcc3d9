"""A faithful StyleGAN2-ADA (Karras et al., NeurIPS 2020) in modern PyTorch.

This library knows nothing of augstudy, CT or classifiers. Heavy imports are deferred so that
``import stylegan2ada.io`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TrainOptions", "build_networks", "load_snapshot", "train"]

_LAZY = {
    "build_networks": "stylegan2ada.networks",
    "train": "stylegan2ada.training",
    "TrainOptions": "stylegan2ada.training",
    "load_snapshot": "stylegan2ada.snapshot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stylegan2ada' has no attribute {name!r}")
