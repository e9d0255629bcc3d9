"""Memorisation check: is any synthetic image a near-copy of one the GAN trained on?

A published synthetic medical dataset must not contain copies of real patients' images. For each
synthetic image we find its nearest and second-nearest training images in pixel space (grey,
resized to 64 x 64, RMS difference on a 0..1 scale) and, when Inception features are available,
in feature space (L2).

The rule, per space: a synthetic image is a near-copy of its nearest training image when
d1 <= absolute threshold, or d1 < ratio x d2 (d1, d2: distances to the nearest and second-nearest
training image; ratio 1/3, the rule Yoon et al. 2023 use for diffusion models). The ratio adapts
to how crowded that part of the training set is: an image merely closer to the data than training
images are to each other (a blurry or low-contrast sample near a bland training image) is not
flagged, a copy with a little noise is. The absolute floor (pixels 0.02, about 5 grey levels;
features 0) catches copies of training images that are themselves duplicated, where d1 = d2.
Before the rule runs, the training set is deduplicated (`distinct_references`): training images
that are exact or near copies of each other (pixel RMS difference within the pixel floor) count
once, so the second-nearest neighbour is another image, not a copy of the nearest -- otherwise the
ratio rule can never fire where training sets repeat slices (the chest CT normal train set is 148
files of 32 distinct slices). A pair is flagged when either space flags it; `flagged_by` says which. Real-to-real
nearest-neighbour distances are reported beside the synthetic ones for scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from augstudy.metrics.defaults import (
    MEMO_FEATURE_ABSOLUTE_THRESHOLD,
    MEMO_PIXEL_ABSOLUTE_THRESHOLD,
    MEMO_PIXEL_SIZE,
    MEMO_RATIO,
    MEMO_REPORT_QUANTILES,
)

# Distances are computed this many queries at a time, to bound memory.
_QUERY_CHUNK = 1024
# Per-image arrays of a space, left out of the summary.
_PER_IMAGE = ("flags", "nearest", "distances", "second_distances")


@dataclass(frozen=True)
class MemorisationOptions:
    """Every setting of the check; the defaults are in `augstudy.metrics.defaults`."""

    pixel_size: int = MEMO_PIXEL_SIZE
    ratio: float = MEMO_RATIO
    pixel_absolute_threshold: float = MEMO_PIXEL_ABSOLUTE_THRESHOLD
    feature_absolute_threshold: float = MEMO_FEATURE_ABSOLUTE_THRESHOLD
    report_quantiles: tuple[float, ...] = MEMO_REPORT_QUANTILES


def pixel_vectors(images: Sequence[np.ndarray], size: int = MEMO_PIXEL_SIZE) -> np.ndarray:
    """(N, size * size) float32 in [0, 1]: each (H, W, 1|3) uint8 image as grey, resized (bicubic)."""
    rows = np.empty((len(images), size * size), dtype=np.float32)
    for index, pixels in enumerate(images):
        grey = (
            Image.fromarray(pixels[:, :, 0], "L")
            if pixels.shape[2] == 1
            else Image.fromarray(pixels, "RGB").convert("L")
        )
        if grey.size != (size, size):
            grey = grey.resize((size, size), Image.Resampling.BICUBIC)
        rows[index] = np.asarray(grey, dtype=np.float32).reshape(-1) / 255.0
    return rows


def nearest_neighbours(
    queries: np.ndarray, references: np.ndarray, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query row: the index of its nearest reference row, and the L2 distances to the nearest
    and the second-nearest (inf when there is no second).

    With `exclude_self`, queries and references are the same set and a row is not its own neighbour.
    """
    query_tensor = torch.as_tensor(np.asarray(queries, np.float64))
    reference_tensor = torch.as_tensor(np.asarray(references, np.float64))
    if exclude_self and len(reference_tensor) < 2:
        raise ValueError("a nearest other neighbour needs at least 2 rows")
    indices, firsts, seconds = [], [], []
    for start in range(0, len(query_tensor), _QUERY_CHUNK):
        block = torch.cdist(query_tensor[start : start + _QUERY_CHUNK], reference_tensor)
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = float("inf")
        if block.shape[1] < 2:
            block = torch.cat([block, torch.full_like(block, float("inf"))], dim=1)
        best = torch.topk(block, 2, dim=1, largest=False, sorted=True)
        indices.append(best.indices[:, 0].numpy())
        firsts.append(best.values[:, 0].numpy())
        seconds.append(best.values[:, 1].numpy())
    return np.concatenate(indices), np.concatenate(firsts), np.concatenate(seconds)


def distinct_references(pixels: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of one representative (the first) per group of training rows that are exact or near
    copies of each other: RMS difference <= `threshold`, joined transitively."""
    count = len(pixels)
    if count < 2:
        return np.arange(count)
    unit = 1.0 / np.sqrt(pixels.shape[1])
    distances = torch.cdist(torch.as_tensor(np.asarray(pixels, np.float64)),
                            torch.as_tensor(np.asarray(pixels, np.float64))).numpy() * unit
    parent = np.arange(count)

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first, second in zip(*np.nonzero(np.triu(distances <= threshold, k=1))):
        a, b = root(int(first)), root(int(second))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array(sorted({root(index) for index in range(count)}))


def memorisation_check(
    real_names: Sequence[str],
    fake_names: Sequence[str],
    real_pixels: np.ndarray,
    fake_pixels: np.ndarray,
    real_features: np.ndarray | None = None,
    fake_features: np.ndarray | None = None,
    options: MemorisationOptions = MemorisationOptions(),
) -> dict[str, Any]:
    """Nearest training image of every synthetic image, distance quantiles and flagged near-copies.

    Args:
        real_pixels, fake_pixels: `pixel_vectors` of the training and the synthetic images.
        real_features, fake_features: feature rows of the same images, or None to skip that space.
    Returns:
        {"rule", "pixel": space summary, "feature": space summary or {"skipped": reason},
        "num_flagged", "flagged": [{"fake", "real", "flagged_by", and per space "<space>_real",
        "<space>_distance", "<space>_second_distance"}, ...] closest pixel distance first}.
    """
    if len(real_names) != len(real_pixels) or len(fake_names) != len(fake_pixels):
        raise ValueError("names and pixel rows must have the same lengths")
    dim = real_pixels.shape[1]
    keep = distinct_references(real_pixels, options.pixel_absolute_threshold)
    real_names = [real_names[index] for index in keep]
    # RMS difference: the L2 distance over sqrt(number of pixels), so it reads as an intensity.
    pixel = _space(real_pixels[keep], fake_pixels, options.pixel_absolute_threshold, options, 1.0 / np.sqrt(dim))
    spaces: dict[str, dict[str, Any]] = {"pixel": pixel}
    if real_features is not None and fake_features is not None:
        spaces["feature"] = _space(
            np.asarray(real_features)[keep], fake_features, options.feature_absolute_threshold, options, 1.0
        )
    flagged = []
    for fake_index, fake_name in enumerate(fake_names):
        flagged_by = [name for name, space in spaces.items() if space["flags"][fake_index]]
        if not flagged_by:
            continue
        entry: dict[str, Any] = {"fake": fake_name, "flagged_by": flagged_by}
        for name, space in spaces.items():
            real_index = int(space["nearest"][fake_index])
            entry[f"{name}_real"] = real_names[real_index]
            entry[f"{name}_distance"] = float(space["distances"][fake_index])
            second = float(space["second_distances"][fake_index])
            entry[f"{name}_second_distance"] = second if np.isfinite(second) else None
        entry["real"] = entry[f"{flagged_by[0]}_real"]
        flagged.append(entry)
    flagged.sort(key=lambda item: item["pixel_distance"])
    summary: dict[str, Any] = {
        "rule": (
            "near-copy when d1 <= the absolute threshold or d1 < ratio * d2 in either space "
            "(d1, d2: distance "
            "to the nearest and second-nearest distinct training image, after counting exact and near "
            "copies among the training images once); pixel space: grey "
            f"{options.pixel_size} px, RMS difference in [0, 1]; feature space: L2"
        ),
        "num_fake": len(fake_names),
        "num_real": len(real_pixels),
        "num_real_distinct": len(keep),
        "num_flagged": len(flagged),
        "flagged": flagged,
    }
    for name, space in spaces.items():
        summary[name] = {key: value for key, value in space.items() if key not in _PER_IMAGE}
    if "feature" not in spaces:
        summary["feature"] = {"skipped": "no Inception features (pass --inception PATH to add feature space)"}
    return summary


def _space(
    real: np.ndarray, fake: np.ndarray, absolute: float, options: MemorisationOptions, unit: float
) -> dict[str, Any]:
    nearest, first, second = nearest_neighbours(fake, real)
    first, second = first * unit, second * unit
    # With a single training image there is no second neighbour and only the absolute floor applies.
    flags = (first <= absolute) | (np.isfinite(second) & (first < options.ratio * second))
    quantiles = [float(q) for q in options.report_quantiles]
    result: dict[str, Any] = {
        "absolute_threshold": absolute,
        "ratio": options.ratio,
        "fake_to_real_quantiles": _quantiles(first, quantiles),
        "fraction_flagged": float(flags.mean()),
        "flags": flags,
        "nearest": nearest,
        "distances": first,
        "second_distances": second,
    }
    if len(real) >= 2:
        _, real_first, _ = nearest_neighbours(real, real, exclude_self=True)
        result["real_to_real_quantiles"] = _quantiles(real_first * unit, quantiles)
    return result


def _quantiles(values: np.ndarray, quantiles: list[float]) -> dict[str, float]:
    return {f"{q:g}": float(np.quantile(values, q)) for q in quantiles}
