"""Per-ratio summary statistics and the seed-paired test of each ratio against 0 % synthetic.

Each ratio's seeds are a small sample (5 by default), so the CI is t-based (mean +- t(0.975, n-1)
x sd / sqrt(n)). Ratio r and ratio 0 share their seeds, so the test is paired by seed. The
default is the paired t-test: with 5 pairs the exact Wilcoxon signed-rank test cannot go below
p = 0.0625 and so can never reject at 5 %; `wilcoxon` is there for sweeps with many seeds or
clearly non-normal differences. Holm's step-down correction runs over the ratios, per metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

PAIRED_TESTS = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank"}


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The t-based confidence interval of the mean; NaN for fewer than 2 values."""
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


def paired_test(differences: np.ndarray, test: str) -> float:
    """Two-sided p-value that the mean (t) or median (Wilcoxon) paired difference is 0. All-zero
    differences give p = 1; fewer than 2 pairs give NaN."""
    differences = np.asarray(differences, dtype=np.float64)
    differences = differences[~np.isnan(differences)]
    if len(differences) < 2:
        return float("nan")
    if np.allclose(differences, 0.0):
        return 1.0
    if test == "t":
        if np.allclose(differences, differences[0]):
            return 0.0  # a constant non-zero difference: no variance, the shift is certain
        return float(stats.ttest_1samp(differences, 0.0).pvalue)
    if test == "wilcoxon":
        return float(stats.wilcoxon(differences).pvalue)
    raise ValueError(f"unknown paired test {test!r}; choose one of {', '.join(PAIRED_TESTS)}")


def summarize(
    results: pd.DataFrame, metrics: Sequence[str], test: str = "t", reference_ratio: float = 0.0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per (ratio, metric): n, mean, std, CI, degenerate count, and the paired comparison
    with `reference_ratio` (difference of means, p-value, Holm-adjusted p-value, test name)."""
    if test not in PAIRED_TESTS:
        raise ValueError(f"unknown paired test {test!r}; choose one of {', '.join(PAIRED_TESTS)}")
    rows = []
    reference = results[results["ratio"] == reference_ratio].set_index("seed")
    for metric in metrics:
        metric_rows = []
        for ratio, group in results.groupby("ratio", sort=True):
            values = group[metric].to_numpy(dtype=np.float64)
            low, high = t_interval(values, level)
            row = {
                "ratio": ratio, "metric": metric, "n": int(np.sum(~np.isnan(values))),
                "mean": float(np.nanmean(values)) if len(values) else float("nan"),
                "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else float("nan"),
                "ci_low": low, "ci_high": high,
                "n_degenerate": int(group["degenerate"].sum()),
                "reference_ratio": reference_ratio, "n_pairs": 0,
                "mean_difference": float("nan"), "test": "", "p_value": float("nan"),
            }
            if ratio != reference_ratio and not reference.empty:
                paired = group.set_index("seed")[metric].to_frame("value").join(
                    reference[metric].rename("reference"), how="inner"
                ).dropna()
                differences = (paired["value"] - paired["reference"]).to_numpy()
                row |= {
                    "n_pairs": len(differences),
                    "mean_difference": float(differences.mean()) if len(differences) else float("nan"),
                    "test": PAIRED_TESTS[test],
                    "p_value": paired_test(differences, test),
                }
            metric_rows.append(row)
        adjusted = holm([row["p_value"] for row in metric_rows])
        for row, p_holm in zip(metric_rows, adjusted):
            row["p_holm"] = float(p_holm)
        rows.extend(metric_rows)
    return pd.DataFrame(rows)
