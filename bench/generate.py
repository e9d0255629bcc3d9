"""Generation throughput: batched (`augstudy generate`) against one image per forward pass (the way the
reference generate.py loops over seeds), in images/s, on the CPU and on CUDA when present.

Random weights: throughput does not depend on training. Prints one JSON object to stdout.

    .venv/bin/python bench/generate.py                 # 256 px, auto config (slow on a small CPU)
    .venv/bin/python bench/generate.py --quick         # 64 px, narrow network: a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import numpy as np
import torch

from augstudy.gan.generate import synthesize
from stylegan2ada.networks import build_networks


def _timed(
    generator: Any, seed_groups: list[list[int]], device: torch.device, noise_mode: str
) -> tuple[float, np.ndarray]:
    """Seconds to synthesize every group (one forward pass each, uint8 conversion included) and the images."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    images = [synthesize(generator, group, noise_mode=noise_mode, device=device) for group in seed_groups]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, np.concatenate(images)


def bench_device(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    generator, _ = build_networks(
        args.cfg,
        args.resolution,
        args.channels,
        channel_base=args.channel_base,
        channel_max=args.channel_max,
        mapping_layers=args.mapping_layers,
    )
    generator = generator.eval().requires_grad_(False).to(device)
    seeds = list(range(args.images))
    batched_groups = [seeds[start : start + args.batch] for start in range(0, len(seeds), args.batch)]
    single_groups = [[seed] for seed in seeds]
    _timed(generator, [seeds[: args.batch]], device, args.noise_mode)  # warm-up: allocator, kernels, caches
    _timed(generator, [seeds[:1]], device, args.noise_mode)
    batched_s, batched_images = _timed(generator, batched_groups, device, args.noise_mode)
    single_s, single_images = _timed(generator, single_groups, device, args.noise_mode)
    differing = np.abs(batched_images.astype(np.int16) - single_images.astype(np.int16))
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "threads": torch.get_num_threads(),
        "G_params": sum(parameter.numel() for parameter in generator.parameters()),
        "images": args.images,
        "batched": {
            "batch": args.batch,
            "seconds": round(batched_s, 3),
            "images_per_s": round(args.images / batched_s, 3),
        },
        "one_per_pass": {
            "batch": 1,
            "seconds": round(single_s, 3),
            "images_per_s": round(args.images / single_s, 3),
        },
        "speedup": round(single_s / batched_s, 3),
        "max_abs_uint8_difference_batched_vs_single": int(differing.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="auto")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--channel-base", type=int)
    parser.add_argument("--channel-max", type=int)
    parser.add_argument("--mapping-layers", type=int)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=32, help="images per measurement")
    parser.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    parser.add_argument(
        "--device",
        action="append",
        choices=["cpu", "cuda"],
        help="repeatable; default: cpu, and cuda when available",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="64 px, channel_base 4096, channel_max 128, batch 8, 16 images: a minute on 2 cores",
    )
    args = parser.parse_args()
    if args.quick:
        args.resolution, args.channel_base, args.channel_max, args.batch, args.images = 64, 4096, 128, 8, 16
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = {
        "benchmark": "generate",
        "config": {
            "cfg": args.cfg,
            "resolution": args.resolution,
            "channels": args.channels,
            "channel_base": args.channel_base,
            "channel_max": args.channel_max,
            "mapping_layers": args.mapping_layers,
            "noise_mode": args.noise_mode,
        },
        "torch": torch.__version__,
        "results": [bench_device(args, torch.device(name)) for name in devices],
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
