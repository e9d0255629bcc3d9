"""The sweep's figures (seaborn, Agg backend), each written as PNG and SVG.

Error bars are the same t-based 95 % CI as summary.csv rather than seaborn's bootstrap, so the
figure and the table agree. Degenerate runs are drawn as crosses, not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stylegan2ada.io import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRIC_LABELS = {"accuracy": "test accuracy", "balanced_accuracy": "test balanced accuracy"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "augstudy"  # stable SVG ids: same figure, same bytes
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Figure, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg atomically and close the figure."""
    paths = []
    for extension in ("png", "svg"):
        path = stem.with_suffix(f".{extension}")
        metadata = {"Date": None} if extension == "svg" else {"Software": None}
        with atomic_open(path, "wb") as handle:
            figure.savefig(handle, format=extension, dpi=150, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    _pyplot().close(figure)
    return paths


def metric_vs_ratio(results: pd.DataFrame, summary: pd.DataFrame, metric: str, title: str, stem: Path) -> list[Path]:
    """Mean `metric` per synthetic % with its 95 % CI, and every seed as a point."""
    import seaborn as sns

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    rows = summary[summary["metric"] == metric].sort_values("ratio")
    ratios = rows["ratio"].to_numpy(dtype=float)
    means = rows["mean"].to_numpy(dtype=float)
    errors = np.vstack([means - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - means])
    axis.errorbar(ratios, means, yerr=np.nan_to_num(errors), fmt="o-", color="black", capsize=4,
                  label="mean, 95% CI (t)", zorder=3)
    points = results.assign(kind=np.where(results["degenerate"], "degenerate run", "run"))
    spread = (np.ptp(ratios) if len(ratios) > 1 else 1.0) * 0.015
    jitter = np.random.default_rng(0).uniform(-spread, spread, len(points))
    sns.scatterplot(
        x=points["ratio"].to_numpy(float) + jitter, y=points[metric].to_numpy(float), hue=points["kind"],
        style=points["kind"], markers={"run": "o", "degenerate run": "X"},
        palette={"run": "tab:blue", "degenerate run": "tab:red"}, alpha=0.6, ax=axis, zorder=2,
    )
    axis.set_xticks(ratios)
    axis.set_xlabel("synthetic images added (% of real train count per class)")
    axis.set_ylabel(METRIC_LABELS.get(metric, metric))
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    return save_figure(figure, stem)


def confusion(matrix: np.ndarray, class_names: Sequence[str], title: str, stem: Path) -> list[Path]:
    """A confusion matrix (counts summed over seeds) with each row's share annotated."""
    import seaborn as sns

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    labels = np.array([[f"{count}\n{share:.0%}" for count, share in zip(row, share_row)]
                       for row, share_row in zip(matrix, shares)])
    sns.heatmap(shares, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=axis)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    return save_figure(figure, stem)


def training_curves(curves: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """Train and validation loss per epoch: one panel each, a line per seed, a colour per ratio.

    `curves` is long form with columns ratio, seed, epoch, subset ("train"/"validation"), loss."""
    import seaborn as sns

    _pyplot()
    grid = sns.relplot(
        data=curves, x="epoch", y="loss", hue="ratio", units="seed", estimator=None, col="subset",
        kind="line", palette="viridis", height=3.5, aspect=1.2, alpha=0.7,
        facet_kws={"sharey": True},
    )
    grid.figure.suptitle(title, fontsize=9, y=1.03)
    return save_figure(grid.figure, stem)
