"""Reading a synthetic pool's manifest and choosing which images to publish.

The manifest `augstudy generate` writes is the only record of which seed and snapshot made each
image, so publishing requires it: a folder of PNGs alone could not be given a datasheet.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from augstudy.publish.errors import PublishError

# The pool manifest's columns; the published manifest keeps the same ones (file names, not paths).
POOL_COLUMNS = ("file", "class", "seed", "snapshot", "snapshot_sha256", "truncation", "noise_mode", "sha256")
_CLASS_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class PoolImage:
    """One row of POOL/manifest.csv."""

    file: str
    class_name: str
    seed: int
    snapshot: str
    snapshot_sha256: str
    truncation: str
    noise_mode: str
    sha256: str


def read_pool(pool: Path) -> list[PoolImage]:
    """All rows of POOL/manifest.csv, checked for the columns and values publishing relies on."""
    manifest = pool / "manifest.csv"
    if not manifest.is_file():
        raise PublishError(
            f"{manifest} not found: publish needs the manifest `augstudy generate` writes (seed, snapshot "
            "and hash of every image) to document where the images come from. Point --pool at a pool "
            "made by `augstudy generate`."
        )
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in POOL_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PublishError(
                f"{manifest} lacks the columns {', '.join(missing)} (expected: {', '.join(POOL_COLUMNS)})"
            )
        rows = list(reader)
    images: list[PoolImage] = []
    seen: set[tuple[str, int]] = set()
    for line, row in enumerate(rows, start=2):
        where = f"{manifest}, line {line}"
        if not _CLASS_NAME.fullmatch(row["class"] or ""):
            raise PublishError(
                f"{where}: class {row['class']!r} is not usable as a folder name "
                "(letters, digits, '.', '-', '_')"
            )
        try:
            seed = int(row["seed"])
        except ValueError:
            raise PublishError(f"{where}: seed {row['seed']!r} is not an integer") from None
        if (row["class"], seed) in seen:
            raise PublishError(f"{where}: class {row['class']!r} seed {seed} appears twice")
        seen.add((row["class"], seed))
        if not row["file"] or not row["sha256"]:
            raise PublishError(f"{where}: empty file or sha256")
        images.append(
            PoolImage(
                file=row["file"],
                class_name=row["class"],
                seed=seed,
                snapshot=row["snapshot"],
                snapshot_sha256=row["snapshot_sha256"],
                truncation=row["truncation"],
                noise_mode=row["noise_mode"],
                sha256=row["sha256"],
            )
        )
    if not images:
        raise PublishError(f"{manifest} lists no images")
    return images


def select_images(
    images: list[PoolImage],
    per_class: int,
    classes: tuple[str, ...] = (),
    exclude: frozenset[str] = frozenset(),
) -> dict[str, list[PoolImage]]:
    """The `per_class` lowest seeds of each class (all classes, or `classes` in that order),
    skipping the pool files in `exclude`.

    Lowest seeds first makes the published set a pure function of the pool and N, and the same
    images the original study's "first N" generation would give.
    """
    by_class: dict[str, list[PoolImage]] = {}
    for image in images:
        by_class.setdefault(image.class_name, []).append(image)
    wanted = classes or tuple(sorted(by_class))
    unknown = [name for name in wanted if name not in by_class]
    if unknown:
        raise PublishError(
            f"class(es) {', '.join(unknown)} not in the pool; it has {', '.join(sorted(by_class))}"
        )
    selection: dict[str, list[PoolImage]] = {}
    for name in wanted:
        available = sorted(
            (image for image in by_class[name] if image.file not in exclude), key=lambda image: image.seed
        )
        if len(available) < per_class:
            excluded = len(by_class[name]) - len(available)
            raise PublishError(
                f"class {name!r} has {len(available)} images in the pool"
                + (f" (after leaving out {excluded} flagged near-copies)" if excluded else "")
                + f" but --per-class is {per_class}; generate more (augstudy generate --per-class N) "
                "or lower --per-class"
            )
        selection[name] = available[:per_class]
    return selection
