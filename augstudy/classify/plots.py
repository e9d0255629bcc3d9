"""The sweep's figures (seaborn, Agg backend), each written as PNG and SVG.

Error bars are the same 95 % intervals as summary.csv (augstudy.classify.inference), and
the legend says so, so the figure and the table agree. Degenerate runs are drawn as crosses, not
hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from augstudy.classify import equivalence
from augstudy.classify.arms import ADDED_ARMS, GENERATOR_NAMES, SYNTHETIC_ONLY
from stylegan2ada.io import atomic_open

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRIC_LABELS = {"balanced_accuracy": "balanced accuracy", "roc_auc": "ROC AUC", "test_loss": "loss", "f1": "F1"}


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


ARM_STYLES = {"gan": ("tab:blue", "o"), "diffusion": ("tab:cyan", "v"), "classic": ("tab:orange", "s"),
              "real": ("tab:green", "^"), "synthetic-only": ("tab:purple", "D"), "diffusion-only": ("tab:brown", "P")}

INTERVAL_LABEL = "95 % interval (seeds, generators and test images; summary.csv)"


def _bars(rows: pd.DataFrame) -> np.ndarray:
    means = rows["mean"].to_numpy(float)
    return np.nan_to_num(np.vstack([means - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - means]))


def arms_vs_added(results: pd.DataFrame, summary: pd.DataFrame, metric: str, title: str, stem: Path) -> list[Path]:
    """Mean `metric` per added % with its 95 % interval, one line per augmentation arm (gan,
    diffusion, classic; side by side), every seed as a point (degenerate runs as crosses); each
    synthetic-only arm as a dotted level with its interval as a band."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    rows = summary[summary["metric"] == metric]
    ratios = sorted(results.loc[results["arm"].isin(ADDED_ARMS), "ratio"].unique())
    spread = (np.ptp(ratios) if len(ratios) > 1 else 100.0) * 0.012
    shown = [arm for arm in ADDED_ARMS if arm in set(rows["arm"])]
    for offset, arm in enumerate(shown):
        colour, marker = ARM_STYLES[arm]
        arm_rows = rows[rows["arm"] == arm].sort_values("ratio")
        shift = (offset - (len(shown) - 1) / 2) * spread
        x = arm_rows["ratio"].to_numpy(float) + shift
        axis.errorbar(x, arm_rows["mean"], yerr=_bars(arm_rows), fmt=f"{marker}-", color=colour, capsize=4,
                      label=f"{arm}: mean over seeds, {INTERVAL_LABEL}", zorder=3)
        points = results[results["arm"] == arm]
        jitter = np.random.default_rng(offset).uniform(-spread / 2, spread / 2, len(points))
        normal = ~points["degenerate"].astype(bool).to_numpy()
        px = points["ratio"].to_numpy(float) + shift + jitter
        py = points[metric].to_numpy(float)
        axis.scatter(px[normal], py[normal], color=colour, alpha=0.35, s=14, zorder=2)
        axis.scatter(px[~normal], py[~normal], color="tab:red", marker="x", s=24, zorder=2)
    for arm, images in SYNTHETIC_ONLY.items():
        synthetic = rows[rows["arm"] == arm]
        if not synthetic.empty:
            row = synthetic.iloc[0]
            axis.axhline(row["mean"], color=ARM_STYLES[arm][0], linestyle=":",
                         label=f"{images} only (no real train images), with its interval")
            axis.axhspan(row["ci_low"], row["ci_high"], color=ARM_STYLES[arm][0], alpha=0.1)
    if results["degenerate"].astype(bool).any():
        axis.scatter([], [], color="tab:red", marker="x", label="degenerate run (one class predicted, or "
                                                                 "train fitted while test at chance)")
    if ratios:
        axis.set_xticks(ratios)
    axis.set_xlabel("images added (% of the real train count per class)")
    axis.set_ylabel(f"test {METRIC_LABELS.get(metric, metric.replace('_', ' '))}")
    axis.set_title(title, fontsize=9)
    # beside the axes: with several arms and synthetic-only bands a legend inside hides data
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save_figure(figure, stem)


# The colour maps of each generator arm's dashed real-image-equivalent levels.
EQUIVALENT_COLOURS = {"gan": "Blues", "diffusion": "Purples"}


def learning_curve(summary: pd.DataFrame, metric: str, equivalents: Sequence[dict], title: str,
                   stem: Path) -> list[Path]:
    """The real arm's `metric` against real train images per class, with its 95 % intervals, and
    each generator ratio's mean as a dashed level labelled with its real-image equivalent."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    rows = summary[(summary["arm"] == "real") & (summary["metric"] == metric)].sort_values("real_fraction")
    colour, marker = ARM_STYLES["real"]
    x, unit = equivalence.curve_axis(rows)
    axis.errorbar(x, rows["mean"], yerr=_bars(rows), fmt=f"{marker}-", color=colour,
                  capsize=4, label=f"real images only: mean over seeds, {INTERVAL_LABEL}")
    for arm, colour_map in EQUIVALENT_COLOURS.items():
        items = [item for item in equivalents if item.get("arm", "gan") == arm]
        colours = plt.get_cmap(colour_map)(np.linspace(0.45, 0.95, max(len(items), 1)))
        for item, line_colour in zip(items, colours):
            axis.axhline(item["value"], color=line_colour, linestyle="--",
                         label=f"+{item['ratio']:g} % {GENERATOR_NAMES[arm]}: {item['words']}")
    axis.set_xlabel(unit)
    axis.set_ylabel(f"test {METRIC_LABELS.get(metric, metric.replace('_', ' '))}")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="best")
    return save_figure(figure, stem)


def confusion_grid(matrices: dict[str, np.ndarray], class_names: Sequence[str], title: str, stem: Path) -> list[Path]:
    """One confusion matrix per cell group (counts summed over seeds), each row's share shaded."""
    import seaborn as sns

    plt = _pyplot()
    columns = min(4, len(matrices))
    lines = -(-len(matrices) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 3.0 * lines), squeeze=False)
    for axis, (label, matrix) in zip(axes.ravel(), matrices.items()):
        matrix = np.asarray(matrix)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        annotations = np.array([[f"{count}\n{share:.0%}" for count, share in zip(row, share_row)]
                                for row, share_row in zip(matrix, shares)])
        sns.heatmap(shares, annot=annotations, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False,
                    xticklabels=class_names, yticklabels=class_names, ax=axis)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(label, fontsize=8)
    for axis in axes.ravel()[len(matrices):]:
        axis.axis("off")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, stem)


def training_curves(curves: pd.DataFrame, title: str, stem: Path) -> list[Path]:
    """Per quantity (train and validation cross-entropy, and the monitored metric when it is another)
    a panel with a line per seed and a colour per cell; a dot marks the epoch whose weights were kept.

    `curves` is long form with columns cell, seed, epoch, quantity, value, best_epoch."""
    import seaborn as sns

    _pyplot()
    grid = sns.relplot(
        data=curves, x="epoch", y="value", hue="cell", units="seed", estimator=None, col="quantity",
        kind="line", palette="viridis", height=3.3, aspect=1.1, alpha=0.7, facet_kws={"sharey": False},
    )
    kept = curves[curves["epoch"] == curves["best_epoch"]]
    for quantity, axis in grid.axes_dict.items():
        chosen = kept[kept["quantity"] == quantity]
        axis.scatter(chosen["epoch"], chosen["value"], color="black", s=10, zorder=3)
    grid.set_titles("{col_name}")
    grid.figure.suptitle(title, fontsize=9, y=1.03)
    return save_figure(grid.figure, stem)
