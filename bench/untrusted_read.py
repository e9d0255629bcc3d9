"""What reading untrusted network files in an isolated child costs (stylegan2ada.isolation).

For each file: the same bounded reader run in this process (baseline) against the isolated read
(child start, limits, reading, handing the tensors back through a safetensors file), and the
whole import for scale. Files: the NVlabs fixtures when present, and official-layout pickles and
snapshots of our own networks at 64 and 256 px (auto config), written to a temp folder.
Prints one JSON object; times are the best of `--repeats` runs.

    .venv/bin/python bench/untrusted_read.py
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from crafted_files import FIXTURES, official_pickle  # the official file layout, as the tests write it

from stylegan2ada import isolation
from stylegan2ada.networks import build_networks
from stylegan2ada.nvlabs_import import import_network_pickle
from stylegan2ada.nvlabs_pickle import parse_network_pickle
from stylegan2ada.snapshot import load_snapshot
from stylegan2ada.torch_format import read_torch_zip_tree


def _best(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


def _in_process(kind: str, path: Path) -> None:
    """The same reader without the child: parse, then the tensors as torch tensors (one copy each)."""
    records: list[Any] = []
    reader = parse_network_pickle if kind == "nvlabs" else (lambda p, emit: read_torch_zip_tree(p, emit, None))
    reader(path, lambda record: records.append(record) or {})
    for record in records:
        torch.frombuffer(bytearray(record.contiguous_bytes()), dtype=DTYPES[record.dtype]).view(record.shape)


def _files(folder: Path) -> list[tuple[str, str, Path]]:
    files = [("nvlabs", name, FIXTURES / f"{name}.pkl") for name in ("nvlabs-rgb32", "nvlabs-cond-grey64")
             if (FIXTURES / f"{name}.pkl").is_file()]
    for resolution in (64, 256):
        G, D = build_networks("auto", resolution, 1, seed=0)
        pkl, pt = folder / f"ours-{resolution}.pkl", folder / f"ours-{resolution}.pt"
        pkl.write_bytes(official_pickle(G, D))
        buffer = io.BytesIO()
        torch.save({"format": "stylegan2ada.snapshot", "version": 1, "G": G.state_dict(), "D": D.state_dict(),
                    "G_ema": G.state_dict(), "G_init_kwargs": G.init_kwargs, "D_init_kwargs": D.init_kwargs,
                    "options": {}, "meta": {"kimg": 0.0, "cur_nimg": 0}}, buffer)
        pt.write_bytes(buffer.getvalue())
        files += [("nvlabs", f"official layout {resolution} px", pkl), ("torch-zip", f"snapshot {resolution} px", pt)]
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind, name, path in _files(Path(folder)):
            in_process = _best(lambda: _in_process(kind, path), args.repeats)  # noqa: B023
            isolated = _best(lambda: isolation.read_isolated(kind, [path]), args.repeats)  # noqa: B023
            usage = isolation.last_usage
            whole = _best(lambda: (import_network_pickle if kind == "nvlabs" else load_snapshot)(path),  # noqa: B023
                          args.repeats)
            rows.append({"file": name, "megabytes": round(path.stat().st_size / 1e6, 1),
                         "in_process_s": round(in_process, 3), "isolated_s": round(isolated, 3),
                         "overhead_s": round(isolated - in_process, 3),
                         "child_peak_rss_mb": round((usage.peak_rss_bytes or 0) / 2**20),
                         "whole_read_s": round(whole, 3)})
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": 1, "rows": rows},
                     indent=1))


if __name__ == "__main__":
    main()
