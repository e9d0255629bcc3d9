"""The GPU time `augstudy run CONFIG --dry-run` prints, and the reproduction config of the original study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from augstudy.cli import main
from augstudy.gan.estimate import gan_gpu_time, study_gan_gpu_time

STEBBINS = Path(__file__).resolve().parents[2] / "experiments" / "stebbins2024.toml"


def test_the_estimate_scales_the_reference_v100_speed_and_says_it_is_not_measured() -> None:
    estimate = gan_gpu_time(256, kimg=80, runs=2)
    # 160 kimg at the reference's 21.6-24.2 s/kimg
    assert estimate["hours"] == [pytest.approx(160 * 21.6 / 3600, abs=0.01), pytest.approx(160 * 24.2 / 3600, abs=0.01)]
    assert "NOT measured" in estimate["source"] and "V100" in estimate["source"]
    assert gan_gpu_time(256, kimg=40, runs=2)["hours"][1] == pytest.approx(estimate["hours"][1] / 2, abs=0.01)


@pytest.mark.parametrize(("resolution", "kimg", "runs", "why"), [
    (512, 80, 2, "no reference speed at 512 px"),
    (256, None, 2, "kimg is not set"),
    (256, 80, None, "number of runs is not known"),
])
def test_no_figure_is_made_up_where_there_is_no_reference(resolution: int, kimg: float | None, runs: int | None,
                                                           why: str) -> None:
    estimate = gan_gpu_time(resolution, kimg, runs)
    assert estimate["hours"] is None and why in estimate["why_none"]


def test_runs_follow_the_classes_or_one_conditional_network() -> None:
    prepare = {"resolution": 256, "classes": ["normal", "squamous"]}
    assert study_gan_gpu_time(prepare, {"kimg": 80, "classes": []})["runs"] == 2
    assert study_gan_gpu_time(prepare, {"kimg": 80, "classes": ["squamous"]})["runs"] == 1
    assert study_gan_gpu_time(prepare, {"kimg": 80, "conditional": True})["runs"] == 1
    assert "caveat" not in study_gan_gpu_time(prepare, {"kimg": 80, "batch": 16})
    assert "batch 8" in study_gan_gpu_time(prepare, {"kimg": 80, "batch": 8})["caveat"]


def test_the_reproduction_config_is_the_original_setting_and_its_dry_run_prints_the_gpu_time(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(STEBBINS), "--out", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    steps = plan["steps"]
    # Stebbins et al. (2024): one unconditional StyleGAN2 per class at 256 px, batch 8, gamma 50, 80 kimg,
    # truncation 1; 501 + 501 synthetic images at 224 px; the normal and squamous classes
    assert steps["prepare"]["resolution"] == 256 and steps["prepare"]["classes"] == ["normal", "squamous"]
    gan = steps["train_gan"]
    assert (gan["batch"], gan["gamma"], gan["kimg"], gan["conditional"]) == (8, 50.0, 80, False)
    assert (steps["generate"]["per_class"], steps["generate"]["truncation"], steps["generate"]["size"]) == (501, 1.0,
                                                                                                             224)
    estimate = plan["gan_gpu_time"]
    assert (estimate["runs"], estimate["kimg_per_run"], estimate["resolution"]) == (2, 80, 256)
    assert estimate["hours"][0] < estimate["hours"][1] and "NOT measured" in estimate["source"]
    assert not (tmp_path / "s").exists()
