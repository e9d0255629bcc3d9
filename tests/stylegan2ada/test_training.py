"""The training loop end to end on a tiny 32 px config: run files, options, ADA, transfer, failures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2ada import training
from stylegan2ada.dataset import write_dataset
from stylegan2ada.io import sha256_file
from stylegan2ada.networks import build_networks
from stylegan2ada.snapshot import latest_snapshot, load_snapshot, snapshot_meta
from stylegan2ada.training import NonFiniteLossError, TrainOptions, describe, measure_sec_per_kimg, train

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"batch": 4, "channel_base": 1024, "channel_max": 64, "mapping_layers": 2}


def make_data(path: Path, count: int = 8, channels: int = 1, labels: list[int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    shape = (32, 32) if channels == 1 else (32, 32, channels)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    return write_dataset(path, images, labels=labels, class_names=None if labels is None else ["a", "b"])


def tiny_options(data: Path, run_dir: Path, **overrides: Any) -> TrainOptions:
    """One step per 0.004 kimg; no augmentation and no fake grids unless asked, to stay fast."""
    settings = {**TINY, "kimg": 0.004, "snap": 0.004, "tick_kimg": 0.004, "workers": 0, "aug": "noaug",
                "image_snapshots": False, **overrides}
    return TrainOptions(data=str(data), run_dir=str(run_dir), **settings)


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_run_folder_holds_options_logs_stats_grids_and_snapshots(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data.zip")
    calls: list[tuple[Path, float]] = []

    def hook(path: Path, G_ema: torch.nn.Module, kimg: float) -> dict[str, float]:
        calls.append((path, kimg))
        assert isinstance(G_ema, torch.nn.Module)
        torch.randn(10)  # hooks may draw random numbers without changing the run
        return {"metric_x": 2 * kimg}

    run_dir = tmp_path / "run"
    final = train(tiny_options(data, run_dir, kimg=0.008, image_snapshots=True), snapshot_hook=hook)

    assert final == latest_snapshot(run_dir) == run_dir / "network-snapshot-000000.008.pt"
    assert (run_dir / "network-snapshot-000000.004.pt").is_file()  # not overwritten by the 0.008 one
    assert [kimg for _, kimg in calls] == [0.004, 0.008]
    resolved = json.loads((run_dir / "training_options.json").read_text())
    assert resolved["batch"] == 4 and resolved["gamma"] == pytest.approx(0.0002 * 32**2 / 32)
    assert resolved["G_params"] == sum(p.numel() for p in
                                       build_networks("auto", 32, 1, **{k: v for k, v in TINY.items() if k != "batch"})[0]
                                       .parameters())
    records = _records(run_dir)
    assert [r["kimg"] for r in records] == [0.004, 0.008]
    for key in ("sec_per_kimg", "loss_G", "loss_D", "augment_p", "peak_ram_gb", "loss_G_pl", "loss_D_r1",
                "nonfinite_steps"):
        assert key in records[0], key
    assert records[1]["metric_x"] == 0.016 and records[1]["snapshot"] == final.name
    assert "tick 1" in (run_dir / "log.txt").read_text()
    for name in ("reals.png", "fakes_init.png", "fakes-000000.004.png", "fakes-000000.008.png"):
        with PIL.Image.open(run_dir / name) as grid:
            assert grid.mode == "L" and grid.size == (8 * 32, 6 * 32), name
    meta = snapshot_meta(final)
    assert (meta["cur_nimg"], meta["batch_idx"], meta["options"]["batch"]) == (8, 2, 4)
    state = load_snapshot(final)["state"]
    assert {"G_opt", "D_opt", "augment_pipe", "ada", "loss", "rng"} <= set(state)
    assert not list(run_dir.glob(".*.tmp"))


def test_conditional_rgb_mirrored_run(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data", channels=3, labels=[0, 1] * 4)
    final = train(tiny_options(data, tmp_path / "run", cond=True, mirror=True, extra_meta={"who": "test"}))
    meta = snapshot_meta(final)
    assert meta["G_init_kwargs"]["c_dim"] == 2 and meta["G_init_kwargs"]["img_channels"] == 3
    assert meta["extra_meta"] == {"who": "test"}
    assert meta["options"]["dataset"]["size"] == 16  # mirrored
    with PIL.Image.open(tmp_path / "run" / "reals.png") as grid:
        assert grid.mode == "RGB"


def test_describe_resolves_without_training(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data.zip")
    info = describe(tiny_options(data, tmp_path / "run", batch=None, gamma=None))
    G, D = build_networks("auto", 32, 1, channel_base=1024, channel_max=64, mapping_layers=2)
    assert info["G_params"] == sum(p.numel() for p in G.parameters())
    assert info["D_params"] == sum(p.numel() for p in D.parameters())
    assert (info["batch"], info["mbstd_group"], info["ada_kimg"], info["fp16"]) == (32, 4, 500, False)
    assert info["dataset"]["resolution"] == 32
    assert not (tmp_path / "run").exists()


def test_measure_sec_per_kimg_writes_nothing(tmp_path: Path) -> None:
    sec_per_kimg = measure_sec_per_kimg(tiny_options(make_data(tmp_path / "data.zip"), tmp_path / "run"), steps=1)
    assert 0 < sec_per_kimg < 1e6
    assert not (tmp_path / "run").exists()


def test_existing_runs_are_resumed_only_when_asked_and_with_their_own_settings(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data.zip")
    run_dir = tmp_path / "run"
    final = train(tiny_options(data, run_dir))
    with pytest.raises(FileExistsError, match="resume=True"):
        train(tiny_options(data, run_dir))
    with pytest.raises(ValueError, match=r"gamma=5\.0"):
        train(tiny_options(data, run_dir, resume=True, gamma=5.0))
    with pytest.raises(ValueError, match="resume it with its own dataset"):
        train(tiny_options(make_data(tmp_path / "rgb.zip", channels=3), run_dir, resume=True))
    before = sha256_file(final)
    assert train(tiny_options(data, run_dir, resume=True)) == final  # already at kimg: nothing to do
    assert sha256_file(final) == before
    assert "Nothing to do" in (run_dir / "log.txt").read_text()


def _poison(monkeypatch: pytest.MonkeyPatch, minibatches: set[int], what: str) -> None:
    """Make the Dmain phase of the given minibatches (counted per call) non-finite: its loss or D's gradients."""
    original = training.StyleGAN2Loss.accumulate_gradients
    calls = {"Dmain": 0}

    def poisoned(self: Any, phase: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        stats = original(self, phase, *args, **kwargs)
        if phase != "Dmain":
            return stats
        calls["Dmain"] += 1
        if calls["Dmain"] - 1 not in minibatches:
            return stats
        if what == "loss":
            return {**stats, "loss_D": torch.tensor(float("nan"))}
        for param in self.D.parameters():
            if param.grad is not None:
                param.grad[...] = float("inf") if param.ndim == 1 else float("nan")
        return stats

    monkeypatch.setattr(training.StyleGAN2Loss, "accumulate_gradients", poisoned)


def test_non_finite_minibatches_are_cleaned_counted_and_trained_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(tmp_path / "data.zip")
    _poison(monkeypatch, {1, 2}, "grads")  # two in a row: below the limit of 3
    final = train(tiny_options(data, tmp_path / "grads", kimg=0.016, snap=0.016, nonfinite_limit=3))
    assert [r["nonfinite_steps"] for r in _records(tmp_path / "grads")] == [0, 1, 1, 0]
    weights = load_snapshot(final)["D"]
    assert all(torch.isfinite(value).all() for value in weights.values())  # NaN cleaned to 0, inf to 1e5

    _poison(monkeypatch, {0, 2}, "loss")
    train(tiny_options(data, tmp_path / "loss", kimg=0.012, tick_kimg=0.012, snap=0.012, nonfinite_limit=2))
    (record,) = _records(tmp_path / "loss")
    assert record["nonfinite_steps"] == 2
    assert math.isfinite(record["loss_D"])  # the mean of the one finite minibatch's loss_D


def test_consecutive_non_finite_minibatches_stop_with_a_clear_error_and_keep_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(tmp_path / "data.zip")
    run_dir = tmp_path / "run"
    final = train(tiny_options(data, run_dir))
    before = sha256_file(final)
    _poison(monkeypatch, set(range(100)), "loss")
    with pytest.raises(NonFiniteLossError, match=r"in 2 consecutive minibatches, up to minibatch 2 \(kimg 0\.012\)"):
        train(tiny_options(data, run_dir, resume=True, kimg=0.02, snap=0.02, nonfinite_limit=2))
    assert latest_snapshot(run_dir) == final and sha256_file(final) == before
    log = (run_dir / "log.txt").read_text()
    assert "non-finite losses or gradients in 2 consecutive" in log and final.name in log


def test_ada_moves_p_every_four_minibatches_and_fixed_p_stays(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data.zip")
    # target -1: any real logit above 0 pushes p up by batch * 4 / (ada_kimg * 1000) = 0.5 per update.
    ada = train(tiny_options(data, tmp_path / "ada", aug="ada", target=-1.0, ada_kimg=0.032, kimg=0.02,
                             tick_kimg=0.004))
    assert [r["augment_p"] for r in _records(tmp_path / "ada")] == [0, 0, 0, 0.5, 0.5]
    assert float(load_snapshot(ada)["state"]["augment_pipe"]["p"]) == 0.5
    train(tiny_options(data, tmp_path / "fixed", aug="fixed", p=0.3))
    assert _records(tmp_path / "fixed")[0]["augment_p"] == pytest.approx(0.3)


def test_transfer_learning_starts_at_zero_with_frozen_layers(tmp_path: Path) -> None:
    data = make_data(tmp_path / "data.zip")
    source = train(tiny_options(data, tmp_path / "source", kimg=0.008))
    final = train(tiny_options(data, tmp_path / "transfer", resume_from=str(source), freezed=2))
    resolved = json.loads((tmp_path / "transfer" / "training_options.json").read_text())
    assert (resolved["ada_kimg"], resolved["ema_rampup"], resolved["freezed"]) == (100, None, 2)
    before, after = load_snapshot(source), load_snapshot(final)
    assert after["meta"]["cur_nimg"] == 4
    frozen = ("b32.fromrgb.", "b32.conv0.")
    for name, tensor in after["D"].items():
        if name.startswith(frozen):
            assert torch.equal(tensor, before["D"][name]), name
    assert not torch.equal(after["D"]["b16.conv0.weight"], before["D"]["b16.conv0.weight"])
    weights = [name for name in before["G_ema"] if not name.endswith("w_avg")]  # w_avg tracks G's mapping
    drift = max((after["G_ema"][name] - before["G_ema"][name]).abs().max().item() for name in weights)
    assert drift < 1e-3  # G_ema continues from the source (EMA without ramp-up barely moves in one step)


def test_invalid_options_name_the_problem(tmp_path: Path) -> None:
    for overrides, message in [
        ({"aug": "fixed"}, "needs p"), ({"aug": "ada", "p": 0.2}, "only used with aug 'fixed'"),
        ({"augpipe": "nope"}, "augpipe 'nope'"), ({"cfg": "huge"}, "cfg 'huge'"), ({"kimg": 0}, "kimg"),
        ({"device": "tpu"}, "device 'tpu'"), ({"nonfinite_limit": 0}, "nonfinite_limit"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainOptions(data="d", run_dir="r", **overrides)
