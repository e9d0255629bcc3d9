"""The `--schedule fixed` sensitivity sweep: does the answer survive equal training length?

With the plateau schedule each cell keeps its best epoch on validation, so arms can differ in how
long their classifiers trained (issue 20: baseline heads kept about 10 Adam steps, augmented cells
27 to 106); a difference between arms may then come from training length rather than from the
images. A study config asks for a check with `[sweep] sensitivity = {schedule = "fixed", epochs = N}`:
`augstudy run` repeats the sweep's grid into RESULTS/sensitivity-fixed with exactly N epochs per cell
and no early stopping (same cells, data, pools and seeds; features come from the cache, so only the
heads train) and states whether the confirmatory verdict agrees. Every cell trains N epochs, so the
steps per cell still grow with its training set (an augmented cell at +100 % takes twice the
baseline's steps per epoch); what the check removes is the early-stopping choice of length, the part
that differed up to tenfold.

The verdict compared is the confirmatory family on the primary metric (summary.csv rows with a Holm
p-value): per test, "better", "worse" or "no difference" at adjusted p < 0.05. The answer agrees when
every test has the same outcome under both schedules; a test one sweep has and the other lacks is a
disagreement, never silently dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augstudy.classify.arms import GENERATOR_NAMES
from augstudy.classify.metrics import LOWER_IS_BETTER

if TYPE_CHECKING:
    import pandas as pd

SENSITIVITY_DIR = "sensitivity-fixed"
SCHEDULES = ("fixed",)
ALPHA = 0.05
NOT_TESTED = "not tested"


class SensitivityError(ValueError):
    """A `sensitivity` setting that cannot run (the message says what to write instead)."""


@dataclass(frozen=True)
class SensitivitySpec:
    """The one training setting the sensitivity sweep changes: every cell trains `epochs` epochs."""

    epochs: int
    schedule: str = "fixed"


def parse_spec(value: Any, main_schedule: str = "plateau") -> SensitivitySpec | None:
    """A config's `sensitivity` table as a spec (None when absent); SensitivityError says what is wrong."""
    if value is None:
        return None
    example = 'sensitivity = {schedule = "fixed", epochs = 5}'
    if not isinstance(value, Mapping):
        raise SensitivityError(f"{value!r}: expected a table, e.g. {example}")
    unknown = sorted(set(value) - {"schedule", "epochs"})
    if unknown:
        raise SensitivityError(f"unknown key(s) {unknown}; keys are schedule and epochs, e.g. {example}")
    if value.get("schedule") not in SCHEDULES:
        raise SensitivityError(f"schedule = {value.get('schedule')!r}: the sensitivity sweep supports "
                               f"{', '.join(SCHEDULES)} (equal training length in every cell), e.g. {example}")
    epochs = value.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SensitivityError(f"epochs = {epochs!r}: give a whole number of epochs >= 1, e.g. {example}")
    if main_schedule == "fixed":
        raise SensitivityError("the sweep itself already uses schedule = \"fixed\"; drop sensitivity, or use the "
                               "plateau schedule for the main sweep")
    return SensitivitySpec(int(epochs), str(value["schedule"]))


def sensitivity_options(options: Any, spec: SensitivitySpec) -> Any:
    """The main sweep's options with only the schedule changed (patience and monitor belong to the
    plateau schedule, so they return to their defaults, which the fixed schedule requires); the
    results go to RESULTS/sensitivity-fixed and no models are saved (a check, not a deliverable)."""
    return dataclasses.replace(options, out=Path(options.out) / SENSITIVITY_DIR, schedule=spec.schedule,
                               epochs=spec.epochs, patience=None, monitor="cross_entropy", save_models="none")


def verdict(summary: pd.DataFrame, primary: str) -> dict[str, str]:
    """Each confirmatory test on the primary metric -> "better", "worse" or "no difference"."""
    rows = summary[(summary["metric"] == primary) & summary["p_holm"].notna()]
    lower_better = primary in LOWER_IS_BETTER
    outcomes = {}
    for row in rows.itertuples():
        if " - " in row.arm:  # a paired contrast of two arms at one ratio (report.CONTRASTS)
            first, second = row.arm.split(" - ")
            name = f"{GENERATOR_NAMES.get(first, first)} - {second} at {row.ratio:g} %"
        else:
            name = f"{GENERATOR_NAMES.get(row.arm, row.arm)} +{row.ratio:g} % vs 0 %"
        if row.p_holm >= ALPHA:
            outcomes[name] = "no difference"
        else:
            outcomes[name] = "better" if (row.mean_difference < 0) == lower_better else "worse"
    return outcomes


def compare(main: Mapping[str, str], fixed: Mapping[str, str], epochs: int) -> dict[str, Any]:
    """Whether the fixed-schedule verdict agrees with the main one, and the sentence that says so."""
    names = list(dict.fromkeys([*main, *fixed]))
    changed = [name for name in names if main.get(name, NOT_TESTED) != fixed.get(name, NOT_TESTED)]
    setting = (f"With a fixed {epochs}-epoch schedule (every cell trains {epochs} epochs, no early stopping, so "
               "training length no longer follows the arm)")
    if not names:
        sentence = f"{setting} there is no confirmatory test to compare."
    elif not changed:
        differing = [f"{name}: {main[name]}" for name in names if main[name] != "no difference"]
        sentence = (f"{setting} the answer is unchanged: "
                    + ("; ".join(differing) if differing else "no confirmatory test differs under either schedule")
                    + ".")
    else:
        listed = "; ".join(f"{name}: {main.get(name, NOT_TESTED)} with early stopping, "
                           f"{fixed.get(name, NOT_TESTED)} with the fixed schedule" for name in changed)
        sentence = (f"{setting} the answer changes: {listed}; so the main answer depends on how long the "
                    "classifiers trained.")
    return {"schedule": "fixed", "epochs": epochs, "agrees": not changed if names else None, "changed": changed,
            "main": dict(main), "fixed": dict(fixed), "sentence": sentence}


def attach(answer: dict[str, Any], comparison: dict[str, Any]) -> dict[str, Any]:
    """The main answer.json with the comparison recorded and its sentence appended once (a re-run
    replaces the earlier sentence instead of adding another)."""
    sentence = answer["sentence"]
    earlier = (answer.get("sensitivity") or {}).get("sentence")
    if earlier:
        sentence = sentence.removesuffix(f" {earlier}")
    return {**answer, "sentence": f"{sentence} {comparison['sentence']}", "sensitivity": comparison}
