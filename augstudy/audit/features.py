"""The audited attributes of every image: what a classifier could use instead of the pathology.

Metadata groups (size, file, colour, padding) describe how an image was acquired or saved; the
pathology cannot change them, so if they predict the label the data carry a shortcut. Content
groups (intensity histogram, random-init backbone) look at the prepared pixels: a high score
there means the classes differ in a whole-image statistic, which a visible lesion can cause too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from augstudy.data.decode import COLOUR_SPREAD, decode_file
from augstudy.data.prepared import REPORT_NAME, load_prepared, read_manifest

# Pixels at or below this grey level count as empty background (padding is 0; JPEG noise adds a little).
EMPTY_LEVEL = 8
HISTOGRAM_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
# Bits per channel of each Pillow mode.
MODE_BITS = {"1": 1, "L": 8, "P": 8, "LA": 8, "RGB": 8, "RGBA": 8, "CMYK": 8, "YCbCr": 8, "LAB": 8,
             "HSV": 8, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


@dataclass(frozen=True)
class FeatureGroup:
    """One audited attribute group.

    Attributes:
        name: key in audit.json.
        title: how a sentence names it ("image size").
        kind: "metadata" (a shortcut whenever it predicts the label) or "content".
        columns: feature names.
        values: (n images, len(columns)).
    """

    name: str
    title: str
    kind: str
    columns: tuple[str, ...]
    values: np.ndarray


@dataclass(frozen=True)
class AuditImage:
    """One real image of the audited split: its prepared PNG, label and duplicate group."""

    path: Path
    class_name: str
    label: int
    group: str
    row: dict[str, str] = field(repr=False)


def audited_images(data: Path, split: str | None) -> tuple[list[AuditImage], tuple[str, ...], str]:
    """Every image the split keeps (train, valid and test together), its class and duplicate group.

    Returns (images, classes, split mode). Images without a duplicate group get a group of their own.
    """
    prepared = load_prepared(data, split)
    kept = {path.resolve() for by_class in prepared.images.values() for paths in by_class.values()
            for path in paths}
    classes = tuple(name for name in prepared.classes
                    if any(prepared.images[subset][name] for subset in prepared.images))
    images = []
    for index, row in enumerate(read_manifest(prepared.root)):
        path = (prepared.root / row["image"]).resolve() if row["image"] else None
        if path is None or path not in kept or row["class"] not in classes:
            continue
        group = row["dup_group"] or f"single-{index}"
        images.append(AuditImage(path, row["class"], classes.index(row["class"]), group, row))
    return images, classes, prepared.split_mode


def size_group(images: list[AuditImage]) -> FeatureGroup:
    width = np.array([float(image.row["width"]) for image in images])
    height = np.array([float(image.row["height"]) for image in images])
    values = np.column_stack([width, height, width / height, np.log(width * height)])
    return FeatureGroup("size", "original image size (width, height, aspect ratio)", "metadata",
                        ("width", "height", "aspect_ratio", "log_area"), values)


def file_group(images: list[AuditImage], source_dir: Path | None) -> FeatureGroup:
    """Format and mode (one-hot), bit depth and, when the source files are still there, file size."""
    formats = sorted({image.row["format"] for image in images})
    modes = sorted({image.row["mode"] for image in images})
    columns = [f"format={name}" for name in formats] + [f"mode={name}" for name in modes] + ["bit_depth"]
    rows = [[float(image.row["format"] == name) for name in formats]
            + [float(image.row["mode"] == name) for name in modes]
            + [float(MODE_BITS.get(image.row["mode"], 8))] for image in images]
    sizes = _file_sizes(images, source_dir)
    if sizes is not None:
        columns.append("log_file_bytes")
        rows = [row + [math.log(size)] for row, size in zip(rows, sizes)]
    return FeatureGroup("file", "file format, mode, bit depth and file size", "metadata", tuple(columns),
                        np.array(rows))


def colour_group(images: list[AuditImage], source_dir: Path | None) -> FeatureGroup:
    """Whether the source file carries colour, and (from the source file) the share of coloured pixels."""
    columns = ["has_colour"]
    rows = [[float(image.row["colour"] == "1")] for image in images]
    if source_dir is not None and all((source_dir / image.row["source_path"]).is_file() for image in images):
        columns.append("coloured_pixel_fraction")
        rows = [row + [_coloured_fraction(source_dir / image.row["source_path"])]
                for row, image in zip(rows, images)]
    return FeatureGroup("colour", "colour content of the source file", "metadata", tuple(columns), np.array(rows))


def padding_group(images: list[AuditImage], pixels: list[np.ndarray], fit: str) -> FeatureGroup:
    """How much of the prepared square is padding: planned by `--fit pad`, and measured as the
    share of rows and columns at the border that hold only empty background."""
    planned = []
    for image in images:
        width, height = float(image.row["width"]), float(image.row["height"])
        planned.append(1.0 - min(width, height) / max(width, height) if fit == "pad" else 0.0)
    measured = [_empty_border_fraction(grey) for grey in pixels]
    return FeatureGroup("padding", f"padding after --fit {fit}", "metadata",
                        ("planned_padding_fraction", "empty_border_fraction"), np.column_stack([planned, measured]))


def histogram_group(pixels: list[np.ndarray]) -> FeatureGroup:
    columns = ("mean", "std", *(f"p{value}" for value in HISTOGRAM_PERCENTILES), "empty_fraction",
               "bright_fraction")
    rows = []
    for grey in pixels:
        flat = grey.astype(np.float64).ravel()
        rows.append([flat.mean(), flat.std(), *np.percentile(flat, HISTOGRAM_PERCENTILES),
                     float((flat <= EMPTY_LEVEL).mean()), float((flat >= 255 - EMPTY_LEVEL).mean())])
    return FeatureGroup("histogram", "intensity histogram of the prepared image", "content", columns, np.array(rows))


def prepared_pixels(images: list[AuditImage]) -> list[np.ndarray]:
    """The prepared images as 2-D uint8 grey arrays."""
    return [decode_file(image.path, channels=1).luma for image in images]


def source_folder(data: Path) -> Path | None:
    """The folder prepare read (from its report.json), when it still exists."""
    report = Path(data) / REPORT_NAME
    if not report.is_file():
        return None
    folder = Path(json.loads(report.read_text(encoding="utf-8")).get("source_dir", ""))
    return folder if str(folder) and folder.is_dir() else None


def _file_sizes(images: list[AuditImage], source_dir: Path | None) -> list[int] | None:
    if source_dir is None:
        return None
    paths = [source_dir / image.row["source_path"] for image in images]
    if not all(path.is_file() for path in paths):
        return None
    return [path.stat().st_size for path in paths]


def _coloured_fraction(path: Path) -> float:
    rgb = np.asarray(decode_file(path, channels=3).image).astype(np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2) > COLOUR_SPREAD).mean())


def _empty_border_fraction(grey: np.ndarray) -> float:
    """Share of the image's rows plus columns that are empty and connected to an edge."""
    def run(lines: np.ndarray) -> int:
        empty = lines.max(axis=1) <= EMPTY_LEVEL
        if empty.all():
            return len(empty)
        return int(np.argmin(empty)) + int(np.argmin(empty[::-1]))

    rows, columns = grey.shape
    return (run(grey) + run(grey.T)) / float(rows + columns)
