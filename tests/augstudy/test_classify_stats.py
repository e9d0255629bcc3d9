"""Sweep statistics: the paired bootstrap draws over test images and seeds (the real-image
equivalents' intervals), the vectorised weighted metrics, Holm's correction, and the answer's
verdict words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from augstudy.classify.metrics import METRICS, classification_metrics
from augstudy.classify.report import answer_sentence
from augstudy.classify.stats import (
    BootstrapDraws,
    draw_bootstrap,
    holm,
    per_seed_replicates,
    replicate_values,
    weighted_metrics,
)


def test_holm_steps_down_and_keeps_monotone_order() -> None:
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    # sorted p: 0.01 (x3), 0.03 (x2), 0.04 (x1), each at least the previous adjusted value
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_weighted_metrics_equal_sklearn_metrics_on_the_repeated_images(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    y_true = np.repeat(np.arange(n_classes), 6)
    proba = rng.dirichlet(np.ones(n_classes), size=len(y_true))
    proba[:3] = proba[3]  # ties in the scores
    draws = draw_bootstrap(y_true, n_seeds=1, replicates=25, seed=1)
    fast = weighted_metrics(y_true, proba, positive=1, weights=draws.weights)
    for b, weights in enumerate(draws.weights):
        rows = np.repeat(np.arange(len(y_true)), weights.astype(int))
        direct = classification_metrics(y_true[rows], proba[rows], positive=1)
        for name in METRICS:
            assert fast[name][b] == pytest.approx(direct[name], nan_ok=True), name


def test_draws_are_stratified_by_class_and_seeded() -> None:
    y_test = np.array([0] * 3 + [1] * 7)
    draws = draw_bootstrap(y_test, n_seeds=4, replicates=200, seed=3)
    assert (draws.weights[:, :3].sum(axis=1) == 3).all() and (draws.weights[:, 3:].sum(axis=1) == 7).all()
    assert draws.seeds.shape == (200, 4) and draws.seeds.max() < 4
    again = draw_bootstrap(y_test, n_seeds=4, replicates=200, seed=3)
    assert np.array_equal(draws.weights, again.weights) and np.array_equal(draws.seeds, again.seeds)


def test_paired_bootstrap_agrees_with_a_direct_computation_on_a_fixed_example() -> None:
    """Two seeds, four test images, two replicates written out by hand."""
    y_test = np.array([0, 0, 1, 1])
    # (seed, image) -> probability of class 1; "reference" = the 0 % cells, "group" = another ratio
    reference = [np.array([0.2, 0.6, 0.7, 0.4]), np.array([0.1, 0.3, 0.8, 0.9])]
    group = [np.array([0.2, 0.3, 0.7, 0.9]), np.array([0.6, 0.3, 0.4, 0.9])]
    draws = BootstrapDraws(seeds=np.array([[0, 0], [1, 0]]),
                           weights=np.array([[2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 2.0]]))

    def as_cells(p_one):
        return [{"proba": np.stack([1 - p, p], axis=1)} for p in p_one]

    def direct(p_one, b):
        rows = np.repeat(np.arange(4), draws.weights[b].astype(int))
        return np.mean([classification_metrics(y_test[rows], np.stack([1 - p_one[s], p_one[s]], 1)[rows], 1)
                        ["balanced_accuracy"] for s in draws.seeds[b]])

    group_reps = per_seed_replicates(as_cells(group), y_test, 1, draws)["balanced_accuracy"]
    reference_reps = per_seed_replicates(as_cells(reference), y_test, 1, draws)["balanced_accuracy"]
    expected_group = [direct(group, b) for b in range(2)]
    expected_reference = [direct(reference, b) for b in range(2)]
    assert replicate_values(group_reps, draws) == pytest.approx(expected_group)
    # replicate 0: seed 0 twice on images (0, 0, 2, 3): group 1.0, reference 0.75
    assert expected_group[0] == pytest.approx(1.0) and expected_reference[0] == pytest.approx(0.75)
    assert replicate_values(reference_reps, draws) == pytest.approx(expected_reference)


def _primary_rows(differences: dict[float, tuple[float, float]]) -> pd.DataFrame:
    """A summary's primary-metric rows for the gan arm: ratio -> (mean difference, Holm p)."""
    rows = [{"arm": "gan", "ratio": 0, "real_fraction": 100, "metric": "balanced_accuracy", "mean": 0.80,
             "mean_difference": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan, "p_holm": np.nan}]
    for ratio, (difference, p_holm) in differences.items():
        rows.append({"arm": "gan", "ratio": ratio, "real_fraction": 100, "metric": "balanced_accuracy",
                     "mean": 0.80 + difference, "mean_difference": difference, "diff_ci_low": difference - 0.02,
                     "diff_ci_high": difference + 0.02, "p_holm": p_holm})
    return pd.DataFrame(rows)


def test_the_answer_names_a_ratio_that_is_significantly_worse_than_0_percent() -> None:
    worse = answer_sentence(_primary_rows({25: (0.01, 0.6), 50: (-0.20, 0.002)}), "balanced_accuracy", "tumour", [])
    assert "no ratio differs from 0 %" not in worse
    assert "worse than 0 %: 50 %" in worse
    neither = answer_sentence(_primary_rows({25: (0.01, 0.6), 50: (-0.02, 0.4)}), "balanced_accuracy", "tumour", [])
    assert "no ratio differs from 0 %" in neither
    better = answer_sentence(_primary_rows({25: (0.10, 0.01), 50: (-0.20, 0.002)}), "balanced_accuracy", "tumour", [])
    assert "better than 0 %: 25 %" in better and "worse than 0 %: 50 %" in better
