"""Real-image equivalents: how many real images per class it takes to gain what a GAN ratio gains,
read off the real-data learning curve.

The learning curve has points (n_k real train images per class, metric m_k) for the `real` arm's
fractions, the largest being the full train set N (the 0 % cell). It is made non-decreasing by
isotonic regression (more real data is never assumed to hurt; a noisy dip or peak is pooled with
its neighbours rather than letting one lucky small-data point set the curve) and read at its top:
a GAN ratio's paired gain g over the 0 % cell is placed on the *fitted* value at N, f(N), and the
equivalent is N - n(f(N) - g): the real images whose addition at the end of the curve brings the same
gain. It is anchored at the fit, not at the raw 100 % point (with a raw anchor, a curve 0.90, 0.95,
0.97, 0.96 read a GAN value equal to the baseline as "-50.5 real images per class"). It is never
negative: a gain of 0 or less is worth 0 real images. A gain larger than the curve's whole rise is
worth *at least* the curve's span (N - n_0): one-sided, since the curve cannot say how many more.
When the fit is flat (more real images never helped in the measured range) no gain can be converted
into images: the equivalent is NaN ("not readable"). Applied to each bootstrap replicate's curve and
paired gain, it gives the interval (quantiles without interpolation; a flat replicate bounds
nothing: 0 for the lower end, +inf for the upper).

The x-axis counts *distinct* real images per class (the duplicate groups of prepare's manifest that a
cell's real train images span, the cell's `unique_train_images`): the official chest CT split holds
148 normal train files that are 32 distinct slices, and a copy adds no information a classifier could
use. A resumed sweep derives the field for finished cells written before it existed
(classify.data.with_distinct_counts: their fingerprint matched the same data, so the counts are
exact); cells that reach the report without it (a report built from old cells alone) fall back to
file counts, and the unit says so ("real train files per class (duplicate copies counted ...)").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

FLAT = "not readable: more real images did not raise the learning curve"
UNIQUE_UNIT = "distinct real images per class"
FILES_UNIT = "real train files per class (duplicate copies counted: the cells predate distinct counts)"


def mean_distinct_per_class(cells: Sequence[Mapping[str, Any]]) -> float:
    """The mean over cells of the distinct real train images per class (`unique_train_images`), NaN
    when any cell lacks them (older results)."""
    counts = [cell.get("unique_train_images") for cell in cells]
    if not counts or any(not count for count in counts):
        return float("nan")
    return float(np.mean([np.mean(list(count.values())) for count in counts]))  # type: ignore[union-attr]


def curve_axis(curve: pd.DataFrame) -> tuple[np.ndarray, str]:
    """The learning curve's x values and their unit: distinct real images per class where every point
    has them (summary.csv's `n_unique_per_class`), else train files per class, labelled so."""
    if "n_unique_per_class" in curve and np.isfinite(curve["n_unique_per_class"].to_numpy(float)).all():
        return curve["n_unique_per_class"].to_numpy(float), UNIQUE_UNIT
    return curve["n_real_per_class"].to_numpy(float), FILES_UNIT


def _fitted(counts: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points sorted by count and the isotonic (non-decreasing) fit of their values."""
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(counts)
    return counts[order], isotonic_regression(np.asarray(curve, dtype=np.float64)[order]).x


def is_flat(counts: np.ndarray, curve: np.ndarray) -> bool:
    """Whether the isotonic fit is one level: the real data show no gain from more images."""
    fitted = _fitted(counts, curve)[1]
    return bool(fitted[-1] <= fitted[0])


def span(counts: np.ndarray) -> float:
    """The most real images per class the curve can vouch for: N - n_0."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(counts.max() - counts.min())


def real_equivalent(counts: np.ndarray, curve: np.ndarray, gain: float) -> float:
    """Real images per class whose addition at the top of the fitted curve gains `gain` (>= 0; +inf
    beyond the curve's span, NaN when the curve is flat)."""
    if np.isnan(gain) or np.isnan(np.asarray(curve, dtype=np.float64)).any():
        return float("nan")
    counts, fitted = _fitted(counts, curve)
    if fitted[-1] <= fitted[0]:
        return float("nan")
    if gain <= 0:
        return 0.0
    target = fitted[-1] - gain
    if target < fitted[0]:
        return float("inf")
    index = int(np.argmax(fitted >= target))
    if index == 0 or fitted[index] == target:
        return float(counts[-1] - counts[index])
    low, high = fitted[index - 1], fitted[index]
    share = (target - low) / (high - low)
    return float(counts[-1] - (counts[index - 1] + share * (counts[index] - counts[index - 1])))


def equivalent_interval(
    counts: np.ndarray, curve_replicates: np.ndarray, gain_replicates: np.ndarray, level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the equivalent over bootstrap replicates: `curve_replicates` is
    (n_points, B), `gain_replicates` (B,) the paired gains over the 0 % cell."""
    values, flat = [], []
    for b in range(len(gain_replicates)):
        if np.isnan(gain_replicates[b]) or np.isnan(curve_replicates[:, b]).any():
            continue
        flat.append(is_flat(counts, curve_replicates[:, b]))
        values.append(real_equivalent(counts, curve_replicates[:, b], gain_replicates[b]))
    if not values:
        return float("nan"), float("nan")
    values, unbounded = np.array(values), np.array(flat)
    low = np.quantile(np.where(unbounded, 0.0, values), (1 - level) / 2, method="inverted_cdf")
    high = np.quantile(np.where(unbounded, np.inf, values), (1 + level) / 2, method="inverted_cdf")
    return float(low), float(high)


def mapped_interval(counts: np.ndarray, curve: np.ndarray, gain_low: float, gain_high: float) -> tuple[float, float]:
    """The cv design's interval: the ends of the gain's interval read off the fitted mean curve.

    The cv inference gives each paired gain a corrected resampled t interval (Nadeau & Bengio 2003)
    and there is no shared test set to bootstrap, so the equivalent's interval is that interval mapped
    through the curve; `real_equivalent` does not decrease with the gain, so the mapped interval
    holds the true equivalent exactly when the gain's interval holds the true gain. It takes the
    fitted curve as known (its points' own cv intervals are in the learning-curve figure). A
    fold-level bootstrap was not chosen: the folds' training sets overlap, so their spread understates
    the variance (the reason for the correction), and a percentile bootstrap over 5 to 10 blocks
    would inherit that. NaN when the curve is flat."""
    if np.isnan(gain_low) or np.isnan(gain_high) or is_flat(counts, curve):
        return float("nan"), float("nan")
    low, high = sorted((gain_low, gain_high))
    return real_equivalent(counts, curve, low), real_equivalent(counts, curve, high)


def describe(value: float, curve_span: float, unit: str = UNIQUE_UNIT) -> str:
    """Plain words for an equivalent, in the curve's `unit`."""
    if np.isnan(value):
        return "not available"
    if value == float("inf"):
        return f"at least {curve_span:.1f} {unit} (beyond the curve's span)"
    if value == 0:
        return f"no gain: 0 {unit}"
    return f"{value:.1f} {unit}"
