"""From finished cells to RESULTS/results.csv, summary.csv, answer.json and the figures.

summary.csv holds, per (arm, level, metric), the mean over seeds, its paired-bootstrap interval
(test images x seeds, `augstudy.classify.stats`), the paired difference against the real-only
classifier (the 0 % cell) with its interval and p-value, and a seed-only t-interval labelled as
such. The primary metric (`--primary`) is Holm-corrected over each arm's comparisons; the other
metrics are secondary and uncorrected, and say so in their `role` and `correction` columns.
answer.json states the answer for the primary metric in one sentence, with the data warnings and
the figures in reading order (paths relative to the results folder).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from augstudy.classify import equivalence, plots
from augstudy.classify.metrics import METRICS
from augstudy.classify.pooled import CAVEAT as POOLED_CAVEAT
from augstudy.classify.pooled import pool_folds
from augstudy.classify.stats import (
    BOOTSTRAP_METHOD,
    compare,
    draw_bootstrap,
    holm,
    per_seed_replicates,
    replicate_values,
    t_interval,
)
from stylegan2ada.io import atomic_write_json, atomic_write_text

RESULT_COLUMNS = (
    "arm", "ratio", "real_fraction", "design", "repeat", "fold", "gan_seed", "seed", "cell", *METRICS, "epochs_trained", "best_epoch", "monitor",
    "n_real", "n_added", "degenerate", "degenerate_reason", "train_accuracy", "n_test", "positive_class",
    "backbone", "weights", "head", "split", "steps_kept", "batches_per_epoch",
)
# What the report says of its design, first: why cross-validation is the stronger design.
DESIGN_NOTES = {
    "split": ("Design: one fixed train/validation/test split, so the answer is also that split's luck; repeated, "
              "grouped cross-validation (--design cv) tests every image and refits everything per fold, and is "
              "the stronger design."),
    "cv": ("Design: repeated, stratified, grouped cross-validation: every labelled image is tested once per "
           "repeat, and the GAN, classic copies, learning-curve subsets and standardisation are fitted inside each "
           "fold's training part, so the answer does not rest on one split's luck."),
}
# Figures drawn per metric, besides the primary one (which comes first).
FIGURE_METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "accuracy")
ARM_TITLES = {"gan": "GAN images", "classic": "Classic augmentation"}
ARM_NAMES = {"gan": "GAN images", "classic": "classic augmentation", "real": "real images only",
             "synthetic-only": "synthetic images only"}
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity",
                "specificity": "specificity", "roc_auc": "ROC AUC", "f1": "F1", "test_loss": "test loss"}
REFERENCE_LABEL = "real only (0 %)"
# A table row: (arm, ratio, real fraction, cell name, cell).
TableRow = tuple[str, float, float, str, dict[str, Any]]


def results_table(rows: Sequence[TableRow]) -> pd.DataFrame:
    """One row per (arm, level, seed); a cell shared by arms (the 0 % one) appears once per arm."""
    records = []
    for arm, ratio, fraction, name, cell in rows:
        extra = {key: value for key, value in cell["metrics"].items() if key.startswith("sensitivity_")}
        records.append({"design": "split", "repeat": 0, "fold": 0, "gan_seed": None, **cell, **cell["metrics"],
                        **extra, "arm": arm, "ratio": ratio, "real_fraction": fraction, "cell": name})
    columns = list(RESULT_COLUMNS) + sorted({key for record in records for key in record
                                             if key.startswith("sensitivity_")})
    table = pd.DataFrame(records)
    for column in columns:
        if column not in table:
            table[column] = np.nan
    arm_order = {arm: index for index, arm in enumerate(dict.fromkeys(row[0] for row in rows))}
    table = table[columns].assign(_arm=table["arm"].map(arm_order))
    table["gan_seed"] = table["gan_seed"].astype("Int64")  # null when a cell draws no synthetic images
    order = ["_arm", "ratio", "real_fraction", "repeat", "fold", "gan_seed", "seed"]
    return table.sort_values(order, ignore_index=True, na_position="first").drop(columns="_arm")


def curves_table(rows: Sequence[TableRow]) -> pd.DataFrame:
    """Long form per epoch: the plain (unpenalised) train and validation cross-entropy and, when the
    schedule followed another validation metric, that metric."""
    records = []
    seen = set()
    for arm, ratio, fraction, name, cell in rows:
        if name in seen:
            continue
        seen.add(name)
        label = level_label(arm, ratio, fraction) if cell["group"] != "baseline" else REFERENCE_LABEL
        quantities = {"train cross-entropy": "cross_entropy", "validation cross-entropy": "val_cross_entropy"}
        monitor = cell.get("monitor", "")
        if monitor and monitor != "val_cross_entropy":
            quantities[f"validation {monitor.removeprefix('val_').replace('_', ' ')} (monitored)"] = monitor
        for quantity, key in quantities.items():
            for epoch, value in enumerate(cell["history"].get(key, []), start=1):
                records.append({"cell": label, "seed": cell["seed"], "epoch": epoch, "quantity": quantity,
                                "value": value, "best_epoch": cell["best_epoch"]})
    return pd.DataFrame(records)


def ratio_label(ratio: float) -> str:
    """A file-name-safe, sortable name of a ratio: 25 -> "025", 12.5 -> "012.5"."""
    return f"{int(ratio):03d}" if float(ratio).is_integer() else f"{ratio:05.1f}"


def level_label(arm: str, ratio: float, fraction: float) -> str:
    if arm == "real":
        return f"real {fraction:g} %"
    if arm == "synthetic-only":
        return "synthetic only"
    return f"{arm} +{ratio:g} %"


def _reference_key(arm: str) -> tuple[str, float, float] | None:
    return {"gan": ("gan", 0, 100), "classic": ("classic", 0, 100), "real": ("real", 0, 100)}.get(arm)


def bootstrap_summary(
    results: pd.DataFrame, rows: Sequence[TableRow], baseline: Sequence[dict[str, Any]], primary: str,
    replicates: int, seed: int,
) -> tuple[pd.DataFrame, dict[tuple[str, float, float], dict[str, np.ndarray]], Any]:
    """summary.csv's rows, plus each group's per-seed replicate values (for the equivalents)."""
    first = rows[0][4]
    y_test = np.array([row["label"] for row in first["test_predictions"]])
    positive = first["class_names"].index(first["positive_class"])
    n_seeds = int(results["seed"].nunique())
    draws = draw_bootstrap(y_test, n_seeds, replicates, seed)
    by_cell: dict[str, dict[str, np.ndarray]] = {}

    def replicate_rows(cells: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        per_metric: dict[str, list[np.ndarray]] = {metric: [] for metric in METRICS}
        for cell in sorted(cells, key=lambda c: c["seed"]):
            name = f"{cell['group']}-{cell['level']}-{cell['seed']}"
            if name not in by_cell:
                probabilities = {"proba": [row["proba"] for row in cell["test_predictions"]]}
                by_cell[name] = {metric: values[0] for metric, values in
                                 per_seed_replicates([probabilities], y_test, positive, draws).items()}
            for metric in METRICS:
                per_metric[metric].append(by_cell[name][metric])
        return {metric: np.stack(values) for metric, values in per_metric.items()}

    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for arm, ratio, fraction, _, cell in rows:
        groups.setdefault((arm, ratio, fraction), []).append(cell)
    replicated = {key: replicate_rows(cells) for key, cells in groups.items()}
    baseline_replicates = replicate_rows(baseline)
    records = []
    for key, cells in groups.items():
        arm = key[0]
        reference_key = _reference_key(arm)
        is_reference = reference_key == key
        for metric in METRICS:
            point = np.array([cell["metrics"][metric] for cell in sorted(cells, key=lambda c: c["seed"])])
            reference = reference_point = None
            if not is_reference:
                ref_cells = groups.get(reference_key, baseline) if reference_key else baseline
                ref_reps = replicated.get(reference_key, baseline_replicates) if reference_key else baseline_replicates
                reference = ref_reps[metric]
                reference_point = np.array([c["metrics"][metric] for c in sorted(ref_cells, key=lambda c: c["seed"])])
            result = compare(replicated[key][metric], reference, point, reference_point, draws)
            low, high = t_interval(point)
            group_rows = results[(results["arm"] == key[0]) & (results["ratio"] == key[1])
                                 & (results["real_fraction"] == key[2])]
            records.append({
                "arm": key[0], "ratio": key[1], "real_fraction": key[2], "metric": metric,
                "role": "primary" if metric == primary else "secondary", "n": len(point),
                "mean": result.mean, "ci_low": result.ci[0], "ci_high": result.ci[1], "interval": BOOTSTRAP_METHOD,
                "seed_t_ci_low": low, "seed_t_ci_high": high,
                "std": float(np.std(point, ddof=1)) if len(point) > 1 else float("nan"),
                "n_degenerate": int(group_rows["degenerate"].sum()),
                "reference": "" if is_reference else REFERENCE_LABEL,
                "test": "" if is_reference else f"two-sided {BOOTSTRAP_METHOD}",
                "mean_difference": result.difference, "diff_ci_low": result.difference_ci[0],
                "diff_ci_high": result.difference_ci[1], "p_value": result.p_value,
                "n_real_per_class": float(np.mean([cell["n_real"] for cell in cells])) / len(first["class_names"]),
            })
    summary = pd.DataFrame(records)
    summary["p_holm"] = np.nan
    summary["correction"] = "none (secondary metric)"
    for arm in summary["arm"].unique():
        mask = (summary["arm"] == arm) & (summary["metric"] == primary) & summary["p_value"].notna()
        summary.loc[mask, "p_holm"] = holm(summary.loc[mask, "p_value"].tolist())
        summary.loc[(summary["arm"] == arm) & (summary["metric"] == primary), "correction"] = (
            f"Holm over the {int(mask.sum())} comparison(s) of this arm with 0 %")
    replicated_means = {key: {metric: replicate_values(values[metric], draws) for metric in METRICS}
                        for key, values in replicated.items()}
    return summary, replicated_means, draws


def real_equivalents(summary: pd.DataFrame, replicated: dict, primary: str) -> list[dict[str, Any]]:
    """Per GAN ratio above 0: its real-image equivalent on the real arm's learning curve."""
    curve = summary[(summary["arm"] == "real") & (summary["metric"] == primary)].sort_values("real_fraction")
    gan = summary[(summary["arm"] == "gan") & (summary["metric"] == primary) & (summary["ratio"] > 0)]
    if len(curve) < 2 or gan.empty:  # one point (--real-fractions 100) is no curve to read
        return []
    counts = curve["n_real_per_class"].to_numpy(float)
    full = float(counts.max())
    curve_reps = np.stack([replicated[("real", 0, fraction)][primary] for fraction in curve["real_fraction"]])
    sign = -1.0 if primary == "test_loss" else 1.0  # the curve is read as "higher is better"
    equivalents = []
    flat = equivalence.is_flat(counts, sign * curve["mean"].to_numpy(float))
    for row in gan.sort_values("ratio").itertuples():
        value = equivalence.real_equivalent(counts, sign * curve["mean"].to_numpy(float), sign * row.mean, full)
        low, high = equivalence.equivalent_interval(counts, sign * curve_reps,
                                                    sign * replicated[("gan", row.ratio, 100)][primary], full)
        equivalents.append({"ratio": row.ratio, "metric": primary, "value": row.mean, "equivalent": value,
                            "ci_low": low, "ci_high": high,
                            "words": equivalence.FLAT if flat else equivalence.describe(value),
                            "interval_words": f"{equivalence.describe(low)} to {equivalence.describe(high)}"})
    return equivalents


def _fmt(value: float) -> str:
    return f"{value:+.3f}" if np.isfinite(value) else "n/a"


def answer_sentence(summary: pd.DataFrame, primary: str, positive: str, equivalents: Sequence[dict[str, Any]]) -> str:
    """The answer for the primary metric in plain words."""
    name = METRIC_NAMES[primary]
    rows = summary[summary["metric"] == primary]
    lower_better = primary == "test_loss"
    opening = (f"Primary metric: {name} (positive class {positive!r}); intervals are 95 % paired bootstrap "
               f"intervals over test images and seeds.")
    parts = [opening]
    for arm in ("gan", "classic"):
        arm_rows = rows[(rows["arm"] == arm) & (rows["ratio"] > 0)]
        if arm_rows.empty:
            continue
        best = arm_rows.sort_values("mean", ascending=lower_better).iloc[0]
        significant = arm_rows[arm_rows["p_holm"] < 0.05]
        improves = (significant["mean_difference"] < 0) == lower_better
        text = (f"{ARM_TITLES[arm]}: the best ratio is {best['ratio']:g} % with {name} {best['mean']:.3f}, "
                f"{_fmt(best['mean_difference'])} against 0 % (interval {_fmt(best['diff_ci_low'])} to "
                f"{_fmt(best['diff_ci_high'])}); ")
        if significant.empty:
            text += (f"after Holm correction over {len(arm_rows)} ratio(s) no ratio differs from 0 % "
                     f"(smallest adjusted p = {arm_rows['p_holm'].min():.3g}).")
        else:
            # A ratio significantly worse than 0 % is an answer too, never "no ratio differs".
            verdicts = [f"{word} than 0 %: " + ", ".join(f"{r:g} %" for r in significant["ratio"][chosen])
                        for word, chosen in (("better", improves), ("worse", ~improves)) if chosen.any()]
            text += f"after Holm correction over {len(arm_rows)} ratio(s), {'; '.join(verdicts)}."
        parts.append(text)
    curve = rows[rows["arm"] == "real"].sort_values("real_fraction")
    if len(curve) > 1:
        smallest, full = curve.iloc[0], curve.iloc[-1]
        parts.append(f"Learning curve on real images only: with {smallest['real_fraction']:g} % of each class's real "
                     f"train images ({smallest['n_real_per_class']:.4g} instead of {full['n_real_per_class']:.4g} "
                     f"per class on average), {name} is {smallest['mean']:.3f} "
                     f"({_fmt(smallest['mean_difference'])}, interval {_fmt(smallest['diff_ci_low'])} to "
                     f"{_fmt(smallest['diff_ci_high'])}).")
    synthetic = rows[rows["arm"] == "synthetic-only"]
    if not synthetic.empty:
        row = synthetic.iloc[0]
        parts.append(f"Trained on synthetic images only and tested on real ones, {name} is {row['mean']:.3f} "
                     f"(interval {row['ci_low']:.3f} to {row['ci_high']:.3f}), {_fmt(row['mean_difference'])} "
                     f"against real images only.")
    if equivalents and all(item["words"] == equivalence.FLAT for item in equivalents):
        parts.append(f"Real-image equivalents: none can be read, since more real images did not raise {name} on "
                     "the learning curve (its isotonic fit is flat).")
    elif equivalents:
        listed = "; ".join(f"{item['ratio']:g} % GAN: {item['words']} (interval {item['interval_words']})"
                           for item in equivalents)
        parts.append(f"Real-image equivalents on the learning curve: {listed}.")
    return " ".join(parts)


def write_report(
    out: Path, rows: Sequence[TableRow], title: str, options: Any, warnings: Sequence[str],
    baseline: Sequence[dict[str, Any]],
) -> tuple[dict[str, Path], dict[str, Any]]:
    """results.csv, summary.csv, answer.json and every figure under `out`."""
    results = results_table(rows)
    written = {"results": out / "results.csv", "summary": out / "summary.csv", "answer": out / "answer.json",
               "figures": out / "figures"}
    atomic_write_text(written["results"], results.to_csv(index=False))
    design = getattr(options, "design", "split")
    all_rows = rows
    if design == "cv":  # provisional, until the cv inference lands: out-of-fold replicates
        rows, baseline = pool_folds(rows, baseline, int(options.gan_seeds))
        results = results_table(rows)
        warnings = [*warnings, POOLED_CAVEAT]
    primary, positive = options.primary, str(options.positive_class)
    summary, replicated, _ = bootstrap_summary(results, rows, baseline, primary, options.bootstrap,
                                               options.bootstrap_seed)
    for key in ("positive_class", "backbone", "weights", "head", "split", "design"):
        summary[key] = results[key].iloc[0]
    summary["warnings"] = " | ".join(warnings)
    atomic_write_text(written["summary"], summary.to_csv(index=False))
    equivalents = real_equivalents(summary, replicated, primary)
    sentence = f"{DESIGN_NOTES[design]} {answer_sentence(summary, primary, positive, equivalents)}"
    figures = written["figures"]
    caption_tail = f"Positive class: {positive}. {title}."
    listed: list[dict[str, str]] = []

    def add(stem: Path, caption: str) -> None:
        listed.append({"path": stem.with_suffix(".png").relative_to(out).as_posix(), "caption": caption})

    metrics = [primary] + [metric for metric in FIGURE_METRICS if metric != primary]
    for index, metric in enumerate(metrics):
        stem = figures / f"{metric}_vs_added"
        plots.arms_vs_added(results, summary, metric, f"{title}\npositive class: {positive}", stem)
        role = "Primary metric" if index == 0 else "Secondary metric (uncorrected)"
        add(stem, f"{role}: test {METRIC_NAMES[metric]} against the images added (% of the real train count "
                  f"per class), one line per arm; means over seeds with 95 % paired bootstrap intervals (test "
                  f"images x seeds), each seed as a point. {caption_tail}")
        if index == 0 and "real" in set(results["arm"]):
            curve = figures / "learning_curve"
            plots.learning_curve(summary, metric, equivalents, f"{title}\npositive class: {positive}", curve)
            add(curve, f"Learning curve: test {METRIC_NAMES[metric]} against real train images per class "
                       f"(real arm), with 95 % paired bootstrap intervals; dashed lines: GAN ratios, read off "
                       f"as real-image equivalents. {caption_tail}")
    matrices: dict[str, np.ndarray] = {}
    for arm, ratio, fraction in dict.fromkeys((row[0], row[1], row[2]) for row in rows):
        cells = [row[4] for row in rows if (row[0], row[1], row[2]) == (arm, ratio, fraction)]
        label = REFERENCE_LABEL if cells[0]["group"] == "baseline" else level_label(arm, ratio, fraction)
        matrices.setdefault(f"{label} ({len(cells)} seeds)", np.sum([c["confusion_matrix"] for c in cells], axis=0))
    stem = figures / "confusion_matrices"
    plots.confusion_grid(matrices, rows[0][4]["class_names"], title, stem)
    add(stem, "Confusion matrices on the test set, counts summed over seeds, each row's share shaded.")
    stem = figures / "training_curves"
    first_fold = [row for row in all_rows if not row[4].get("repeat") and not row[4].get("fold")
                  and not row[4].get("gan_seed")]
    plots.training_curves(curves_table(first_fold), title, stem)
    add(stem, "Training curves: plain cross-entropy (without regularisation penalties) on train and validation "
              "per epoch, one line per seed, and the monitored quantity when it is another; dots mark the "
              "epoch whose weights were kept.")
    answer = {
        "primary_metric": primary, "positive_class": positive, "sentence": sentence, "warnings": list(warnings),
        "figures": listed, "interval": BOOTSTRAP_METHOD, "bootstrap_replicates": options.bootstrap,
        "arms": list(options.arms), "title": title, "weights": str(results["weights"].iloc[0]),
        "design": {"design": design, "folds": getattr(options, "folds", 1), "repeats": getattr(options, "repeats", 1),
                   "gan_seeds": getattr(options, "gan_seeds", 1), "note": DESIGN_NOTES[design]},
        "real_equivalents": [{key: (value if not isinstance(value, float) or np.isfinite(value) else str(value))
                              for key, value in item.items()} for item in equivalents],
    }
    atomic_write_json(written["answer"], answer)
    return written, answer
