"""Benchmark: one full StyleGAN2-ADA training step (G, G path length, D, D R1, EMA) and sec/kimg.

Each phase is timed separately (median of --repeats after one warm-up) and the lazy phases are
amortised by their interval (path length / 4, R1 / 16), which is what a long run averages to.
Configurations: 64 px with the demo's small network (channel_base 2048, channel_max 64, 2 mapping
layers, batch 8) and 256 px `auto` (batch 32 on a GPU; on a CPU batch --cpu-batch-256, reported).
Each runs in a fresh process so its peak memory is its own. Prints JSON; --out also writes it.

    python bench/gan_step.py [--device auto|cpu|cuda] [--repeats 3] [--skip-256] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan2ada.dataset import write_dataset
from stylegan2ada.distributed import DistContext, resolve_device
from stylegan2ada.io import atomic_write_json
from stylegan2ada.ops import set_impl
from stylegan2ada.training import TrainOptions, build_run, real_batches, time_training_step

SMALL_64 = {"resolution": 64, "cfg": "auto", "channel_base": 2048, "channel_max": 64, "mapping_layers": 2, "batch": 8}
AUTO_256 = {"resolution": 256, "cfg": "auto"}


def measure(config: dict[str, Any], device_name: str, repeats: int, p: float, threads: int | None,
            fp32: bool = False, ops: str | None = None) -> dict[str, Any]:
    """Time one configuration in this (fresh) process; `fp32`/`ops` as in TrainOptions."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    if ops is not None:  # build_run does not apply TrainOptions.ops; train() does, and so must we
        set_impl(ops)
    torch.manual_seed(0)
    resolution = config["resolution"]
    sizes = {key: config[key] for key in ("channel_base", "channel_max", "mapping_layers") if key in config}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (resolution, resolution), dtype=np.uint8) for _ in range(2 * config["batch"])]
        data = write_dataset(Path(tmp) / "data.zip", images)
        options = TrainOptions(
            data=str(data), run_dir=str(Path(tmp) / "run"), cfg=config["cfg"], batch=config["batch"],
            aug="fixed" if p > 0 else "ada", p=p if p > 0 else None, workers=0, device=device_name, fp32=fp32,
            ops=ops, **sizes,
        )
        run = build_run(options, DistContext(0, 1, 0, device, False))
        real_img, real_c = next(real_batches(run))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = time_training_step(run, real_img, real_c, repeats=repeats)
    result = {
        **config, "device": str(device), "threads": torch.get_num_threads(), "aug": run.options.aug, "p": p,
        "fp16": device.type == "cuda" and not fp32, "ops": ops,
        "G_params": sum(x.numel() for x in run.G.parameters()), "D_params": sum(x.numel() for x in run.D.parameters()),
        "phase_s": timing["phase_s"], "step_s": timing["step_s"], "sec_per_kimg": timing["sec_per_kimg"],
        "peak_ram_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if device.type == "cuda":
        result["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each phase (median)")
    parser.add_argument("--p", type=float, default=0.0, help="augment probability (0: ADA at its start)")
    parser.add_argument("--skip-256", action="store_true", help="only the 64 px configuration (slow CPUs)")
    parser.add_argument("--cpu-batch-256", type=int, default=4, help="256 px batch on a CPU")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 is faster on busy cores)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    configs = [SMALL_64]
    notes = ["step_s = ema + Gmain + Greg/4 + Dmain + Dreg/16 (medians); sec_per_kimg = step_s / batch * 1000"]
    if not args.skip_256:
        batch = 32 if device.type == "cuda" else args.cpu_batch_256
        configs.append({**AUTO_256, "batch": batch})
        if device.type != "cuda":
            notes.append(f"256 px auto on the CPU uses batch {batch} (32 on a GPU); sec/kimg is per image, "
                         f"so it compares, but a larger batch amortises better")
    if device.type == "cpu":
        notes.append("peak_ram_gb is the peak resident memory of the process measuring that configuration")
    context = multiprocessing.get_context("spawn")
    results = []
    for config in configs:
        with context.Pool(1) as pool:  # a fresh process per config: its peak memory is its own
            results.append(pool.apply(measure, (config, args.device, args.repeats, args.p, args.threads)))
        print(f"{config['resolution']} px: {results[-1]['step_s']:.3f} s/step, "
              f"{results[-1]['sec_per_kimg']:.1f} s/kimg", file=sys.stderr, flush=True)
    report = {
        "benchmark": "gan_step", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": str(torch.__version__), "cpu_count": os.cpu_count(), "repeats": args.repeats,
        "results": results, "notes": notes,
    }
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if args.out is not None:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
