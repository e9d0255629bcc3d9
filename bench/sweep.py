"""Benchmark: the ratios x seeds sweep with the feature cache against the naive way.

The naive way is the original study's: Keras generators feed images to the frozen backbone on
every batch of every epoch of every run. The cached way runs the backbone once per image (on a
cold cache, so that pass is counted) and trains only the head. Both run the same `augstudy
sweep` on the same data with the same heads and seeds, each in its own process so that its
peak memory is its own; the script prints the speed ratio, peak memory and whether the test
accuracies match, and writes everything to OUT/bench_sweep.json.

    python bench/sweep.py --small              # toy data, 64 px: a few minutes on 2 CPU cores
    python bench/sweep.py                      # toy data at the study's scale, 224 px (GPU)
    python bench/sweep.py --data D --pool P    # your own prepared folder and pool
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FULL = {"train": 150, "valid": 30, "test": 30, "pool": 150, "size": 224}
SMALL = {"train": 8, "valid": 4, "test": 4, "pool": 8, "size": 64}


def worker(config_path: Path) -> None:
    """One sweep in this process; writes its time and peak memory beside the results."""
    from augstudy.classify.sweep import SweepOptions, run_sweep

    config = json.loads(config_path.read_text())
    options = SweepOptions(**{key: Path(value) if key in ("data", "pool", "out", "cache_dir") and value else value
                              for key, value in config.items()})
    started = time.perf_counter()
    outcome = run_sweep(options)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (Path(options.out) / "bench_worker.json").write_text(json.dumps({
        "seconds": seconds, "peak_rss_mb": peak_mb, "features_computed": outcome.features_computed,
        "feature_seconds": outcome.feature_seconds, "training_seconds": seconds - outcome.feature_seconds,
    }))


def run_mode(base: dict, out: Path, cache: bool) -> dict:
    config = {**base, "out": str(out), "feature_cache": cache}
    config_path = out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config))
    completed = subprocess.run([sys.executable, __file__, "--worker", str(config_path)], check=False)
    if completed.returncode != 0:
        raise SystemExit(f"the {'cached' if cache else 'naive'} sweep failed (exit {completed.returncode})")
    return json.loads((out / "bench_worker.json").read_text())


def compare(cached_out: Path, naive_out: Path) -> dict:
    """Per-cell accuracy and per-image probability agreement of the two sweeps."""
    cached = pd.read_csv(cached_out / "results.csv")
    naive = pd.read_csv(naive_out / "results.csv")
    accuracy_diff = (cached["accuracy"] - naive["accuracy"]).abs()
    proba_diff = 0.0
    for cell in sorted((cached_out / "cells").glob("*.json")):
        first = json.loads(cell.read_text())["test_predictions"]
        second = json.loads((naive_out / "cells" / cell.name).read_text())["test_predictions"]
        proba_diff = max(proba_diff, float(np.max(np.abs(
            np.array([row["proba"] for row in first]) - np.array([row["proba"] for row in second])))))
    return {
        "cells": len(cached), "cells_with_same_accuracy": int((accuracy_diff < 1e-9).sum()),
        "max_accuracy_difference": float(accuracy_diff.max()), "max_probability_difference": proba_diff,
        "mean_accuracy_cached": float(cached["accuracy"].mean()), "mean_accuracy_naive": float(naive["accuracy"].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--small", action="store_true", help="toy data of 8 train images a class at 64 px")
    parser.add_argument("--train-per-class", type=int,
                        help="toy data size: train and pool images per class (valid and test: a fifth each)")
    parser.add_argument("--data", type=Path, help="a prepared folder (default: toy data written to OUT)")
    parser.add_argument("--pool", type=Path, help="a synthetic pool (with --data)")
    parser.add_argument("--out", type=Path, help="where to write (default: a temporary folder)")
    parser.add_argument("--ratios", default="0,25,50,75,100")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--weights", default="none", help="imagenet | none | PATH (default: none)")
    parser.add_argument("--head", default="compact")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--input-size", type=int, help="default: 64 with --small, else the backbone's")
    parser.add_argument("--keras-backend", default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    from augstudy.classify.sweep import parse_ratios
    from augstudy.classify.toydata import write_toy_study

    scale = dict(SMALL if args.small else FULL)
    if args.train_per_class:
        share = max(2, args.train_per_class // 5)
        scale |= {"train": args.train_per_class, "pool": args.train_per_class, "valid": share, "test": share}
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    if args.data is None:
        toy = write_toy_study(out / "toy", train=scale["train"], valid=scale["valid"], test=scale["test"],
                              pool=scale["pool"], size=scale["size"], duplicates=0)
        data, pool = toy.data, toy.pool
    else:
        data, pool = args.data, args.pool
    base = {
        "data": str(data), "pool": str(pool) if pool else None, "ratios": list(parse_ratios(args.ratios)),
        "seeds": args.seeds, "backbone": args.backbone, "weights": args.weights, "head": args.head,
        "epochs": args.epochs, "batch_size": args.batch_size,
        "input_size": args.input_size or (scale["size"] if args.small else None),
        "keras_backend": args.keras_backend, "cache_dir": str(out / "cold-cache"),
        "save_models": "none", "progress": False,
    }
    print(f"bench: {len(base['ratios'])} ratios x {args.seeds} seeds, data {data}, writing to {out}", flush=True)
    cached = run_mode(base, out / "cached", cache=True)
    print(f"cached: {cached['seconds']:.1f} s ({cached['feature_seconds']:.1f} s for "
          f"{cached['features_computed']} backbone passes, {cached['training_seconds']:.1f} s training heads), "
          f"peak {cached['peak_rss_mb']:.0f} MB", flush=True)
    naive = run_mode(base, out / "naive", cache=False)
    print(f"naive:  {naive['seconds']:.1f} s, peak {naive['peak_rss_mb']:.0f} MB", flush=True)
    agreement = compare(out / "cached", out / "naive")
    speedup = naive["seconds"] / cached["seconds"]
    report = {"options": base, "cached": cached, "naive": naive, "speedup": speedup, **agreement}
    (out / "bench_sweep.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"speed-up: {speedup:.1f}x (target >= 20x at the study's scale)")
    print(f"accuracies: {agreement['cells_with_same_accuracy']}/{agreement['cells']} cells identical, "
          f"max |diff| {agreement['max_accuracy_difference']:.4f}; "
          f"max |probability diff| {agreement['max_probability_difference']:.2e}")
    print(f"written: {out / 'bench_sweep.json'}")


if __name__ == "__main__":
    main()
