"""The sweep's inference keeps its error rates (a small run of bench/calibration.py's simulation),
and the percentile bootstrap it replaced does not (issue 20: 15 % type-I error with 5 seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from augstudy.classify.calibration import Setting, _cells, simulate
from augstudy.classify.stats import draw_bootstrap, per_seed_replicates, replicate_values

SIMULATIONS = 300


def _slack(rate: float) -> float:
    return 2.5 * math.sqrt(rate * (1 - rate) / SIMULATIONS)


@pytest.mark.slow
@pytest.mark.parametrize("setting", [
    Setting("split", "seed-dominated", 5),
    Setting("split", "image-dominated", 5),
    Setting("split", "GAN-dominated", 5, gan_seeds=3),
    Setting("cv", "GAN-dominated", 5, repeats=1),
], ids=lambda s: f"{s.design}-{s.regime}-{s.gan_seeds}gan")
def test_type_one_error_and_coverage_stay_on_target(setting: Setting) -> None:
    record = simulate(setting, SIMULATIONS, seed=11)
    assert record.type1_error <= 0.07 + _slack(0.07), record
    assert record.coverage >= 0.93 - _slack(0.07), record


@pytest.mark.slow
def test_the_percentile_bootstrap_it_replaced_is_anti_conservative_when_seeds_dominate() -> None:
    """The same simulated studies through the old paired bootstrap (test images x seeds): the
    simulation can tell a broken method from a calibrated one."""
    rng = np.random.default_rng(5)
    setting = Setting("split", "seed-dominated", 5, test_per_class=(60, 60))
    rejections = 0
    for _ in range(150):
        gan, ref = _cells(rng, setting, 0.0)
        y = np.array([row["label"] for row in ref[0]["test_predictions"]])
        draws = draw_bootstrap(y, 5, 300, seed=int(rng.integers(1 << 30)))

        def as_proba(cells):
            return [{"proba": np.array([row["proba"] for row in cell["test_predictions"]])} for cell in cells]

        group = per_seed_replicates(as_proba(gan), y, 1, draws)["balanced_accuracy"]
        reference = per_seed_replicates(as_proba(ref), y, 1, draws)["balanced_accuracy"]
        differences = replicate_values(group, draws) - replicate_values(reference, draws)
        below = (1 + np.sum(differences <= 0)) / (len(differences) + 1)  # the old two-sided bootstrap p
        above = (1 + np.sum(differences >= 0)) / (len(differences) + 1)
        rejections += 2 * min(below, above) < 0.05
    assert rejections / 150 > 0.09
