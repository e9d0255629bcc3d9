"""`augstudy sweep` and `augstudy predict` end to end on a tiny toy study (random-init ResNet50 at
32 px): outputs, resume, determinism, errors, splits, views, fine-tuning and the torch backend."""

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

from augstudy.classify.metrics import METRICS
from augstudy.classify.saved import load_model, read_info
from augstudy.classify.toydata import write_toy_study
from augstudy.cli import main

FAST = ["--weights", "none", "--input-size", "32", "--epochs", "6", "--batch-size", "4", "--quiet"]


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
                             "--cache-dir", str(paths["cache"]), *FAST)
    return paths


def base_args(sweep: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["sweep", "--data", str(sweep["data"]), "--pool", str(sweep["pool"]), "--out", str(out),
            "--cache-dir", str(sweep["cache"]), *FAST, *extra]


def test_results_csv_has_one_row_per_cell_with_every_column(sweep) -> None:
    results = pd.read_csv(sweep["out"] / "results.csv")
    assert list(results[["ratio", "seed"]].itertuples(index=False, name=None)) == [(0, 0), (0, 1), (100, 0), (100, 1)]
    for column in ("ratio", "seed", *METRICS, "epochs_trained", "n_real", "n_synthetic", "degenerate",
                   "backbone", "weights", "head", "split"):
        assert column in results.columns, column
    assert results["n_real"].eq(10).all()
    assert results.set_index("ratio")["n_synthetic"].to_dict() == {0: 0, 100: 10}
    assert set(results["weights"]) == {"random-init backbone"}
    assert set(results["split"]) == {"official"} and set(results["backbone"]) == {"resnet50"}
    assert results["accuracy"].between(0, 1).all() and results["epochs_trained"].between(1, 6).all()
    cell = json.loads((sweep["out"] / "cells" / "ratio-100_seed-01.json").read_text())
    assert cell["metrics"]["accuracy"] == pytest.approx(results.iloc[3]["accuracy"])
    assert len(cell["synthetic_images"]) == 10 and all(name.endswith(".png") for name in cell["synthetic_images"])
    assert len(cell["history"]["val_loss"]) == cell["epochs_trained"]
    assert np.sum(cell["confusion_matrix"]) == cell["n_test"] == 2 * (4 + 1)


def test_summary_has_ci_and_paired_holm_test_against_zero(sweep) -> None:
    summary = pd.read_csv(sweep["out"] / "summary.csv")
    assert set(summary["metric"]) == set(METRICS)
    accuracy = summary[summary["metric"] == "accuracy"].set_index("ratio")
    results = pd.read_csv(sweep["out"] / "results.csv")
    assert accuracy.loc[100, "mean"] == pytest.approx(results[results["ratio"] == 100]["accuracy"].mean())
    assert accuracy.loc[100, "ci_low"] <= accuracy.loc[100, "mean"] <= accuracy.loc[100, "ci_high"]
    assert accuracy.loc[100, "test"] == "paired t-test" and accuracy.loc[100, "n_pairs"] == 2
    assert "p_holm" in accuracy.columns and set(summary["weights"]) == {"random-init backbone"}


def test_figures_are_written_as_png_and_svg_and_say_random_init(sweep) -> None:
    figures = sweep["out"] / "figures"
    stems = ["accuracy_vs_ratio", "balanced_accuracy_vs_ratio", "confusion_ratio-000", "confusion_ratio-100",
             "training_curves"]
    for stem in stems:
        assert (figures / f"{stem}.png").stat().st_size > 1000
        assert "random-init backbone" in (figures / f"{stem}.svg").read_text()


def test_options_and_models_are_written_beside_the_results(sweep) -> None:
    options = json.loads((sweep["out"] / "sweep_options.json").read_text())
    assert options["split"] == "official" and options["input_size"] == 32
    assert options["keras_backend"] == "tensorflow" and options["ratios"] == [0, 100]
    assert options["learning_rate"] == pytest.approx(1e-3) and options["patience"] == 5
    models = sorted(path.name for path in (sweep["out"] / "models").iterdir())
    assert models == ["ratio-000_seed-00", "ratio-100_seed-00"]  # --save-models first-seed
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
    output = invoke(*base_args(sweep, sweep["out"], "--ratios", "0,100", "--seeds", "2"))
    assert "trained 0 cell(s), skipped 4" in output
    assert {path: path.read_bytes() for path in (sweep["out"] / "cells").iterdir()} == before
    results = (sweep["out"] / "results.csv").read_bytes()
    removed = sweep["out"] / "cells" / "ratio-100_seed-01.json"
    expected = _without_timing(removed)
    removed.unlink()
    output = invoke(*base_args(sweep, sweep["out"], "--ratios", "0,100", "--seeds", "2"))
    assert "trained 1 cell(s), skipped 3" in output and "0 backbone feature(s) computed" in output
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
    output = invoke(*base_args(sweep, tmp_path / "again", "--ratios", "100", "--seeds", "2"))
    assert "0 backbone feature(s) computed" in output
    again = pd.read_csv(tmp_path / "again" / "results.csv")
    first = pd.read_csv(sweep["out"] / "results.csv")
    pd.testing.assert_frame_equal(again, first[first["ratio"] == 100].reset_index(drop=True))


def test_dedup_split_with_augmented_views(sweep, tmp_path: Path) -> None:
    output = invoke(*base_args(sweep, tmp_path / "views", "--ratios", "100", "--seeds", "1", "--split", "dedup",
                               "--aug-views", "1", "--save-models", "none"))
    assert "20 backbone feature(s) computed" in output  # view 1 of 10 real + 10 synthetic; view 0 is cached
    cell = json.loads((tmp_path / "views" / "cells" / "ratio-100_seed-00.json").read_text())
    assert cell["split"] == "dedup" and cell["n_test"] == 8  # the duplicated test images are dropped
    assert cell["n_train_inputs"] == 2 * (10 + 10) and cell["n_synthetic"] == 10
    assert len(list(sweep["cache"].rglob("*.aug-*.npy"))) == 20
    assert not (tmp_path / "views" / "models").exists()


def test_three_classes_use_softmax_and_macro_metrics(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=4, valid=2, test=2, pool=2, size=32,
                            classes=("adeno", "normal", "squamous"))
    invoke("sweep", "--data", str(study.data), "--pool", str(study.pool), "--out", str(tmp_path / "out"),
           "--ratios", "50", "--seeds", "1", "--cache-dir", str(tmp_path / "cache"), *FAST)
    cell = json.loads((tmp_path / "out" / "cells" / "ratio-050_seed-00.json").read_text())
    assert cell["class_names"] == ["adeno", "normal", "squamous"] and cell["n_synthetic"] == 3 * 2
    assert np.shape(cell["confusion_matrix"]) == (3, 3)
    probabilities = np.array([row["proba"] for row in cell["test_predictions"]])
    assert probabilities.shape == (9, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert cell["metrics"]["sensitivity"] == pytest.approx(cell["metrics"]["balanced_accuracy"])


@pytest.mark.slow
def test_finetune_trains_end_to_end_and_predict_loads_the_whole_model(sweep, tmp_path: Path) -> None:
    output = invoke(*base_args(sweep, tmp_path / "tuned", "--ratios", "0", "--seeds", "1", "--finetune",
                               "--epochs", "2"))
    assert "0 backbone feature(s) computed" in output  # fine-tuning bypasses the cache
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
