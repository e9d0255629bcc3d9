"""The `classic` arm's augmentation: seeded copies of real train images, made once as PNG files.

The recipe (Frid-Adar et al. 2018 compared GAN images against such classic augmentation): a
horizontal flip with probability 0.5, a rotation of up to +-10 degrees and an isotropic scale of
0.9-1.1 about the centre (one bilinear resampling pass, reflected borders, same size, so scaling
up crops), brightness +-10 % of the range, contrast x0.9-1.1 about the image's mean, and Gaussian
noise of 2 % of the range. Brightness, contrast and noise are the same in every channel, so a grey
image stays grey. Copy k of an image draws its parameters from an RNG seeded by (recipe seed, k,
the image's sha256): a copy is a fixed property of its source image, written once to
RESULTS/classic/<class>/ and then identified, like a pool image, by the hash of its file; its
features are cached like any other image's, and it reaches the backbone through the same image
reader and resampling path as every other image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from augstudy.classify.data import LabelledImage
from augstudy.classify.features import ImageRef
from augstudy.classify.images import read_rgb
from stylegan2ada.io import atomic_open, sha256_file


@dataclass(frozen=True)
class ClassicRecipe:
    seed: int = 0
    flip_probability: float = 0.5
    max_rotation_degrees: float = 10.0
    scale_range: float = 0.1
    brightness: float = 0.1
    contrast_range: float = 0.1
    noise_std: float = 0.02

    def recipe_id(self) -> str:
        """Names the recipe in fingerprints and file names: change a value, get new copies."""
        values = "-".join(f"{value:g}" for value in asdict(self).values())
        return f"classic-v1-{values}"


def augment(pixels: np.ndarray, rng: np.random.Generator, recipe: ClassicRecipe) -> np.ndarray:
    """One augmented copy of a (H, W, C) uint8 image, same shape and dtype."""
    image = pixels.astype(np.float64) / 255.0
    height, width = image.shape[:2]
    flip = -1.0 if rng.random() < recipe.flip_probability else 1.0
    angle = math.radians(rng.uniform(-recipe.max_rotation_degrees, recipe.max_rotation_degrees))
    scale = 1.0 + rng.uniform(-recipe.scale_range, recipe.scale_range)
    # Output pixel (y, x) reads input position centre + inverse @ ((y, x) - centre).
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    inverse = np.diag([1.0, flip]) @ rotation / scale
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    offset = centre - inverse @ centre
    from scipy import ndimage  # lazily: loading scipy is slow and only this arm needs it

    warped = np.stack([ndimage.affine_transform(image[:, :, c], inverse, offset, order=1, mode="reflect")
                       for c in range(image.shape[2])], axis=2)
    warped = warped + rng.uniform(-recipe.brightness, recipe.brightness)
    mean = warped.mean()
    warped = (warped - mean) * (1.0 + rng.uniform(-recipe.contrast_range, recipe.contrast_range)) + mean
    warped = warped + rng.normal(0.0, recipe.noise_std, (height, width, 1))
    return (np.clip(warped, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def copies_per_image(max_ratio: float) -> int:
    """One copy of every real train image per started 100 % of the largest ratio."""
    return max(1, math.ceil(max_ratio / 100))


def classic_pool(
    train: Sequence[LabelledImage], class_names: Sequence[str], folder: Path, copies: int, recipe: ClassicRecipe,
) -> dict[str, list[ImageRef]]:
    """`copies` augmented copies of each real train image, by class name, written under
    `folder`/<class>/ when not there yet; ordered by copy index then source order."""
    pool: dict[str, list[ImageRef]] = {name: [] for name in class_names}
    for k in range(copies):
        for item in train:
            name = class_names[item.label]
            path = folder / name / f"{Path(item.ref.path).stem}-{item.ref.sha256[:8]}-c{k}.png"
            if not path.exists():
                pixels = read_rgb(item.ref.path)  # the one decoder; the copy then takes every image's path
                rng = np.random.default_rng([recipe.seed, k, int(item.ref.sha256[:16], 16)])
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_open(path, "wb") as handle:
                    Image.fromarray(augment(pixels, rng, recipe)).save(handle, format="PNG")
            pool[name].append(ImageRef(path, sha256_file(path)))
    return pool
