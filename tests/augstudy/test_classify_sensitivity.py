"""The `--schedule fixed` sensitivity check: the verdict it compares, and that a changed answer is
never reported as unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from augstudy.classify.sensitivity import (
    SensitivityError,
    SensitivitySpec,
    attach,
    compare,
    parse_spec,
    sensitivity_options,
    verdict,
)


def _summary(tests: dict[tuple[str, float], tuple[float, float]], metric: str = "balanced_accuracy") -> pd.DataFrame:
    """summary.csv rows: (arm, ratio) -> (mean difference, Holm p) for the confirmatory family, plus a
    descriptive real-arm row and a secondary metric that must not count."""
    rows = [{"arm": arm, "ratio": ratio, "metric": metric, "mean_difference": diff, "p_holm": p}
            for (arm, ratio), (diff, p) in tests.items()]
    rows.append({"arm": "real", "ratio": 0, "metric": metric, "mean_difference": -0.2, "p_holm": np.nan})
    rows.append({"arm": "gan", "ratio": 50, "metric": "roc_auc", "mean_difference": 0.3, "p_holm": np.nan})
    return pd.DataFrame(rows)


PLATEAU = _summary({("gan", 50): (0.04, 0.01), ("classic", 50): (0.01, 0.6), ("gan - classic", 50): (0.03, 0.2)})


def test_the_verdict_reads_the_confirmatory_family_with_direction() -> None:
    assert verdict(PLATEAU, "balanced_accuracy") == {
        "GAN +50 % vs 0 %": "better", "classic +50 % vs 0 %": "no difference",
        "GAN - classic at 50 %": "no difference"}
    worse = _summary({("gan", 25): (-0.05, 0.001)})
    assert verdict(worse, "balanced_accuracy") == {"GAN +25 % vs 0 %": "worse"}
    loss = _summary({("gan", 25): (-0.05, 0.001)}, metric="test_loss")  # lower loss is better
    assert verdict(loss, "test_loss") == {"GAN +25 % vs 0 %": "better"}
    generators = _summary({("diffusion", 25): (0.01, 0.9), ("gan - diffusion", 25): (0.06, 0.01),
                           ("diffusion - classic", 25): (-0.05, 0.02)})
    assert verdict(generators, "balanced_accuracy") == {
        "diffusion +25 % vs 0 %": "no difference", "GAN - diffusion at 25 %": "better",
        "diffusion - classic at 25 %": "worse"}


def test_a_changed_answer_is_reported_as_a_change() -> None:
    fixed = _summary({("gan", 50): (0.01, 0.4), ("classic", 50): (0.01, 0.7), ("gan - classic", 50): (0.0, 0.9)})
    result = compare(verdict(PLATEAU, "balanced_accuracy"), verdict(fixed, "balanced_accuracy"), 5)
    assert result["agrees"] is False and result["changed"] == ["GAN +50 % vs 0 %"]
    assert "the answer changes: GAN +50 % vs 0 %: better with early stopping, no difference with the fixed " \
           "schedule" in result["sentence"]
    assert "unchanged" not in result["sentence"] and result["sentence"].startswith("With a fixed 5-epoch schedule")
    # a direction that flips while both stay significant is a change too
    flipped = _summary({("gan", 50): (-0.04, 0.01), ("classic", 50): (0.01, 0.6), ("gan - classic", 50): (0.0, 0.9)})
    assert compare(verdict(PLATEAU, "balanced_accuracy"), verdict(flipped, "balanced_accuracy"), 5)["agrees"] is False


def test_a_test_missing_from_one_sweep_is_a_disagreement() -> None:
    partial = _summary({("gan", 50): (0.04, 0.01), ("classic", 50): (0.01, 0.6)})
    result = compare(verdict(PLATEAU, "balanced_accuracy"), verdict(partial, "balanced_accuracy"), 5)
    assert result["agrees"] is False and "not tested with the fixed schedule" in result["sentence"]


def test_the_same_answer_is_reported_unchanged_with_what_it_is() -> None:
    same = _summary({("gan", 50): (0.02, 0.03), ("classic", 50): (0.0, 0.9), ("gan - classic", 50): (0.02, 0.3)})
    result = compare(verdict(PLATEAU, "balanced_accuracy"), verdict(same, "balanced_accuracy"), 8)
    assert result["agrees"] is True and result["changed"] == []
    assert result["sentence"] == ("With a fixed 8-epoch schedule (every cell trains 8 epochs, no early stopping, so "
                                  "training length no longer follows the arm) the answer is unchanged: "
                                  "GAN +50 % vs 0 %: better.")
    assert compare({}, {}, 8)["agrees"] is None


def test_the_comparison_is_attached_to_the_answer_once() -> None:
    answer = {"sentence": "Main answer.", "primary_metric": "balanced_accuracy"}
    first = attach(answer, {"sentence": "With a fixed 5-epoch schedule ... unchanged.", "agrees": True})
    again = attach(first, {"sentence": "With a fixed 5-epoch schedule ... changes.", "agrees": False})
    assert again["sentence"] == "Main answer. With a fixed 5-epoch schedule ... changes."
    assert again["sensitivity"]["agrees"] is False and again["primary_metric"] == "balanced_accuracy"


@pytest.mark.parametrize(("value", "message"), [
    ("fixed", "expected a table"),
    ({"schedule": "plateau", "epochs": 5}, "supports fixed"),
    ({"schedule": "fixed", "epochs": 0}, "epochs = 0"),
    ({"schedule": "fixed", "epochs": True}, "epochs = True"),
    ({"schedule": "fixed", "epochs": 5, "patience": 2}, "unknown key(s) ['patience']"),
])
def test_bad_settings_are_refused_with_what_to_write(value, message) -> None:
    with pytest.raises(SensitivityError, match="e.g. sensitivity = ") as error:
        parse_spec(value)
    assert message in str(error.value)


def test_the_sensitivity_sweep_changes_only_the_schedule(tmp_path) -> None:
    from augstudy.classify.sweep import SweepOptions

    assert parse_spec(None) is None
    with pytest.raises(SensitivityError, match="already uses schedule"):
        parse_spec({"schedule": "fixed", "epochs": 5}, main_schedule="fixed")
    main = SweepOptions(data=tmp_path, out=tmp_path / "results", patience=3, monitor="balanced_accuracy",
                        arms=("gan", "classic"), seeds=3)
    fixed = sensitivity_options(main, parse_spec({"schedule": "fixed", "epochs": 5}))
    assert fixed.out == tmp_path / "results" / "sensitivity-fixed" and fixed.schedule == "fixed"
    assert fixed.epochs == 5 and fixed.patience is None and fixed.monitor == "cross_entropy"
    assert (fixed.arms, fixed.seeds, fixed.data, fixed.ratios) == (main.arms, main.seeds, main.data, main.ratios)
    assert SensitivitySpec(5) == parse_spec({"schedule": "fixed", "epochs": 5})
