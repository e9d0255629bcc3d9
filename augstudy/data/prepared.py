"""Reading a prepared folder (the output of `augstudy prepare`), for the GAN and sweep steps.

The manifest says, for every source file, whether the official and the dedup split keep it, so
one prepared folder serves both: `load_prepared(dir, split="official")` is the split as
published, `split="dedup"` the one without copies of train images in valid and test.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from augstudy.data.sources import SPLITS

SPLIT_MODES: tuple[str, ...] = ("official", "dedup")
MANIFEST_NAME = "manifest.csv"
REPORT_NAME = "report.json"
OPTIONS_NAME = "prepare_options.json"
MANIFEST_COLUMNS: tuple[str, ...] = (
    "split", "class", "source_folder", "source_path", "sha256", "pixel_sha256", "phash", "dup_group",
    "dup_kind", "dup_of", "image", "official_keep", "dedup_keep", "kept", "reason", "width", "height",
    "mode", "format", "colour",
)


class PreparedDataError(ValueError):
    """A folder is not a complete prepared folder; the message names the file and the problem."""


@dataclass(frozen=True)
class PreparedData:
    """The images of one split mode of a prepared folder.

    Attributes:
        root: the prepared folder.
        split_mode: "official" or "dedup".
        classes: sorted; a class's label is its index here.
        resolution: side of every (square) image.
        channels: 1 (grey) or 3 (RGB).
        images: split -> class -> sorted absolute PNG paths.
    """

    root: Path
    split_mode: str
    classes: tuple[str, ...]
    resolution: int
    channels: int
    images: dict[str, dict[str, list[Path]]]

    def paths(self, split: str, class_name: str) -> list[Path]:
        if split not in self.images:
            raise KeyError(f"unknown split {split!r}; the splits are {list(self.images)}")
        if class_name not in self.classes:
            raise KeyError(f"unknown class {class_name!r}; {self.root} has {list(self.classes)}")
        return list(self.images[split][class_name])

    def labelled(self, split: str) -> list[tuple[Path, int]]:
        """(path, class index) for every image of a split, class by class."""
        return [(path, label) for label, name in enumerate(self.classes) for path in self.paths(split, name)]

    def counts(self) -> dict[str, dict[str, int]]:
        return {split: {name: len(paths) for name, paths in by_class.items()}
                for split, by_class in self.images.items()}


def read_manifest(directory: Path) -> list[dict[str, str]]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise PreparedDataError(f"{path} not found: {directory} is not a prepared folder "
                                "(make one with `augstudy prepare SOURCE --out DIR`)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PreparedDataError(f"{path} lacks the columns {missing}; re-run `augstudy prepare`")
        return list(reader)


def read_prepare_options(directory: Path) -> dict[str, object]:
    path = Path(directory) / OPTIONS_NAME
    if not path.is_file():
        raise PreparedDataError(f"{path} not found: {directory} is not a complete prepared folder; "
                                "re-run `augstudy prepare`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_prepared(directory: str | Path, split: str | None = None) -> PreparedData:
    """The images of a prepared folder under one split mode.

    Args:
        split: "official" or "dedup"; None takes the `--split` that prepare was run with.

    Raises:
        PreparedDataError: the folder is incomplete, or a listed image is missing.
    """
    root = Path(directory).resolve()
    rows = read_manifest(root)
    options = read_prepare_options(root)
    split_mode = str(options["split"]) if split is None else split
    if split_mode not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, not {split_mode!r}")
    listed = options.get("classes") or sorted({row["class"] for row in rows})
    classes = tuple(sorted(str(name) for name in listed))  # type: ignore[union-attr]
    images: dict[str, dict[str, list[Path]]] = {s: {name: [] for name in classes} for s in SPLITS}
    column = f"{split_mode}_keep"
    for row in rows:
        if row[column] != "1":
            continue
        path = root / row["image"]
        if not path.is_file():
            raise PreparedDataError(f"{path} is listed in {root / MANIFEST_NAME} but missing; re-run "
                                    "`augstudy prepare` with the same options to restore it")
        images[row["split"]][row["class"]].append(path)
    for by_class in images.values():
        for paths in by_class.values():
            paths.sort()
    return PreparedData(root, split_mode, classes, int(options["resolution"]),  # type: ignore[arg-type]
                        int(options["channels"]), images)  # type: ignore[arg-type]


def prepared_content_sha256(directory: str | Path) -> str:
    """One hash of every image a prepared folder holds (name and bytes) and of the options it was made
    with: what finished work made from the folder depends on. The manifest alone is not enough, as
    re-preparing the same source at another size or fit keeps the manifest and changes the pixels."""
    from stylegan2ada.io import sha256_file

    root = Path(directory)
    images = sorted(row["image"] for row in read_manifest(root) if row["image"])
    listing = [[image, sha256_file(root / image) if (root / image).is_file() else ""] for image in images]
    payload = json.dumps({"options": read_prepare_options(root), "images": listing}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
