"""Any image to the square RGB array a backbone takes, and its augmented views: one path for all.

Real, synthetic and classically augmented images reach the backbone through `backbone_input`
(a decoded array) or `load_view` (a file), and nothing else, so a systematic real/synthetic
difference cannot come from preprocessing. The path, in order:

1. decode with `augstudy.data.decode.decode_image` (the one reader: 16-bit scaled, alpha on black,
   palette expanded, EXIF orientation applied), grey repeated to RGB;
2. bring the image to the prepared data's square size (`Geometry.working_size`) with prepare's
   own `fit_square` (its fit, Lanczos), exactly what `augstudy prepare` did to every real image;
   a real training image is already at that size, so this step leaves it untouched, and a pool
   stored at another size (`generate --size 224`) is brought to the same size with the same filter;
3. bilinear to the backbone's input size, then the view's seeded flip/zoom/shear.

So a real training image copied into a pool gives bit for bit the array it gives as a real image.
The feature cache and the end-to-end (naive, fine-tune) path both load images through `load_view`,
so a cached feature is exactly what the backbone would have seen live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from augstudy.data.decode import UnreadableImage, decode_image, fit_square

# Names the loading recipe in feature-cache keys and saved classifiers: change it whenever the path
# above changes (v2: the one decoder, then prepare's resampling to the prepared size).
IMAGE_PIPELINE_ID = "decode-fit-lanczos-bilinear-v2"


class ImageReadError(ValueError):
    """An image file cannot be read as a picture."""


@dataclass(frozen=True)
class Geometry:
    """How images reach the input size: first to the prepared data's size and fit (None: skip that step)."""

    working_size: int | None = None
    fit: str = "pad"

    @property
    def id(self) -> str:
        """Part of the feature-cache key: the same file gives other pixels under another geometry."""
        return f"{IMAGE_PIPELINE_ID}@{self.working_size or 'input'}-{self.fit}"


def prepared_geometry(prepared: str | Path) -> Geometry:
    """The geometry of a prepared folder: its `--resolution` and `--fit` from prepare_options.json."""
    from augstudy.data.prepared import read_prepare_options

    options = read_prepare_options(Path(prepared))
    return Geometry(int(options["resolution"]), str(options.get("fit", "pad")))  # type: ignore[arg-type]


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


def read_rgb(path: str | Path) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of an image file through the one decoder (grey repeated to RGB)."""
    try:
        data = Path(path).read_bytes()
        return np.asarray(decode_image(data, channels=3).image)
    except (OSError, UnreadableImage) as error:
        raise ImageReadError(f"{path}: cannot read the image ({error})") from error


def to_input_size(pixels: np.ndarray, size: int, geometry: Geometry = Geometry()) -> Image.Image:
    """(H, W, 1|3) uint8 to an RGB size x size image: prepare's fit and Lanczos to the working size,
    then bilinear to `size` (steps 2 and 3 of the module docstring)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"expected (H, W, 1|3) uint8 pixels, got {pixels.dtype} {pixels.shape}")
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if geometry.working_size is not None:
        image = fit_square(image, geometry.working_size, geometry.fit)  # type: ignore[arg-type]
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def backbone_input(pixels: np.ndarray, size: int, geometry: Geometry = Geometry(), image_sha256: str = "",
                   view: int = 0, params: ViewParams | None = None) -> np.ndarray:
    """View `view` of already-decoded pixels as the float32 (size, size, 3) array in [0, 255] a
    backbone's preprocess takes: the entry point for arrays made in memory (classic augmentation)."""
    image = to_input_size(pixels, size, geometry)
    if view:
        image = augmented_view(image, image_sha256, view, params or ViewParams())
    return np.asarray(image, dtype=np.float32)


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


def load_view(path: str | Path, image_sha256: str, view: int, size: int, params: ViewParams,
              geometry: Geometry = Geometry()) -> np.ndarray:
    """View `view` of the image file at `path` as a float32 (size, size, 3) array in [0, 255]."""
    return backbone_input(read_rgb(path), size, geometry, image_sha256, view, params)
