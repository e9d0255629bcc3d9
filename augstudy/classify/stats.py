"""Intervals and paired comparisons that include test-set sampling: a bootstrap over test images
(stratified by class) and seeds.

Replicate b draws the seeds with replacement and, independently, the test images with
replacement within each class. The *same* draw is applied to every cell of the sweep, so the
difference between two ratios (or arms) in replicate b is a paired difference: it compares the two
classifiers on the same resampled test images and seeds. A metric's replicate value is the mean
over the drawn seeds of that seed's metric on the drawn test images (computed from multiplicity
weights, `weighted_metrics`). Intervals are percentile intervals of the replicates, so a metric
bounded to [0, 1] keeps an interval inside [0, 1]. The p-value of a difference is the two-sided
bootstrap p-value, 2 x min(share of replicates <= 0, share >= 0), with the +1 correction of
Davison & Hinkley (1997), so it is never 0: the smallest value B replicates can show is 2/(B+1).
A seed-only t-interval (test images held fixed) is kept as an extra, labelled column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from augstudy.classify.metrics import EPSILON, METRICS

BOOTSTRAP_METHOD = "paired bootstrap over test images (stratified by class) and seeds"


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The seed-only t-based confidence interval of the mean; NaN for fewer than 2 values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaNs stay NaN and do not count as tests)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class BootstrapDraws:
    """The resampling shared by every cell: `seeds[b]` indexes the seed list, `weights[b, i]` is
    how often test image i is drawn in replicate b (each class keeps its size)."""

    seeds: np.ndarray  # (B, n_seeds) int
    weights: np.ndarray  # (B, n_test) float64 counts


def draw_bootstrap(y_test: np.ndarray, n_seeds: int, replicates: int, seed: int = 0) -> BootstrapDraws:
    """Seeded draws of seeds and of test images stratified by class."""
    rng = np.random.default_rng([seed, 7321])
    y_test = np.asarray(y_test)
    weights = np.zeros((replicates, len(y_test)))
    for label in np.unique(y_test):
        members = np.flatnonzero(y_test == label)
        picks = rng.integers(0, len(members), size=(replicates, len(members)))
        for column in range(len(members)):
            np.add.at(weights, (np.arange(replicates), members[picks[:, column]]), 1.0)
    seeds = rng.integers(0, n_seeds, size=(replicates, n_seeds))
    return BootstrapDraws(seeds, weights)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _weighted_auc(is_positive: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per row of `weights` (ties count half), as the weighted Mann-Whitney statistic."""
    pos, neg = np.flatnonzero(is_positive), np.flatnonzero(~is_positive)
    if not len(pos) or not len(neg):
        return np.full(len(weights), np.nan)
    wins = (score[pos, None] > score[None, neg]) + 0.5 * (score[pos, None] == score[None, neg])
    w_pos, w_neg = weights[:, pos], weights[:, neg]
    return _ratio(np.einsum("bp,pn,bn->b", w_pos, wins, w_neg), w_pos.sum(1) * w_neg.sum(1))


def weighted_metrics(
    y_true: np.ndarray, proba: np.ndarray, positive: int, weights: np.ndarray, names: Sequence[str] = METRICS,
) -> dict[str, np.ndarray]:
    """The metrics `names` (default: all of `METRICS`) for each row of multiplicity `weights` (B, n):
    the metric of the test set in which image i appears weights[b, i] times. Agrees with
    `classification_metrics` on the repeated images (tested); vectorised because a sweep needs ~10^5
    of them, and ROC AUC (the costly one) is computed only when asked for."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    total = weights.sum(axis=1)
    recall, specificity, f1 = [], [], []
    for k in range(n_classes):
        tp = weights @ ((y_true == k) & (y_pred == k)).astype(float)
        fn = weights @ ((y_true == k) & (y_pred != k)).astype(float)
        fp = weights @ ((y_true != k) & (y_pred == k)).astype(float)
        tn = total - tp - fn - fp
        recall.append(_ratio(tp, tp + fn))
        specificity.append(_ratio(tn, tn + fp))
        f1.append(np.where(2 * tp + fp + fn > 0, _ratio(2 * tp, 2 * tp + fp + fn), 0.0))
    recalls = np.stack(recall, axis=1)
    log_loss = -np.log(np.clip(proba[np.arange(len(y_true)), y_true], EPSILON, 1 - EPSILON))
    result = {
        "accuracy": _ratio(weights @ (y_pred == y_true).astype(float), total),
        "balanced_accuracy": np.nanmean(recalls, axis=1),
        "test_loss": _ratio(weights @ log_loss, total),
    }
    if n_classes == 2:
        result |= {"sensitivity": recall[positive], "specificity": specificity[positive], "f1": f1[positive]}
        if "roc_auc" in names:
            result["roc_auc"] = _weighted_auc(y_true == positive, proba[:, positive], weights)
    else:
        result |= {
            "sensitivity": result["balanced_accuracy"],
            "specificity": np.nanmean(np.stack(specificity, axis=1), axis=1),
            "f1": np.mean(np.stack(f1, axis=1), axis=1),
        }
        if "roc_auc" in names:
            result["roc_auc"] = np.nanmean(np.stack([_weighted_auc(y_true == k, proba[:, k], weights)
                                                     for k in range(n_classes)], axis=1), axis=1)
    return {name: result[name] for name in names}


def replicate_values(per_seed: np.ndarray, draws: BootstrapDraws) -> np.ndarray:
    """(B,) replicate values of one cell group from its (n_seeds, B) per-seed values: in replicate
    b the mean over the seeds drawn for b of each seed's value on b's test images."""
    b = np.arange(per_seed.shape[1])[:, None]
    with np.errstate(invalid="ignore"):
        return np.nanmean(per_seed[draws.seeds, b], axis=1) if per_seed.size else np.full(len(b), np.nan)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    values = replicates[~np.isnan(replicates)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value that a paired difference is 0; never 0, at most 1."""
    values = differences[~np.isnan(differences)]
    if not len(values):
        return float("nan")
    below = (1 + np.sum(values <= 0)) / (len(values) + 1)
    above = (1 + np.sum(values >= 0)) / (len(values) + 1)
    return float(min(1.0, 2 * min(below, above)))


@dataclass(frozen=True)
class Comparison:
    """One group of cells against its reference, on one metric."""

    mean: float
    ci: tuple[float, float]
    difference: float
    difference_ci: tuple[float, float]
    p_value: float


def compare(
    group: np.ndarray, reference: np.ndarray | None, group_point: np.ndarray, reference_point: np.ndarray | None,
    draws: BootstrapDraws, level: float = 0.95,
) -> Comparison:
    """`group` and `reference`: (n_seeds, B) per-seed replicate values; `*_point`: (n_seeds,) values
    on the full test set. The reference is None for the reference group itself."""
    replicates = replicate_values(group, draws)
    mean = float(np.nanmean(group_point)) if np.any(~np.isnan(group_point)) else float("nan")
    if reference is None or reference_point is None:
        return Comparison(mean, percentile_interval(replicates, level), float("nan"), (float("nan"),) * 2,
                          float("nan"))
    differences = replicates - replicate_values(reference, draws)
    return Comparison(
        mean, percentile_interval(replicates, level),
        float(np.nanmean(group_point) - np.nanmean(reference_point)),
        percentile_interval(differences, level), bootstrap_p_value(differences),
    )


def per_seed_replicates(
    cells: Sequence[Mapping], y_test: np.ndarray, positive: int, draws: BootstrapDraws,
) -> dict[str, np.ndarray]:
    """Per metric, the (n_seeds, B) values of a group's cells (one per seed, in seed order) under
    every replicate's test weights; each cell carries its test probabilities as `proba`."""
    values: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}
    for cell in cells:
        for name, row in weighted_metrics(y_test, np.asarray(cell["proba"]), positive, draws.weights).items():
            values[name].append(row)
    return {name: np.stack(rows) for name, rows in values.items()}
