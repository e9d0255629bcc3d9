"""The arms' building blocks: nested real subsets, the classic augmentation recipe and its copies,
and real-image equivalents read off a constructed learning curve."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augstudy.classify.classic import ClassicRecipe, augment, classic_pool, copies_per_image
from augstudy.classify.data import LabelledImage, read_prepared
from augstudy.classify.equivalence import (
    FILES_UNIT,
    UNIQUE_UNIT,
    curve_axis,
    describe,
    equivalent_interval,
    is_flat,
    mapped_interval,
    mean_distinct_per_class,
    real_equivalent,
    span,
)
from augstudy.classify.features import ImageRef
from augstudy.classify.sweep import nested_real_subset
from augstudy.classify.toydata import write_toy_study


def _train(per_class: tuple[int, ...]) -> list[LabelledImage]:
    items = []
    for label, count in enumerate(per_class):
        items += [LabelledImage(ImageRef(Path(f"{label}-{i}.png"), f"{label:02d}{i:062d}"), label) for i in range(count)]
    return items


def test_real_subsets_are_nested_per_seed_with_counts_per_class() -> None:
    train = _train((20, 13))
    for seed in (0, 1):
        subsets = [nested_real_subset(train, 2, fraction, seed) for fraction in (25, 50, 75, 100)]
        for smaller, larger in itertools.pairwise(subsets):
            assert set(map(id, smaller)) < set(map(id, larger))
        counts = [[sum(item.label == label for item in subset) for label in (0, 1)] for subset in subsets]
        assert counts == [[5, 3], [10, 7], [15, 10], [20, 13]]  # round halves up: 3.25 -> 3, 6.5 -> 7
        assert subsets[-1] == train
    assert nested_real_subset(train, 2, 50, 0) != nested_real_subset(train, 2, 50, 1)
    assert [item.label for item in nested_real_subset(train, 2, 1, 0)] == [0, 1]  # at least one a class


def test_the_classic_recipe_is_seeded_keeps_shape_and_keeps_grey_images_grey() -> None:
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (24, 24, 1), dtype=np.uint8), 3, axis=2)
    recipe = ClassicRecipe()
    first = augment(grey, np.random.default_rng(1), recipe)
    assert first.shape == grey.shape and first.dtype == np.uint8
    assert np.array_equal(first, augment(grey, np.random.default_rng(1), recipe))
    assert not np.array_equal(first, augment(grey, np.random.default_rng(2), recipe))
    assert not np.array_equal(first, grey)
    assert np.array_equal(first[:, :, 0], first[:, :, 1]) and np.array_equal(first[:, :, 1], first[:, :, 2])
    flip_only = ClassicRecipe(flip_probability=1.0, max_rotation_degrees=0, scale_range=0, brightness=0,
                              contrast_range=0, noise_std=0)
    assert np.array_equal(augment(grey, np.random.default_rng(0), flip_only), grey[:, ::-1])


def test_classic_copies_are_made_once_per_image_and_class(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path / "toy", train=3, valid=1, test=1, pool=0, size=16, duplicates=0)
    data = read_prepared(study.data)
    assert copies_per_image(100) == 1 and copies_per_image(150) == 2 and copies_per_image(0) == 1
    pool = classic_pool(data.subsets["train"], data.class_names, tmp_path / "classic", 2, ClassicRecipe())
    assert {name: len(refs) for name, refs in pool.items()} == {"normal": 6, "tumour": 6}
    assert all(ref.path.parent.name == name for name, refs in pool.items() for ref in refs)
    stamps = {ref.path: ref.path.stat().st_mtime_ns for refs in pool.values() for ref in refs}
    again = classic_pool(data.subsets["train"], data.class_names, tmp_path / "classic", 2, ClassicRecipe())
    assert again == pool and {path: path.stat().st_mtime_ns for path in stamps} == stamps  # not rewritten
    elsewhere = classic_pool(data.subsets["train"], data.class_names, tmp_path / "other", 2, ClassicRecipe())
    assert [ref.sha256 for ref in elsewhere["normal"]] == [ref.sha256 for ref in pool["normal"]]  # seeded
    source = np.asarray(Image.open(data.subsets["train"][0].ref.path).convert("RGB"))
    copy = np.asarray(Image.open(pool["normal"][0].path))
    assert copy.shape == source.shape and not np.array_equal(copy, source)


COUNTS = np.array([10.0, 20.0, 30.0, 40.0])
CURVE = np.array([0.60, 0.70, 0.75, 0.80])


def test_real_image_equivalent_reads_the_gain_at_the_top_of_the_fitted_curve() -> None:
    # a gain of 0.05 is what the last 10 images brought (30 -> 40: 0.75 -> 0.80); 0.025 is half of that
    assert real_equivalent(COUNTS, CURVE, 0.05) == pytest.approx(10.0)
    assert real_equivalent(COUNTS, CURVE, 0.025) == pytest.approx(5.0)
    # a dip is pooled with its neighbour (isotonic regression): 20 and 30 images both read 0.675, so a
    # gain of 0.05 (target 0.75) lies 0.6 of the way from 30 to 40 images: 36, i.e. the last 4 images
    assert real_equivalent(COUNTS, np.array([0.6, 0.7, 0.65, 0.8]), 0.05) == pytest.approx(4.0)


def test_real_image_equivalent_is_anchored_at_the_fit_and_never_negative() -> None:
    """The issue's curve 0.90, 0.95, 0.97, 0.96: a GAN value equal to the baseline read "-50.5 real
    images per class" when anchored at the raw 100 % point."""
    curve = np.array([0.90, 0.95, 0.97, 0.96])
    assert real_equivalent(COUNTS, curve, 0.0) == 0.0
    assert real_equivalent(COUNTS, curve, -0.04) == 0.0 and describe(0.0, 30) == "no gain: 0 distinct real images per class"
    # fitted: 0.90, 0.95, 0.965, 0.965; a gain of 0.005 reads at 0.96, 2/3 of the way from 20 to 30 images
    assert real_equivalent(COUNTS, curve, 0.005) == pytest.approx(40 - (20 + 10 * 0.01 / 0.015))


def test_a_gain_beyond_the_curve_is_one_sided() -> None:
    assert real_equivalent(COUNTS, CURVE, 0.20) == pytest.approx(30.0)
    assert real_equivalent(COUNTS, CURVE, 0.25) == float("inf")
    assert describe(float("inf"), span(COUNTS)) == ("at least 30.0 distinct real images per class (beyond the "
                                                    "curve's span)")
    assert describe(15.0, 30) == "15.0 distinct real images per class"


def test_a_lucky_small_data_point_does_not_set_the_curve() -> None:
    # 25 % of the real data scored above 50 % and 75 % by chance: the three are pooled (0.70333 at 10 to 30
    # images), so a gain of 0.08 (target 0.72) reads between 30 and 40 images, not at 10
    noisy = np.array([0.72, 0.69, 0.70, 0.80])
    pooled = (0.72 + 0.69 + 0.70) / 3
    assert real_equivalent(COUNTS, noisy, 0.08) == pytest.approx(40 - (30 + 10 * (0.72 - pooled) / (0.80 - pooled)))


def test_a_flat_learning_curve_gives_no_equivalent() -> None:
    # More real images never helped (the isotonic fit is one pooled level): the curve cannot say how many
    # real images any gain is worth.
    flat = np.array([0.99, 0.98, 0.98, 0.975])
    assert all(np.isnan(real_equivalent(COUNTS, flat, gain)) for gain in (0.003, 0.0, 0.01, -0.005))
    assert is_flat(COUNTS, flat) and not is_flat(COUNTS, CURVE)
    # replicates whose curve is flat cannot narrow the interval: they count as unbounded on both sides
    curves = np.stack([CURVE, CURVE, flat, flat], axis=1)
    low, high = equivalent_interval(COUNTS, curves, np.array([0.05, 0.05, 0.01, 0.01]), level=0.5)
    assert low == 0.0 and high == float("inf")


def test_equivalent_interval_follows_the_bootstrap_replicates() -> None:
    curves = np.repeat(CURVE[:, None], 4, axis=1)
    gains = np.array([0.025, 0.05, 0.10, 0.30])  # the last replicate is beyond the curve
    low, high = equivalent_interval(COUNTS, curves, gains, level=0.5)
    assert low == pytest.approx(5.0) and high == pytest.approx(20.0)  # of 5, 10, 20, beyond
    _, high = equivalent_interval(COUNTS, curves, gains, level=0.95)
    assert high == float("inf")


def test_the_answer_does_not_call_a_ratio_that_beats_0_percent_below_a_flat_curve() -> None:
    # the committed dedup chest CT case: real 25-100 % score 0.989, 0.981, 0.985, 0.976 (flat fit), and
    # GAN 25 % scores 0.981, above the full-data classifier
    from augstudy.classify.report import real_equivalents

    rows = [{"arm": "real", "ratio": 0, "real_fraction": fraction, "metric": "balanced_accuracy", "mean": mean,
             "n_real_per_class": 92.5 * fraction / 100}
            for fraction, mean in ((25, 0.989), (50, 0.981), (75, 0.985), (100, 0.976))]
    rows.append({"arm": "gan", "ratio": 25, "real_fraction": 100, "metric": "balanced_accuracy", "mean": 0.981,
                 "mean_difference": 0.005, "n_real_per_class": 92.5})
    replicated = {("real", 0, row["real_fraction"]): {"balanced_accuracy": np.full(10, row["mean"])}
                  for row in rows[:4]} | {("gan", 25, 100): {"balanced_accuracy": np.full(10, 0.981)}}
    [item] = real_equivalents(pd.DataFrame(rows), replicated, "balanced_accuracy")
    assert np.isnan(item["equivalent"]) and item["words"].startswith("not readable")
    assert "below the curve" not in item["words"]
    from augstudy.classify.report import answer_sentence

    summary = pd.DataFrame(rows).assign(mean_difference=np.nan, diff_ci_low=np.nan, diff_ci_high=np.nan,
                                        p_holm=np.nan)
    sentence = answer_sentence(summary, "balanced_accuracy", "squamous", [item])
    assert "none can be read" in sentence and "below the curve" not in sentence
    # the full real train set alone (--real-fractions 100) is one point, not a curve: no equivalents
    single = pd.DataFrame(rows[3:])
    assert real_equivalents(single, {key: value for key, value in replicated.items() if key[2] == 100},
                            "balanced_accuracy") == []


def test_distinct_counts_follow_the_duplicate_groups_of_the_manifest(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path / "toy", train=4, valid=1, test=1, pool=0, size=16, train_duplicates=2)
    official, dedup = read_prepared(study.data, "official"), read_prepared(study.data, "dedup")
    assert official.real_counts() == {"normal": 6, "tumour": 6}  # files, copies included
    assert official.distinct_counts(official.subsets["train"]) == {"normal": 4, "tumour": 4}
    assert dedup.distinct_counts(dedup.subsets["train"]) == dedup.real_counts() == {"normal": 4, "tumour": 4}
    copies = [item for item in official.subsets["train"] if "_copy" in item.ref.path.name]
    assert official.distinct_counts(copies) == {"normal": 2, "tumour": 2}


def _curve_rows(unique: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"real_fraction": [25, 50, 100], "n_real_per_class": [10.0, 20.0, 40.0],
                         "n_unique_per_class": unique})


def test_the_curve_reads_distinct_images_and_older_cells_fall_back_to_labelled_file_counts() -> None:
    counts, unit = curve_axis(_curve_rows([4.0, 8.0, 16.0]))
    assert counts.tolist() == [4.0, 8.0, 16.0] and unit == UNIQUE_UNIT
    counts, unit = curve_axis(_curve_rows([4.0, np.nan, 16.0]))  # one point from cells without the field
    assert counts.tolist() == [10.0, 20.0, 40.0] and unit == FILES_UNIT and "duplicate copies counted" in unit
    counts, unit = curve_axis(_curve_rows([4.0, 8.0, 16.0]).drop(columns="n_unique_per_class"))
    assert unit == FILES_UNIT
    cells = [{"unique_train_images": {"a": 3, "b": 5}}, {"unique_train_images": {"a": 5, "b": 7}}]
    assert mean_distinct_per_class(cells) == 5.0
    assert np.isnan(mean_distinct_per_class([*cells, {"n_real": 8}]))


def test_a_cv_gain_interval_maps_to_an_equivalent_interval_holding_the_true_equivalent() -> None:
    # the true gain 0.05 is worth the last 10 images (30 -> 40: 0.75 -> 0.80); the gain's interval
    # 0.025 to 0.10 reads 5 to 20 images, and holds the true 10
    low, high = mapped_interval(COUNTS, CURVE, 0.025, 0.10)
    assert low == pytest.approx(5.0) and high == pytest.approx(20.0) and low <= 10.0 <= high
    assert mapped_interval(COUNTS, CURVE, 0.10, 0.025) == (low, high)  # a lower-is-better metric's flipped ends
    low, high = mapped_interval(COUNTS, CURVE, -0.02, 0.30)  # a gain possibly 0 or beyond the curve
    assert low == 0.0 and high == float("inf")
    assert all(np.isnan(mapped_interval(COUNTS, np.array([0.9, 0.9, 0.9, 0.9]), 0.01, 0.02)))


def test_cv_real_equivalents_get_the_mapped_interval_in_the_answer() -> None:
    """Before, the cv design's equivalents had no interval (the bootstrap is split-only)."""
    from augstudy.classify.report import real_equivalents

    rows = [{"arm": "real", "ratio": 0, "real_fraction": fraction, "metric": "balanced_accuracy", "mean": mean,
             "n_real_per_class": count, "n_unique_per_class": count}
            for fraction, mean, count in zip((25, 50, 75, 100), CURVE, COUNTS)]
    rows.append({"arm": "gan", "ratio": 50, "real_fraction": 100, "metric": "balanced_accuracy", "mean": 0.85,
                 "mean_difference": 0.05, "diff_ci_low": 0.025, "diff_ci_high": 0.10, "n_real_per_class": 40.0,
                 "n_unique_per_class": 40.0})
    [item] = real_equivalents(pd.DataFrame(rows), None, "balanced_accuracy")
    assert item["equivalent"] == pytest.approx(10.0)
    assert item["ci_low"] == pytest.approx(5.0) and item["ci_high"] == pytest.approx(20.0)
    assert item["interval_words"] == "5.0 distinct real images per class to 20.0 distinct real images per class"
