"""`augstudy train-gan`: dry-run descriptions, run planning, CPU estimate, training, resume and skip."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import stylegan2ada.training
from augstudy.gan.train import TrainGanOptions, describe_runs, train_gan_command, train_gans
from stylegan2ada.dataset import write_dataset
from stylegan2ada.snapshot import latest_snapshot, snapshot_meta

TINY = {"channel_base": 1024, "channel_max": 64, "mapping_layers": 2, "batch": 4, "workers": 0}
TINY_FLAGS = ["--cbase", "1024", "--cmax", "64", "--map", "2", "--batch", "4"]


def make_prepared(root: Path, resolution: int = 32, channels: int = 1, per_class: int = 4) -> Path:
    """The gan/ part of an `augstudy prepare` folder: one zip per class and a labelled all.zip."""
    rng = np.random.default_rng(0)
    images = {
        name: [
            rng.integers(0, 256, (resolution, resolution, channels), dtype=np.uint8) for _ in range(per_class)
        ]
        for name in ("normal", "scc")
    }
    for name, class_images in images.items():
        write_dataset(root / "gan" / f"{name}.zip", class_images)
    write_dataset(
        root / "gan" / "all.zip",
        images["normal"] + images["scc"],
        [0] * per_class + [1] * per_class,
        ["normal", "scc"],
    )
    return root


def test_dry_run_prints_reference_parameter_counts(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data", resolution=256, per_class=1)
    result = CliRunner().invoke(
        train_gan_command,
        ["--data", str(data), "--out", str(tmp_path / "runs"), "--classes", "normal", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    assert list(described) == ["normal"]
    normal = described["normal"]
    assert (normal["G_params"], normal["D_params"]) == (23_186_516, 24_000_961)
    assert normal["extra_meta"]["class_name"] == "normal"
    assert normal["extra_meta"]["data"] == str((data / "gan/normal.zip").resolve())
    assert normal["cfg"] == "auto" and normal["network"]["channel_base"] == 16384
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_dry_run_applies_size_overrides_per_class_and_conditional(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    flags = ["--data", str(data), "--out", str(tmp_path / "runs"), "--dry-run", *TINY_FLAGS, "--glr", "0.001"]
    per_class = json.loads(CliRunner().invoke(train_gan_command, flags).output)
    assert sorted(per_class) == ["normal", "scc"]
    for name, described in per_class.items():
        sizes = (described["channel_base"], described["channel_max"], described["mapping_layers"])
        assert sizes == (1024, 64, 2)
        assert described["glr"] == 0.001 and described["cond"] is False
        assert described["G_init_kwargs"]["c_dim"] == 0 and described["extra_meta"]["class_name"] == name
        assert described["G_params"] < 2_000_000

    conditional = json.loads(CliRunner().invoke(train_gan_command, [*flags, "--conditional"]).output)
    assert list(conditional) == ["conditional"]
    assert conditional["conditional"]["cond"] is True
    assert conditional["conditional"]["G_init_kwargs"]["c_dim"] == 2
    assert conditional["conditional"]["extra_meta"]["class_names"] == ["normal", "scc"]


def test_bad_input_gets_actionable_errors(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    out = tmp_path / "runs"
    with pytest.raises(click.UsageError, match="augstudy prepare"):
        describe_runs(TrainGanOptions(data=tmp_path / "nowhere", out=out))
    with pytest.raises(click.UsageError, match="available: normal, scc"):
        describe_runs(TrainGanOptions(data=data, out=out, classes=("adenocarcinoma",)))
    with pytest.raises(click.UsageError, match="conditional"):
        describe_runs(TrainGanOptions(data=data, out=out, classes=("normal",), conditional=True))
    with pytest.raises(click.UsageError, match="torchrun"):
        describe_runs(TrainGanOptions(data=data, out=out, gpus=2))
    with pytest.raises(click.UsageError, match="augpipe"):
        describe_runs(TrainGanOptions(data=data, out=out, augpipe="sparkle"))
    (data / "gan/all.zip").unlink()
    with pytest.raises(click.UsageError, match="all.zip"):
        describe_runs(TrainGanOptions(data=data, out=out, conditional=True))


@pytest.mark.slow
def test_estimate_then_train_then_resume_then_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_prepared(tmp_path / "data")
    out = tmp_path / "runs"
    options = TrainGanOptions(
        data=data,
        out=out,
        classes=("normal",),
        kimg=0.004,
        snap=0.004,
        tick_kimg=0.004,
        device="cpu",
        metrics=("swd",),
        metrics_images=8,
        cpu_train=False,
        **TINY,
    )

    # Without a GPU: a measured estimate, and nothing trains when told not to.
    assert train_gans(options) == {"normal": None}
    printed = capsys.readouterr().out
    assert "No CUDA GPU" in printed and "s/kimg" in printed and "Not training" in printed
    assert latest_snapshot(out / "normal") is None
    assert json.loads((out / "train_gan_options.json").read_text())["classes"] == ["normal"]

    # Train: the estimate was measured above, so skip a second warm-up here.
    monkeypatch.setattr(stylegan2ada.training, "measure_sec_per_kimg", lambda train_options: 1.0)
    first = train_gans(TrainGanOptions(**{**vars(options), "cpu_train": True}))["normal"]
    printed = capsys.readouterr().out
    assert "tick 0" in printed and "sec/kimg" in printed and "augment p" in printed and "ETA" in printed
    meta = snapshot_meta(first)
    assert meta["cur_nimg"] == 4 and meta["extra_meta"]["class_name"] == "normal"
    stats = [json.loads(line) for line in (out / "normal/stats.jsonl").read_text().splitlines()]
    assert "swd" in stats[-1] and np.isfinite(stats[-1]["swd"])

    # A longer --kimg resumes the same run from its snapshot.
    longer = TrainGanOptions(**{**vars(options), "cpu_train": True, "kimg": 0.008, "metrics": ()})
    resumed = train_gans(longer)["normal"]
    assert "resuming from" in capsys.readouterr().out
    assert snapshot_meta(resumed)["cur_nimg"] == 8

    # A finished run is skipped without touching the training loop.
    def refuse(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(stylegan2ada.training, "train", refuse)
    assert train_gans(longer) == {"normal": resumed}
    assert "finished" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine may be able to use the CUDA kernels")
def test_ops_cuda_without_a_gpu_is_a_clear_usage_error(tmp_path: Path) -> None:
    from augstudy.cli import main

    data = tmp_path / "prep"
    (data / "gan").mkdir(parents=True)
    write_dataset(data / "gan" / "normal.zip", list(np.zeros((4, 8, 8), np.uint8)))
    result = CliRunner().invoke(main, ["train-gan", "--data", str(data), "--out", str(tmp_path / "runs"),
                                       "--ops", "cuda"])
    assert result.exit_code == 2
    assert "--ops cuda: The CUDA kernels of stylegan2ada.ops cannot be used" in result.output
    assert not (tmp_path / "runs").exists()
