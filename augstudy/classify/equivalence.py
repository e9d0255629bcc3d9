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
the curve") when m is below its smallest point. When the fit is flat (more real images never
helped in the measured range) the curve cannot convert any metric into a number of images: the
equivalent is NaN ("not readable"), rather than "below" or "beyond" a level that the pooling
has moved away from the full-data classifier's own value. Applied to each bootstrap replicate's
curve and GAN value, it gives the interval (quantiles taken without interpolation, so infinities
stay infinite); a replicate whose curve is flat bounds nothing, so it counts as -inf for the
lower end and +inf for the upper one.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import isotonic_regression

BEYOND = "beyond the curve"
BELOW = "below the curve"
FLAT = "not readable: more real images did not raise the learning curve"


def _fitted(counts: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points sorted by count and the isotonic (non-decreasing) fit of their values."""
    counts = np.asarray(counts, dtype=np.float64)
    order = np.argsort(counts)
    return counts[order], isotonic_regression(np.asarray(curve, dtype=np.float64)[order]).x


def is_flat(counts: np.ndarray, curve: np.ndarray) -> bool:
    """Whether the isotonic fit is one level: the real data show no gain from more images."""
    fitted = _fitted(counts, curve)[1]
    return bool(fitted[-1] <= fitted[0])


def real_equivalent(counts: np.ndarray, curve: np.ndarray, value: float, full_count: float) -> float:
    """Extra real images per class (relative to `full_count`) whose curve value reaches `value`."""
    if np.isnan(value) or np.isnan(np.asarray(curve, dtype=np.float64)).any():
        return float("nan")
    counts, curve = _fitted(counts, curve)
    if curve[-1] <= curve[0]:
        return float("nan")
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
    values, flat = [], []
    for b in range(len(value_replicates)):
        if np.isnan(value_replicates[b]) or np.isnan(curve_replicates[:, b]).any():
            continue
        flat.append(is_flat(counts, curve_replicates[:, b]))
        values.append(real_equivalent(counts, curve_replicates[:, b], value_replicates[b], full_count))
    if not values:
        return float("nan"), float("nan")
    values, unbounded = np.array(values), np.array(flat)
    low = np.quantile(np.where(unbounded, -np.inf, values), (1 - level) / 2, method="inverted_cdf")
    high = np.quantile(np.where(unbounded, np.inf, values), (1 + level) / 2, method="inverted_cdf")
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
