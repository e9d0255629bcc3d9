"""`augstudy run` with the cv design: a GAN per fold and GAN seed, trained only on the fold's training part,
checked from the files the run writes; resumable per fold and generator; a dry run that counts the work."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from study_configs import tiny_diffusion

from augstudy.cli import main
from augstudy.pipeline import ConfigError, Study, load_config

TINY_CV = """
[study]
name = "tiny-cv"
source = "phantom"

[phantom]
per_class = 24
seed = 3

[prepare]
resolution = 16
split = "dedup"

[audit]
enabled = false

[train_gan]
channel_base = 256
channel_max = 16
mapping_layers = 1
batch = 4
gamma = 0.1
kimg = 0.02
snap = 0.02
tick_kimg = 0.02
workers = 0
threads = 1
seed = 4

[generate]
per_class = 16

[metrics]
enabled = false

[sweep]
design = "cv"
folds = 2
repeats = 1
gan_seeds = 2
ratios = [0, 100]
seeds = 1
weights = "none"
input_size = 32
epochs = 2
save_models = "none"
bootstrap = 100
sensitivity = {schedule = "fixed", epochs = 3}
"""


def _pixels(data: bytes) -> str:
    """A hash of decoded pixels: a copy re-encoded into the zip still matches."""
    return hashlib.sha256(np.asarray(Image.open(io.BytesIO(data)).convert("L")).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("cvrun")
    config = root / "tiny-cv.toml"
    config.write_text(TINY_CV, encoding="utf-8")
    log: list[str] = []
    Study(load_config(config, root / "study"), log=log.append).run()
    return config, root / "study", log


pytestmark = pytest.mark.slow


def test_no_test_image_of_a_fold_nor_its_duplicates_reaches_that_folds_gan(study) -> None:
    _, out, _ = study
    manifest = pd.read_csv(out / "prepared" / "manifest.csv", keep_default_na=False)
    members = manifest[manifest["image"] != ""].groupby("dup_group")["image"].apply(list).to_dict()
    group_of = dict(zip(manifest["image"], manifest["dup_group"]))
    runs = sorted((out / "runs").glob("r*-f*/gan-*/*/training_options.json"))
    assert len(runs) == 2 * 2 * 2  # folds x GAN seeds x classes
    for options_file in runs:
        trained_on = Path(json.loads(options_file.read_text())["data"])
        fold = json.loads((trained_on.parent.parent / "fold.json").read_text())
        assert trained_on.parent.parent.name.startswith(fold["name"])
        assert options_file.parents[2].name.startswith(fold["name"]), "a fold's runs train on that fold's zip"
        held_out = set(fold["test"]) | set(fold["valid"])
        held_out |= {m for image in list(held_out) if group_of[image] for m in members[group_of[image]]}
        forbidden = {_pixels((out / "prepared" / image).read_bytes()) for image in held_out}
        with zipfile.ZipFile(trained_on) as archive:
            seen = {_pixels(archive.read(name)) for name in archive.namelist() if name.endswith(".png")}
        assert seen and not seen & forbidden, f"{trained_on} holds a held-out image of {fold['name']}"
        train = {_pixels((out / "prepared" / image).read_bytes()) for image in fold["train"]}
        assert seen <= train


def test_each_fold_uses_its_own_generators_and_results_cover_every_fold(study) -> None:
    _, out, _ = study
    results = pd.read_csv(out / "results" / "results.csv")
    assert set(zip(results["repeat"], results["fold"])) == {(0, 0), (0, 1)}
    assert set(results["gan_seed"].dropna().astype(int)) == {0, 1}
    folds = json.loads((out / "results" / "folds.json").read_text())
    for fold in folds["folds"]:
        assert json.loads((out / "pool" / fold["name"] / "fold.json").read_text())["digest"] == fold["digest"]
        for gan_seed in range(2):
            generate = json.loads((out / "pool" / fold["name"] / f"gan-{gan_seed}" / "generate_options.json").read_text())
            assert all(f"/{fold['name']}-" in network and f"/gan-{gan_seed}/" in network
                       for network in generate["networks"])
    for path in (out / "results" / "cells").glob("*gan-*.json"):
        cell = json.loads(path.read_text())
        name = f"r{cell['repeat']}-f{cell['fold']}"
        assert all(image.startswith(f"{name}/gan-{cell['gan_seed']}/") for image in cell["added_images"])
    seeds = {json.loads(p.read_text())["seed"] for p in (out / "runs").glob("r0-f0-*/gan-*/normal/training_options.json")}
    assert seeds == {4, 5}, "GAN seed g trains with the config's seed + g"
    report = (out / "report.md").read_text()
    assert "cross-validation" in report and "of the same class from each pool: GAN images" in report
    assert "pool/r0-f0/gan-0/generate_options.json" in report


def test_the_fixed_schedule_sensitivity_sweep_runs_every_fold_and_reaches_the_answer(study) -> None:
    _, out, _ = study
    fixed = out / "results" / "sensitivity-fixed"
    main_results, results = pd.read_csv(out / "results" / "results.csv"), pd.read_csv(fixed / "results.csv")
    assert len(results) == len(main_results) and set(zip(results["repeat"], results["fold"])) == {(0, 0), (0, 1)}
    assert results["epochs_trained"].eq(3).all() and results["best_epoch"].eq(3).all()
    comparison = json.loads((fixed / "comparison.json").read_text())
    assert set(comparison["main"]) == set(comparison["fixed"]) == {"GAN +100 % vs 0 %"}
    answer = json.loads((out / "results" / "answer.json").read_text())
    assert answer["sensitivity"] == comparison and comparison["sentence"] in (out / "report.md").read_text()


def test_rerun_resumes_without_redoing_finished_folds(study) -> None:
    config, out, _ = study
    state_path = out / "study_state.json"
    state = json.loads(state_path.read_text())
    interrupted = {step: record for step, record in state["steps"].items()
                   if not (step.startswith(("generate:r0-f1:gan-1", "sweep")))}
    state_path.write_text(json.dumps({"steps": interrupted}))  # as if killed while generating r0-f1's gan-1
    (out / "pool" / "r0-f1" / "fold.json").unlink()
    log: list[str] = []
    Study(load_config(config, out), log=log.append).run()
    skipped = [line for line in log if "skipped" in line]
    assert sum("train_gan:" in line for line in skipped) == 4
    assert any("generate:r0-f0:gan-1" in line for line in skipped)
    assert any(line == "== generate:r0-f1:gan-1" for line in log)
    assert (out / "pool" / "r0-f1" / "fold.json").is_file()


def test_dry_run_counts_gans_and_cells_and_estimates_the_time(study, tmp_path: Path) -> None:
    config, _, _ = study
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)["plan"]
    assert plan["gans"] == 2 * 1 * 2 * 2  # folds x repeats x GAN seeds x classes
    # per fold: the real-only cell and the gan arm's 100 % for each of 2 GAN seeds, 1 classifier seed
    assert plan["classifier_cells"] == 2 * 3
    assert plan["gan_sec_per_kimg_measured"] > 0 and plan["estimated_seconds"] > 0
    assert not (tmp_path / "s").exists()


def test_cv_with_several_splits_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(TINY_CV.replace('design = "cv"', 'design = "cv"\nsplits = ["official", "dedup"]'))
    with pytest.raises(ConfigError, match="pools the images of one split mode"):
        load_config(config)


def test_a_pool_too_small_for_a_fold_stops_before_any_gan_trains(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(TINY_CV.replace("per_class = 16", "per_class = 3"), encoding="utf-8")
    log: list[str] = []
    with pytest.raises(click.ClickException, match=r"\[generate\] per_class = 3 is too small .* needs \d+"):
        Study(load_config(config, tmp_path / "s"), log=log.append).run()
    assert not (tmp_path / "s" / "runs").exists()


def test_the_shipped_chest_ct_cv_config_makes_pools_large_enough_for_every_fold() -> None:
    """Its [generate] per_class covers the largest fold's train count at 100 %, read from the committed
    prepared manifest of the same images (experiments/results/chestct-cpu)."""
    from augstudy.data.folds import FoldOptions, plan_folds

    root = Path(__file__).parents[2] / "experiments"
    config = load_config(root / "chestct-cv.toml")
    sweep = config.sections["sweep"]
    assert sweep["design"] == "cv"
    plan = plan_folds(root / "results" / "chestct-cpu" / "prepared", config.sections["prepare"]["split"],
                      ("normal", "squamous"), FoldOptions(folds=sweep["folds"], repeats=sweep["repeats"]))
    labels = {item.image: item.label for item in plan.images}
    largest = max(sum(labels[image] == label for image in fold.train) for fold in plan.folds for label in (0, 1))
    assert config.sections["generate"]["per_class"] >= largest * max(sweep["ratios"]) / 100


@pytest.mark.slow
def test_a_diffusion_model_per_fold_trains_on_that_folds_zip_and_feeds_its_arm(tmp_path: Path) -> None:
    config = tmp_path / "cv-both.toml"
    config.write_text(TINY_CV.replace("gan_seeds = 2", "gan_seeds = 1").replace("[sweep]\n", '[sweep]\narms = ["gan", "diffusion"]\n')
                      + tiny_diffusion(seed=7), encoding="utf-8")
    out = tmp_path / "study"
    plan = json.loads(CliRunner().invoke(main, ["run", str(config), "--out", str(out), "--dry-run"]).output)["plan"]
    assert plan["gans"] == plan["diffusion_models"] == 2 * 1 * 2  # folds x seeds x classes
    Study(load_config(config, out), log=lambda line: None).run()
    folds = json.loads((out / "results" / "folds.json").read_text())["folds"]
    for fold in folds:
        (runs,) = (out / "runs-diffusion").glob(f"{fold['name']}-*/diffusion-0")
        options = json.loads((runs / "train_diffusion_options.json").read_text())
        trained_on = Path(options["data"])
        assert json.loads((trained_on / "fold.json").read_text())["name"] == fold["name"] and options["seed"] == 7
        assert trained_on.name == runs.parent.name, "a fold's diffusion models train on that fold's zips"
        pool = out / "pool-diffusion" / fold["name"]
        assert json.loads((pool / "fold.json").read_text())["digest"] == fold["digest"]
        assert len(list((pool / "diffusion-0" / "normal").glob("*.png"))) == 16
    cells = [json.loads(path.read_text()) for path in (out / "results" / "cells").glob("*_diffusion-0_diffusion_*.json")]
    assert len(cells) == 2
    for cell in cells:
        assert all(image.startswith(f"r{cell['repeat']}-f{cell['fold']}/diffusion-0/") for image in cell["added_images"])
    summary = pd.read_csv(out / "results" / "summary.csv")
    assert "gan - diffusion" in set(summary["arm"])
