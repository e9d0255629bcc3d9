"""Repeated, stratified, grouped K-fold cross-validation over every labelled image of a prepared folder.

One fixed train/valid/test split makes a study's answer that split's luck. The `cv` design pools
the train, valid and test images the prepared split keeps (`dedup`: one file per duplicate group;
`official`: every readable file) and deals them into K folds, R times with seeded shuffles. Each
(repeat, fold) tests on its own fold; within a repeat every image is tested exactly once. A
fold's validation set (early stopping, LR schedule) is carved from its training part in the same
grouped, stratified way, so the test fold is used for nothing but the final score.

Folds are grouped: images that belong together never straddle a train/test (or train/valid)
boundary. Two images belong together when prepare put them in one duplicate group (`dup_group`
of manifest.csv: byte, pixel or near copies), or when `--group-by` gives them the same id:
- `regex:PATTERN`: `re.search(PATTERN, source_path)` on the source file's path relative to the
  source folder (manifest.csv's `source_path`); the id is the first capture group, else the
  whole match. A file the pattern does not match is an error, never a silent group of its own.
- `csv:PATH:COLUMN`: a CSV with a `source_path` column (as in manifest.csv) and COLUMN, the id
  (a patient or series number). Every pooled file must have a row.
Groups are the connected components of both relations (a patient whose slice was copied into
another patient's folder joins both). Stratification and grouping use scikit-learn's
`StratifiedGroupKFold`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from augstudy.data.prepared import MANIFEST_NAME, read_manifest, read_prepare_options

FOLD_FILE = "fold.json"  # a fold's record beside what was made from its training part (GAN zips, pools)
GROUP_BY_HELP = ("regex:PATTERN (on each source file's path; the id is the first capture group) or "
                 "csv:PATH:COLUMN (a CSV with source_path and COLUMN)")


class FoldError(ValueError):
    """The fold plan cannot be made as asked; the message names the option or file and what to change."""


@dataclass(frozen=True)
class FoldOptions:
    """How the pooled images are dealt into folds.

    Attributes:
        folds: K. 5 keeps 80 % of the images for training and, on the dedup chest CT (41 distinct
            normal slices), about 8 normal images in every test fold.
        repeats: R reshuffles of the K folds; each repeat tests every image once.
        seed: of the shuffles (repeat r uses (seed, r)).
        group_by: None (duplicate groups only), `regex:PATTERN` or `csv:PATH:COLUMN`.
        val_fraction: share of a fold's training part held out (grouped, stratified) for validation.
    """

    folds: int = 5
    repeats: int = 2
    seed: int = 0
    group_by: str | None = None
    val_fraction: float = 0.2


@dataclass(frozen=True)
class PooledImage:
    """One labelled image of the pool: `image` is its path inside the prepared folder."""

    image: str
    label: int
    group: int  # connected component of duplicate and --group-by relations
    source_path: str
    dup_group: str


@dataclass(frozen=True)
class Fold:
    """The images (paths inside the prepared folder) of one (repeat, fold)."""

    repeat: int
    fold: int
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def name(self) -> str:
        return fold_name(self.repeat, self.fold)

    def digest(self) -> str:
        """Changes whenever any image moves between train, valid and test: cells and pools key on it."""
        payload = json.dumps([self.train, self.valid, self.test]).encode()
        return hashlib.sha256(payload).hexdigest()


@dataclass(frozen=True)
class FoldPlan:
    split: str
    class_names: tuple[str, ...]
    options: FoldOptions
    images: tuple[PooledImage, ...]
    folds: tuple[Fold, ...]

    def fold(self, repeat: int, fold: int) -> Fold:
        return self.folds[repeat * self.options.folds + fold]

    def digest(self) -> str:
        return hashlib.sha256("".join(fold.digest() for fold in self.folds).encode()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        """What folds.json holds: enough to check, from the files alone, what each fold saw."""
        by_image = {item.image: item for item in self.images}
        return {
            "split": self.split, "class_names": list(self.class_names), "options": asdict(self.options),
            "digest": self.digest(),
            "folds": [{"repeat": fold.repeat, "fold": fold.fold, "name": fold.name, "digest": fold.digest(),
                       **{part: list(getattr(fold, part)) for part in ("train", "valid", "test")}}
                      for fold in self.folds],
            "images": {item.image: {"label": item.label, "group": item.group, "dup_group": item.dup_group,
                                    "source_path": item.source_path} for item in by_image.values()},
        }


def fold_record(plan: FoldPlan, fold: Fold) -> dict[str, object]:
    """What FOLD_FILE holds: the fold's digest, plan and images, so a pool or GAN zip made from it can
    be checked against the plan the sweep uses, and its test images read back from the files alone."""
    return {"repeat": fold.repeat, "fold": fold.fold, "name": fold.name, "digest": fold.digest(),
            "plan_digest": plan.digest(), "split": plan.split, "options": asdict(plan.options),
            "train": list(fold.train), "valid": list(fold.valid), "test": list(fold.test)}


def fold_name(repeat: int, fold: int) -> str:
    return f"r{repeat}-f{fold}"


def _seed(*parts: int) -> int:
    """A 32-bit random_state for scikit-learn from a tuple of seeds."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _group_ids(rows: Sequence[dict[str, str]], group_by: str | None) -> list[str | None]:
    """The --group-by id of every row (None without --group-by)."""
    if group_by is None:
        return [None] * len(rows)
    kind, _, spec = group_by.partition(":")
    if kind == "regex" and spec:
        try:
            pattern = re.compile(spec)
        except re.error as error:
            raise FoldError(f"--group-by {group_by!r}: not a valid regular expression ({error})") from error
        ids: list[str | None] = []
        for row in rows:
            match = pattern.search(row["source_path"])
            if match is None:
                raise FoldError(f"--group-by {group_by!r}: does not match {row['source_path']!r}; every file "
                                "needs an id (widen the pattern)")
            ids.append(match.group(1) if pattern.groups else match.group(0))
        return ids
    if kind == "csv" and ":" in spec:
        path_text, _, column = spec.rpartition(":")
        return _csv_ids(Path(path_text), column, rows, group_by)
    raise FoldError(f"--group-by {group_by!r}: give {GROUP_BY_HELP}")


def _csv_ids(path: Path, column: str, rows: Sequence[dict[str, str]], group_by: str) -> list[str | None]:
    if not path.is_file():
        raise FoldError(f"--group-by {group_by!r}: {path} is not a file")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for needed in ("source_path", column):
            if needed not in (reader.fieldnames or []):
                raise FoldError(f"--group-by {group_by!r}: {path} has no {needed!r} column "
                                f"(its columns: {', '.join(reader.fieldnames or [])})")
        table = {record["source_path"]: record[column] for record in reader}
    missing = [row["source_path"] for row in rows if not table.get(row["source_path"])]
    if missing:
        raise FoldError(f"--group-by {group_by!r}: {path} gives no {column!r} for {len(missing)} file(s), "
                        f"e.g. {missing[0]!r}")
    return [table[row["source_path"]] for row in rows]


def _components(rows: Sequence[dict[str, str]], ids: Sequence[str | None]) -> list[int]:
    """Group numbers: files sharing a dup_group or a --group-by id are one group (union-find)."""
    parent = list(range(len(rows)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first: dict[tuple[str, str], int] = {}
    for index, (row, group_id) in enumerate(zip(rows, ids)):
        for key in (("dup", row["dup_group"]), ("id", group_id)):
            if not key[1]:
                continue
            other = first.setdefault(key, index)  # type: ignore[arg-type]
            parent[find(index)] = find(other)
    roots = [find(index) for index in range(len(rows))]
    numbers: dict[int, int] = {}
    return [numbers.setdefault(root, len(numbers)) for root in roots]


def pooled_images(root: Path, split: str, class_names: Sequence[str], group_by: str | None) -> list[PooledImage]:
    """Every image of `class_names` the prepared `split` keeps, train, valid and test pooled."""
    rows = [row for row in read_manifest(root) if row[f"{split}_keep"] == "1" and row["class"] in class_names]
    rows.sort(key=lambda row: row["image"])
    groups = _components(rows, _group_ids(rows, group_by))
    return [PooledImage(row["image"], list(class_names).index(row["class"]), group, row["source_path"],
                        row["dup_group"]) for row, group in zip(rows, groups)]


def _grouped_split(labels: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int,
                   what: str, class_names: Sequence[str]) -> list[np.ndarray]:
    """The test indices of each of `n_splits` stratified, grouped folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    for label in np.unique(labels):
        count = len(np.unique(groups[labels == label]))
        if count < n_splits:
            raise FoldError(f"{what}: class {class_names[int(label)]!r} has {count} independent group(s), fewer than the "
                            f"{n_splits} folds asked for; lower --folds (or raise --val-fraction)")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [test for _, test in splitter.split(np.zeros(len(labels)), labels, groups)]


def plan_folds(root: str | Path, split: str | None, class_names: Sequence[str], options: FoldOptions) -> FoldPlan:
    """Deal the pooled images of a prepared folder into R x K folds; deterministic given the options."""
    root = Path(root)
    split = str(read_prepare_options(root)["split"]) if split is None else split
    if options.folds < 2 or options.repeats < 1:
        raise FoldError(f"--folds {options.folds} --repeats {options.repeats}: need at least 2 folds and 1 repeat")
    if not 0 < options.val_fraction < 1:
        raise FoldError(f"--val-fraction {options.val_fraction}: must be in (0, 1)")
    images = pooled_images(root, split, class_names, options.group_by)
    if not images:
        raise FoldError(f"{root / MANIFEST_NAME}: no images of {', '.join(class_names)} in the {split} split")
    labels = np.array([item.label for item in images])
    groups = np.array([item.group for item in images])
    names = np.array([item.image for item in images])
    n_valid = max(2, round(1 / options.val_fraction))
    folds = []
    for repeat in range(options.repeats):
        tests = _grouped_split(labels, groups, options.folds, _seed(options.seed, repeat),
                               f"--folds {options.folds} on {root}", class_names)
        for index, test in enumerate(tests):
            rest = np.setdiff1d(np.arange(len(images)), test)
            valid = rest[_grouped_split(labels[rest], groups[rest], n_valid, _seed(options.seed, repeat, index, 1),
                                        f"--val-fraction {options.val_fraction} in fold {index}", class_names)[0]]
            train = np.setdiff1d(rest, valid)
            folds.append(Fold(repeat, index, *(tuple(sorted(names[part])) for part in (train, valid, test))))
    return FoldPlan(split, tuple(class_names), options, tuple(images), tuple(folds))
