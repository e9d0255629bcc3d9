"""Multi-scale sliced Wasserstein distance (Karras et al. 2018, "Progressive Growing of GANs", app. D).

A quality figure that needs no downloaded weights, so a run without network access still has one.
Each image set becomes a Laplacian pyramid from full resolution down to 16 px (the last level is the
low-pass residual); at every level, 128 random 7 x 7 neighbourhoods per image are the descriptors;
descriptors are normalised per channel; the distance between the two descriptor sets is the
sliced Wasserstein-1 distance averaged over 4 repeats of 128 random unit directions. The result is
reported per level (finest first) and averaged, x 1e3 as in the paper.

Normalisation: the reference code normalises each set by its own per-channel mean and standard
deviation, which makes SWD blind to a shift of brightness or contrast at any level. The default
here ("joint") normalises both sets by the statistics of their union, which keeps the distance
symmetric and sees such shifts; "separate" reproduces the reference.

When the sets differ in size, the 1-D distances are the exact Wasserstein-1 distances between the
empirical distributions (quantile functions compared on the merged grid), not a subsample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from augstudy.metrics.defaults import (
    SEED,
    SWD_DESCRIPTORS_PER_IMAGE,
    SWD_MIN_RESOLUTION,
    SWD_NORMALIZATION,
    SWD_PATCH_SIZE,
    SWD_PROJECTION_REPEATS,
    SWD_PROJECTIONS_PER_REPEAT,
    SWD_SCALE,
)

Normalization = Literal["joint", "separate"]
NORMALIZATIONS: tuple[str, ...] = ("joint", "separate")
# Images are turned into pyramids this many at a time, to bound memory.
PYRAMID_BATCH = 64
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


@dataclass(frozen=True)
class SwdResult:
    """SWD x `scale` per pyramid level (keyed by the level's resolution, finest first) and their mean."""

    per_level: dict[int, float]
    mean: float
    resolution: int
    channels: int
    num_a: int
    num_b: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_level": {str(level): value for level, value in self.per_level.items()},
            "mean": self.mean,
            "resolution": self.resolution,
            "channels": self.channels,
            "num_a": self.num_a,
            "num_b": self.num_b,
        }


def pyramid_resolutions(resolution: int, min_resolution: int = SWD_MIN_RESOLUTION) -> list[int]:
    """The side length of each pyramid level: halving (rounding up) while at least `min_resolution`."""
    levels = []
    side = resolution
    while side >= min_resolution:
        levels.append(side)
        side = (side + 1) // 2
    return levels


def laplacian_pyramid(images: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Band-pass levels of (N, C, H, W) float images, finest first; the last is the low-pass residual."""
    levels = []
    current = images
    for _ in range(num_levels - 1):
        smaller = _pyr_down(current)
        levels.append(current - _pyr_up(smaller, current.shape[-2:]))
        current = smaller
    levels.append(current)
    return levels


def sliced_wasserstein_distance(
    images_a: np.ndarray | torch.Tensor,
    images_b: np.ndarray | torch.Tensor,
    *,
    seed: int = SEED,
    min_resolution: int = SWD_MIN_RESOLUTION,
    patch_size: int = SWD_PATCH_SIZE,
    descriptors_per_image: int = SWD_DESCRIPTORS_PER_IMAGE,
    projection_repeats: int = SWD_PROJECTION_REPEATS,
    projections_per_repeat: int = SWD_PROJECTIONS_PER_REPEAT,
    normalization: Normalization = SWD_NORMALIZATION,  # type: ignore[assignment]
    scale: float = SWD_SCALE,
) -> SwdResult:
    """Multi-scale SWD between two (N, C, H, W) image batches of the same C, H and W (1 or 3 channels).

    Values may be uint8 or float in any fixed range (descriptors are normalised). The same seed
    gives the same number: neighbourhood positions and directions come from seeded generators.
    """
    a, b = _as_images(images_a, "images_a"), _as_images(images_b, "images_b")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"image shapes differ: {tuple(a.shape[1:])} vs {tuple(b.shape[1:])}; resize them to one size"
        )
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {normalization!r}")
    if min_resolution < patch_size:
        raise ValueError(f"min_resolution ({min_resolution}) must be at least patch_size ({patch_size})")
    resolution = min(a.shape[-2:])
    levels = pyramid_resolutions(resolution, min_resolution)
    if not levels:
        raise ValueError(f"SWD needs images of at least {min_resolution} px; these are {tuple(a.shape[-2:])}")
    seed_a, seed_b, seed_directions = np.random.SeedSequence(seed).spawn(3)
    descriptors_a = _descriptors(
        a, len(levels), patch_size, descriptors_per_image, np.random.default_rng(seed_a)
    )
    descriptors_b = _descriptors(
        b, len(levels), patch_size, descriptors_per_image, np.random.default_rng(seed_b)
    )
    direction_rng = np.random.default_rng(seed_directions)
    channels = a.shape[1]
    per_level: dict[int, float] = {}
    for level, level_a, level_b in zip(levels, descriptors_a, descriptors_b, strict=True):
        level_a, level_b = _normalize(level_a, level_b, channels, normalization)
        distances = [
            _sliced_distance(
                level_a, level_b, _directions(direction_rng, level_a.shape[1], projections_per_repeat)
            )
            for _ in range(projection_repeats)
        ]
        per_level[level] = float(np.mean(distances)) * scale
    mean = float(np.mean(list(per_level.values())))
    return SwdResult(per_level, mean, resolution, channels, len(a), len(b))


def _as_images(images: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(images)  # kept in its dtype (uint8: a quarter of float32) until batched
    if tensor.ndim != 4 or tensor.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (N, C, H, W) with C 1 or 3, got shape {tuple(tensor.shape)}")
    if len(tensor) == 0:
        raise ValueError(f"{name} holds no images")
    return tensor


def _blur_axis(images: torch.Tensor, dim: int, gain: float) -> torch.Tensor:
    """The 5-tap binomial filter along one axis with mirror padding (scipy's 'mirror', torch's 'reflect').

    Written as five shifted sums: torch's depthwise conv2d is several times slower on CPU.
    """
    padding = (2, 2, 0, 0) if dim == 3 else (0, 0, 2, 2)
    padded = F.pad(images, padding, mode="reflect")
    length = images.shape[dim]
    return sum(float(weight) * gain * padded.narrow(dim, tap, length) for tap, weight in enumerate(_BINOMIAL))


def _pyr_down(images: torch.Tensor) -> torch.Tensor:
    """Blur and keep every second row and column (columns are dropped before the vertical pass)."""
    across = _blur_axis(images, 3, 1.0)[:, :, :, ::2]
    return _blur_axis(across, 2, 1.0)[:, :, ::2, :]


def _pyr_up(images: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Insert zeros between samples, then blur with 4x the gain, cropped to `size`."""
    batch, channels, height, width = images.shape
    upsampled = images.new_zeros(batch, channels, height * 2, width * 2)
    upsampled[:, :, ::2, ::2] = images
    blurred = _blur_axis(_blur_axis(upsampled, 3, 2.0), 2, 2.0)
    return blurred[:, :, : size[0], : size[1]]


def _descriptors(
    images: torch.Tensor, num_levels: int, patch_size: int, per_image: int, rng: np.random.Generator
) -> list[torch.Tensor]:
    """Per level, (N * per_image, C * patch_size^2) neighbourhoods at random positions."""
    collected: list[list[torch.Tensor]] = [[] for _ in range(num_levels)]
    offsets = torch.arange(patch_size)
    for start in range(0, len(images), PYRAMID_BATCH):
        batch = images[start : start + PYRAMID_BATCH].to(torch.float32)
        for level, band in enumerate(laplacian_pyramid(batch, num_levels)):
            count, _, height, width = band.shape
            ys = torch.from_numpy(rng.integers(0, height - patch_size + 1, size=(count, per_image)))
            xs = torch.from_numpy(rng.integers(0, width - patch_size + 1, size=(count, per_image)))
            rows = (ys[:, :, None, None] + offsets[None, None, :, None]).expand(
                -1, -1, patch_size, patch_size
            )
            cols = (xs[:, :, None, None] + offsets[None, None, None, :]).expand(
                -1, -1, patch_size, patch_size
            )
            image_index = torch.arange(count)[:, None, None, None].expand_as(rows)
            patches = band.permute(0, 2, 3, 1)[image_index, rows, cols]  # (count, per_image, p, p, C)
            collected[level].append(patches.permute(0, 1, 4, 2, 3).reshape(count * per_image, -1))
    return [torch.cat(parts) for parts in collected]


def _normalize(
    a: torch.Tensor, b: torch.Tensor, channels: int, normalization: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero mean and unit standard deviation per channel, over descriptors and positions."""

    def stats(*descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = (
            torch.cat([d.reshape(len(d), channels, -1) for d in descriptors])
            .transpose(0, 1)
            .reshape(channels, -1)
        )
        values = values.double()
        return values.mean(dim=1), values.std(dim=1, unbiased=False).clamp(min=1e-12)

    def apply(descriptors: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        shaped = descriptors.reshape(len(descriptors), channels, -1)
        return ((shaped - mean[None, :, None].float()) / std[None, :, None].float()).reshape(
            len(descriptors), -1
        )

    if normalization == "joint":
        mean, std = stats(a, b)
        return apply(a, mean, std), apply(b, mean, std)
    return apply(a, *stats(a)), apply(b, *stats(b))


def _directions(rng: np.random.Generator, dim: int, count: int) -> torch.Tensor:
    directions = rng.standard_normal((dim, count))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    return torch.from_numpy(directions.astype(np.float32))


def _sliced_distance(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over directions of the Wasserstein-1 distance between the projected sets."""
    # One row per direction, sorted in numpy: far faster than torch.sort on CPU.
    projected_a = np.sort((directions.T @ a.T).numpy(), axis=1)
    projected_b = np.sort((directions.T @ b.T).numpy(), axis=1)
    count_a, count_b = projected_a.shape[1], projected_b.shape[1]
    if count_a == count_b:
        return float(np.abs(projected_a - projected_b).mean())
    # Quantile functions are step functions; compare them on every interval of the merged grid.
    steps = np.unique(
        np.concatenate([np.arange(1, count_a + 1) / count_a, np.arange(1, count_b + 1) / count_b])
    )
    widths = np.diff(steps, prepend=0.0)
    middles = steps - widths / 2
    index_a = np.minimum(np.floor(middles * count_a).astype(np.int64), count_a - 1)
    index_b = np.minimum(np.floor(middles * count_b).astype(np.int64), count_b - 1)
    gaps = np.abs(projected_a[:, index_a].astype(np.float64) - projected_b[:, index_b])
    return float((gaps @ widths).mean())
