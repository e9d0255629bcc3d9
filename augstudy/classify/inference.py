"""Intervals and tests over sweep cells, for both designs, with error rates shown by simulation
(bench/calibration.py; tests/augstudy/test_calibration.py keeps them from breaking).

A cell is one trained classifier: (arm, level) x repeat x fold x GAN seed x classifier seed, with
its predictions on its block's test images (a block is one (repeat, fold); the split design has one
block). Cells lacking `repeat`/`fold`/`gan_seed` (older results) read as repeat = fold = 0 and no
GAN seed.

Split design (one test set). The estimate is the mean over cells of the metric, or of the paired
difference for a contrast (group cell (g, s) minus the reference cells of seed s). Its variance is
estimated, not resampled: with 5 seeds a percentile bootstrap treats the seeds' spread as known
and its type-I error reaches 15 % when seeds dominate (issue 20). Terms: var(seed means) / S,
var(GAN-seed means) / G less the GAN x seed interaction they both contain, and the test images'
stratified (by class) delete-one-image jackknife variance of the cell-averaged estimate (any
metric, ROC AUC included) less the cell x image noise (a classifier's coin flips on single images),
which the seed term already holds. The interval is a t interval with Welch-Satterthwaite degrees
of freedom, or G - 1 when the GAN-seed term is half the variance or more. With one GAN seed the generator's own variance is invisible: the answer holds for that
generator.

CV design (several blocks, each its own test set). Each block gives one estimate (the mean over its
GAN seeds and seeds, on its own test images), which already varies with seeds, generators and test
images; the blocks' training sets overlap and the repeats reuse the images, so their spread
understates the estimate's variance. The corrected resampled t-test of Nadeau & Bengio (2003), as
Bouckaert & Frank (2004) use it for repeated k-fold CV, scales it by (1/J + n_test/n_train) over
the J blocks, with J - 1 degrees of freedom.

Floors, so that small or perfect test sets do not claim certainty: sensitivity and specificity
also get a Wilson score interval on the pooled counts and the reported interval covers both (6 of
6 correct is [0.61, 1], not [1, 1]); balanced accuracy and accuracy take the Wilson variance as a
floor; a paired difference of proportions takes the variance of half a discordant image each way
in one cell. Intervals of bounded metrics are clipped to their range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from augstudy.classify.metrics import BOUNDED, METRICS
from augstudy.classify.stats import weighted_metrics

SPLIT_METHOD = "t interval: seed and GAN-seed variance + test-image jackknife variance (Satterthwaite df)"
CV_METHOD = "corrected resampled t-test over folds (Nadeau & Bengio 2003)"
PROPORTIONS = frozenset({"accuracy", "balanced_accuracy", "sensitivity", "specificity"})
LEVEL = 0.95


class InferenceError(ValueError):
    """Cells that cannot be compared (the message says which)."""


def cell_key(cell: Mapping[str, Any]) -> tuple[int, int, int | None, int]:
    """(repeat, fold, gan_seed, seed) of a cell, with the defaults of results that predate the CV design."""
    gan_seed = cell.get("gan_seed")
    return (int(cell.get("repeat", 0) or 0), int(cell.get("fold", 0) or 0),
            None if gan_seed is None else int(gan_seed), int(cell["seed"]))


@dataclass(frozen=True)
class CellValues:
    """One cell's metric on its full test set and with each test image left out in turn."""

    images: tuple[str, ...]
    labels: np.ndarray
    full: dict[str, float]
    jackknife: dict[str, np.ndarray]  # metric -> (n_images,)
    correct: np.ndarray  # (n_images,) bool


def cell_values(cell: Mapping[str, Any], positive: int, names: Sequence[str] = METRICS) -> CellValues:
    rows = cell["test_predictions"]
    labels = np.array([row["label"] for row in rows], dtype=np.int64)
    proba = np.array([row["proba"] for row in rows], dtype=np.float64)
    n = len(labels)
    weights = np.vstack([np.ones((1, n)), 1.0 - np.eye(n)])
    values = weighted_metrics(labels, proba, positive, weights, names)
    return CellValues(tuple(row["image"] for row in rows), labels,
                      {name: float(row[0]) for name, row in values.items()},
                      {name: row[1:] for name, row in values.items()}, proba.argmax(axis=1) == labels)


class CellCache:
    """CellValues per cell object, computed once (a reference cell serves many comparisons)."""

    def __init__(self, positive: int, names: Sequence[str] = METRICS) -> None:
        self.positive, self.names = positive, tuple(names)
        self._values: dict[int, tuple[Mapping[str, Any], CellValues]] = {}

    def __call__(self, cell: Mapping[str, Any]) -> CellValues:
        if id(cell) not in self._values:
            self._values[id(cell)] = (cell, cell_values(cell, self.positive, self.names))
        return self._values[id(cell)][1]


@dataclass(frozen=True)
class Estimate:
    """A mean (or paired mean difference) with its standard error, t degrees of freedom, interval and,
    for a difference, the two-sided p-value that it is 0."""

    estimate: float
    se: float
    df: float
    ci: tuple[float, float]
    p_value: float
    method: str
    n_blocks: int
    n_seeds: int
    n_gan_seeds: int


def _blocks(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[int, int], dict[tuple[int | None, int], Mapping]]:
    blocks: dict[tuple[int, int], dict[tuple[int | None, int], Mapping]] = {}
    for cell in cells:
        repeat, fold, gan_seed, seed = cell_key(cell)
        blocks.setdefault((repeat, fold), {})[(gan_seed, seed)] = cell
    return blocks


def _satterthwaite(parts: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance estimates (value, df); a term may be negative."""
    total = max(sum(value for value, _ in parts), 0.0)
    denominator = sum(value**2 / df for value, df in parts if df > 0 and value != 0)
    return float(total**2 / denominator) if denominator > 0 and total > 0 else float("inf")


def _wilson_variance(successes: float, n: float, z: float = 1.959964) -> float:
    """The variance implied by the Wilson score interval (never 0, unlike p(1 - p) / n)."""
    centre = (successes + z * z / 2) / (n + z * z)
    return centre * (1 - centre) / (n + z * z)


def wilson_interval(successes: float, n: float, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes may be a mean count over seeds)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf((1 + level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class _BlockResult:
    estimate: float
    parts: list[tuple[float, float]]  # (variance term, its df); a term may be negative (a correction)
    class_counts: dict[int, tuple[float, int]]  # label -> (mean correct count over cells, images)


def _unit_values(cell: Mapping, reference: dict | None, metric: str, values: CellCache,
                 images: tuple[str, ...], seed: int) -> tuple[float, np.ndarray]:
    """A unit's value on the full test set and with each image left out: the cell's, minus its
    seed's reference cells' for a contrast."""
    own = values(cell)
    if own.images != images:
        raise InferenceError(f"cells of one test block list different test images (seed {seed})")
    value, left_out = own.full[metric], own.jackknife[metric]
    if reference is not None:
        refs = [values(c) for (_, s), c in reference.items() if s == seed]
        if any(ref.images != images for ref in refs):
            raise InferenceError(f"a cell and its reference were tested on different images (seed {seed})")
        value -= float(np.mean([ref.full[metric] for ref in refs]))
        left_out = left_out - np.mean([ref.jackknife[metric] for ref in refs], axis=0)
    return value, left_out


def _block(group: dict, reference: dict | None, metric: str, values: CellCache) -> _BlockResult:
    """One test block: the units (GAN seed x seed) form a crossed layout, the test images a second
    factor; variance terms are the two-way ANOVA's, so the unit-by-image noise (a classifier's
    coin flips on single images) is counted once, not in both the seed and the image term."""
    gans = sorted({gan for gan, _ in group}, key=lambda g: -1 if g is None else g)
    seeds = sorted({seed for _, seed in group})
    if reference is not None:
        ref_seeds = {seed for _, seed in reference}
        seeds = [seed for seed in seeds if seed in ref_seeds]
        if not seeds:
            raise InferenceError("the group and its reference share no classifier seed")
    first = values(group[next(iter(group))])
    labels = first.labels
    matrix = np.full((len(gans), len(seeds)), np.nan)
    influence = []
    correct: dict[int, list[float]] = {}
    for row, gan in enumerate(gans):
        for column, seed in enumerate(seeds):
            cell = group.get((gan, seed))
            if cell is None:
                continue
            value, left_out = _unit_values(cell, reference, metric, values, first.images, seed)
            matrix[row, column] = value
            influence.append(value - left_out)
            if reference is None:
                own = values(cell)
                for label in np.unique(labels):
                    correct.setdefault(int(label), []).append(float(own.correct[labels == label].sum()))
    estimate = float(np.nanmean(matrix))
    parts: list[tuple[float, float]] = []
    complete = not np.isnan(matrix).any()
    seed_means, gan_means = np.nanmean(matrix, axis=0), np.nanmean(matrix, axis=1)
    if len(seeds) > 1:
        parts.append((float(np.var(seed_means, ddof=1)) / len(seeds), len(seeds) - 1.0))
    gan_term = 0.0
    if len(gans) > 1:
        gan_term = float(np.var(gan_means, ddof=1)) / len(gans)
        parts.append((gan_term, len(gans) - 1.0))
        if len(seeds) > 1 and complete:
            residual = matrix - seed_means[None, :] - gan_means[:, None] + estimate
            df = (len(gans) - 1.0) * (len(seeds) - 1.0)
            # never below the larger main term: a noisy correction must not erase a real spread
            correction = min(float(np.sum(residual**2)) / df / matrix.size, min(v for v, _ in parts))
            parts.append((-correction, df))
    drops = np.stack(influence)  # (U, n): value - value without image i, per unit
    image_variance, noise = 0.0, 0.0
    for label in np.unique(labels):
        members = labels == label
        n_h = int(members.sum())
        if n_h < 2:
            continue
        # stratified jackknife influence of image i: (n_h - 1) x the drop its removal causes
        units = (n_h - 1) * drops[:, members]
        mean_influence = units.mean(axis=0)
        image_variance += float(np.sum((mean_influence - mean_influence.mean()) ** 2)) / (n_h * (n_h - 1))
        if len(units) > 1:
            residual = units - mean_influence[None, :]
            residual -= residual.mean(axis=1, keepdims=True)
            noise += float(np.sum(residual**2)) / ((len(units) - 1) * (n_h - 1)) / (len(units) * n_h)
    image_df = float(len(labels) - len(np.unique(labels)))
    # one net image term: the coin-flip noise removed from it, with the images' degrees of freedom
    parts.append((image_variance - min(noise, image_variance), image_df))
    total = sum(value for value, _ in parts)
    if len(gans) > 1 and total > 0 and gan_term >= 0.5 * total:
        # A few generators dominate: Satterthwaite would borrow the seeds' and images' degrees of
        # freedom for a spread that G - 1 of them estimate (simulated type-I 0.09 with 3 GAN seeds).
        parts = [(total, len(gans) - 1.0)]
    counts = {label: (float(np.mean(found)), int(np.sum(labels == label))) for label, found in correct.items()}
    return _BlockResult(estimate, parts, counts)


def _wilson_floor(metric: str, counts: dict[int, tuple[float, int]], positive: int) -> float:
    if metric not in PROPORTIONS or not counts:
        return 0.0
    if metric == "accuracy":
        return _wilson_variance(sum(c for c, _ in counts.values()), sum(n for _, n in counts.values()))
    per_class = {label: _wilson_variance(c, n) for label, (c, n) in counts.items()}
    if metric == "balanced_accuracy" or len(counts) > 2:
        return float(sum(per_class.values()) / len(per_class) ** 2)
    wanted = positive if metric == "sensitivity" else 1 - positive
    return per_class.get(wanted, 0.0)


def estimate(
    group: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]] | None, metric: str,
    values: CellCache, level: float = LEVEL,
) -> Estimate:
    """The mean of `metric` over `group`'s cells or, with a `reference`, the paired mean difference
    group - reference (paired by block and classifier seed), with its interval and p-value."""
    group_blocks = _blocks(group)
    reference_blocks = _blocks(reference) if reference is not None else None
    if reference_blocks is not None and set(group_blocks) - set(reference_blocks):
        raise InferenceError("the reference lacks some (repeat, fold) blocks of the group")
    results = {key: _block(cells, None if reference_blocks is None else reference_blocks[key], metric, values)
               for key, cells in sorted(group_blocks.items())}
    n_seeds = len({cell_key(cell)[3] for cell in group})
    n_gans = len({cell_key(cell)[2] for cell in group})
    if len(results) == 1:
        [block] = results.values()
        point = block.estimate
        variance = max(sum(value for value, _ in block.parts), 0.0)
        df = _satterthwaite(block.parts)
        method = SPLIT_METHOD
    else:
        per_block = np.array([block.estimate for block in results.values()])
        point = float(per_block.mean())
        variance = (1 / len(per_block) + _test_train_ratio(group)) * float(np.var(per_block, ddof=1))
        df = len(per_block) - 1.0
        method = CV_METHOD
    counts: dict[int, tuple[float, int]] = {}
    if reference is not None:
        variance = max(variance, _discordance_floor(metric, group, values.positive))
    if reference is None:
        for block in results.values():
            for label, (found, n) in block.class_counts.items():
                old = counts.get(label, (0.0, 0))
                counts[label] = (old[0] + found, old[1] + n)
        repeats = len({key[0] for key in results})
        counts = {label: (found / repeats, n // repeats) for label, (found, n) in counts.items()}
        variance = max(variance, _wilson_floor(metric, counts, values.positive))
    se = math.sqrt(variance)
    t = stats.t.ppf((1 + level) / 2, df) if np.isfinite(df) and df > 0 else stats.norm.ppf((1 + level) / 2)
    low, high = point - t * se, point + t * se
    p_value = float("nan")
    if reference is not None:
        p_value = 1.0 if se == 0 and point == 0 else (
            0.0 if se == 0 else float(2 * stats.t.sf(abs(point) / se, df)))
    if metric in BOUNDED:
        bound = (-1.0, 1.0) if reference is not None else (0.0, 1.0)
        if reference is None and metric in ("sensitivity", "specificity") and len(counts) == 2:
            wanted = values.positive if metric == "sensitivity" else 1 - values.positive
            if wanted in counts:
                w_low, w_high = wilson_interval(*counts[wanted], level)
                low, high = min(low, w_low), max(high, w_high)
        low, high = max(low, bound[0]), min(high, bound[1])
    return Estimate(point, se, df, (float(low), float(high)), p_value, method, len(results), n_seeds, n_gans)


def _discordance_floor(metric: str, cells: Sequence[Mapping[str, Any]], positive: int) -> float:
    """The variance of a proportion difference with half a discordant image each way per class in
    one of the paired cells: cells that agree on every test image have not shown that they always
    would (the paired analogue of the Wilson floor; without it a perfect pair reports p = 0 and a
    zero MDE). It is the smallest difference the cells can resolve, so it binds only then."""
    if metric not in PROPORTIONS:
        return 0.0
    repeats = len({cell_key(cell)[0] for cell in cells})
    units = len(cells) / repeats
    seen: dict[tuple[int, int], list[int]] = {}
    for cell in cells:
        repeat, fold, _, _ = cell_key(cell)
        seen.setdefault((repeat, fold), [row["label"] for row in cell["test_predictions"]])
    labels = np.concatenate(list(seen.values()))
    sizes = {int(label): int(np.sum(labels == label)) / repeats for label in np.unique(labels)}
    if metric == "accuracy":
        return 1.0 / sum(sizes.values()) ** 2 / units
    if metric == "balanced_accuracy" or len(sizes) > 2:
        return float(sum(1.0 / n**2 for n in sizes.values()) / len(sizes) ** 2) / units
    wanted = positive if metric == "sensitivity" else 1 - positive
    return 1.0 / sizes[wanted] ** 2 / units if wanted in sizes else 0.0


def _test_train_ratio(cells: Sequence[Mapping[str, Any]]) -> float:
    """n_test / n_train of the CV design: one block's test images against the rest of its repeat's."""
    per_repeat: dict[int, dict[int, int]] = {}
    for cell in cells:
        repeat, fold, _, _ = cell_key(cell)
        per_repeat.setdefault(repeat, {})[fold] = len(cell["test_predictions"])
    ratios = []
    for folds in per_repeat.values():
        total = sum(folds.values())
        ratios.extend(n / (total - n) for n in folds.values() if total > n)
    return float(np.mean(ratios)) if ratios else 0.0
