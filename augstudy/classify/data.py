"""The sweep's inputs: the real splits of a prepared folder and a synthetic pool.

A prepared folder follows docs/formats.md (`manifest.csv`, `images/<split>/<class>/*.png`,
`prepare_options.json`); a pool is any folder of `<class>/*.png`. Images are identified by the
sha256 of their file content, which is also the feature-cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from augstudy.classify.features import ImageRef
from stylegan2ada.io import sha256_file

SPLITS = ("official", "dedup")
SUBSETS = ("train", "valid", "test")
_MANIFEST_COLUMNS = ("split", "class", "image", "official_keep", "dedup_keep")


class DataError(ValueError):
    """A prepared folder or pool is missing something the sweep needs."""


@dataclass(frozen=True)
class LabelledImage:
    ref: ImageRef
    label: int  # index into the sorted class names


@dataclass(frozen=True)
class PreparedData:
    root: Path
    split: str
    class_names: tuple[str, ...]
    subsets: dict[str, list[LabelledImage]]  # train / valid / test, real images only

    def real_counts(self, subset: str = "train") -> dict[str, int]:
        counts = {name: 0 for name in self.class_names}
        for item in self.subsets[subset]:
            counts[self.class_names[item.label]] += 1
        return counts


def _read_manifest(root: Path) -> pd.DataFrame:
    """prepare's manifest.csv. The one place the format is read, so it can move to
    `augstudy.data.prepare.load_prepared` without touching the sweep."""
    path = root / "manifest.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; is {root} a folder written by `augstudy prepare`?")
    manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in _MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (see docs/formats.md)")
    return manifest


def _as_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


def default_split(root: Path) -> str:
    """The split prepare itself applied (its options' "split"), else "official"."""
    options = root / "prepare_options.json"
    if options.is_file():
        split = json.loads(options.read_text(encoding="utf-8")).get("split")
        if split:
            return str(split)
    return "official"


def read_prepared(root: str | Path, split: str | None = None) -> PreparedData:
    """The train/valid/test images of `split` ("official" or "dedup"; default: prepare's own)."""
    root = Path(root)
    split = split or default_split(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    manifest = _read_manifest(root)
    rows = manifest[(manifest["image"] != "") & manifest[f"{split}_keep"].map(_as_bool)]
    class_names = tuple(sorted(set(rows.loc[rows["split"] == "train", "class"])))
    if len(class_names) < 2:
        raise DataError(f"{root / 'manifest.csv'}: the {split} train split has {len(class_names)} class(es); need 2+")
    subsets: dict[str, list[LabelledImage]] = {subset: [] for subset in SUBSETS}
    for subset, name, image in zip(rows["split"], rows["class"], rows["image"]):
        if subset not in subsets:
            raise DataError(f"{root / 'manifest.csv'}: unknown split {subset!r} for {image}")
        if name not in class_names:
            raise DataError(f"{root / 'manifest.csv'}: class {name!r} of {image} has no train images")
        path = root / image
        if not path.is_file():
            raise DataError(f"{path}: listed in {root / 'manifest.csv'} but missing")
        ref = ImageRef(path, sha256_file(path))
        subsets[subset].append(LabelledImage(ref, class_names.index(name)))
    for subset, items in subsets.items():
        if not items:
            raise DataError(f"{root / 'manifest.csv'}: no {subset} images in the {split} split")
    return PreparedData(root, split, class_names, subsets)


def read_pool(root: str | Path) -> dict[str, list[ImageRef]]:
    """The images of a synthetic pool by class folder, in file-name order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: the synthetic pool folder does not exist")
    pool = {
        folder.name: [ImageRef(path, sha256_file(path)) for path in sorted(folder.glob("*.png"))]
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }
    pool = {name: refs for name, refs in pool.items() if refs}
    if not pool:
        raise DataError(f"{root}: no <class>/*.png images; a pool is a folder of class folders of PNGs")
    return pool
