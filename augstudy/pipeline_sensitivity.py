"""The `[sweep] sensitivity` step of `augstudy run`: the fixed-schedule sweep after each main sweep.

It runs as a step of its own in study_state.json (`sensitivity:<split>`), so it resumes, skips when
done and re-runs when the main sweep did; it writes RESULTS/sensitivity-fixed (a complete sweep
folder) with comparison.json beside it, and records the comparison in the main answer.json, whose
sentence the study report opens with (augstudy.classify.sensitivity says what is compared).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from augstudy.classify.sensitivity import attach, compare, parse_spec, sensitivity_options, verdict
from stylegan2ada.io import atomic_write_json

if TYPE_CHECKING:
    from augstudy.pipeline import Study

COMPARISON_NAME = "comparison.json"


def run_sensitivity(study: Study, options: Any, split: str | None) -> None:
    """Run the fixed-schedule sweep for the main sweep `options` when the config asks for it."""
    spec = parse_spec(study.config.sections["sweep"].get("sensitivity"), options.schedule)
    if spec is None:
        return
    fixed = sensitivity_options(options, spec)
    study.run_step(f"sensitivity:{split or 'default'}", fixed, lambda: _run(options, fixed, spec.epochs))


def _run(options: Any, fixed: Any, epochs: int) -> dict[str, Any]:
    from augstudy.classify.sweep import run_sweep

    outcome = run_sweep(fixed)
    main_out = Path(options.out)
    primary = options.primary
    comparison = compare(verdict(pd.read_csv(main_out / "summary.csv"), primary),
                         verdict(pd.read_csv(Path(fixed.out) / "summary.csv"), primary), epochs)
    atomic_write_json(Path(fixed.out) / COMPARISON_NAME, comparison)
    answer_path = main_out / "answer.json"
    atomic_write_json(answer_path, attach(json.loads(answer_path.read_text(encoding="utf-8")), comparison))
    return {"trained": len(outcome.trained), "skipped": len(outcome.skipped),
            "features_computed": outcome.features_computed, "agrees": comparison["agrees"]}
