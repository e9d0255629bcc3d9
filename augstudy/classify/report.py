"""From finished cells to RESULTS/results.csv, summary.csv, answer.json and the figures.

summary.csv holds, per (arm, level, metric), the mean over cells and its interval, the paired
difference against the real-only classifier (the 0 % cell) with its interval, p-value and minimum
detectable effect, and per ratio the paired contrasts between the added-image arms (GAN - classic,
diffusion - classic, GAN - diffusion); the intervals and tests are `augstudy.classify.inference`'s,
whose error rates bench/calibration.py measures. On the primary metric (`--primary`) the gan,
diffusion and classic ratios vs 0 % and those contrasts are one confirmatory family, Holm-corrected
together (or, with `--primary-ratio`, the one GAN ratio vs 0 % is the only confirmatory test);
everything else is descriptive and says so in its `correction` column. answer.json states the answer for the primary metric in one sentence, with the data
warnings and the figures in reading order (paths relative to the results folder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from augstudy.classify import equivalence, plots
from augstudy.classify.arms import ADDED_ARMS, GENERATOR_NAMES, SYNTHETIC_ONLY
from augstudy.classify.inference import CellCache, cell_key, estimate
from augstudy.classify.metrics import BOUNDED, LOWER_IS_BETTER, METRICS
from augstudy.classify.stats import draw_bootstrap, holm, per_seed_replicates, replicate_values
from stylegan2ada.io import atomic_write_json, atomic_write_text

RESULT_COLUMNS = (
    "arm", "ratio", "real_fraction", "design", "repeat", "fold", "gan_seed", "seed", "cell", *METRICS,
    "epochs_trained", "best_epoch", "steps_kept", "monitor",
    "n_real", "n_added", "degenerate", "degenerate_reason", "train_accuracy", "n_test", "positive_class",
    "backbone", "weights", "head", "split", "batches_per_epoch",
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
ARM_TITLES = {"gan": "GAN images", "diffusion": "Diffusion images", "classic": "Classic augmentation"}
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity",
                "specificity": "specificity", "roc_auc": "ROC AUC", "f1": "F1", "test_loss": "test loss"}
REFERENCE_LABEL = "real only (0 %)"
# How each design's real-image equivalents get their interval (equivalence: equivalent_interval, mapped_interval).
EQUIVALENT_INTERVALS = {
    "split": "paired bootstrap over test images and seeds",
    "cv": ("the gain's corrected resampled t interval mapped through the fitted learning curve "
           "(the curve taken as known)"),
}
# A table row: (arm, ratio, real fraction, cell name, cell).
TableRow = tuple[str, float, float, str, dict[str, Any]]


def results_table(rows: Sequence[TableRow], batch_size: int | None = None) -> pd.DataFrame:
    """One row per (arm, level, seed); a cell shared by arms (the 0 % one) appears once per arm."""
    records = []
    for arm, ratio, fraction, name, cell in rows:
        extra = {key: value for key, value in cell["metrics"].items() if key.startswith("sensitivity_")}
        records.append({"design": "split", "repeat": 0, "fold": 0, "gan_seed": None, **cell, **cell["metrics"],
                        **extra, "arm": arm, "ratio": ratio, "real_fraction": fraction, "cell": name,
                        "steps_kept": kept_steps(cell, batch_size)})
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
    if arm in SYNTHETIC_ONLY:
        return "synthetic only" if arm == "synthetic-only" else "diffusion only"
    return f"{arm} +{ratio:g} %"


def _reference_key(arm: str) -> tuple[str, float, float] | None:
    return (arm, 0, 100) if arm in (*ADDED_ARMS, "real") else None


# Means that agree to this many decimals are reported as a tie (the committed "best" once won by 2e-16).
TIE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Contrast:
    """A paired contrast of two added-image arms at equal added counts, and how the answer names it."""

    arm: str
    other: str
    label: str  # in the Holm family's description
    title: str  # opens its sentence in the answer
    against: str  # what `arm`'s images are compared with
    images: str  # what `arm` adds


# summary.csv's contrast arms.
CONTRASTS = {
    "gan - classic": Contrast("gan", "classic", "GAN - classic", "GAN minus classic augmentation",
                              "classic augmentation", "GAN images"),
    "diffusion - classic": Contrast("diffusion", "classic", "diffusion - classic", "Diffusion minus classic "
                                    "augmentation", "classic augmentation", "diffusion images"),
    "gan - diffusion": Contrast("gan", "diffusion", "GAN - diffusion", "GAN minus diffusion images",
                                "diffusion images", "GAN images"),
}


def _design(rows: Sequence[TableRow]) -> str:
    return "cv" if len({cell_key(row[4])[:2] for row in rows}) > 1 else "split"


def inference_summary(
    results: pd.DataFrame, rows: Sequence[TableRow], baseline: Sequence[dict[str, Any]], primary: str,
    primary_ratio: float | None = None,
) -> pd.DataFrame:
    """summary.csv's rows: per (arm, level, metric) the mean and its interval, the paired difference
    against the arm's 0 % cell with its interval, p-value and minimum detectable effect; plus, per
    ratio, the paired contrasts (CONTRASTS) of the arms present. The confirmatory family on the primary
    metric is every gan, diffusion and classic ratio against 0 % and every contrast, Holm-corrected
    together, or the single test of GAN at `primary_ratio` against 0 %; every other p-value is
    descriptive."""
    first = rows[0][4]
    positive = first["class_names"].index(first["positive_class"])
    values = CellCache(positive)
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for arm, ratio, fraction, _, cell in rows:
        groups.setdefault((arm, ratio, fraction), []).append(cell)
    comparisons: list[tuple[tuple[str, float, float], list[dict[str, Any]] | None, str]] = []
    for key in groups:
        reference_key = _reference_key(key[0])
        if reference_key == key:
            comparisons.append((key, None, ""))
        else:
            comparisons.append((key, groups.get(reference_key, list(baseline)) if reference_key else list(baseline),
                                REFERENCE_LABEL))
    records = []
    for (arm, ratio, fraction), reference, reference_label in comparisons:
        cells = groups[(arm, ratio, fraction)]
        group_rows = results[(results["arm"] == arm) & (results["ratio"] == ratio)
                             & (results["real_fraction"] == fraction)]
        for metric in METRICS:
            level = estimate(cells, None, metric, values)
            record = {
                "arm": arm, "ratio": ratio, "real_fraction": fraction, "metric": metric,
                "role": "primary" if metric == primary else "secondary", "n": len(cells),
                "n_seeds": level.n_seeds, "n_gan_seeds": level.n_gan_seeds, "n_blocks": level.n_blocks,
                "mean": level.estimate, "ci_low": level.ci[0], "ci_high": level.ci[1], "interval": level.method,
                "se": level.se,
                "std": float(np.std(group_rows[metric], ddof=1)) if len(group_rows) > 1 else float("nan"),
                "n_degenerate": int(group_rows["degenerate"].sum()), "reference": reference_label,
                "test": "", "mean_difference": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan,
                "p_value": np.nan, "mde_80": np.nan, "se_difference": np.nan, "df": np.nan,
                "n_real_per_class": float(np.mean([c["n_real"] for c in cells])) / len(first["class_names"]),
                "n_unique_per_class": equivalence.mean_distinct_per_class(cells),
            }
            if reference is not None:
                record.update(_difference_columns(estimate(cells, reference, metric, values)))
            records.append(record)
    for contrast_arm, pair in CONTRASTS.items():
        for ratio in sorted({key[1] for key in groups if key[0] == pair.arm and key[1] > 0}):
            if (pair.other, ratio, 100) not in groups:
                continue
            cells = groups[(pair.arm, ratio, 100)]
            for metric in METRICS:
                contrast = estimate(cells, groups[(pair.other, ratio, 100)], metric, values)
                records.append({
                    "arm": contrast_arm, "ratio": ratio, "real_fraction": 100, "metric": metric,
                    "role": "primary" if metric == primary else "secondary", "n": len(cells),
                    "n_seeds": contrast.n_seeds, "n_gan_seeds": contrast.n_gan_seeds, "n_blocks": contrast.n_blocks,
                    "mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "interval": contrast.method, "se": np.nan,
                    "reference": f"{pair.other} +{ratio:g} %", **_difference_columns(contrast),
                    "n_real_per_class": np.nan,
                })
    summary = pd.DataFrame(records)
    return _correct(summary, primary, primary_ratio)


def _difference_columns(result: Any) -> dict[str, Any]:
    return {"test": f"two-sided {result.method}", "mean_difference": result.estimate,
            "diff_ci_low": result.ci[0], "diff_ci_high": result.ci[1], "p_value": result.p_value,
            "se_difference": result.se, "df": result.df, "mde_80": np.nan}


def _correct(summary: pd.DataFrame, primary: str, primary_ratio: float | None) -> pd.DataFrame:
    """Holm over the confirmatory family, the family's minimum detectable effects, and the labels."""
    summary["p_holm"] = np.nan
    summary["correction"] = "none (secondary metric)"
    on_primary = (summary["metric"] == primary) & summary["p_value"].notna()
    in_family = on_primary & summary["arm"].isin((*ADDED_ARMS, *CONTRASTS))
    if primary_ratio is not None:
        in_family = on_primary & (summary["arm"] == "gan") & (summary["ratio"] == primary_ratio)
        label = f"none needed: the one pre-declared confirmatory test (GAN +{primary_ratio:g} % vs 0 %)"
    else:
        members = [f"{arm} ratios vs 0 %" for arm in ADDED_ARMS if (in_family & (summary["arm"] == arm)).any()]
        members += [f"{contrast.label} at each ratio" for arm, contrast in CONTRASTS.items()
                    if (in_family & (summary["arm"] == arm)).any()]
        label = f"Holm over the {int(in_family.sum())} confirmatory tests ({', '.join(members)})"
    summary.loc[in_family, "p_holm"] = holm(summary.loc[in_family, "p_value"].tolist())
    summary.loc[in_family, "correction"] = label
    summary.loc[on_primary & ~in_family, "correction"] = "none (descriptive, outside the confirmatory family)"
    alpha = 0.05 / max(int(in_family.sum()), 1)
    for index in summary.index[summary["p_value"].notna()]:
        se, df = summary.at[index, "se_difference"], summary.at[index, "df"]
        if np.isfinite(se) and df > 0:
            a = alpha if in_family[index] else 0.05
            summary.at[index, "mde_80"] = float((stats.t.ppf(1 - a / 2, df) + stats.t.ppf(0.8, df)) * se)
    return summary


def bootstrap_replicates(
    rows: Sequence[TableRow], primary: str, replicates: int, seed: int,
) -> dict[tuple[str, float, float], dict[str, np.ndarray]]:
    """Per real and gan group, the bootstrap replicate means (test images x seeds) that the
    real-image equivalents' intervals read; split design only (one shared test set)."""
    first = rows[0][4]
    y_test = np.array([row["label"] for row in first["test_predictions"]])
    positive = first["class_names"].index(first["positive_class"])
    groups: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for arm, ratio, fraction, _, cell in rows:
        if arm in ("real", *GENERATOR_NAMES):
            groups.setdefault((arm, ratio, fraction), []).append(cell)
    n_seeds = max(len({cell_key(cell)[3] for cell in cells}) for cells in groups.values())
    draws = draw_bootstrap(y_test, n_seeds, replicates, seed)
    replicated = {}
    for key, cells in groups.items():
        cells = sorted(cells, key=lambda c: c["seed"])
        per_seed = per_seed_replicates([{"proba": [r["proba"] for r in c["test_predictions"]]} for c in cells],
                                       y_test, positive, draws)
        replicated[key] = {primary: replicate_values(per_seed[primary], draws)}
    return replicated


def real_equivalents(summary: pd.DataFrame, replicated: dict | None, primary: str) -> list[dict[str, Any]]:
    """Per GAN (and diffusion) ratio above 0: the distinct real images per class it takes to gain what
    it gains over 0 %, on the real arm's learning curve; the interval from the bootstrap `replicated` (split design),
    else (cv) the gain's interval mapped through the fitted curve (equivalence.mapped_interval)."""
    curve = summary[(summary["arm"] == "real") & (summary["metric"] == primary)].sort_values("real_fraction")
    generated = summary[summary["arm"].isin(GENERATOR_NAMES) & (summary["metric"] == primary) & (summary["ratio"] > 0)]
    if len(curve) < 2 or generated.empty:  # one point (--real-fractions 100) is no curve to read
        return []
    counts, unit = equivalence.curve_axis(curve)
    curve_span = equivalence.span(counts)
    curve_reps = (None if replicated is None else
                  np.stack([replicated[("real", 0, fraction)][primary] for fraction in curve["real_fraction"]]))
    sign = -1.0 if primary == "test_loss" else 1.0  # the curve is read as "higher is better"
    equivalents = []
    flat = equivalence.is_flat(counts, sign * curve["mean"].to_numpy(float))
    order = {arm: index for index, arm in enumerate(GENERATOR_NAMES)}  # GAN's ratios first, then diffusion's
    for row in generated.assign(_order=generated["arm"].map(order)).sort_values(["_order", "ratio"]).itertuples():
        value = equivalence.real_equivalent(counts, sign * curve["mean"].to_numpy(float), sign * row.mean_difference)
        low, high = equivalence.mapped_interval(counts, sign * curve["mean"].to_numpy(float),
                                                sign * row.diff_ci_low, sign * row.diff_ci_high) \
            if curve_reps is None or replicated is None else \
            equivalence.equivalent_interval(counts, sign * curve_reps,
                                            sign * (replicated[(row.arm, row.ratio, 100)][primary] - curve_reps[-1]))
        equivalents.append({"arm": row.arm, "ratio": row.ratio, "metric": primary, "value": row.mean, "gain": row.mean_difference,
                            "equivalent": value, "ci_low": low, "ci_high": high, "unit": unit,
                            "words": equivalence.FLAT if flat else equivalence.describe(value, curve_span, unit),
                            "interval_words": "" if np.isnan(low) else
                            f"{equivalence.describe(low, curve_span, unit)} to "
                            f"{equivalence.describe(high, curve_span, unit)}"})
    return equivalents


# Arms whose classifiers keep more than this many times the optimizer steps of another's are flagged.
BUDGET_RATIO = 2.0


def _curve_unit(summary: pd.DataFrame, primary: str) -> str:
    """The learning curve's x unit (distinct images, or files for older cells); "" without a real arm."""
    curve = summary[(summary["arm"] == "real") & (summary["metric"] == primary)]
    return equivalence.curve_axis(curve)[1] if len(curve) else ""


def kept_steps(cell: dict[str, Any], batch_size: int | None) -> float:
    """Optimizer steps up to the kept epoch: the cell's `steps_kept`, else (older cells) best epoch x
    batches per epoch from its training inputs and the batch size."""
    if cell.get("steps_kept") is not None:
        return float(cell["steps_kept"])
    if batch_size and cell.get("best_epoch") is not None and cell.get("n_train_inputs"):
        return float(cell["best_epoch"] * -(-int(cell["n_train_inputs"]) // int(batch_size)))
    return float("nan")


def training_budgets(rows: Sequence[TableRow], batch_size: int | None) -> tuple[dict[str, float], str]:
    """Median kept steps per arm and level, and a warning when they differ by more than BUDGET_RATIO:
    an arm that trains longer can win by training length rather than by its images."""
    per_level: dict[str, list[float]] = {}
    for arm, ratio, fraction, _, cell in rows:
        label = REFERENCE_LABEL if cell.get("group") == "baseline" else level_label(arm, ratio, fraction)
        per_level.setdefault(label, []).append(kept_steps(cell, batch_size))
    medians = {label: float(np.nanmedian(steps)) for label, steps in per_level.items()
               if not np.isnan(steps).all()}
    if len(medians) < 2 or min(medians.values()) <= 0:
        return medians, ""
    low, high = min(medians, key=medians.get), max(medians, key=medians.get)  # type: ignore[arg-type]
    if medians[high] <= BUDGET_RATIO * medians[low]:
        return medians, ""
    return medians, (f"unequal training budgets: the classifiers of {high} keep a median of {medians[high]:.0f} "
                     f"optimizer steps, those of {low} {medians[low]:.0f} (more than {BUDGET_RATIO:g}x); a "
                     "difference between them may come from training length (a --schedule fixed sweep "
                     "tests that)")


def _audit_caveats(audit: dict[str, Any] | None, weights: str) -> list[str]:
    """What the shortcut audit and the backbone mean for the accuracies, as the answer's first words."""
    caveats = []
    if "random" in weights.lower():
        caveats.append("This data cannot tell whether synthetic images help a classifier see the pathology: the "
                       "backbone is random-init (no learned features), so these accuracies test the pipeline.")
    if not audit:
        return caveats
    by_name = {item["name"]: item for item in audit.get("groups", [])}
    shortcuts = [by_name[name] for name in audit.get("shortcuts", []) if name in by_name]
    weak = [by_name[name] for name in audit.get("weak_shortcuts", []) if name in by_name]
    partial = audit.get("partial_shortcuts", [])
    if shortcuts or weak or partial:
        named = [f"{item['title'].lower()} (AUC {item['auc']:.2f})" for item in shortcuts]
        named += [f"{item['title'].lower()}, weakly (AUC {item['auc']:.2f}, p = {item['p_value']:.2g})"
                  for item in weak]
        named += [cue["sentence"].split(":")[0].lower() for cue in partial]
        caveats.append("This data cannot tell whether a gain is about pathology: the shortcut audit finds cues "
                       f"that predict the label without it ({'; '.join(named)}), and a classifier may learn "
                       "those instead.")
    # Near-perfect separation without learned knowledge (an intensity histogram, a random-init backbone);
    # a pretrained backbone separating the classes is what a visible pathology looks like, so it is no caveat.
    unlearned = [item for item in audit.get("groups", []) if item.get("kind") == "content"
                 and item.get("auc", 0) >= 0.95 and (item["name"] != "backbone" or "random" in item["title"].lower())]
    if unlearned:
        named = "; ".join(f"{item['title']} (AUC {item['auc']:.3f})" for item in unlearned)
        caveats.append(f"Features that need no learned knowledge separate the classes almost perfectly ({named}): "
                       "the classes differ in simple ways, so near-perfect accuracies here say little about the "
                       "pathology.")
    return caveats


def read_audit(path: Path | None) -> dict[str, Any] | None:
    """The audit report at `path` (None when absent or not given: the answer then says nothing of it)."""
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _fmt(value: float) -> str:
    return f"{value:+.3f}" if np.isfinite(value) else "n/a"


def _ratios(values: Sequence[float]) -> str:
    return ", ".join(f"{value:g} %" for value in values)


def _best(arm_rows: pd.DataFrame, lower_better: bool) -> str:
    """The highest test mean, named as descriptive, with every ratio within TIE_TOLERANCE of it."""
    top = arm_rows["mean"].min() if lower_better else arm_rows["mean"].max()
    tied = arm_rows[(arm_rows["mean"] - top).abs() < TIE_TOLERANCE].sort_values("ratio")
    if len(tied) > 1:
        return f"the highest test means (descriptive, tied within {TIE_TOLERANCE:g}) are at {_ratios(tied['ratio'])}"
    return f"the highest test mean (descriptive, chosen on the test set) is at {tied['ratio'].iloc[0]:g} %"


def _verdict(family_rows: pd.DataFrame, lower_better: bool, against: str) -> str:
    significant = family_rows[family_rows["p_holm"] < 0.05]
    if significant.empty:
        return f"no ratio differs from {against} (smallest adjusted p = {family_rows['p_holm'].min():.3g})"
    improves = (significant["mean_difference"] < 0) == lower_better
    # A ratio significantly worse than 0 % is an answer too, never "no ratio differs".
    return "; ".join(f"{word} than {against}: " + _ratios(significant["ratio"][chosen])
                     for word, chosen in (("better", improves), ("worse", ~improves)) if chosen.any())


def headroom_statement(rows: pd.DataFrame, primary: str) -> str:
    """Whether the study could have seen a gain: the room the 0 % baseline leaves against the
    smallest gain its confirmatory GAN tests detect with 80 % power."""
    if not {"reference", "mde_80", "p_holm"} <= set(rows.columns):
        return ""
    reference = rows[(rows["arm"].isin(ADDED_ARMS + ("real",))) & (rows["reference"].fillna("") == "")]
    gan = rows[rows["arm"].isin(GENERATOR_NAMES) & rows["mde_80"].notna() & rows["p_holm"].notna()]
    if reference.empty or gan.empty or primary not in BOUNDED:
        return ""
    baseline = float(reference["mean"].iloc[0])
    lower_better = primary in LOWER_IS_BETTER
    room = baseline if lower_better else 1.0 - baseline
    mde = float(gan["mde_80"].min())
    if room < mde:
        return (f"This study cannot detect a gain: the 0 % baseline is {baseline:.3f}, leaving at most "
                f"+{room:.3f}, less than the smallest gain its tests detect with 80 % power (+{mde:.3f}); "
                "'no ratio differs' here says nothing about whether the images help.")
    return f"The smallest gain its tests detect with 80 % power is +{mde:.3f} (the baseline leaves +{room:.3f})."


def answer_sentence(summary: pd.DataFrame, primary: str, positive: str, equivalents: Sequence[dict[str, Any]],
                    design: str = "split", caveats: Sequence[str] = ()) -> str:
    """The answer for the primary metric in plain words; `caveats` (what the audit or the backbone
    means for the accuracy) come first."""
    name = METRIC_NAMES[primary]
    rows = summary[summary["metric"] == primary]
    lower_better = primary in LOWER_IS_BETTER
    method = rows["interval"].dropna().iloc[0] if "interval" in rows and rows["interval"].notna().any() else ""
    design_words = ("one fixed train/validation/test split" if design == "split"
                    else "repeated cross-validation, each fold its own test set")
    parts = [*caveats, (f"Primary metric: {name} (positive class {positive!r}); design: {design_words}; "
                        f"95 % intervals: {method}.")]
    family = rows[rows["p_holm"].notna()] if "p_holm" in rows else rows.iloc[0:0]
    correction = family["correction"].iloc[0] if len(family) and "correction" in family else ""
    if correction:
        parts.append(f"Confirmatory tests: {correction}; all other p-values are descriptive.")
    for arm in ADDED_ARMS:
        arm_rows = rows[(rows["arm"] == arm) & (rows["ratio"] > 0)]
        if arm_rows.empty:
            continue
        top = arm_rows.sort_values("mean", ascending=lower_better).iloc[0]
        text = (f"{ARM_TITLES[arm]}: {_best(arm_rows, lower_better)}, {name} {top['mean']:.3f}, "
                f"{_fmt(top['mean_difference'])} against 0 % (interval {_fmt(top['diff_ci_low'])} to "
                f"{_fmt(top['diff_ci_high'])}, not adjusted for the choice); ")
        tested = arm_rows[arm_rows["p_holm"].notna()]
        text += (_verdict(tested, lower_better, "0 %") + "." if not tested.empty
                 else "its ratios are outside the confirmatory test (descriptive only).")
        parts.append(text)
    for contrast_arm, pair in CONTRASTS.items():
        contrast = rows[rows["arm"] == contrast_arm].sort_values("ratio")
        if contrast.empty:
            continue
        listed = "; ".join(f"{row.ratio:g} %: {_fmt(row.mean_difference)} ({_fmt(row.diff_ci_low)} to "
                           f"{_fmt(row.diff_ci_high)})" for row in contrast.itertuples())
        tested = contrast[contrast["p_holm"].notna()]
        verdict = (_verdict(tested, lower_better, pair.against) if not tested.empty
                   else "descriptive only").replace("ratio differs", f"ratio's {pair.images} differ")
        parts.append(f"{pair.title} at equal added counts, paired: {listed}; {verdict}.")
    headroom = headroom_statement(rows, primary)
    if headroom:
        parts.append(headroom)
    generated = rows[rows["arm"].isin(GENERATOR_NAMES)]
    if design == "split" and len(generated) and "n_gan_seeds" in generated and generated["n_gan_seeds"].max() <= 1:
        parts.append("With one trained run per generator, the intervals hold for that run's images: a generator's "
                     "own run-to-run variation is not in them (several generator seeds, or the CV design, show it).")
    curve = rows[rows["arm"] == "real"].sort_values("real_fraction")
    if len(curve) > 1:
        smallest = curve.iloc[0]
        (few, many), unit = equivalence.curve_axis(curve.iloc[[0, -1]])
        parts.append(f"Learning curve on real images only: with {smallest['real_fraction']:g} % of each class's real "
                     f"train images ({few:.4g} instead of {many:.4g} {unit} on average), {name} is "
                     f"{smallest['mean']:.3f} "
                     f"({_fmt(smallest['mean_difference'])}, interval {_fmt(smallest['diff_ci_low'])} to "
                     f"{_fmt(smallest['diff_ci_high'])}).")
    for arm, images in SYNTHETIC_ONLY.items():
        synthetic = rows[rows["arm"] == arm]
        if not synthetic.empty:
            row = synthetic.iloc[0]
            parts.append(f"Trained on {images} only and tested on real ones, {name} is {row['mean']:.3f} "
                         f"(interval {row['ci_low']:.3f} to {row['ci_high']:.3f}), {_fmt(row['mean_difference'])} "
                         f"against real images only.")
    if equivalents and all(item["words"] == equivalence.FLAT for item in equivalents):
        parts.append(f"Real-image equivalents: none can be read, since more real images did not raise {name} on "
                     "the learning curve (its isotonic fit is flat).")
    elif equivalents:
        listed = "; ".join(f"{item['ratio']:g} % {GENERATOR_NAMES[item.get('arm', 'gan')]}: {item['words']}"
                           + (f" (interval {item['interval_words']})" if item["interval_words"] else "")
                           for item in equivalents)
        unit = equivalents[0].get("unit", equivalence.UNIQUE_UNIT)
        parts.append(f"Real-image equivalents (the {unit} whose addition at the top of the "
                     f"fitted learning curve gains what each generator's ratio gains over 0 %): {listed}.")
    return " ".join(parts)


def write_report(
    out: Path, rows: Sequence[TableRow], title: str, options: Any, warnings: Sequence[str],
    baseline: Sequence[dict[str, Any]],
) -> tuple[dict[str, Path], dict[str, Any]]:
    """results.csv, summary.csv, answer.json and every figure under `out`."""
    batch_size = getattr(options, "batch_size", None)
    results = results_table(rows, batch_size)
    budgets, budget_warning = training_budgets(rows, batch_size)
    warnings = [*warnings, *([budget_warning] if budget_warning else [])]
    written = {"results": out / "results.csv", "summary": out / "summary.csv", "answer": out / "answer.json",
               "figures": out / "figures"}
    atomic_write_text(written["results"], results.to_csv(index=False))
    primary, positive = options.primary, str(options.positive_class)
    design = getattr(options, "design", None) or _design(rows)
    summary = inference_summary(results, rows, baseline, primary, getattr(options, "primary_ratio", None))
    for key in ("positive_class", "backbone", "weights", "head", "split"):
        summary[key] = results[key].iloc[0]
    summary["design"] = design
    summary["warnings"] = " | ".join(warnings)
    atomic_write_text(written["summary"], summary.to_csv(index=False))
    replicated = (bootstrap_replicates(rows, primary, options.bootstrap, options.bootstrap_seed)
                  if design == "split" and "real" in set(results["arm"]) else None)
    equivalents = real_equivalents(summary, replicated, primary)
    audit = read_audit(getattr(options, "audit", None))
    weights = str(results["weights"].iloc[0])
    caveats = _audit_caveats(audit, weights)
    sentence = f"{answer_sentence(summary, primary, positive, equivalents, design, caveats)} {DESIGN_NOTES[design]}"
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
                  f"per class), one line per arm; means over cells with 95 % intervals "
                  f"({summary['interval'].iloc[0]}), each seed as a point. {caption_tail}")
        if index == 0 and "real" in set(results["arm"]):
            curve = figures / "learning_curve"
            plots.learning_curve(summary, metric, equivalents, f"{title}\npositive class: {positive}", curve)
            add(curve, f"Learning curve: test {METRIC_NAMES[metric]} against {_curve_unit(summary, metric)} "
                       f"(real arm), with 95 % intervals; dashed lines: each generator's ratios, read off "
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
    first_fold = [row for row in rows if not row[4].get("repeat") and not row[4].get("fold")
                  and not row[4].get("gan_seed")]
    plots.training_curves(curves_table(first_fold), title, stem)
    add(stem, "Training curves: plain cross-entropy (without regularisation penalties) on train and validation "
              "per epoch, one line per seed, and the monitored quantity when it is another; dots mark the "
              "epoch whose weights were kept.")
    answer = {
        "primary_metric": primary, "positive_class": positive, "sentence": sentence, "warnings": list(warnings),
        "figures": listed, "interval": str(summary["interval"].iloc[0]),
        "design": {"design": design, "folds": getattr(options, "folds", 1), "repeats": getattr(options, "repeats", 1),
                   "gan_seeds": getattr(options, "gan_seeds", 1), "note": DESIGN_NOTES[design]},
        "equivalent_interval": EQUIVALENT_INTERVALS[design], "learning_curve_x": _curve_unit(summary, primary),
        "bootstrap_replicates": options.bootstrap,
        "arms": list(options.arms), "title": title, "weights": weights,
        "random_init_backbone": "random" in weights.lower(), "caveats": caveats,
        "audit": None if audit is None else {
            "verdict": audit.get("verdict"), "shortcuts": audit.get("shortcuts", []),
            "partial_shortcuts": [cue.get("sentence") for cue in audit.get("partial_shortcuts", [])],
            "flags": audit.get("flags", [])},
        "median_kept_steps": budgets,
        "real_equivalents": [{key: (value if not isinstance(value, float) or np.isfinite(value) else str(value))
                              for key, value in item.items()} for item in equivalents],
    }
    atomic_write_json(written["answer"], answer)
    return written, answer
