"""The warnings a reviewer would raise about a sweep's data, as plain sentences.

- A validation or test class with fewer than `MIN_EVAL_IMAGES` images: early stopping and the
  test metrics then move by whole images (one normal test image of 6 is 17 points of sensitivity).
- Validation or test images that duplicate train images (prepare's manifest records exact copies
  by content hash and exact/near copies as `dup_group`): early stopping rewards memorising them
  and test metrics overstate generalisation.
- Train classes more unbalanced than `MAX_IMBALANCE` : 1, with `--class-weight balanced` offered.
"""

from __future__ import annotations

from collections import Counter

from augstudy.classify.data import PreparedData
from augstudy.data.prepared import read_manifest

MIN_EVAL_IMAGES = 10
MAX_IMBALANCE = 2.0


def small_classes(data: PreparedData, where: str | None = None) -> list[str]:
    warnings = []
    where = where or f"the {data.split} split"
    for subset, name in (("valid", "validation"), ("test", "test")):
        counts = data.real_counts(subset)
        small = {cls: n for cls, n in counts.items() if n < MIN_EVAL_IMAGES}
        if small:
            listed = ", ".join(f"{cls!r} has {n}" for cls, n in small.items())
            warnings.append(
                f"Small {name} class(es) on {where}: {listed} image(s) (fewer than "
                f"{MIN_EVAL_IMAGES}); each image moves that class's {name} metrics by a large step."
            )
    return warnings


def train_duplicates(data: PreparedData) -> dict[str, int]:
    """Per subset (valid, test): kept images that are copies of a kept train image, by content
    hash, pixel hash or prepare's duplicate group."""
    keep = f"{data.split}_keep"
    rows = [row for row in read_manifest(data.root) if row[keep] == "1"]
    train = [row for row in rows if row["split"] == "train"]
    keys = {("sha", row["sha256"]) for row in train} | {("pix", row["pixel_sha256"]) for row in train if
                                                         row["pixel_sha256"]}
    keys |= {("group", row["dup_group"]) for row in train if row["dup_group"]}
    counts = {}
    for subset in ("valid", "test"):
        counts[subset] = sum(
            bool({("sha", row["sha256"]), ("pix", row["pixel_sha256"]), ("group", row["dup_group"])} & keys)
            for row in rows if row["split"] == subset
        )
    return counts


def leaks(data: PreparedData) -> list[str]:
    warnings = []
    for subset, count in train_duplicates(data).items():
        if count:
            name = "validation" if subset == "valid" else "test"
            total = len(data.subsets[subset])
            warnings.append(
                f"{count} of {total} {name} images on the {data.split} split duplicate train images "
                f"(exact or near copies, per prepare's manifest); "
                + ("early stopping rewards memorising them. " if subset == "valid" else
                   "test metrics overstate how well the classifier generalises. ")
                + ("Use --split dedup." if data.split != "dedup" else "")
            )
    return [warning.strip() for warning in warnings]


def imbalance(data: PreparedData, class_weight: str) -> list[str]:
    counts = data.real_counts("train")
    largest, smallest = max(counts.values()), min(counts.values())
    if smallest and largest / smallest <= MAX_IMBALANCE:
        return []
    listed = ", ".join(f"{cls!r} {n}" for cls, n in Counter(counts).most_common())
    advice = ("--class-weight balanced is on." if class_weight == "balanced"
              else "Consider --class-weight balanced.")
    warning = (f"The train classes are unbalanced beyond {MAX_IMBALANCE:g}:1 ({listed} images); "
               f"accuracy then rewards predicting the large class. {advice}")
    return [warning]


def data_warnings(data: PreparedData, class_weight: str = "none", fold: str | None = None) -> list[str]:
    """Every warning about `data`, in the order small classes, duplicates, imbalance. For a cv `fold`
    no duplicate check: the folds keep each duplicate group on one side."""
    if fold is not None:
        return small_classes(data, f"cv fold {fold} ({data.split} images)") + imbalance(data, class_weight)
    return small_classes(data) + leaks(data) + imbalance(data, class_weight)
