"""Reading an image file into the square RGB array a backbone takes, and its augmented views.

The feature cache and the end-to-end (naive, fine-tune) path both load images through
`load_view`, so a cached feature is exactly what the backbone would have seen live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Names the loading recipe in feature-cache keys: change it whenever `load_rgb` changes.
IMAGE_PIPELINE_ID = "pil-rgb-bilinear-v1"


class ImageReadError(ValueError):
    """An image file cannot be read as a picture."""


@dataclass(frozen=True)
class ViewParams:
    """Random flip/zoom/shear views precomputed per training image (`--aug-views K`).

    View 0 is the image itself; view k >= 1 draws its transform from an RNG seeded by
    (seed, k, image hash), so a view is a fixed property of the image and can be cached.
    """

    seed: int = 0
    flip_probability: float = 0.5
    zoom_range: float = 0.15
    shear_degrees: float = 10.0

    def view_id(self, view: int) -> str:
        """A filename-safe name of view `view`, part of the feature-cache key."""
        if view == 0:
            return "orig"
        return (
            f"aug-s{self.seed}-f{round(self.flip_probability * 100)}-z{round(self.zoom_range * 100)}"
            f"-sh{round(self.shear_degrees * 10)}-k{view}"
        )


def load_rgb(path: str | Path, size: int) -> Image.Image:
    """The image at `path` as RGB, resized (bilinear) to size x size when it is not already."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"{path}: cannot read the image ({error})") from error
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def augmented_view(image: Image.Image, image_sha256: str, view: int, params: ViewParams) -> Image.Image:
    """View `view` of `image`: a seeded random horizontal flip, zoom and shear about the centre."""
    if view == 0:
        return image
    rng = np.random.default_rng([params.seed, view, int(image_sha256[:16], 16)])
    flip = -1.0 if rng.random() < params.flip_probability else 1.0
    zoom = 1.0 + rng.uniform(-params.zoom_range, params.zoom_range)
    shear = math.tan(math.radians(rng.uniform(-params.shear_degrees, params.shear_degrees)))
    width, height = image.size
    centre = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1]])
    uncentre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    # PIL maps each output pixel back to an input position, so this is the inverse transform.
    inverse = centre @ np.diag([flip, 1.0, 1.0]) @ np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]])
    inverse = inverse @ np.diag([1 / zoom, 1 / zoom, 1.0]) @ uncentre
    return image.transform(
        image.size, Image.Transform.AFFINE, tuple(inverse[:2].ravel()), Image.Resampling.BILINEAR
    )


def load_view(path: str | Path, image_sha256: str, view: int, size: int, params: ViewParams) -> np.ndarray:
    """View `view` of the image at `path` as a float32 (size, size, 3) array in [0, 255]."""
    image = augmented_view(load_rgb(path, size), image_sha256, view, params)
    return np.asarray(image, dtype=np.float32)
