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
from augstudy.classify.equivalence import describe, equivalent_interval, is_flat, real_equivalent
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


def test_real_image_equivalent_inside_the_curve_interpolates() -> None:
    # 0.725 lies halfway between 20 (0.70) and 30 (0.75) images: 25, i.e. 15 fewer than the full 40
    assert real_equivalent(COUNTS, CURVE, 0.725, 40) == pytest.approx(-15.0)
    assert real_equivalent(COUNTS, CURVE, 0.70, 40) == pytest.approx(-20.0)
    # a dip is pooled with its neighbour (isotonic regression): 20 and 30 images both read 0.675, so
    # 0.75 lies 0.6 of the way from 30 (0.675) to 40 (0.80): 36 images, 4 fewer than the full 40
    assert real_equivalent(COUNTS, np.array([0.6, 0.7, 0.65, 0.8]), 0.75, 40) == pytest.approx(-4.0)


def test_a_lucky_small_data_point_does_not_set_the_curve() -> None:
    # 25 % of the real data scored above 50 % and 75 % by chance: the three are pooled (0.70333 at 10 to 30
    # images), so a GAN value of 0.72 reads between 30 and 40 images, not 10 (a peak the data cannot hold up)
    noisy = np.array([0.72, 0.69, 0.70, 0.80])
    pooled = (0.72 + 0.69 + 0.70) / 3
    assert real_equivalent(COUNTS, noisy, 0.72, 40) == pytest.approx(30 + 10 * (0.72 - pooled) / (0.80 - pooled) - 40)


def test_a_flat_learning_curve_gives_no_equivalent() -> None:
    # More real images never helped (the isotonic fit is one pooled level, 0.98125): the curve cannot say
    # how many real images any value is worth. A GAN value above the full-data point (0.975) must not read
    # "below the curve" (worth less than dropping 75 % of the real images), nor any value "beyond" it.
    flat = np.array([0.99, 0.98, 0.98, 0.975])
    assert all(np.isnan(real_equivalent(COUNTS, flat, value, 40)) for value in (0.978, 0.98125, 0.985, 0.97))
    assert is_flat(COUNTS, flat) and not is_flat(COUNTS, CURVE)
    # replicates whose curve is flat cannot narrow the interval: they count as unbounded on both sides
    curves = np.stack([CURVE, CURVE, flat, flat], axis=1)
    low, high = equivalent_interval(COUNTS, curves, np.array([0.70, 0.75, 0.978, 0.978]), 40, level=0.5)
    assert low == float("-inf") and high == float("inf")


def test_real_image_equivalent_at_the_edge_and_beyond() -> None:
    assert real_equivalent(COUNTS, CURVE, 0.80, 40) == 0.0
    assert real_equivalent(COUNTS, CURVE, 0.60, 40) == -30.0
    assert real_equivalent(COUNTS, CURVE, 0.81, 40) == float("inf") and describe(float("inf")) == "beyond the curve"
    assert real_equivalent(COUNTS, CURVE, 0.50, 40) == float("-inf") and describe(float("-inf")) == "below the curve"
    assert describe(-15.0) == "-15.0 real images per class"


def test_equivalent_interval_follows_the_bootstrap_replicates() -> None:
    curves = np.repeat(CURVE[:, None], 4, axis=1)
    values = np.array([0.70, 0.725, 0.75, 0.90])  # the last replicate is beyond the curve
    low, high = equivalent_interval(COUNTS, curves, values, 40, level=0.5)
    assert low == pytest.approx(-20.0) and high == pytest.approx(-10.0)
    _, high = equivalent_interval(COUNTS, curves, values, 40, level=0.95)
    assert high == float("inf")


def test_the_answer_does_not_call_a_ratio_that_beats_0_percent_below_a_flat_curve() -> None:
    # the committed dedup chest CT case: real 25-100 % score 0.989, 0.981, 0.985, 0.976 (flat fit), and
    # GAN 25 % scores 0.981, above the full-data classifier
    from augstudy.classify.report import real_equivalents

    rows = [{"arm": "real", "ratio": 0, "real_fraction": fraction, "metric": "balanced_accuracy", "mean": mean,
             "n_real_per_class": 92.5 * fraction / 100}
            for fraction, mean in ((25, 0.989), (50, 0.981), (75, 0.985), (100, 0.976))]
    rows.append({"arm": "gan", "ratio": 25, "real_fraction": 100, "metric": "balanced_accuracy", "mean": 0.981,
                 "n_real_per_class": 92.5})
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
