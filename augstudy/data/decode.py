"""Any image file Pillow reads, to one normalised square image.

Real collections mix PNG and JPEG, RGBA with opaque alpha, palette, 16-bit and CMYK files, and
EXIF-rotated photos; the study needs every image as 8-bit grey (or RGB) of one size. Sizes also
differ by class in the chest-CT set, so every image is brought to the same square resolution
before anything learns from it, or size alone would give the label away.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

Fit = Literal["pad", "crop", "stretch"]
FITS: tuple[str, ...] = ("pad", "crop", "stretch")

# A pixel counts as coloured when its channels differ by more than this (0-255): grey images saved
# as RGB JPEG carry a few levels of chroma noise (2 in the chest-CT set) that must not count as colour.
COLOUR_SPREAD = 8
# ... and an image counts as coloured when more than this fraction of its pixels are.
COLOUR_FRACTION = 1e-4


class UnreadableImage(ValueError):
    """The file is not an image Pillow can decode completely; the message is the reason."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded source image at its original size, before resizing.

    Attributes:
        image: mode "L" or "RGB" (the requested channels), EXIF orientation applied.
        source_mode: the file's own Pillow mode ("RGBA", "P", "I;16", "CMYK", ...).
        source_format: the file's format as Pillow names it ("PNG", "JPEG", ...).
        width, height: size after EXIF orientation.
        colour: whether the file carries colour (channels that differ), whatever `channels` is.
        luma: the image as a 2-D uint8 grey array, for perceptual hashing.
    """

    image: Image.Image
    source_mode: str
    source_format: str
    width: int
    height: int
    colour: bool
    luma: np.ndarray


def decode_image(data: bytes, channels: int) -> DecodedImage:
    """Decode image bytes completely and convert them to 8-bit grey (`channels=1`) or RGB (`3`).

    Raises:
        UnreadableImage: not an image, truncated, or a mode that cannot be converted.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            source_mode, source_format = opened.mode, opened.format or "unknown"
            opened.load()  # decodes everything now, so a truncated file fails here, not later
            oriented = ImageOps.exif_transpose(opened)
    except Exception as error:  # Pillow raises many types (incl. DecompressionBombError); each is a reason
        raise UnreadableImage(_describe(error)) from error
    rgb = _to_rgb_array(oriented)
    colour = _has_colour(rgb)
    luma = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    image = Image.fromarray(luma, "L") if channels == 1 else Image.fromarray(rgb, "RGB")
    return DecodedImage(image, source_mode, source_format, image.width, image.height, colour, luma)


def decode_file(path: str | os.PathLike[str], channels: int) -> DecodedImage:
    """`decode_image` of a file, with the file named in any error."""
    try:
        return decode_image(Path(path).read_bytes(), channels)
    except OSError as error:
        raise UnreadableImage(f"{path}: cannot read the file ({error.strerror or error})") from error
    except UnreadableImage as error:
        raise UnreadableImage(f"{path}: {error}") from error


def fit_square(image: Image.Image, resolution: int, fit: Fit) -> Image.Image:
    """Bring an image to `resolution` x `resolution` without letting its shape through.

    pad: centre it on a black square of its longer side (CT background is black), then resample;
    crop: keep the centred square of its shorter side; stretch: resample straight to the square.
    Resampling is Lanczos, which keeps fine structure when shrinking large scans.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    width, height = image.size
    if fit == "pad" and width != height:
        side = max(width, height)
        canvas = Image.new(image.mode, (side, side), 0)
        canvas.paste(image, ((side - width) // 2, (side - height) // 2))
        image = canvas
    elif fit == "crop" and width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size == (resolution, resolution):
        return image.copy()
    return image.resize((resolution, resolution), Image.Resampling.LANCZOS)


def image_kinds(paths: Iterable[str | os.PathLike[str]]) -> Counter[str]:
    """How many files have each size and mode ("256x256 L"), from their headers only (no decoding)."""
    kinds: Counter[str] = Counter()
    for path in paths:
        try:
            with Image.open(path) as opened:
                kinds[f"{opened.width}x{opened.height} {opened.mode}"] += 1
        except (OSError, ValueError):
            kinds["unreadable"] += 1
    return kinds


def kinds_warning(name: str, kinds: Counter[str], expected_side: int | None = None) -> str | None:
    """A warning with counts when a set of images mixes sizes or modes, or is not `expected_side` square.

    Every image is brought to one size before use, but a pool stored at several sizes or modes (or at
    another size than the real images) is a sign of pools mixed from different runs.
    """
    sides = {kind.split(" ")[0] for kind in kinds}
    mixed = len(kinds) > 1
    off_size = expected_side is not None and sides != {f"{expected_side}x{expected_side}"}
    if not (mixed or off_size):
        return None
    listing = ", ".join(f"{count} at {kind}" for kind, count in kinds.most_common())
    expected = f"; the real images are {expected_side}x{expected_side}" if off_size else ""
    return f"{name}: images differ in size or mode ({listing}){expected}"


def png_bytes(image: Image.Image) -> bytes:
    """Encode as PNG; Pillow writes no timestamps, so the same pixels give the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def pixel_digest_input(image: Image.Image) -> bytes:
    """Bytes that identify decoded pixels: mode, size and raw data, so re-encodings of one image match."""
    return f"{image.mode}:{image.width}x{image.height}:".encode() + image.tobytes()


def _describe(error: Exception) -> str:
    text = str(error).strip() or "no details"
    return f"{type(error).__name__}: {text}"


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to an (H, W, 3) uint8 array.

    Alpha is dropped when opaque and otherwise composited on black (the CT background); 16-bit
    grey is scaled by 255/65535 so an 8-bit image stored as 16-bit decodes to the same pixels;
    32-bit integer and float images are stretched from their own min to max.
    """
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        grey = _scale_to_uint8(np.asarray(image).astype(np.float64) * (255.0 / 65535.0))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        if mode == "I" and values.min() >= 0 and values.max() <= 65535 and values.max() > 255:
            grey = _scale_to_uint8(values * (255.0 / 65535.0))
        elif mode == "I" and values.min() >= 0 and values.max() <= 255:
            grey = values.astype(np.uint8)
        else:
            low, high = float(values.min()), float(values.max())
            grey = _scale_to_uint8((values - low) * (255.0 / (high - low)) if high > low else values * 0)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "L"):
        image = image.convert("RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    elif mode != "RGBA":
        image = image.convert("RGB")  # RGB, RGBX, CMYK, YCbCr, LAB, HSV
    array = np.asarray(image)
    if image.mode == "RGBA":
        alpha = array[:, :, 3:4]
        rgb = array[:, :, :3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgb)
        return _scale_to_uint8(rgb.astype(np.float64) * (alpha.astype(np.float64) / 255.0))
    return np.ascontiguousarray(array)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _has_colour(rgb: np.ndarray) -> bool:
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2).astype(np.int16)
    return int((spread > COLOUR_SPREAD).sum()) > COLOUR_FRACTION * spread.size
