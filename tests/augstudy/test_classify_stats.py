"""Summary statistics of a sweep: t-based CI, seed-paired tests, Holm correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from augstudy.classify.stats import holm, paired_test, summarize, t_interval


def test_t_interval_matches_the_textbook_formula() -> None:
    low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert np.isnan(t_interval(np.array([0.7]))).all()


def test_holm_steps_down_and_keeps_monotone_order() -> None:
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    # sorted p: 0.01 (x3), 0.03 (x2), 0.04 (x1), each at least the previous adjusted value
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_test_edge_cases() -> None:
    assert paired_test(np.zeros(5), "t") == 1.0
    assert paired_test(np.full(5, 0.1), "t") == 0.0
    assert np.isnan(paired_test(np.array([0.1]), "t"))
    differences = np.array([0.05, 0.1, -0.02, 0.08, 0.03])
    assert paired_test(differences, "t") == pytest.approx(stats.ttest_1samp(differences, 0).pvalue)
    assert paired_test(differences, "wilcoxon") == pytest.approx(stats.wilcoxon(differences).pvalue)
    with pytest.raises(ValueError, match="unknown paired test"):
        paired_test(differences, "anova")


def _results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for ratio, shift in ((0, 0.0), (50, 0.1), (100, 0.0)):
        for seed in range(5):
            rows.append({"ratio": ratio, "seed": seed, "accuracy": 0.7 + 0.01 * seed + shift + rng.normal(0, 0.01),
                         "degenerate": seed == 4 and ratio == 100})
    return pd.DataFrame(rows).sample(frac=1, random_state=1)  # row order must not matter


def test_summarize_pairs_by_seed_and_corrects_over_ratios() -> None:
    results = _results()
    summary = summarize(results, ["accuracy"]).set_index("ratio")
    for ratio in (0, 50, 100):
        values = results.loc[results["ratio"] == ratio, "accuracy"]
        assert summary.loc[ratio, "mean"] == pytest.approx(values.mean())
        assert summary.loc[ratio, "std"] == pytest.approx(values.std(ddof=1))
    reference = results[results["ratio"] == 0].set_index("seed")["accuracy"]
    p_values = {}
    for ratio in (50, 100):
        paired = results[results["ratio"] == ratio].set_index("seed")["accuracy"] - reference
        p_values[ratio] = stats.ttest_1samp(paired.sort_index(), 0).pvalue
        assert summary.loc[ratio, "p_value"] == pytest.approx(p_values[ratio])
        assert summary.loc[ratio, "test"] == "paired t-test"
    assert summary.loc[[50, 100], "p_holm"].tolist() == pytest.approx(list(holm(list(p_values.values()))))
    assert summary.loc[50, "p_holm"] < 0.05 < summary.loc[100, "p_holm"]
    assert np.isnan(summary.loc[0, "p_value"]) and summary.loc[0, "n_pairs"] == 0
    assert summary.loc[100, "n_degenerate"] == 1


def test_summarize_names_the_wilcoxon_test_when_asked() -> None:
    summary = summarize(_results(), ["accuracy"], test="wilcoxon")
    assert set(summary.loc[summary["ratio"] != 0, "test"]) == {"Wilcoxon signed-rank"}
