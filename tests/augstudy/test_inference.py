"""The sweep's inference over cells (augstudy.classify.inference): the split design's variance
terms, the CV design's corrected resampled t-test, per-class intervals that cannot collapse, and
the summary's confirmatory family, contrasts, ties and headroom (augstudy.classify.report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from augstudy.classify.inference import CV_METHOD, CellCache, cell_key, estimate, wilson_interval
from augstudy.classify.report import answer_sentence, headroom_statement, inference_summary, results_table

LABELS = np.array([0] * 6 + [1] * 10)


def make_cell(correct: np.ndarray, seed: int, labels: np.ndarray = LABELS, images: list[str] | None = None,
              **layout) -> dict:
    """A cell in the sweep's format whose prediction on image i is right where correct[i]."""
    predicted = np.where(correct, labels, 1 - labels)
    names = images or [f"img{i}" for i in range(len(labels))]
    return {"seed": seed, **layout, "test_predictions": [
        {"image": name, "label": int(label), "proba": [0.3, 0.7] if p else [0.7, 0.3]}
        for name, label, p in zip(names, labels, predicted)]}


def test_cells_without_the_cv_fields_read_as_one_block_and_no_gan_seed() -> None:
    assert cell_key({"seed": 3}) == (0, 0, None, 3)
    assert cell_key({"seed": 1, "repeat": 2, "fold": 4, "gan_seed": 0}) == (2, 4, 0, 1)


def test_one_seed_split_variance_is_the_stratified_jackknife_of_the_per_image_differences() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(16) < 0.8, rng.random(16) < 0.6
    result = estimate([make_cell(a, 0)], [make_cell(b, 0)], "balanced_accuracy", CellCache(1))
    delta = a.astype(float) - b
    expected = sum(0.25 * np.var(delta[LABELS == k], ddof=1) / np.sum(LABELS == k) for k in (0, 1))
    assert result.se**2 == pytest.approx(expected)
    recall = [np.mean(delta[LABELS == k]) for k in (0, 1)]
    assert result.estimate == pytest.approx(np.mean(recall))


def test_seed_variance_enters_the_split_interval_with_seed_degrees_of_freedom() -> None:
    """Seeds that disagree as whole classifiers (one flips every image of a class) while the test images
    agree: the interval is the seed-only t interval, not a bootstrap that treats 5 seeds as the truth."""
    base = np.ones(16, bool)
    cells, reference = [], []
    for seed, wrong in enumerate([0, 2, 1, 3, 0]):
        correct = base.copy()
        correct[:wrong] = False  # normal images wrong on whole-seed level
        cells.append(make_cell(correct, seed))
        reference.append(make_cell(base, seed))
    result = estimate(cells, reference, "balanced_accuracy", CellCache(1))
    per_seed = np.array([-0.5 * w / 6 for w in [0, 2, 1, 3, 0]])
    assert result.estimate == pytest.approx(per_seed.mean())
    assert result.se >= per_seed.std(ddof=1) / np.sqrt(5) - 1e-12
    half = stats.t.ppf(0.975, result.df) * result.se
    assert result.ci == pytest.approx((result.estimate - half, result.estimate + half))
    # never narrower than the seed-only t interval with its 4 degrees of freedom
    assert half >= stats.t.ppf(0.975, 4) * per_seed.std(ddof=1) / np.sqrt(5)


def test_cv_uses_the_nadeau_bengio_correction_over_blocks() -> None:
    rng = np.random.default_rng(1)
    group, reference, block_differences = [], [], []
    for fold in range(4):
        images = [f"f{fold}-{i}" for i in range(16)]
        for seed in range(3):
            a, b = rng.random(16) < 0.8, rng.random(16) < 0.7
            group.append(make_cell(a, seed, images=images, repeat=0, fold=fold, gan_seed=0))
            reference.append(make_cell(b, seed, images=images, repeat=0, fold=fold, gan_seed=None))
    values = CellCache(1)
    for fold in range(4):
        block = [c for c in group if c["fold"] == fold]
        ref = [c for c in reference if c["fold"] == fold]
        block_differences.append(np.mean([values(c).full["accuracy"] for c in block])
                                 - np.mean([values(c).full["accuracy"] for c in ref]))
    result = estimate(group, reference, "accuracy", values)
    d = np.array(block_differences)
    assert result.method == CV_METHOD and result.n_blocks == 4 and result.df == 3
    assert result.estimate == pytest.approx(d.mean())
    assert result.se**2 == pytest.approx((1 / 4 + 16 / 48) * d.var(ddof=1))
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(d.mean()) / result.se, 3))


def test_a_class_all_correct_does_not_collapse_its_interval() -> None:
    """6 of 6 normal images right in every seed: the old bootstrap's specificity interval was [1, 1]."""
    correct = np.ones(16, bool)
    correct[8] = False
    cells = [make_cell(correct, seed) for seed in range(5)]
    values = CellCache(1)
    specificity = estimate(cells, None, "specificity", values)
    assert specificity.estimate == 1.0
    assert specificity.ci[0] <= wilson_interval(6, 6)[0] + 1e-12 < 0.65 and specificity.ci[1] == 1.0
    balanced = estimate(cells, None, "balanced_accuracy", values)
    assert balanced.ci[1] - balanced.ci[0] > 0.15 and 0.0 <= balanced.ci[0] and balanced.ci[1] <= 1.0
    assert wilson_interval(6, 6)[0] == pytest.approx(0.6097, abs=1e-3)


def _rows(n_seeds: int = 5, gain: float = 0.0, classic_gain: float = 0.0, seed: int = 0, n_test: int = 16,
          base: float = 0.8):
    """Table rows of a sweep with gan and classic at 0/50/100 % on one test set."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * (n_test // 2) + [1] * (n_test - n_test // 2))
    names = ["normal", "tumour"]

    def cell(group, level, s, p):
        c = make_cell(rng.random(n_test) < p, s, labels=labels)
        c.update({"group": group, "level": level, "class_names": names, "positive_class": "tumour",
                  "n_real": 40, "degenerate": False, "metrics": {}})
        return c

    baseline = [cell("baseline", 0, s, base) for s in range(n_seeds)]
    rows = [("gan", 0, 100, f"b{s}", c) for s, c in enumerate(baseline)]
    rows += [("classic", 0, 100, f"b{s}", c) for s, c in enumerate(baseline)]
    for ratio in (50, 100):
        for s in range(n_seeds):
            rows.append(("gan", ratio, 100, f"g{ratio}-{s}", cell("gan", ratio, s, base + gain)))
            rows.append(("classic", ratio, 100, f"c{ratio}-{s}", cell("classic", ratio, s, base + classic_gain)))
    return rows, baseline


def _summary(rows, baseline, primary_ratio=None):
    from augstudy.classify.metrics import classification_metrics

    for row in rows:
        cell = row[4]
        y = np.array([p["label"] for p in cell["test_predictions"]])
        proba = np.array([p["proba"] for p in cell["test_predictions"]])
        cell["metrics"] = classification_metrics(y, proba, 1)
    return inference_summary(results_table(rows), rows, baseline, "balanced_accuracy", primary_ratio)


def test_gan_minus_classic_contrasts_join_one_holm_family_with_every_ratio_vs_0() -> None:
    rows, baseline = _rows()
    summary = _summary(rows, baseline)
    primary = summary[summary["metric"] == "balanced_accuracy"]
    contrast = primary[primary["arm"] == "gan - classic"].set_index("ratio")
    assert list(contrast.index) == [50, 100] and (contrast["reference"] == ["classic +50 %", "classic +100 %"]).all()
    family = primary[primary["p_holm"].notna()]
    assert len(family) == 6  # gan 50, 100; classic 50, 100; two contrasts
    assert family["p_holm"].to_numpy() == pytest.approx(
        np.minimum(1, np.maximum.accumulate(np.sort(family["p_value"]) * np.arange(6, 0, -1)))[
            np.argsort(np.argsort(family["p_value"]))])
    gan100 = primary[(primary["arm"] == "gan") & (primary["ratio"] == 100)].iloc[0]
    classic100 = primary[(primary["arm"] == "classic") & (primary["ratio"] == 100)].iloc[0]
    assert contrast.loc[100, "mean_difference"] == pytest.approx(gan100["mean"] - classic100["mean"])
    single = _summary(rows, baseline, primary_ratio=50)
    confirmatory = single[(single["metric"] == "balanced_accuracy") & single["p_holm"].notna()]
    assert len(confirmatory) == 1 and confirmatory.iloc[0]["ratio"] == 50
    assert confirmatory.iloc[0]["p_holm"] == confirmatory.iloc[0]["p_value"]
    others = single[(single["metric"] == "balanced_accuracy") & single["p_value"].notna() & single["p_holm"].isna()]
    assert set(others["correction"]) == {"none (descriptive, outside the confirmatory family)"}


def test_the_best_ratio_is_descriptive_and_near_ties_are_ties() -> None:
    """The committed dedup classic arm: 100 % 'beat' 50 % by 2e-16."""
    rows, baseline = _rows()
    summary = _summary(rows, baseline)
    mask = (summary["arm"] == "classic") & (summary["metric"] == "balanced_accuracy") & (summary["ratio"] > 0)
    summary.loc[mask, "mean"] = [0.9919354838709676, 0.9919354838709677]
    sentence = answer_sentence(summary, "balanced_accuracy", "tumour", [])
    assert "tied" in sentence and "50 %, 100 %" in sentence and "descriptive" in sentence


def test_the_answer_says_the_study_cannot_detect_a_gain_when_the_baseline_leaves_no_room() -> None:
    rows, baseline = _rows(base=0.985, n_test=40)
    summary = _summary(rows, baseline)
    primary = summary[summary["metric"] == "balanced_accuracy"]
    statement = headroom_statement(primary, "balanced_accuracy")
    assert statement.startswith("This study cannot detect a gain")
    assert "cannot detect a gain" in answer_sentence(summary, "balanced_accuracy", "tumour", [])
    roomy, roomy_baseline = _rows(base=0.6, n_test=400, n_seeds=10)
    statement = headroom_statement(_summary(roomy, roomy_baseline).query("metric == 'balanced_accuracy'"),
                                   "balanced_accuracy")
    assert statement.startswith("The smallest gain its tests detect")


def test_minimum_detectable_effect_is_the_t_power_formula() -> None:
    rows, baseline = _rows()
    summary = _summary(rows, baseline)
    row = summary[(summary["arm"] == "gan") & (summary["ratio"] == 50) & (summary["metric"] == "balanced_accuracy")]
    row = row.iloc[0]
    alpha = 0.05 / 6
    expected = (stats.t.ppf(1 - alpha / 2, row["df"]) + stats.t.ppf(0.8, row["df"])) * row["se_difference"]
    assert row["mde_80"] == pytest.approx(expected)
    assert isinstance(summary, pd.DataFrame)


def test_unequal_training_budgets_are_flagged_from_kept_steps() -> None:
    """The committed sweep: baseline heads kept epoch 1-2 (~10 Adam steps), augmented ones 27-106."""
    from augstudy.classify.report import kept_steps, training_budgets

    rows, _ = _rows()
    for _, ratio, _, _, cell in rows:
        cell.update({"best_epoch": 1 if ratio == 0 else 4, "n_train_inputs": 80 + ratio})
    medians, warning = training_budgets(rows, batch_size=20)
    assert medians["real only (0 %)"] == 4 and medians["gan +100 %"] == 4 * 9
    assert warning.startswith("unequal training budgets") and "gan +100 %" in warning
    assert kept_steps({"steps_kept": 7, "best_epoch": 100}, 20) == 7  # the recorded count wins
    for _, _, _, _, cell in rows:
        cell["best_epoch"] = 3
    assert training_budgets(rows, batch_size=200)[1] == ""


def test_the_answer_starts_with_what_the_audit_and_a_random_init_backbone_mean() -> None:
    from augstudy.classify.report import _audit_caveats

    audit = {"groups": [
        {"name": "size", "title": "Original image size", "kind": "metadata", "auc": 0.88, "flagged": True},
        {"name": "backbone", "title": "resnet50 features (random-init backbone)", "kind": "content", "auc": 0.995,
         "flagged": True},
        {"name": "padding", "title": "Padding after --fit pad", "kind": "metadata", "auc": 0.693,
         "p_value": 1.7e-12, "flagged": False, "weak": True}],
        "shortcuts": ["size"], "weak_shortcuts": ["padding"], "partial_shortcuts": [
            {"sentence": "All 32 images with has_colour are normal: a classifier can label them from that alone."}]}
    caveats = _audit_caveats(audit, "random-init backbone")
    assert len(caveats) == 3 and all(text.startswith(("This data cannot tell", "Features that need no learned"))
                                     for text in caveats)
    assert "random-init backbone) (AUC 0.995)" in caveats[2]
    assert "original image size (AUC 0.88)" in caveats[1] and "has_colour" in caveats[1]
    assert "padding after --fit pad, weakly (AUC 0.69, p = 1.7e-12)" in caveats[1]
    rows, baseline = _rows()
    sentence = answer_sentence(_summary(rows, baseline), "balanced_accuracy", "tumour", [], caveats=caveats)
    assert sentence.startswith("This data cannot tell whether synthetic images help")
    assert _audit_caveats(None, "ImageNet") == []
    # pretrained features that separate the classes are no caveat; an intensity histogram that does is one
    pretrained = {"groups": [
        {"name": "backbone", "title": "efficientnet-lite0 features (imagenet)", "kind": "content", "auc": 0.98},
        {"name": "histogram", "title": "intensity histogram", "kind": "content", "auc": 0.90}]}
    assert _audit_caveats(pretrained, "imagenet") == []
    pretrained["groups"][1]["auc"] = 0.98
    (only,) = _audit_caveats(pretrained, "imagenet")
    assert "intensity histogram (AUC 0.980)" in only and "efficientnet" not in only


def test_a_cv_sweep_reads_its_blocks_from_the_cells_and_says_so() -> None:
    """Cells in the contract's layout (repeat, fold, gan_seed, seed; each fold its own test images)."""
    from augstudy.classify.metrics import classification_metrics
    from augstudy.classify.report import _design

    rng = np.random.default_rng(2)

    def cell(group, level, p, images, gan_seed=None, **layout):
        c = make_cell(rng.random(16) < p, images=images, gan_seed=gan_seed, **layout)
        y = np.array([r["label"] for r in c["test_predictions"]])
        proba = np.array([r["proba"] for r in c["test_predictions"]])
        c.update({"group": group, "level": level, "class_names": ["normal", "tumour"], "n_real": 40,
                  "positive_class": "tumour", "degenerate": False, "metrics": classification_metrics(y, proba, 1)})
        return c

    rows, baseline = [], []
    for repeat in range(2):
        for fold in range(3):  # repeat 1 reshuffles repeat 0's images into other folds
            images = [f"r0f{(fold + repeat) % 3}-{i}" for i in range(16)]
            for seed in range(3):
                layout = {"repeat": repeat, "fold": fold, "seed": seed}
                base = cell("baseline", 0, 0.8, images, **layout)
                baseline.append(base)
                rows += [("gan", 0, 100, "b", base), ("classic", 0, 100, "b", base)]
                for gan_seed in range(2):
                    rows.append(("gan", 50, 100, "g", cell("gan", 50, 0.85, images, gan_seed, **layout)))
                rows.append(("classic", 50, 100, "c", cell("classic", 50, 0.8, images, **layout)))
    assert _design(rows) == "cv"
    summary = inference_summary(results_table(rows), rows, baseline, "balanced_accuracy")
    gan = summary[(summary["arm"] == "gan") & (summary["ratio"] == 50) & (summary["metric"] == "balanced_accuracy")]
    assert gan.iloc[0]["interval"] == CV_METHOD and gan.iloc[0]["n_blocks"] == 6 and gan.iloc[0]["df"] == 5
    assert gan.iloc[0]["n_gan_seeds"] == 2 and gan.iloc[0]["n_seeds"] == 3
    sentence = answer_sentence(summary, "balanced_accuracy", "tumour", [], design="cv")
    assert "repeated cross-validation" in sentence and "With one generator" not in sentence


def test_the_confirmatory_family_names_only_the_arms_in_it() -> None:
    """A sweep without the gan arm must not say its Holm family holds GAN tests."""
    import pandas as pd

    from augstudy.classify.report import _correct

    rows = [{"arm": "classic", "ratio": ratio, "metric": "balanced_accuracy", "p_value": p, "se_difference": 0.02,
             "df": 4.0, "mde_80": float("nan")} for ratio, p in ((25, 0.01), (50, 0.2))]
    summary = _correct(pd.DataFrame(rows), "balanced_accuracy", None)
    assert set(summary["correction"]) == {"Holm over the 2 confirmatory tests (classic ratios vs 0 %)"}
    assert summary["p_holm"].tolist() == [0.02, 0.2]
