"""A tiny learnable two-class image set in `augstudy prepare`'s format, plus a synthetic pool.

Tests and `bench/sweep.py` need a prepared folder without running `prepare` or the GAN: both
classes are noisy blobs and class 1 adds faint stripes, so a random-init backbone separates
them well but not perfectly. Every image is drawn from its own seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from stylegan2ada.io import atomic_write_json, atomic_write_text, sha256_file

CLASSES = ("normal", "tumour")


@dataclass(frozen=True)
class ToyStudy:
    data: Path  # prepared folder: manifest.csv, images/<split>/<class>/*.png, prepare_options.json
    pool: Path  # <class>/seedNNNNN.png


def toy_image(label: int, seed: int, size: int) -> np.ndarray:
    """A (size, size) uint8 image: noisy blobs, plus faint stripes for labels >= 1 (finer ones for
    each further label)."""
    rng = np.random.default_rng([label, seed])
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size))
    for _ in range(3):
        cy, cx, radius = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
        image += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))
    image /= max(image.max(), 1e-6)
    if label >= 1:
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(4, 8) * label
        stripes = np.sin(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)))
        image += rng.uniform(0.1, 0.4) * stripes
    image += rng.normal(0, 0.25, (size, size))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)


def write_toy_study(
    root: str | Path, train: int = 6, valid: int = 3, test: int = 3, pool: int = 6, size: int = 32,
    duplicates: int = 1, classes: tuple[str, ...] = CLASSES, train_duplicates: int = 0,
) -> ToyStudy:
    """Write `root`/data and `root`/pool. Per class of `classes`: `train`/`valid`/`test` real images
    and `pool` synthetic ones. The first `duplicates` train images of each class are repeated in the test
    split; the dedup split drops those copies, the official split keeps them; original and copy share a dup_group, as
    prepare writes it. The first `train_duplicates` train images of each class are also repeated inside the
    train split, as the official chest CT split repeats slices (its 148 normal train files are 32 distinct
    slices)."""
    root = Path(root)
    data, pool_dir = root / "data", root / "pool"
    rows = []
    seed = 0
    for label, name in enumerate(classes):
        train_seeds = []
        for subset, count in (("train", train), ("valid", valid), ("test", test)):
            for index in range(count):
                if subset == "train":
                    train_seeds.append(seed)
                rows.append((subset, name, seed, f"{name}_{index:03d}", True))
                seed += 1
        for index, duplicate_of in enumerate(train_seeds[:duplicates]):
            rows.append(("test", name, duplicate_of, f"{name}_dup{index:03d}", False))
        for index, duplicate_of in enumerate(train_seeds[:train_duplicates]):
            rows.append(("train", name, duplicate_of, f"{name}_copy{index:03d}", False))
        for index in range(pool):
            _write_png(pool_dir / name / f"seed{index:05d}.png", toy_image(label, 100_000 + index, size))
    copied = {image_seed for _, _, image_seed, _, unique in rows if not unique}
    manifest = []
    for subset, name, image_seed, stem, unique in rows:
        relative = Path("images") / subset / name / f"{stem}.png"
        _write_png(data / relative, toy_image(classes.index(name), image_seed, size))
        digest = sha256_file(data / relative)
        manifest.append({
            "split": subset, "class": name, "source_folder": f"source/{subset}/{name}",
            "source_path": f"source/{subset}/{name}/{stem}.png", "sha256": digest, "pixel_sha256": digest,
            "phash": "", "dup_group": f"dup-{image_seed}" if image_seed in copied else "", "dup_kind": "" if unique else "exact",
            "dup_of": "", "image": relative.as_posix(), "official_keep": "1", "dedup_keep": "1" if unique else "0",
            "kept": "1", "reason": "" if unique else "duplicate", "width": size, "height": size, "mode": "L",
            "format": "PNG", "colour": "0",
        })
    atomic_write_text(data / "manifest.csv", pd.DataFrame(manifest).to_csv(index=False))
    atomic_write_json(data / "prepare_options.json", {"split": "official", "resolution": size, "channels": 1})
    atomic_write_text(data / "report.json", json.dumps({"toy": True}) + "\n")
    return ToyStudy(data, pool_dir)
