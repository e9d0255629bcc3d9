"""Test-set resampling shared by every cell, and Holm's correction.

Replicate b draws the seeds with replacement and, independently, the test images with replacement
within each class; the *same* draw is applied to every cell, so the difference of two groups in
replicate b is paired. A metric's replicate value is the mean over the drawn seeds of that seed's
metric on the drawn test images (`weighted_metrics`, from multiplicity weights). The sweep's
intervals and tests are `augstudy.classify.inference`'s (a percentile bootstrap over 5 seeds is
anti-conservative); these replicates serve the real-image equivalents' intervals, and
`weighted_metrics` also gives inference its delete-one-image values.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from augstudy.classify.metrics import EPSILON, METRICS


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
    classes = np.arange(n_classes)
    is_true, is_pred = y_true[:, None] == classes, y_pred[:, None] == classes
    # every count in one product: per class tp, fn, fp, then the correct predictions
    counts = weights @ np.column_stack([is_true & is_pred, is_true & ~is_pred, ~is_true & is_pred,
                                        y_pred == y_true]).astype(float)
    tp, fn, fp = (counts[:, part * n_classes:(part + 1) * n_classes] for part in range(3))
    tn = total[:, None] - tp - fn - fp
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    f1 = np.where(2 * tp + fp + fn > 0, _ratio(2 * tp, 2 * tp + fp + fn), 0.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from a replicate: NaN, as intended
        result = {"accuracy": _ratio(counts[:, -1], total), "balanced_accuracy": np.nanmean(recall, axis=1)}
        if n_classes == 2:
            result |= {"sensitivity": recall[:, positive], "specificity": specificity[:, positive],
                       "f1": f1[:, positive]}
        else:
            result |= {"sensitivity": result["balanced_accuracy"], "specificity": np.nanmean(specificity, axis=1),
                       "f1": np.mean(f1, axis=1)}
    if "test_loss" in names:
        log_loss = -np.log(np.clip(proba[np.arange(len(y_true)), y_true], EPSILON, 1 - EPSILON))
        result["test_loss"] = _ratio(weights @ log_loss, total)
    if "roc_auc" in names:
        aucs = [_weighted_auc(y_true == k, proba[:, k], weights) for k in ([positive] if n_classes == 2 else classes)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result["roc_auc"] = aucs[0] if n_classes == 2 else np.nanmean(np.stack(aucs, axis=1), axis=1)
    return {name: result[name] for name in names}


def replicate_values(per_seed: np.ndarray, draws: BootstrapDraws) -> np.ndarray:
    """(B,) replicate values of one cell group from its (n_seeds, B) per-seed values: in replicate
    b the mean over the seeds drawn for b of each seed's value on b's test images."""
    b = np.arange(per_seed.shape[1])[:, None]
    with np.errstate(invalid="ignore"):
        return np.nanmean(per_seed[draws.seeds, b], axis=1) if per_seed.size else np.full(len(b), np.nan)


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
