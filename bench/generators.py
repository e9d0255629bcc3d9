"""GAN or diffusion at the same cost: both generators trained for the same CPU time on one class, then
sampled and measured with the same metrics, in one run.

Steps: `augstudy prepare` of the chest CT pair at `--resolution` px (grey, dedup split); a short probe run
of each trainer measures its CPU s/kimg, which sets the kimg that fills `--budget` CPU seconds, and the run
resumes to it (and again, until 90 % of the budget is spent: start-up costs make one probe misjudge); train-gan (small StyleGAN2-ADA config) and train-diffusion (`cpu` config) on the class; a
pool of `--images` images from each (`augstudy generate`; DDIM `--steps` for diffusion); then SWD
against the class's training images and the memorisation check (`augstudy gan-metrics`, pixel space).
Training and sampling are timed in CPU seconds of this process (fair on a shared machine) and in wall
seconds. Prints one JSON object and a Markdown table.

    nice .venv/bin/python bench/generators.py --source /work/shared/data/chest-ct --out /tmp/bench-gen
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MAX_LEGS = 4


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(work: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """The result of `work(*args)`, its CPU seconds and its wall seconds."""
    cpu, wall = _cpu_seconds(), time.perf_counter()
    result = work(*args)
    return result, _cpu_seconds() - cpu, time.perf_counter() - wall


def prepare(args: argparse.Namespace) -> Path:
    from augstudy.data.prepare import PrepareOptions
    from augstudy.data.prepare import prepare as prepare_data

    data = args.out / "prepared"
    if not (data / "gan" / f"{args.class_name}.zip").is_file():
        prepare_data(PrepareOptions(source=str(args.source), out=data, resolution=args.resolution, channels=1))
    return data


def gan_options(args: argparse.Namespace, data: Path, kimg: float) -> Any:
    from augstudy.gan.train import TrainGanOptions

    return TrainGanOptions(data=data, out=args.out / "gan", classes=(args.class_name,), kimg=kimg,
                           snap=args.probe_kimg, tick_kimg=args.probe_kimg, batch=8, channel_base=4096, channel_max=128,
                           mapping_layers=2, seed=args.seed, device="cpu", threads=args.threads, workers=0)


def diffusion_options(args: argparse.Namespace, data: Path, kimg: float) -> Any:
    from augstudy.diffusion.train import TrainDiffusionOptions

    return TrainDiffusionOptions(data=data, out=args.out / "diffusion", classes=(args.class_name,), kimg=kimg,
                                 snap=args.probe_kimg, tick_kimg=args.probe_kimg, seed=args.seed, device="cpu",
                                 threads=args.threads)


def train_both(args: argparse.Namespace, data: Path) -> dict[str, dict[str, Any]]:
    """Each trainer runs `--probe-kimg`, then resumes to the kimg its measured CPU s/kimg says fills the rest of
    `--budget` CPU seconds, up to MAX_LEGS times, until it has spent at least 90 % of the budget."""
    import monai.networks.nets  # noqa: F401  (imports are paid before the clocks start, for both)

    import stylegan2ada.training  # noqa: F401
    from augstudy.diffusion.train import train_diffusions
    from augstudy.gan.train import train_gans

    trained = {}
    for kind, train, options in (("gan", train_gans, gan_options),
                                 ("diffusion", train_diffusions, diffusion_options)):
        kimg, done_kimg, cpu_s, wall_s, snapshots = args.probe_kimg, 0.0, 0.0, 0.0, {}
        for _ in range(MAX_LEGS):
            snapshots, leg_cpu_s, leg_wall_s = _timed(train, options(args, data, kimg))
            cpu_s, wall_s = cpu_s + leg_cpu_s, wall_s + leg_wall_s
            rate = leg_cpu_s / (kimg - done_kimg)
            if cpu_s >= 0.9 * args.budget:
                break
            done_kimg, kimg = kimg, round(kimg + (args.budget - cpu_s) / rate, 3)
        trained[kind] = {"kimg": kimg, "last_cpu_s_per_kimg": rate, "snapshot": snapshots[args.class_name],
                         "train_cpu_s": cpu_s, "train_wall_s": wall_s}
    return trained


def sample_and_measure(args: argparse.Namespace, data: Path, kind: str, run: dict[str, Any]) -> dict[str, Any]:
    from augstudy.gan.generate import GenerateOptions, generate_pool
    from augstudy.gan.train import torch_threads
    from augstudy.metrics.evaluate import GanMetricsOptions, gan_metrics

    pool = args.out / f"pool-{kind}"
    steps = {"steps": args.steps} if kind == "diffusion" else {}
    options = GenerateOptions(networks=(run["snapshot"],), out=pool, per_class=args.images, batch=32, device="cpu",
                              **steps)
    with torch_threads(args.threads):
        _, cpu_s, wall_s = _timed(generate_pool, options)
    report = gan_metrics(GanMetricsOptions(real=data / "gan" / f"{args.class_name}.zip", fake=pool,
                                           metrics=("swd", "memo"), device="cpu", out=pool / "metrics.json"))
    (measured,) = report["classes"].values()
    pixel = measured["memorisation"]["pixel"]
    return {**run, "snapshot": str(run["snapshot"]), "sample_cpu_s": cpu_s, "sample_wall_s": wall_s,
            "images_per_cpu_s": args.images / cpu_s, "images_per_wall_s": args.images / wall_s,
            "swd": measured["swd"]["mean"], "memo_flagged": measured["memorisation"]["num_flagged"],
            "memo_pixel_fake_to_real_quantiles": pixel["fake_to_real_quantiles"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="The chest CT folder (its Data/ inside).")
    parser.add_argument("--out", type=Path, required=True, help="Work folder (prepared data, runs, pools).")
    parser.add_argument("--class-name", default="squamous", help="Prepared class to train on.")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--budget", type=float, default=120.0, help="CPU seconds of training per generator.")
    parser.add_argument("--probe-kimg", type=float, default=0.2, help="kimg that measures each trainer's rate.")
    parser.add_argument("--images", type=int, default=100, help="Images per pool.")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of the diffusion pool.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = prepare(args)
    trained = train_both(args, data)
    results = {kind: sample_and_measure(args, data, kind, run) for kind, run in trained.items()}
    summary = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "torch": torch.__version__,
               "threads": args.threads, "resolution": args.resolution, "class": args.class_name,
               "budget_cpu_s": args.budget, "results": results}
    print(json.dumps(summary, indent=2, default=str))
    print("\n| generator | kimg | train CPU s (wall s) | images/CPU s (images/wall s) | SWD | memorised (flagged) |")
    print("|---|---|---|---|---|---|")
    for kind, result in results.items():
        print(f"| {kind} | {result['kimg']:g} | {result['train_cpu_s']:.0f} ({result['train_wall_s']:.0f}) | "
              f"{result['images_per_cpu_s']:.2f} ({result['images_per_wall_s']:.2f}) | {result['swd']:.1f} | "
              f"{result['memo_flagged']} of {args.images} |")


if __name__ == "__main__":
    main()
