"""Inception features of images, cached per image content and per extractor.

Preprocessing ("clean" resizing, Parmar et al. 2022): each channel is resized to 299 x 299 in
floating point with Pillow's antialiased bicubic filter before the network sees it, because the
network's own bilinear resize aliases when it shrinks large images and its result then depends on
the input size. At 299 x 299 the network's internal resize is the identity. Grey images are
repeated to three channels; values stay in 0..255 (the network normalises them itself).

Features are cached as ``<cache>/features/<extractor id>/<sha256[:2]>/<sha256>.npy`` where the
sha256 is that of the image file's bytes and the extractor id names the network file's hash and
this preprocessing, so a re-run, another pool or the memorisation check never recomputes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from augstudy.cache import cache_root
from augstudy.metrics.defaults import BATCH_SIZE, INCEPTION_RESOLUTION
from augstudy.metrics.images import ImageRef, decode_pixels, iter_image_bytes
from augstudy.metrics.inception import load_feature_network, resolve_inception_path, takes_return_features
from stylegan2ada.io import atomic_open, sha256_bytes, sha256_file

PREPROCESSING_ID = f"pil-bicubic-{INCEPTION_RESOLUTION}-v1"


@dataclass(frozen=True)
class FeatureExtractor:
    """A loaded feature network and where its features are cached.

    Attributes:
        extractor_id: "<first 16 hex of the network file's sha256>-<preprocessing id>".
        network_path: the TorchScript file.
        cache_dir: the folder of this extractor's cached features; None disables caching.
    """

    network: torch.jit.ScriptModule
    extractor_id: str
    network_path: Path
    device: torch.device
    batch_size: int
    cache_dir: Path | None

    def describe(self) -> dict[str, str]:
        return {"id": self.extractor_id, "path": str(self.network_path), "preprocessing": PREPROCESSING_ID}


def open_extractor(
    inception: str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = BATCH_SIZE,
    cache: bool = True,
    download: bool = True,
) -> FeatureExtractor:
    """Find (or download) and load the Inception network; see `inception.resolve_inception_path`."""
    path = resolve_inception_path(inception, download=download)
    torch_device = torch.device(device)
    network = load_feature_network(path, torch_device)
    extractor_id = f"{sha256_file(path)[:16]}-{PREPROCESSING_ID}"
    cache_dir = cache_root() / "features" / extractor_id if cache else None
    return FeatureExtractor(network, extractor_id, path, torch_device, batch_size, cache_dir)


def inception_input(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 1|3) uint8 to the network's (3, 299, 299) float32 input in 0..255."""
    size = (INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)
    planes = [
        np.asarray(
            Image.fromarray(pixels[:, :, channel].astype(np.float32), "F").resize(
                size, Image.Resampling.BICUBIC
            )
        )
        for channel in range(pixels.shape[2])
    ]
    stacked = np.clip(np.stack(planes), 0.0, 255.0)
    return np.repeat(stacked, 3, axis=0) if stacked.shape[0] == 1 else stacked


def features_of_pixels(extractor: FeatureExtractor, images: Sequence[np.ndarray]) -> np.ndarray:
    """(N, D) float32 features of (H, W, 1|3) uint8 images, computed in batches, never cached."""
    outputs = []
    for start in range(0, len(images), extractor.batch_size):
        batch = np.stack([inception_input(pixels) for pixels in images[start : start + extractor.batch_size]])
        with torch.no_grad():
            tensor = torch.from_numpy(batch).to(extractor.device)
            if takes_return_features(extractor.network):
                output = extractor.network(tensor, return_features=True)
            else:
                output = extractor.network(tensor)
        outputs.append(output.reshape(len(batch), -1).float().cpu().numpy())
    if not outputs:
        raise ValueError("no images to compute features of")
    return np.concatenate(outputs)


def features_of_images(
    extractor: FeatureExtractor, refs: Sequence[ImageRef], description: str = ""
) -> np.ndarray:
    """(N, D) float32 features of image files, in the order of `refs`, from the cache where present."""
    if not refs:
        raise ValueError("no images to compute features of")
    rows: list[np.ndarray | None] = [None] * len(refs)
    missing: list[tuple[int, str, np.ndarray]] = []
    progress = tqdm(total=len(refs), desc=description or "features", unit="img", leave=False)
    with progress:
        for index, (ref, data) in enumerate(iter_image_bytes(refs)):
            digest = sha256_bytes(data)
            cached = _read_cached(extractor, digest)
            if cached is not None:
                rows[index] = cached
                progress.update()
                continue
            missing.append((index, digest, decode_pixels(ref, data)))
            if len(missing) == extractor.batch_size:
                _compute_missing(extractor, missing, rows)
                progress.update(len(missing))
                missing = []
        if missing:
            _compute_missing(extractor, missing, rows)
            progress.update(len(missing))
    return np.stack(rows)  # type: ignore[arg-type]  # every row is filled above


def _compute_missing(
    extractor: FeatureExtractor, missing: list[tuple[int, str, np.ndarray]], rows: list[np.ndarray | None]
) -> None:
    features = features_of_pixels(extractor, [pixels for _, _, pixels in missing])
    for (index, digest, _), row in zip(missing, features, strict=True):
        rows[index] = row
        _write_cached(extractor, digest, row)


def _cache_file(extractor: FeatureExtractor, digest: str) -> Path | None:
    return None if extractor.cache_dir is None else extractor.cache_dir / digest[:2] / f"{digest}.npy"


def _read_cached(extractor: FeatureExtractor, digest: str) -> np.ndarray | None:
    path = _cache_file(extractor, digest)
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(ValueError, OSError, EOFError):
        return np.load(path)
    return None  # an unreadable cache entry is recomputed and rewritten


def _write_cached(extractor: FeatureExtractor, digest: str, row: np.ndarray) -> None:
    path = _cache_file(extractor, digest)
    if path is None:
        return
    with atomic_open(path, "wb") as handle:
        np.save(handle, row.astype(np.float32), allow_pickle=False)
