"""Type-I error, coverage and power of the sweep's inference, by simulation under a known truth.

    python bench/calibration.py --out DIR [--simulations N] [--seeds 5,20]

Writes DIR/calibration.json (one record per design x regime x seeds x GAN seeds) and
DIR/calibration.md (the same as a Markdown table); see augstudy/classify/calibration.py for the model.
Targets at the defaults: type-I error <= 0.07 and coverage >= 0.93 in every row.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from augstudy.classify.calibration import as_dict, default_settings, markdown_table, simulate
from stylegan2ada.io import atomic_write_json, atomic_write_text

TYPE1_TARGET, COVERAGE_TARGET = 0.07, 0.93


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for calibration.json and calibration.md")
    parser.add_argument("--simulations", type=int, default=400, help="simulated studies per row and effect")
    parser.add_argument("--seeds", default="5,20", help="classifier seed counts, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulations")
    parser.add_argument("--jobs", type=int, default=1, help="rows simulated in parallel processes")
    args = parser.parse_args()
    if args.simulations < 20:
        parser.error("--simulations: at least 20 (fewer give no readable rate)")
    seeds = tuple(int(part) for part in args.seeds.split(","))
    started = time.perf_counter()
    settings = default_settings(seeds)
    # the costliest rows (CV, many seeds) start first so the processes finish together
    cost = {id(setting): (setting.design == "cv") * 10 + setting.seeds * setting.gan_seeds for setting in settings}
    with ProcessPoolExecutor(max(args.jobs, 1)) as pool:
        submitted = {id(setting): pool.submit(simulate, setting, args.simulations, args.seed)
                     for setting in sorted(settings, key=lambda item: -cost[id(item)])}
        futures = [submitted[id(setting)] for setting in settings]
        records = []
        for future in futures:  # in the grid's order; each seeded, so --jobs changes no number
            record = future.result()
            records.append(record)
            print(f"{record.design:5s} {record.regime:16s} seeds {record.seeds:2d} GAN seeds {record.gan_seeds}: "
                  f"type-I {record.type1_error:.3f} coverage {record.coverage:.3f} power {record.power:.3f} "
                  f"({time.perf_counter() - started:.0f} s so far)", file=sys.stderr)
    failing = [r for r in records if r.type1_error > TYPE1_TARGET or r.coverage < COVERAGE_TARGET]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "calibration.json", [as_dict(record) for record in records])
    command = f"python bench/calibration.py --out DIR --simulations {args.simulations} --seeds {args.seeds}"
    atomic_write_text(args.out / "calibration.md", f"`{command}`\n\n" + markdown_table(records) + (
        f"\n{len(failing)} row(s) miss the targets (type-I <= {TYPE1_TARGET}, coverage >= {COVERAGE_TARGET}).\n"
        if failing else f"\nEvery row meets the targets (type-I <= {TYPE1_TARGET}, coverage >= {COVERAGE_TARGET}).\n"))
    print(markdown_table(records))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
