"""`augstudy train-gan --nonfinite-limit` reaches the training options, and 0 is refused at the edge."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from augstudy.gan.train import GanRun, TrainGanOptions, train_gan_command, train_options_for


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
