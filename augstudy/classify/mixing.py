"""How many synthetic images a ratio adds, and which ones a seed picks.

"r % synthetic" adds, for each class, round(r / 100 x that class's real train count) images from
the pool (halves round up). For one seed the picks are nested: the images of 25 % are the first
of those of 50 %, so ratios differ only by the images they add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from augstudy.classify.features import ImageRef


class PoolTooSmallError(ValueError):
    """The pool lacks images for a ratio; the message lists what is missing per class."""


def synthetic_count(ratio: float, real_count: int) -> int:
    """round(ratio / 100 x real_count), halves up, computed exactly (12.5 % of 4 is 1 / 2 -> 1)."""
    return math.floor(Fraction(str(ratio)) * real_count / 100 + Fraction(1, 2))


def synthetic_counts(ratio: float, real_counts: Mapping[str, int]) -> dict[str, int]:
    return {name: synthetic_count(ratio, count) for name, count in real_counts.items()}


def check_pool(pool: Mapping[str, Sequence[ImageRef]], real_counts: Mapping[str, int], ratios: Sequence[float],
               pool_name: str = "the pool") -> None:
    """Raise `PoolTooSmallError` naming, per class, how many images the largest ratio misses."""
    largest = max(ratios)
    needed = synthetic_counts(largest, real_counts)
    missing = {name: count - len(pool.get(name, ())) for name, count in needed.items()}
    missing = {name: count for name, count in missing.items() if count > 0}
    if missing:
        details = "; ".join(
            f"class {name!r} needs {needed[name]}, has {len(pool.get(name, ()))} (missing {count})"
            for name, count in missing.items()
        )
        raise PoolTooSmallError(f"{pool_name} is too small for {largest:g}% synthetic: {details}")


def sample_synthetic(
    pool: Mapping[str, Sequence[ImageRef]], counts: Mapping[str, int], class_names: Sequence[str], seed: int
) -> list[tuple[ImageRef, int]]:
    """(image, class index) picks for one cell: per class a seeded permutation of the pool, of
    which the first `counts[class]` are taken."""
    picks: list[tuple[ImageRef, int]] = []
    for label, name in enumerate(class_names):
        wanted = counts.get(name, 0)
        if wanted == 0:
            continue
        available = pool[name]
        order = np.random.default_rng([seed, label]).permutation(len(available))
        picks.extend((available[index], label) for index in order[:wanted])
    return picks
