"""`augstudy train-gan --nonfinite-limit`: passed through, 0 refused, and a run that stays NaN ends cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from augstudy.gan.train import GanRun, TrainGanOptions, train_gan_command, train_options_for
from stylegan2ada import training
from stylegan2ada.dataset import write_dataset


def test_nonfinite_limit_is_passed_through_and_defaults_to_the_library(tmp_path: Path) -> None:
    run = GanRun("normal", tmp_path / "normal.zip", tmp_path / "runs" / "normal", {})
    chosen = TrainGanOptions(data=tmp_path, out=tmp_path / "runs", nonfinite_limit=3)
    assert train_options_for(chosen, run, resume=False).nonfinite_limit == 3
    default = TrainGanOptions(data=tmp_path, out=tmp_path / "runs")
    assert train_options_for(default, run, resume=False).nonfinite_limit == 100


def test_nonfinite_limit_zero_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(train_gan_command, ["--data", str(tmp_path), "--out", str(tmp_path / "runs"),
                                                    "--nonfinite-limit", "0"])
    assert result.exit_code == 2 and "--nonfinite-limit" in result.output and "Traceback" not in result.output


def test_a_run_that_stays_non_finite_ends_with_our_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    write_dataset(tmp_path / "data" / "gan" / "normal.zip",
                  [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(4)])
    original = training.StyleGAN2Loss.accumulate_gradients

    def poisoned(self: Any, phase: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        stats = original(self, phase, *args, **kwargs)
        return {**stats, "loss_D": torch.tensor(float("nan"))} if phase == "Dmain" else stats

    monkeypatch.setattr(training.StyleGAN2Loss, "accumulate_gradients", poisoned)
    result = CliRunner().invoke(train_gan_command, [
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--kimg", "0.008", "--tick", "0.004",
        "--nonfinite-limit", "2", "--cbase", "1024", "--cmax", "64", "--map", "2", "--batch", "4", "--workers", "0",
        "--threads", "1", "--device", "cpu", "--aug", "noaug",
    ])
    assert result.exit_code == 1, result.output
    assert "[normal] non-finite losses or gradients in 2 consecutive minibatches" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
