"""The sweep's inputs: the real splits of a prepared folder and a synthetic pool.

A prepared folder follows docs/formats.md (`manifest.csv`, `images/<split>/<class>/*.png`,
`prepare_options.json`); a pool is any folder of `<class>/*.png`. Images are identified by the
sha256 of their file content, which is also the feature-cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from augstudy.classify.features import ImageRef
from augstudy.data.prepared import PreparedDataError, load_prepared
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
