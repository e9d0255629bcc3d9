"""The sweep's inputs: the real splits of a prepared folder and a synthetic pool.

A prepared folder follows docs/formats.md (`manifest.csv`, `images/<split>/<class>/*.png`,
`prepare_options.json`); a pool is any folder of `<class>/*.png`. Images are identified by the
sha256 of their file content, which is also the feature-cache key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from augstudy.classify.features import ImageRef
from augstudy.data.folds import FOLD_FILE
from augstudy.data.prepared import PreparedDataError, load_prepared, read_manifest
from stylegan2ada.io import sha256_file

SPLITS = ("official", "dedup")
SUBSETS = ("train", "valid", "test")


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

    @cached_property
    def duplicate_groups(self) -> dict[str, str]:
        """Image path inside the folder -> prepare's duplicate group (`dup_group` of manifest.csv), for
        the images that have one; read once per folder view."""
        return {row["image"]: row["dup_group"] for row in read_manifest(self.root)
                if row.get("image") and row.get("dup_group")}

    def distinct_counts(self, items: Sequence[LabelledImage]) -> dict[str, int]:
        """Distinct real images per class among `items`: the duplicate groups they span, a file
        without a group (or one from outside the folder) counted by its content. The official chest CT
        split holds 148 normal train files that are 32 distinct slices: a learning curve counted in
        files credits the copies as data."""
        seen: dict[str, set[str]] = {name: set() for name in self.class_names}
        for item in items:
            path = Path(item.ref.path)
            image = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else ""
            seen[self.class_names[item.label]].add(self.duplicate_groups.get(image) or f"sha256:{item.ref.sha256}")
        return {name: len(groups) for name, groups in seen.items()}


def with_distinct_counts(cell: dict, data: PreparedData, real_items: Callable[[], Sequence[LabelledImage]]) -> dict:
    """A finished real-arm or real-only cell from before `unique_train_images` existed, with the
    counts derived from its real train images (`real_items`, the sweep's own selection): its
    fingerprint already matched this data, so the counts are the ones training would have recorded,
    and a resumed sweep reports its learning curve in distinct images without retraining."""
    if "unique_train_images" in cell or cell.get("group") not in ("baseline", "real"):
        return cell
    return {**cell, "unique_train_images": data.distinct_counts(real_items())}


def read_prepared(root: str | Path, split: str | None = None) -> PreparedData:
    """The train/valid/test images of `split` ("official" or "dedup"; default: prepare's own)."""
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    try:
        prepared = load_prepared(root, split)
    except PreparedDataError as error:
        raise DataError(str(error)) from error
    manifest = prepared.root / "manifest.csv"
    class_names = tuple(name for name in prepared.classes if prepared.images["train"][name])
    if len(class_names) < 2:
        raise DataError(f"{manifest}: the {prepared.split_mode} train split has {len(class_names)} class(es); "
                        "need 2+")
    subsets: dict[str, list[LabelledImage]] = {subset: [] for subset in SUBSETS}
    for subset in SUBSETS:
        for name in prepared.classes:
            paths = prepared.images[subset][name]
            if paths and name not in class_names:
                raise DataError(f"{manifest}: class {name!r} has {subset} images but no train images")
            subsets[subset] += [LabelledImage(ImageRef(path, sha256_file(path)), class_names.index(name))
                                for path in paths]
        if not subsets[subset]:
            raise DataError(f"{manifest}: no {subset} images in the {prepared.split_mode} split")
    return PreparedData(prepared.root, prepared.split_mode, class_names, subsets)


def fold_data(data: PreparedData, train: Sequence[str], valid: Sequence[str], test: Sequence[str]) -> PreparedData:
    """The cv design's view of a prepared folder: one fold's train/valid/test (paths inside the folder),
    drawn from the images `data` already holds under its split (train, valid and test pooled)."""
    by_path = {item.ref.path.relative_to(data.root).as_posix(): item
               for subset in SUBSETS for item in data.subsets[subset]}
    parts = {"train": train, "valid": valid, "test": test}
    missing = [image for images in parts.values() for image in images if image not in by_path]
    if missing:
        raise DataError(f"{data.root}: the fold plan lists {len(missing)} image(s) the {data.split} split does not "
                        f"hold, e.g. {missing[0]}")
    return PreparedData(data.root, data.split, data.class_names,
                        {subset: [by_path[image] for image in images] for subset, images in parts.items()})


def cv_pool_dir(pool: str | Path, fold: str, seed: int, generator: str = "gan") -> Path:
    """Where the cv design keeps the pool of one fold's generator: POOL/<fold>/<generator>-<seed>/<class>/*.png
    (gan-0, diffusion-1, ...), with POOL/<fold>/fold.json naming the fold plan the generators were trained under."""
    return Path(pool) / fold / f"{generator}-{seed}"


def check_fold_pool(pool: str | Path, fold: str, digest: str) -> None:
    """A fold's pools must come from generators trained on this fold's training part: its fold.json
    carries the digest of the fold (augstudy.data.folds.Fold.digest) they were made for."""
    path = Path(pool) / fold / FOLD_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing: the cv design only uses a fold's pool when fold.json says which "
                        "fold plan its GANs were trained under (`augstudy run` writes it)")
    recorded = json.loads(path.read_text(encoding="utf-8")).get("digest")
    if recorded != digest:
        raise DataError(f"{path}: the pools of {fold} were made for another fold plan (other --folds, --repeats, "
                        "--cv-seed, --group-by, --val-fraction or data); their GANs may have seen this fold's test "
                        "images. Generate the pools for this plan, or run the sweep with the plan they were made for")


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
