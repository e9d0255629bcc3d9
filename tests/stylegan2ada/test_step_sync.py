"""The training step never waits for the device: no tensors from Python numbers, no per-step reads.

A torch function mode sees every call our code makes into torch. After one warm-up step (which
fills the per-device constant caches), the only host reads left are the two the reference has as
well: the augmentation's padding size (one per AugmentPipe call that resamples) and the ADA
statistic (once per adjustment interval). The losses are read once per tick, outside the step.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import stylegan2ada
from stylegan2ada.dataset import write_dataset
from stylegan2ada.distributed import DistContext
from stylegan2ada.training import (
    ADA_INTERVAL,
    D_REG_INTERVAL,
    TickStats,
    TrainOptions,
    build_run,
    real_batches,
    training_step,
)

CONSTRUCTIONS = {"tensor", "as_tensor", "asarray", "scalar_tensor", "full", "new_tensor"}
READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "numpy", "cpu"}
PACKAGE = str(Path(stylegan2ada.__file__).parent)
DISPATCH = {str(Path(torch.__file__).parent / name) for name in ("overrides.py", "_tensor.py")}


class HostSyncCounter(TorchFunctionMode):
    """Counts constructions from Python data and device->host reads made directly by stylegan2ada code."""

    def __init__(self) -> None:
        super().__init__()
        self.events: Counter[tuple[str, str, str]] = Counter()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in CONSTRUCTIONS or name in READS:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename in DISPATCH:
                frame = frame.f_back  # torch's dispatch to this mode, not a caller
            caller = frame.f_code.co_filename if frame is not None else ""
            if caller.startswith(PACKAGE):  # torch internals (Adam's CPU step counter) are not ours
                self.events[(name, Path(caller).name, frame.f_code.co_name)] += 1
        return func(*args, **(kwargs or {}))


pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_steps_with_augmentation_make_no_tensor_from_python_and_read_only_as_the_reference(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "data.zip", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)])
    options = TrainOptions(data=str(data), run_dir=str(tmp_path / "run"), batch=4, channel_base=1024, channel_max=64,
                           mapping_layers=2, aug="ada", augpipe="bgcfnc", workers=0, device="cpu")
    run = build_run(options, DistContext(0, 1, 0, torch.device("cpu"), False))
    run.augment_pipe.set_p(0.5)  # every op of every kind can fire
    batches = real_batches(run)
    tick = TickStats(run.device, limit=10)
    tick.add(*training_step(run, *next(batches)), 0)  # warm-up: fills the constant caches

    steps = D_REG_INTERVAL  # minibatches 1..16: path length at 4, 8, 12, 16 and R1 at 16
    batches_in = [next(batches) for _ in range(steps)]
    counter = HostSyncCounter()
    with counter:
        for real_img, real_c in batches_in:
            tick.add(*training_step(run, real_img, real_c), run.batch_idx - 1)
    means, nonfinite, tripped = tick.read(run.ctx)

    pipe_calls = 3 * steps + 1  # per step: fakes for G, fakes and reals for D; plus the one R1 pass
    ada_updates = steps // ADA_INTERVAL
    assert dict(counter.events) == {
        ("tolist", "augment.py", "_resample"): pipe_calls,
        ("tolist", "augment.py", "update"): ada_updates,
    }
    assert run.augment_pipe.p_value() != 0.5  # the controller did move p (on the device)
    assert nonfinite == 0 and tripped is None and {"loss_G", "loss_D", "loss_D_r1"} <= set(means)


def test_the_counter_sees_what_it_must_forbid() -> None:
    """The mode counts a Python-number tensor and a read made from stylegan2ada code."""
    from stylegan2ada import augment

    counter = HostSyncCounter()
    with counter:
        augment._CONSTANTS.clear()
        augment._constant(1.5, torch.device("cpu"))
        augment._constant(1.5, torch.device("cpu"))  # cached: no second construction
    assert counter.events == Counter({("as_tensor", "augment.py", "_constant"): 1})
