"""True resume: a run killed with SIGKILL and resumed ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2ada.dataset import write_dataset
from stylegan2ada.snapshot import latest_snapshot, load_snapshot, snapshot_meta, snapshot_name
from stylegan2ada.training import TrainOptions, train

pytestmark = pytest.mark.usefixtures("one_thread")


RUNNER = """
import json, random, sys
import numpy as np, torch
from stylegan2ada.training import TrainOptions, train

def hook(path, G_ema, kimg):  # draws from every global RNG; must not change the run
    torch.randn(1000); np.random.rand(5); random.random()
    return {"hook_kimg": kimg}

train(TrainOptions(**json.loads(sys.argv[1])), snapshot_hook=hook if sys.argv[2] == "hook" else None)
"""

LOSSES = ("loss_G", "loss_D", "loss_G_pl", "loss_D_r1", "augment_p")


def _records(run_dir: Path) -> list[dict[str, float]]:
    records = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    return [{key: record[key] for key in ("tick", "kimg", *LOSSES) if key in record} for record in records]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "data.zip", [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(8)])
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    # 12 minibatches, a snapshot every 2; ADA moves p by 0.16 every 4 so the augment state matters.
    options = {"data": str(data), "batch": 4, "channel_base": 1024, "channel_max": 64, "mapping_layers": 2,
               "kimg": 0.048, "snap": 0.008, "tick_kimg": 0.008, "workers": 0, "aug": "ada", "target": -1.0,
               "ada_kimg": 0.1, "image_snapshots": False, "seed": 7, "resume": True}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def command(run_dir: Path, hook: str) -> list[str]:
        return [sys.executable, str(runner), json.dumps({**options, "run_dir": str(run_dir)}), hook]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(command(whole, "hook"), env=env, check=True, capture_output=True, timeout=600)

    process = subprocess.Popen(command(killed, "none"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while latest_snapshot(killed) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = snapshot_meta(latest_snapshot(killed))["cur_nimg"]
    assert 0 < interrupted_at < 48

    subprocess.run(command(killed, "none"), env=env, check=True, capture_output=True, timeout=600)

    expected, resumed = load_snapshot(latest_snapshot(whole)), load_snapshot(latest_snapshot(killed))
    assert resumed["meta"]["cur_nimg"] == expected["meta"]["cur_nimg"] == 48
    assert float(resumed["state"]["augment_pipe"]["p"]) == float(expected["state"]["augment_pipe"]["p"]) > 0
    for network in ("G_ema", "G", "D"):
        for name, tensor in expected[network].items():
            assert torch.equal(resumed[network][name], tensor), f"{network}.{name} differs after resume"
    assert _records(killed) == _records(whole)  # same losses at every tick, killed run's extra ticks dropped
    resumed_line = f"Resuming {snapshot_name(interrupted_at)} at kimg {interrupted_at / 1000:.3f}"
    assert resumed_line in (killed / "log.txt").read_text()


def test_resume_restores_the_record_a_kill_cut_off(tmp_path: Path) -> None:
    """A kill between writing a snapshot and its stats.jsonl line: resume writes the line (and the hook's metrics)."""
    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "data.zip", [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(8)])
    options = {"data": str(data), "run_dir": str(tmp_path / "run"), "batch": 4, "channel_base": 1024,
               "channel_max": 64, "mapping_layers": 2, "snap": 0.004, "tick_kimg": 0.004, "workers": 0,
               "aug": "noaug", "image_snapshots": False, "resume": True}
    train(TrainOptions(**options, kimg=0.004))
    stats = tmp_path / "run" / "stats.jsonl"
    original = json.loads(stats.read_text())
    stats.write_text("")  # as if SIGKILL came right after the snapshot was written

    def hook(path: Path, G_ema: torch.nn.Module, kimg: float) -> dict[str, float]:
        return {"hook_kimg": kimg}

    train(TrainOptions(**options, kimg=0.008), snapshot_hook=hook)
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [record["kimg"] for record in records] == [0.004, 0.008]
    assert records[0]["loss_G"] == original["loss_G"] and records[0]["hook_kimg"] == 0.004
