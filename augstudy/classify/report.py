"""From finished cells to RESULTS/results.csv, summary.csv and the figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from augstudy.classify import plots
from augstudy.classify.metrics import METRICS
from augstudy.classify.stats import summarize
from stylegan2ada.io import atomic_write_text

RESULT_COLUMNS = (
    "ratio", "seed", *METRICS, "epochs_trained", "n_real", "n_synthetic", "degenerate", "degenerate_reason",
    "best_epoch", "train_accuracy", "n_test", "positive_class", "backbone", "weights", "head", "split",
)


def results_table(cells: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell, in (ratio, seed) order."""
    rows = [{**cell["metrics"], **{key: cell[key] for key in RESULT_COLUMNS if key in cell}} for cell in cells]
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).sort_values(["ratio", "seed"], ignore_index=True)


def curves_table(cells: Sequence[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for cell in cells:
        for subset, key in (("train", "loss"), ("validation", "val_loss")):
            for epoch, loss in enumerate(cell["history"][key], start=1):
                rows.append({"ratio": cell["ratio"], "seed": cell["seed"], "epoch": epoch,
                             "subset": subset, "loss": loss})
    return pd.DataFrame(rows)


def ratio_label(ratio: float) -> str:
    """A file-name-safe, sortable name of a ratio: 25 -> "025", 12.5 -> "012.5"."""
    return f"{int(ratio):03d}" if float(ratio).is_integer() else f"{ratio:05.1f}"


def write_report(out: Path, cells: Sequence[dict[str, Any]], title: str, paired_test: str) -> dict[str, Path]:
    """results.csv, summary.csv and every figure under `out`; returns what was written."""
    results = results_table(cells)
    written = {"results": out / "results.csv", "summary": out / "summary.csv"}
    atomic_write_text(written["results"], results.to_csv(index=False))
    summary = summarize(results, METRICS, test=paired_test)
    for key in ("backbone", "weights", "head", "split"):
        summary[key] = results[key].iloc[0]
    atomic_write_text(written["summary"], summary.to_csv(index=False))
    figures = out / "figures"
    for metric in ("accuracy", "balanced_accuracy"):
        plots.metric_vs_ratio(results, summary, metric, title, figures / f"{metric}_vs_ratio")
    class_names = cells[0]["class_names"]
    for ratio in sorted({cell["ratio"] for cell in cells}):
        matrix = np.sum([cell["confusion_matrix"] for cell in cells if cell["ratio"] == ratio], axis=0)
        n_seeds = sum(cell["ratio"] == ratio for cell in cells)
        plots.confusion(np.asarray(matrix), class_names, f"{title}\n{ratio:g}% synthetic, {n_seeds} seed(s) summed",
                        figures / f"confusion_ratio-{ratio_label(ratio)}")
    plots.training_curves(curves_table(cells), title, figures / "training_curves")
    written["figures"] = figures
    return written
