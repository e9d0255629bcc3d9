"""How many synthetic images a ratio adds and which ones a seed picks."""

from __future__ import annotations

from pathlib import Path

import pytest

from augstudy.classify.features import ImageRef
from augstudy.classify.mixing import (
    PoolTooSmallError,
    check_pool,
    sample_synthetic,
    synthetic_count,
    synthetic_counts,
)

CLASSES = ("normal", "tumour")


def _pool(sizes: dict[str, int]) -> dict[str, list[ImageRef]]:
    return {name: [ImageRef(Path(f"{name}/{i}.png"), f"{name}{i:060d}") for i in range(size)]
            for name, size in sizes.items()}


def test_synthetic_count_rounds_half_up_exactly() -> None:
    assert synthetic_count(25, 150) == 38  # 37.5 rounds up
    assert synthetic_count(25, 10) == 3  # 2.5 rounds up (Python's round() would give 2)
    assert synthetic_count(12.5, 4) == 1  # 0.5 exactly, no float error
    assert synthetic_count(100, 151) == 151
    assert synthetic_count(0, 151) == 0
    assert synthetic_counts(50, {"normal": 150, "tumour": 151}) == {"normal": 75, "tumour": 76}


def test_sampling_is_seeded_nested_and_per_class() -> None:
    pool = _pool({"normal": 20, "tumour": 20})
    small = sample_synthetic(pool, {"normal": 3, "tumour": 2}, CLASSES, seed=4)
    large = sample_synthetic(pool, {"normal": 6, "tumour": 4}, CLASSES, seed=4)
    assert [label for _, label in small] == [0, 0, 0, 1, 1]
    assert {ref for ref, _ in small} <= {ref for ref, _ in large}
    assert sample_synthetic(pool, {"normal": 3, "tumour": 2}, CLASSES, seed=4) == small
    other = sample_synthetic(pool, {"normal": 6, "tumour": 4}, CLASSES, seed=5)
    assert {ref for ref, _ in other} != {ref for ref, _ in large}
    assert all(ref.path.parts[0] == CLASSES[label] for ref, label in large)
    assert len({ref for ref, _ in large}) == len(large)  # without replacement


def test_too_small_pool_names_missing_counts_per_class() -> None:
    pool = _pool({"normal": 10, "tumour": 3})
    check_pool(pool, {"normal": 10, "tumour": 3}, [0, 100])
    with pytest.raises(PoolTooSmallError) as error:
        check_pool(pool, {"normal": 12, "tumour": 8}, [0, 50, 100], pool_name="pool P")
    message = str(error.value)
    assert "pool P is too small for 100% synthetic" in message
    assert "'normal' needs 12, has 10 (missing 2)" in message
    assert "'tumour' needs 8, has 3 (missing 5)" in message
    with pytest.raises(PoolTooSmallError, match="'tumour' needs 4, has 0"):
        check_pool({"normal": pool["normal"]}, {"normal": 4, "tumour": 4}, [100])
