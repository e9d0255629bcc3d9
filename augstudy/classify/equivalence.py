"""Real-image equivalents: how many extra real images per class reach the metric a GAN ratio
reaches, read off the real-data learning curve.

The learning curve has points (n_k real train images per class, metric m_k) for the `real` arm's
fractions, the largest being the full train set N (the 0 % cell). It is made non-decreasing by
isotonic regression (more real data is never assumed to hurt; a noisy dip or peak is pooled with
its neighbours rather than letting one lucky small-data point set the curve, as a running maximum
would) and inverted by linear interpolation:
the equivalent of metric m is n(m) - N, the smallest interpolated n whose curve value reaches m.
It is negative when the GAN images are worth less than removing some real images, 0 at the edge
(m equals the full-data value) and +inf ("beyond the curve") when m exceeds everything the real
data shows, since the curve cannot say how many more real images that would take; -inf ("below
the curve") when m is below its smallest point. Applied to each bootstrap replicate's curve and GAN
value, it gives the interval (quantiles taken without interpolation, so infinities stay infinite).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

BEYOND = "beyond the curve"
BELOW = "below the curve"


def real_equivalent(counts: np.ndarray, curve: np.ndarray, value: float, full_count: float) -> float:
    """Extra real images per class (relative to `full_count`) whose curve value reaches `value`."""
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(counts)
    curve = np.asarray(curve, dtype=np.float64)[order]
    if np.isnan(value) or np.isnan(curve).any():
        return float("nan")
    counts, curve = counts[order], isotonic_regression(curve).x
    if value > curve[-1]:
        return float("inf")
    if value < curve[0]:
        return float("-inf")
    index = int(np.argmax(curve >= value))
    if index == 0 or curve[index] == value:
        return float(counts[index] - full_count)
    low, high = curve[index - 1], curve[index]
    share = (value - low) / (high - low)
    return float(counts[index - 1] + share * (counts[index] - counts[index - 1]) - full_count)


def equivalent_interval(
    counts: np.ndarray, curve_replicates: np.ndarray, value_replicates: np.ndarray, full_count: float,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the equivalent over bootstrap replicates: `curve_replicates` is
    (n_points, B), `value_replicates` (B,)."""
    values = np.array([real_equivalent(counts, curve_replicates[:, b], value_replicates[b], full_count)
                       for b in range(len(value_replicates))])
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(low), float(high)


def describe(value: float) -> str:
    """Plain words for an equivalent."""
    if np.isnan(value):
        return "not available"
    if value == float("inf"):
        return BEYOND
    if value == float("-inf"):
        return BELOW
    return f"{value:+.1f} real images per class"
