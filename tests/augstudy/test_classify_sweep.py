"""`augstudy sweep` and `augstudy predict` end to end on a tiny toy study (random-init ResNet50 at
32 px): outputs, arms, the answer, resume, determinism, errors, splits, views, fine-tuning and the
torch backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from augstudy.classify.data import read_prepared
from augstudy.classify.metrics import METRICS
from augstudy.classify.saved import load_model, read_info
from augstudy.classify.sweep import nested_real_subset
from augstudy.classify.toydata import write_toy_study
from augstudy.cli import main

FAST = ["--weights", "none", "--input-size", "32", "--epochs", "6", "--batch-size", "4", "--quiet",
        "--bootstrap", "200"]
ARMS = "gan,classic,real,synthetic-only"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sweep")
    study = write_toy_study(root, train=5, valid=3, test=4, pool=5, size=32)
    paths = {"data": study.data, "pool": study.pool, "cache": root / "cache", "out": root / "results"}
    paths["output"] = invoke("sweep", "--data", str(study.data), "--pool", str(study.pool),  # type: ignore[assignment]
                             "--out", str(paths["out"]), "--ratios", "0,100", "--seeds", "2",
                             "--arms", ARMS, "--real-fractions", "50",
                             "--cache-dir", str(paths["cache"]), *FAST)
    return paths


def base_args(sweep: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["sweep", "--data", str(sweep["data"]), "--pool", str(sweep["pool"]), "--out", str(out),
            "--cache-dir", str(sweep["cache"]), *FAST, *extra]


def cells_of(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (out / "cells").glob("*.json")}


def test_results_csv_has_one_row_per_arm_level_and_seed_with_every_column(sweep) -> None:
    results = pd.read_csv(sweep["out"] / "results.csv")
    rows = list(results[["arm", "ratio", "real_fraction", "seed"]].itertuples(index=False, name=None))
    assert rows == [("gan", 0, 100, 0), ("gan", 0, 100, 1), ("gan", 100, 100, 0), ("gan", 100, 100, 1),
                    ("classic", 0, 100, 0), ("classic", 0, 100, 1), ("classic", 100, 100, 0),
                    ("classic", 100, 100, 1), ("real", 0, 50, 0), ("real", 0, 50, 1), ("real", 0, 100, 0),
                    ("real", 0, 100, 1), ("synthetic-only", 100, 0, 0), ("synthetic-only", 100, 0, 1)]
    for column in ("cell", *METRICS, "epochs_trained", "best_epoch", "monitor", "n_real", "n_added", "degenerate",
                   "positive_class", "backbone", "weights", "head", "split"):
        assert column in results.columns, column
    # the real-only classifier is one cell, every arm's 0 % (or 100 % real) row
    shared = results[results["cell"] == "ratio-000_seed-00"]
    assert list(shared["arm"]) == ["gan", "classic", "real"] and shared["accuracy"].nunique() == 1
    assert set(results["weights"]) == {"random-init backbone"} and set(results["positive_class"]) == {"tumour"}
    assert results["accuracy"].between(0, 1).all() and results["epochs_trained"].between(1, 6).all()
    cell = json.loads((sweep["out"] / "cells" / "ratio-100_seed-01.json").read_text())
    assert cell["metrics"]["accuracy"] == pytest.approx(results.iloc[3]["accuracy"])
    assert len(cell["added_images"]) == 10 and all(name.endswith(".png") for name in cell["added_images"])
    assert len(cell["history"]["val_cross_entropy"]) == cell["epochs_trained"]
    assert cell["monitor"] == "val_cross_entropy"
    assert np.sum(cell["confusion_matrix"]) == cell["n_test"] == 2 * (4 + 1)


def test_split_design_cells_carry_the_design_fields_the_statistics_read(sweep) -> None:
    cells = cells_of(sweep["out"])
    for name, cell in cells.items():
        assert (cell["design"], cell["repeat"], cell["fold"]) == ("split", 0, 0)
        assert cell["gan_seed"] == (0 if cell["group"] in ("gan", "synthetic-only") else None), name
        batches = -(-cell["n_train_inputs"] // 4)  # --batch-size 4
        assert cell["batches_per_epoch"] == batches and cell["steps_kept"] == cell["best_epoch"] * batches
    results = pd.read_csv(sweep["out"] / "results.csv")
    assert set(results["design"]) == {"split"} and set(results["fold"]) == {0}
    assert set(pd.read_csv(sweep["out"] / "summary.csv")["design"]) == {"split"}
    answer = json.loads((sweep["out"] / "answer.json").read_text())
    assert answer["design"]["design"] == "split" and "cross-validation" in answer["sentence"]


def test_each_arm_trains_on_what_it_says(sweep) -> None:
    cells = cells_of(sweep["out"])
    assert len(cells) == 10
    counts = {name: (cell["n_real"], cell["n_added"]) for name, cell in cells.items() if name.endswith("seed-00")}
    assert counts == {"ratio-000_seed-00": (10, 0), "ratio-100_seed-00": (10, 10),
                      "classic_ratio-100_seed-00": (10, 10), "real_fraction-050_seed-00": (6, 0),  # 2.5 -> 3 a class
                      "synthetic-only_seed-00": (0, 10)}
    pool = {str(path.relative_to(sweep["pool"])) for path in sweep["pool"].rglob("*.png")}
    assert set(cells["ratio-100_seed-00"]["added_images"]) <= pool
    assert set(cells["synthetic-only_seed-00"]["added_images"]) <= pool
    classic = cells["classic_ratio-100_seed-00"]["added_images"]
    assert all(name.startswith("classic/") for name in classic) and len(set(classic)) == 10
    for name in classic:  # a copy keeps its source's class
        assert name.split("/")[2] == Path(name).name.split("_")[0]
        assert (sweep["out"] / name).is_file()


def test_every_arm_is_paired_on_the_same_seeds_and_real_test_images(sweep) -> None:
    cells = cells_of(sweep["out"])
    test_images = {json.dumps([row["image"] for row in cell["test_predictions"]]) for cell in cells.values()}
    assert len(test_images) == 1
    images = json.loads(test_images.pop())
    assert all(image.startswith("images/test/") for image in images)  # real, from the prepared folder
    valid = {json.dumps(cell["valid_images"]) for cell in cells.values()}
    assert len(valid) == 1 and all(image.startswith("images/valid/") for image in json.loads(valid.pop()))
    assert {cell["n_valid"] for cell in cells.values()} == {6}
    assert sorted({cell["seed"] for cell in cells.values()}) == [0, 1]
    for group in ("ratio-100", "classic_ratio-100", "real_fraction-050", "synthetic-only"):
        assert {cells[f"{group}_seed-0{seed}"]["seed"] for seed in (0, 1)} == {0, 1}
    summary = pd.read_csv(sweep["out"] / "summary.csv")
    references = summary[(summary["metric"] == "balanced_accuracy") & (summary["reference"].isna())]
    # the shared 0 % cells under the shared bootstrap draws: one interval, whichever arm reads them
    assert len(references) == 3 and references[["mean", "ci_low", "ci_high"]].nunique().max() == 1


def test_summary_has_intervals_paired_differences_and_a_primary_metric(sweep) -> None:
    summary = pd.read_csv(sweep["out"] / "summary.csv")
    assert set(summary["metric"]) == set(METRICS)
    results = pd.read_csv(sweep["out"] / "results.csv")
    primary = summary[(summary["metric"] == "balanced_accuracy") & (summary["arm"] == "gan")].set_index("ratio")
    assert primary.loc[100, "mean"] == pytest.approx(
        results[(results["arm"] == "gan") & (results["ratio"] == 100)]["balanced_accuracy"].mean())
    bounded = summary[(summary["metric"] != "test_loss") & (summary["arm"] != "gan - classic")]
    assert bounded["ci_low"].between(0, 1).all() and bounded["ci_high"].between(0, 1).all()
    assert (bounded["ci_low"] <= bounded["mean"] + 1e-9).all() and (bounded["mean"] <= bounded["ci_high"] + 1e-9).all()
    assert set(summary["role"]) == {"primary", "secondary"}
    assert set(summary.loc[summary["role"] == "primary", "metric"]) == {"balanced_accuracy"}
    assert summary.loc[summary["role"] == "secondary", "p_holm"].isna().all()
    assert set(summary.loc[summary["role"] == "secondary", "correction"]) == {"none (secondary metric)"}
    assert 0 < primary.loc[100, "p_value"] <= primary.loc[100, "p_holm"] <= 1
    # one confirmatory family: gan and classic 100 % vs 0 % and the GAN - classic contrast at 100 %
    family = summary[(summary["metric"] == "balanced_accuracy") & summary["p_holm"].notna()]
    assert sorted(family["arm"]) == ["classic", "gan", "gan - classic"]
    assert primary.loc[100, "diff_ci_low"] <= primary.loc[100, "mean_difference"] <= primary.loc[100, "diff_ci_high"]
    assert "jackknife" in primary.loc[100, "interval"] and "seed_t_ci_low" not in summary.columns
    assert set(summary["positive_class"]) == {"tumour"}


def test_answer_json_states_the_answer_and_lists_embeddable_figures(sweep) -> None:
    answer = json.loads((sweep["out"] / "answer.json").read_text())
    assert answer["primary_metric"] == "balanced_accuracy" and answer["positive_class"] == "tumour"
    assert answer["arms"] == ARMS.split(",") and answer["weights"] == "random-init backbone"
    sentence = answer["sentence"]
    # a random-init backbone is what the answer says first, and answer.json records it
    assert answer["random_init_backbone"] is True and sentence.startswith("This data cannot tell")
    assert answer["audit"] is None and answer["design"]["design"] == "split"
    assert "balanced accuracy" in sentence and "0 %" in sentence and "Holm" in sentence
    assert "Real-image equivalents" in sentence and "GAN images only" in sentence
    assert ("with 50 % of each class's real train images (3 instead of 5 distinct real images per class on average)"
            in sentence)
    assert answer["learning_curve_x"] == "distinct real images per class"
    assert any("duplicate train images" in warning for warning in answer["warnings"])
    paths = [figure["path"] for figure in answer["figures"]]
    assert paths[:2] == ["figures/balanced_accuracy_vs_added.png", "figures/learning_curve.png"]
    for stem in ("roc_auc", "sensitivity", "specificity"):
        assert f"figures/{stem}_vs_added.png" in paths
    assert paths[-2:] == ["figures/confusion_matrices.png", "figures/training_curves.png"]
    for figure in answer["figures"]:
        assert (sweep["out"] / figure["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure["caption"]
        svg = (sweep["out"] / figure["path"]).with_suffix(".svg").read_text()
        assert "random-init backbone" in svg
    assert "positive class: tumour" in (sweep["out"] / "figures" / "balanced_accuracy_vs_added.svg").read_text()
    assert "95 % interval (seeds, generators and test images" in (
        sweep["out"] / "figures" / "balanced_accuracy_vs_added.svg").read_text()
    equivalents = answer["real_equivalents"]
    assert [item["ratio"] for item in equivalents] == [100]
    assert sentence in sweep["output"] and "warning: 2 of 10 test images" in sweep["output"]


def test_options_and_models_are_written_beside_the_results(sweep) -> None:
    options = json.loads((sweep["out"] / "sweep_options.json").read_text())
    assert options["split"] == "official" and options["input_size"] == 32
    assert options["keras_backend"] == "tensorflow" and options["ratios"] == [0, 100]
    assert options["learning_rate"] == pytest.approx(1e-3) and options["patience"] == 5
    assert options["positive_class"] == "tumour" and options["real_fractions"] == [50, 100]
    assert options["schedule"] == "plateau" and options["monitor"] == "cross_entropy"
    spec = json.loads(next(sweep["cache"].rglob("spec.json")).read_text())
    assert spec["library_versions"].startswith("keras-")
    models = sorted(path.name for path in (sweep["out"] / "models").iterdir())
    assert models == ["classic_ratio-100_seed-00", "ratio-000_seed-00", "ratio-100_seed-00",
                      "real_fraction-050_seed-00", "synthetic-only_seed-00"]  # --save-models first-seed
    folder = sweep["out"] / "models" / "ratio-000_seed-00"
    info = read_info(folder)
    assert info.inputs == "features" and info.weights.label == "random-init backbone"
    weight_bytes = 4 * load_model(folder, info).count_params()
    assert (folder / "head.keras").stat().st_size < 1.5 * weight_bytes  # no optimizer state saved


def _without_timing(path: Path) -> dict:
    cell = json.loads(path.read_text())
    del cell["seconds"]
    return cell


def test_rerun_skips_finished_cells_and_retrains_missing_ones_identically(sweep) -> None:
    before = {path: path.read_bytes() for path in (sweep["out"] / "cells").iterdir()}
    grid = ("--ratios", "0,100", "--seeds", "2", "--arms", ARMS, "--real-fractions", "50")
    output = invoke(*base_args(sweep, sweep["out"], *grid))
    assert "trained 0 cell(s), skipped 10" in output
    assert {path: path.read_bytes() for path in (sweep["out"] / "cells").iterdir()} == before
    results = (sweep["out"] / "results.csv").read_bytes()
    removed = sweep["out"] / "cells" / "ratio-100_seed-01.json"
    expected = _without_timing(removed)
    removed.unlink()
    output = invoke(*base_args(sweep, sweep["out"], *grid))
    assert "trained 1 cell(s), skipped 9" in output and "0 backbone feature(s) computed" in output
    assert _without_timing(removed) == expected
    assert (sweep["out"] / "results.csv").read_bytes() == results


def test_rerun_with_other_options_is_refused(sweep) -> None:
    result = CliRunner().invoke(main, base_args(sweep, sweep["out"], "--ratios", "0", "--seeds", "1",
                                                "--head", "paper"))
    assert result.exit_code != 0
    assert "ratio-000_seed-00.json was made with other options" in result.output and "head" in result.output


def test_dry_run_prints_resolved_options_and_trains_nothing(sweep, tmp_path: Path) -> None:
    output = invoke("sweep", "--data", str(sweep["data"]), "--out", str(tmp_path / "dry"), "--ratios", "0",
                    "--head", "paper", "--dry-run")
    options = json.loads(output)
    assert options["split"] == "official" and options["input_size"] == 224
    assert (options["epochs"], options["batch_size"], options["learning_rate"]) == (5, 20, 0.005)
    assert not (tmp_path / "dry").exists()


def test_pool_too_small_names_missing_images_per_class(sweep, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, base_args(sweep, tmp_path / "out", "--ratios", "0,80,200"))
    assert result.exit_code != 0
    assert "too small for 200% synthetic" in result.output
    assert "'normal' needs 10, has 5 (missing 5)" in result.output
    assert "'tumour' needs 10, has 5 (missing 5)" in result.output


def test_predict_reproduces_the_sweeps_test_predictions(sweep, tmp_path: Path) -> None:
    model = sweep["out"] / "models" / "ratio-100_seed-00"
    csv = tmp_path / "predictions.csv"
    output = invoke("predict", "--model", str(model), str(sweep["data"] / "images" / "test"), "--out", str(csv))
    table = pd.read_csv(csv)
    assert len(table) == 10 and len(output.strip().splitlines()) == 10
    cell = json.loads((sweep["out"] / "cells" / "ratio-100_seed-00.json").read_text())
    expected = {str(sweep["data"] / row["image"]): row["proba"] for row in cell["test_predictions"]}
    for row in table.itertuples(index=False):
        np.testing.assert_allclose([row.p_normal, row.p_tumour], expected[row.image], atol=1e-5)
        assert row.probability == pytest.approx(max(expected[row.image]), abs=1e-5)
    assert json.loads((tmp_path / "predict_options.json").read_text())["keras_backend"] == "tensorflow"
    one = invoke("predict", "--model", str(model), str(table.iloc[0]["image"]))
    assert one.split("\t")[1] == table.iloc[0]["class"]


def test_same_cells_in_another_folder_give_identical_rows_from_the_cache(sweep, tmp_path: Path) -> None:
    output = invoke(*base_args(sweep, tmp_path / "again", "--ratios", "0,100", "--seeds", "2"))
    assert "0 backbone feature(s) computed" in output
    again = pd.read_csv(tmp_path / "again" / "results.csv")
    first = pd.read_csv(sweep["out"] / "results.csv")
    pd.testing.assert_frame_equal(again, first[first["arm"] == "gan"].reset_index(drop=True))


def test_dedup_split_with_augmented_views(sweep, tmp_path: Path) -> None:
    output = invoke(*base_args(sweep, tmp_path / "views", "--ratios", "0,100", "--seeds", "1", "--split", "dedup",
                               "--aug-views", "1", "--save-models", "none"))
    assert "20 backbone feature(s) computed" in output  # view 1 of 10 real + 10 synthetic; view 0 is cached
    cell = json.loads((tmp_path / "views" / "cells" / "ratio-100_seed-00.json").read_text())
    assert cell["split"] == "dedup" and cell["n_test"] == 8  # the duplicated test images are dropped
    assert cell["n_train_inputs"] == 2 * (10 + 10) and cell["n_added"] == 10
    assert len(list(sweep["cache"].rglob("*.aug-*.npy"))) == 20
    assert not (tmp_path / "views" / "models").exists()


def test_three_classes_use_softmax_and_macro_metrics(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=4, valid=2, test=2, pool=2, size=32,
                            classes=("adeno", "normal", "squamous"))
    invoke("sweep", "--data", str(study.data), "--pool", str(study.pool), "--out", str(tmp_path / "out"),
           "--ratios", "0,50", "--seeds", "1", "--cache-dir", str(tmp_path / "cache"), *FAST)
    cell = json.loads((tmp_path / "out" / "cells" / "ratio-050_seed-00.json").read_text())
    assert cell["class_names"] == ["adeno", "normal", "squamous"] and cell["n_added"] == 3 * 2
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    per_class = results[["sensitivity_adeno", "sensitivity_normal", "sensitivity_squamous"]].to_numpy()
    np.testing.assert_allclose(per_class.mean(axis=1), results["balanced_accuracy"])
    assert np.shape(cell["confusion_matrix"]) == (3, 3)
    probabilities = np.array([row["proba"] for row in cell["test_predictions"]])
    assert probabilities.shape == (9, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert cell["metrics"]["sensitivity"] == pytest.approx(cell["metrics"]["balanced_accuracy"])


@pytest.mark.slow
def test_finetune_trains_end_to_end_and_predict_loads_the_whole_model(sweep, tmp_path: Path) -> None:
    output = invoke(*base_args(sweep, tmp_path / "tuned", "--ratios", "0", "--seeds", "1", "--finetune",
                               "--epochs", "2"))
    # fine-tuning trains on images; the cached features give only the head's standardisation
    assert "0 backbone feature(s) computed" in output
    cell = json.loads((tmp_path / "tuned" / "cells" / "ratio-000_seed-00.json").read_text())
    assert cell["feature_cache"] is False
    model = tmp_path / "tuned" / "models" / "ratio-000_seed-00"
    assert (model / "model.keras").exists() and json.loads((model / "model.json").read_text())["inputs"] == "images"
    table_path = tmp_path / "p.csv"
    invoke("predict", "--model", str(model), str(sweep["data"] / "images" / "test"), "--out", str(table_path))
    table = pd.read_csv(table_path)
    expected = {str(sweep["data"] / row["image"]): row["proba"] for row in cell["test_predictions"]}
    for row in table.itertuples(index=False):
        np.testing.assert_allclose([row.p_normal, row.p_tumour], expected[row.image], atol=1e-5)


@pytest.mark.slow
def test_torch_backend_in_a_fresh_process(sweep, tmp_path: Path) -> None:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}  # the flag must win over the environment
    command = [sys.executable, "-m", "augstudy", *base_args(sweep, tmp_path / "torch", "--ratios", "0",
                                                            "--seeds", "1", "--keras-backend", "torch")]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    cell = json.loads((tmp_path / "torch" / "cells" / "ratio-000_seed-00.json").read_text())
    assert cell["keras_backend"] == "torch"
    assert json.loads((tmp_path / "torch" / "sweep_options.json").read_text())["keras_backend"] == "torch"
    assert "computed" in completed.stdout and "0 backbone feature(s)" not in completed.stdout  # own cache key


@pytest.mark.parametrize(("extra", "message"), [
    (("--epochs", "0"), "'--epochs': 0: must be an integer >= 1"),
    (("--patience", "0"), "'--patience': 0: must be an integer >= 1"),
    (("--batch-size", "0"), "'--batch-size': 0: must be an integer >= 1"),
    (("--learning-rate", "0"), "'--learning-rate': 0.0: must be a number > 0"),
    (("--bootstrap", "10"), "'--bootstrap': 10: must be an integer in [100, 100000]"),
    (("--ratios", "25,50"), "include 0"),
    (("--arms", "gan,mixup"), "--arms gan,mixup: give distinct arms"),
    (("--real-fractions", "0,50"), "--real-fractions 0,50: give distinct percentages in (0, 100]"),
    (("--positive-class", "benign"), "--positive-class 'benign' is not one of normal, tumour"),
    (("--schedule", "fixed", "--patience", "2"), "--patience 2: --schedule fixed has no early stopping"),
    (("--schedule", "fixed", "--monitor", "roc_auc"), "--monitor roc_auc: --schedule fixed monitors nothing"),
])
def test_nonsensical_options_are_rejected_with_a_message(sweep, tmp_path: Path, extra, message) -> None:
    result = CliRunner().invoke(main, [*base_args(sweep, tmp_path / "out"), *extra, "--dry-run"])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_fixed_schedule_trains_exactly_the_epochs_and_monitor_is_recorded(sweep, tmp_path: Path) -> None:
    invoke(*base_args(sweep, tmp_path / "fixed", "--ratios", "0", "--seeds", "2", "--schedule", "fixed",
                      "--epochs", "3", "--save-models", "none"))
    results = pd.read_csv(tmp_path / "fixed" / "results.csv")
    assert results["epochs_trained"].eq(3).all() and results["best_epoch"].eq(3).all()
    options = json.loads((tmp_path / "fixed" / "sweep_options.json").read_text())
    assert options["schedule"] == "fixed" and options["epochs"] == 3


@pytest.mark.slow
def test_the_learning_curve_counts_distinct_real_images_not_duplicate_files(sweep, tmp_path: Path) -> None:
    """Issue 20 item 6: on the official chest CT split 148 normal train files are 32 distinct slices; a
    curve in files credits the copies as data. Here 6 train images per class, 3 of them stored twice."""
    study = write_toy_study(tmp_path / "toy", train=6, valid=3, test=4, pool=0, size=32, train_duplicates=3)
    out = tmp_path / "results"
    invoke("sweep", "--data", str(study.data), "--out", str(out), "--arms", "real", "--real-fractions", "50",
           "--seeds", "2", "--save-models", "none", "--cache-dir", str(sweep["cache"]), *FAST)
    manifest = pd.read_csv(study.data / "manifest.csv", keep_default_na=False)
    group = {row.image: row.dup_group or row.image for row in manifest.itertuples()}
    data = read_prepared(study.data)
    for seed in (0, 1):
        chosen = nested_real_subset(data.subsets["train"], 2, 50, seed)
        expected = {name: len({group[item.ref.path.relative_to(data.root).as_posix()] for item in chosen
                               if item.label == label}) for label, name in enumerate(data.class_names)}
        cell = json.loads((out / "cells" / f"real_fraction-050_seed-{seed:02d}.json").read_text())
        assert cell["unique_train_images"] == expected and cell["n_real"] == 2 * 5  # 5 of 9 files per class
    full = json.loads((out / "cells" / "ratio-000_seed-00.json").read_text())
    assert full["unique_train_images"] == {"normal": 6, "tumour": 6} and full["n_real"] == 18
    summary = pd.read_csv(out / "summary.csv")
    curve = summary[(summary["arm"] == "real") & (summary["metric"] == "balanced_accuracy")].sort_values(
        "real_fraction")
    assert curve["n_unique_per_class"].iloc[-1] == 6 and curve["n_real_per_class"].iloc[-1] == 9
    answer = json.loads((out / "answer.json").read_text())
    assert answer["learning_curve_x"] == "distinct real images per class"
    assert "instead of 6 distinct real images per class on average" in answer["sentence"]
    svg = (out / "figures" / "learning_curve.svg").read_text()
    assert "distinct real images per class" in svg and "real train files" not in svg
    # cells written before the field existed: a resumed sweep derives it (same fingerprint, same data)
    for path in (out / "cells").glob("*.json"):
        cell = json.loads(path.read_text())
        del cell["unique_train_images"]
        path.write_text(json.dumps(cell))
    output = invoke("sweep", "--data", str(study.data), "--out", str(out), "--arms", "real", "--real-fractions", "50",
                    "--seeds", "2", "--save-models", "none", "--cache-dir", str(sweep["cache"]), *FAST)
    assert "trained 0 cell(s), skipped 4 finished" in output
    resumed = pd.read_csv(out / "summary.csv")
    pd.testing.assert_series_equal(resumed["n_unique_per_class"], summary["n_unique_per_class"])
