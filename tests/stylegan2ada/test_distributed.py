"""Two gloo processes under torchrun: the batch is split, gradients and ADA statistics all-reduced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2ada.dataset import write_dataset
from stylegan2ada.distributed import DistContext
from stylegan2ada.snapshot import latest_snapshot, load_snapshot
from stylegan2ada.training import TrainOptions, build_run

RUNNER = """
import dataclasses, json, sys
import torch
from stylegan2ada import distributed
from stylegan2ada.training import TrainOptions, build_run, real_batches, train, training_step

options = TrainOptions(**json.loads(sys.argv[1]))
ctx = distributed.init_from_env("cpu")  # one process group for both parts (re-initialising one is flaky)
train(options)  # the public entry point, as torchrun runs it

run = build_run(dataclasses.replace(options, run_dir=sys.argv[2]), ctx)
batches = real_batches(run)
first_real, first_c = next(batches)
training_step(run, first_real, first_c)
for _ in range(3):
    training_step(run, *next(batches))
weights = {f"{name}.{key}": value for name, module in (("G", run.G), ("D", run.D), ("G_ema", run.G_ema))
           for key, value in module.state_dict().items()}
torch.save({"weights": weights, "p": float(run.augment_pipe.p), "first_real": first_real},
           f"{sys.argv[2]}/rank{ctx.rank}.pt")
distributed.shutdown(ctx)
"""


@pytest.mark.slow
def test_two_gloo_ranks_hold_identical_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "data.zip", [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(8)])
    options = {"data": str(data), "run_dir": str(tmp_path / "run"), "batch": 4, "channel_base": 1024,
               "channel_max": 64, "mapping_layers": 2, "kimg": 0.008, "snap": 0.004, "tick_kimg": 0.004,
               "workers": 0, "aug": "ada", "target": -1.0, "ada_kimg": 0.032, "image_snapshots": False,
               "device": "cpu"}
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    steps_dir = tmp_path / "steps"
    steps_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(runner),
         json.dumps(options), str(steps_dir)],
        check=False, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # The entry point: one set of files, written by rank 0 only, with both ranks' RNG streams.
    run_dir = tmp_path / "run"
    assert len((run_dir / "stats.jsonl").read_text().splitlines()) == 2
    assert (run_dir / "log.txt").read_text().count("Training ") == 1
    snapshot = load_snapshot(latest_snapshot(run_dir))
    assert snapshot["meta"]["world_size"] == 2 and len(snapshot["state"]["rng"]) == 2
    assert snapshot["options"]["batch_per_rank"] == 2

    ranks = [torch.load(steps_dir / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert not torch.equal(ranks[0]["first_real"], ranks[1]["first_real"])  # each rank reads its own slice
    assert ranks[0]["p"] == ranks[1]["p"] == 0.5  # ADA statistics were all-reduced
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(ranks[1]["weights"][name], tensor), f"{name} differs between ranks"
    initial = build_run(TrainOptions(**options), DistContext(0, 1, 0, torch.device("cpu"), False))
    assert not torch.equal(ranks[0]["weights"]["D.b32.conv0.weight"], initial.D.state_dict()["b32.conv0.weight"])
