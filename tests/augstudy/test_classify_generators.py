"""Two generators in one sweep (`--pool gan=DIR --pool diffusion=DIR`): each arm draws from its own
generator's pool, with the same seeds and test draws, and the GAN - diffusion contrast joins the
confirmatory family. The diffusion pool here holds the toy classes with their folders swapped, so
an arm that read the wrong pool would show at once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from augstudy.classify.toydata import write_toy_study
from augstudy.cli import main

FAST = ["--weights", "none", "--input-size", "32", "--epochs", "8", "--batch-size", "4", "--quiet",
        "--bootstrap", "200"]
ARMS = "gan,diffusion,classic,real,synthetic-only,diffusion-only"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generators")
    toy = write_toy_study(root, train=8, valid=4, test=8, pool=10, size=32, duplicates=0)
    swapped = root / "diffusion"
    shutil.copytree(toy.pool / "normal", swapped / "tumour")  # labels swapped: an unmistakable pool
    shutil.copytree(toy.pool / "tumour", swapped / "normal")
    paths = {"data": toy.data, "gan": toy.pool, "diffusion": swapped, "cache": root / "cache",
             "out": root / "results"}
    code, output = _invoke("sweep", "--data", str(toy.data), "--pool", f"gan={toy.pool}",
                           "--pool", f"diffusion={swapped}", "--out", str(paths["out"]), "--ratios", "0,100",
                           "--seeds", "3", "--arms", ARMS, "--real-fractions", "50", "--cache-dir", str(paths["cache"]), *FAST)
    assert code == 0, output
    return paths


def _cells(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in (out / "cells").glob("*.json")}


def test_each_arm_draws_only_from_its_own_generators_pool(study) -> None:
    cells = _cells(study["out"])
    files = {generator: {path.relative_to(study[generator]).as_posix() for path in study[generator].rglob("*.png")}
             for generator in ("gan", "diffusion")}
    for group, generator in (("gan", "gan"), ("synthetic-only", "gan"),
                             ("diffusion", "diffusion"), ("diffusion-only", "diffusion")):
        drawn = [cell for cell in cells.values() if cell["group"] == group]
        assert len(drawn) == 3, group
        for cell in drawn:
            assert cell["generator"] == generator and cell["n_added"] == 16
            assert set(cell["added_images"]) <= files[generator], group
    # the same seeds draw the same files by name from either pool (shared draws), here swapped class folders
    gan, diffusion = cells["ratio-100_seed-00"], cells["diffusion_ratio-100_seed-00"]
    assert sorted(Path(name).name for name in gan["added_images"]) == \
        sorted(Path(name).name for name in diffusion["added_images"])
    assert {cell["generator"] for cell in cells.values() if cell["group"] in ("classic", "baseline")} == {None}


def test_a_pool_with_wrong_labels_shows_in_its_own_arm_only(study) -> None:
    results = pd.read_csv(study["out"] / "results.csv")
    by_arm = results.groupby("arm")["balanced_accuracy"].mean()
    # trained on correctly labelled synthetic images vs on the same images with the labels swapped
    assert by_arm["synthetic-only"] > 0.6 and by_arm["diffusion-only"] < 0.4, by_arm.to_dict()
    summary = pd.read_csv(study["out"] / "summary.csv")
    contrast = summary[(summary["arm"] == "gan - diffusion") & (summary["metric"] == "balanced_accuracy")]
    assert len(contrast) == 1 and contrast["mean_difference"].iloc[0] > 0


def test_gan_minus_diffusion_is_in_the_confirmatory_family_and_the_answer(study) -> None:
    summary = pd.read_csv(study["out"] / "summary.csv")
    family = summary[summary["p_holm"].notna()]
    assert sorted(family["arm"]) == ["classic", "diffusion", "diffusion - classic", "gan", "gan - classic",
                                     "gan - diffusion"]
    correction = family["correction"].iloc[0]
    assert "Holm over the 6 confirmatory tests" in correction and "GAN - diffusion at each ratio" in correction
    answer = json.loads((study["out"] / "answer.json").read_text())
    sentence = answer["sentence"]
    # each generator's gain is read off the same real-image learning curve
    assert [(item["arm"], item["ratio"]) for item in answer["real_equivalents"]] == [("gan", 100), ("diffusion", 100)]
    assert "100 % GAN:" in sentence and "100 % diffusion:" in sentence
    for words in ("Diffusion images:", "GAN minus diffusion images at equal added counts, paired: 100 %:",
                  "Diffusion minus classic augmentation", "Trained on diffusion images only",
                  "Trained on GAN images only"):
        assert words in sentence


def test_missing_unused_unknown_and_repeated_pools_are_refused(study, tmp_path: Path) -> None:
    base = ["sweep", "--data", str(study["data"]), "--cache-dir", str(study["cache"]), *FAST]
    code, output = _invoke(*base, "--out", str(tmp_path / "a"), "--pool", str(study["gan"]),
                           "--arms", "gan,diffusion")
    assert code != 0 and "need --pool diffusion=DIR" in output
    code, output = _invoke(*base, "--out", str(tmp_path / "b"), "--pool", str(study["gan"]),
                           "--pool", f"diffusion={study['diffusion']}", "--arms", "gan")
    assert code != 0 and "no arm reads it" in output
    code, output = _invoke(*base, "--out", str(tmp_path / "c"), "--pool", f"vae={study['gan']}")
    assert code != 0 and "name a generator out of gan, diffusion" in output
    code, output = _invoke(*base, "--out", str(tmp_path / "d"), "--pool", str(study["gan"]),
                           "--pool", f"gan={study['diffusion']}")
    assert code != 0 and "gan is given twice" in output
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing written for a refused sweep
    inside = study["diffusion"] / "results"
    code, output = _invoke(*base, "--out", str(inside), "--pool", str(study["gan"]),
                           "--pool", f"diffusion={study['diffusion']}", "--arms", "gan,diffusion")
    assert code != 0 and f"is inside --pool diffusion {study['diffusion']}" in output and not inside.exists()
