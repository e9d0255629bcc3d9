"""`augstudy sweep --design cv` on a toy study: cells per (repeat, fold, GAN seed, arm, level, seed), each
fold trained, validated and tested on its own images with its own pools and classic copies, resumable
and refusing pools or cells of another fold plan."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from augstudy.classify.toydata import write_toy_study
from augstudy.cli import main
from augstudy.data.folds import FOLD_FILE, FoldOptions, fold_record, plan_folds
from stylegan2ada.io import sha256_file

FAST = ["--weights", "none", "--input-size", "32", "--epochs", "4", "--batch-size", "4", "--quiet",
        "--bootstrap", "100"]
CV = ["--design", "cv", "--folds", "3", "--repeats", "2", "--gan-seeds", "2", "--val-fraction", "0.34"]
PLAN = FoldOptions(folds=3, repeats=2, seed=0, val_fraction=0.34)
PER_POOL = 8


def invoke(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def write_cv_pools(data: Path, flat_pool: Path, out: Path, options: FoldOptions) -> None:
    """POOL/<fold>/gan-<g>/<class>/*.png and POOL/<fold>/fold.json, as `augstudy run` lays them out:
    gan-0 and gan-1 hold different images."""
    plan = plan_folds(data, "official", ("normal", "tumour"), options)
    for fold in plan.folds:
        for gan_seed in range(2):
            for folder in flat_pool.iterdir():
                target = out / fold.name / f"gan-{gan_seed}" / folder.name
                target.mkdir(parents=True)
                for image in sorted(folder.glob("*.png"))[gan_seed * PER_POOL:(gan_seed + 1) * PER_POOL]:
                    shutil.copy(image, target / image.name)
        (out / fold.name / FOLD_FILE).write_text(json.dumps(fold_record(plan, fold)))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cv")
    toy = write_toy_study(root, train=5, valid=3, test=4, pool=2 * PER_POOL, size=32)
    paths = {"data": toy.data, "pool": root / "pools", "cache": root / "cache", "out": root / "results"}
    write_cv_pools(toy.data, toy.pool, paths["pool"], PLAN)
    invoke(*base_args(paths, paths["out"]))
    return paths


def base_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["sweep", "--data", str(paths["data"]), "--pool", str(paths["pool"]), "--out", str(out),
            "--cache-dir", str(paths["cache"]), "--arms", "gan,classic,real", "--ratios", "0,100",
            "--real-fractions", "50", "--seeds", "1", *CV, *FAST, *extra]


def cells_of(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (out / "cells").glob("*.json")}


pytestmark = pytest.mark.slow


def test_results_have_a_row_per_repeat_fold_gan_seed_arm_level_and_seed(study) -> None:
    results = pd.read_csv(study["out"] / "results.csv")
    assert set(results["design"]) == {"cv"}
    assert sorted(set(zip(results["repeat"], results["fold"]))) == [(r, f) for r in range(2) for f in range(3)]
    per_fold = results[(results["repeat"] == 1) & (results["fold"] == 2)]
    rows = sorted((arm, ratio, fraction, -1 if pd.isna(g) else int(g))
                  for arm, ratio, fraction, g in per_fold[["arm", "ratio", "real_fraction", "gan_seed"]].itertuples(
                      index=False, name=None))
    assert rows == [("classic", 0, 100, -1), ("classic", 100, 100, -1), ("gan", 0, 100, -1), ("gan", 100, 100, 0),
                    ("gan", 100, 100, 1), ("real", 0, 50, -1), ("real", 0, 100, -1)]
    assert len(results) == 6 * 7 and len(cells_of(study["out"])) == 6 * 5  # the 0 % cell shared by 3 arms


def test_each_fold_tests_its_own_images_and_every_image_once_per_repeat(study) -> None:
    plan = json.loads((study["out"] / "folds.json").read_text())
    pooled = set(plan["images"])
    assert len(pooled) == 2 * 13  # official split: 12 unique + 1 test copy a class, pooled
    cells = cells_of(study["out"])
    for repeat in range(2):
        tested = Counter(row["image"] for name, cell in cells.items()
                         if name.startswith(f"r{repeat}-") and cell["group"] == "baseline"
                         for row in cell["test_predictions"])
        assert set(tested) == pooled and set(tested.values()) == {1}
    for cell in cells.values():
        fold = plan["folds"][cell["repeat"] * 3 + cell["fold"]]
        assert sorted(row["image"] for row in cell["test_predictions"]) == fold["test"]
        assert sorted(cell["valid_images"]) == fold["valid"]
        assert cell["n_real"] <= len(fold["train"]) and cell["design"] == "cv"
        assert cell["steps_kept"] == cell["best_epoch"] * cell["batches_per_epoch"]


def test_pools_and_classic_copies_come_from_the_cells_own_fold(study) -> None:
    plan = json.loads((study["out"] / "folds.json").read_text())
    for name, cell in cells_of(study["out"]).items():
        fold = plan["folds"][cell["repeat"] * 3 + cell["fold"]]
        if cell["group"] == "gan":
            assert cell["gan_seed"] in (0, 1)
            assert all(image.startswith(f"{fold['name']}/gan-{cell['gan_seed']}/") for image in cell["added_images"])
        else:
            assert cell["gan_seed"] is None, name
        if cell["group"] == "classic":
            train_hashes = {sha256_file(study["data"] / image)[:8] for image in fold["train"]}
            sources = {Path(image).stem.rsplit("-", 2)[1] for image in cell["added_images"]}
            assert sources and sources <= train_hashes, "classic copies only of the fold's training images"


def test_rerun_skips_every_cell_and_another_plan_is_refused(study) -> None:
    before = {name: cell["seconds"] for name, cell in cells_of(study["out"]).items()}
    output = invoke(*base_args(study, study["out"]))
    assert "trained 0 cell(s), skipped 30 finished" in output
    assert {name: cell["seconds"] for name, cell in cells_of(study["out"]).items()} == before
    # the pools were made for cv seed 0: another plan must not use them (their GANs saw other images)
    output = invoke(*base_args(study, study["out"], "--cv-seed", "5"), ok=False)
    assert "made for another fold plan" in output


def test_a_changed_fold_plan_never_reuses_a_cell(study, tmp_path: Path) -> None:
    out = tmp_path / "results"
    shutil.copytree(study["out"] / "cells", out / "cells")
    args = base_args(study, out, "--arms", "classic", "--cv-seed", "5")  # no pool needed: only folds differ
    output = invoke(*args, ok=False)
    differs = re.search(r"differs in: ([^)]*)\)", output)
    assert differs and "fold_digest" in differs.group(1).split(", ")


def test_answer_names_the_design(study) -> None:
    answer = json.loads((study["out"] / "answer.json").read_text())
    assert answer["design"]["design"] == "cv" and answer["design"]["folds"] == 3
    # the audit's caveats come first (issue 20); the design note closes the sentence
    assert answer["sentence"].endswith(answer["design"]["note"])
    assert answer["design"]["note"].startswith("Design: repeated, stratified, grouped cross-validation")
    assert "5-fold" not in answer["title"] and "3-fold grouped CV x 2 repeat(s)" in answer["title"]
    # warnings about the folds' own sets; no copies of train images can be in a fold's test set
    assert any("Small validation class(es) on cv fold r0-f0" in warning for warning in answer["warnings"])
    assert not any("duplicate train images" in warning for warning in answer["warnings"])


@pytest.mark.parametrize(("extra", "message"), [
    (["--design", "split"], "only for --design cv"),
    (["--folds", "1"], "at least 2 folds"),
])
def test_cv_options_that_cannot_mean_anything_are_refused(study, tmp_path: Path, extra, message) -> None:
    args = base_args(study, tmp_path / "r")
    args += extra
    assert message in invoke(*args, ok=False)
