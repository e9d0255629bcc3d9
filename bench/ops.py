"""Speed of the stylegan2ada ops: reference vs CUDA kernels vs torch.compile, and a full training step.

Each op is timed forward + backward at the shapes one 256 px `auto` training step uses (on CPU: a
64 px, narrower stand-in that finishes in minutes on 2 cores). For upfirdn2d it also times the
reference as it was before the polyphase rewrite (zero insertion + full convolution), the
"before" of that change. On a CUDA device it then times a full training step at 256 px (`auto`,
batch 32, ADA on) with the reference ops and with the kernels, in sec/kimg, on random images.
Prints a table and one JSON object; ``--json PATH`` also writes it.

    .venv/bin/python bench/ops.py                       # CPU: ref (+ before) and torch.compile
    .venv/bin/python bench/ops.py --no-compile          # skip torch.compile (slow to compile on CPU)
    .venv/bin/python bench/ops.py --json bench/ops-h200.json   # on a GPU: every column + the step
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stylegan2ada import ops
from stylegan2ada.augment import SYM6
from stylegan2ada.ops import bias_act, build, setup_filter, upfirdn2d

OpFn = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Shapes:
    """The sizes of the timed ops: the layer at `resolution` of a `channels`-wide network."""

    resolution: int
    batch: int
    channels: int


def zero_insertion_upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: list[int] | None = None,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    """The reference before the polyphase rewrite: insert zeros, pad, full convolution, subsample."""
    px0, px1, py0, py1 = padding or [0, 0, 0, 0]
    batch, channels, height, width = x.shape
    x = F.pad(x.reshape(batch, channels, height, 1, width, 1), [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    g = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if not flip_filter:
        g = g.flip(list(range(g.ndim)))
    g = g[None, None].repeat([channels, 1] + [1] * g.ndim)
    if g.ndim == 4:
        x = F.conv2d(x, g, groups=channels)
    else:
        x = F.conv2d(F.conv2d(x, g.unsqueeze(2), groups=channels), g.unsqueeze(3), groups=channels)
    return x[:, :, ::down, ::down]


def op_cases(shapes: Shapes, device: torch.device) -> list[dict[str, Any]]:
    """name, input, op(x, impl), and the pre-polyphase reference where there is one."""
    r, n, c = shapes.resolution, shapes.batch, shapes.channels
    gen = torch.Generator(device=device).manual_seed(0)
    fir = setup_filter([1, 3, 3, 1], device=device)
    sym6 = setup_filter(SYM6, device=device)
    bias = torch.randn(c, device=device, generator=gen)
    margin = r // 8  # ADA pads each side by up to ~1/8 of the image before resampling

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(size, device=device, generator=gen)

    return [
        {
            "name": f"bias_act lrelu+clamp [{n},{c},{r},{r}]",
            "x": randn(n, c, r, r),
            "op": lambda x, impl: bias_act(x, bias, act="lrelu", clamp=256, impl=impl),
            "before": None,
        },
        {
            "name": f"filter 4x4 after transposed conv [{n},{c},{r + 1},{r + 1}]",
            "x": randn(n, c, r + 1, r + 1),
            "op": lambda x, impl: upfirdn2d(x, fir, padding=1, gain=4, impl=impl),
            "before": lambda x: zero_insertion_upfirdn2d(x, fir, padding=[1, 1, 1, 1], gain=4),
        },
        {
            "name": f"upsample2d 4x4 ToRGB [{n},3,{r // 2},{r // 2}]",
            "x": randn(n, 3, r // 2, r // 2),
            "op": lambda x, impl: upfirdn2d(x, fir, up=2, padding=[2, 1, 2, 1], gain=4, impl=impl),
            "before": lambda x: zero_insertion_upfirdn2d(x, fir, up=2, padding=[2, 1, 2, 1], gain=4),
        },
        {
            "name": f"downsample2d 4x4 D skip [{n},{c},{r},{r}]",
            "x": randn(n, c, r, r),
            "op": lambda x, impl: upfirdn2d(x, fir, down=2, padding=[1, 1, 1, 1], impl=impl),
            "before": lambda x: zero_insertion_upfirdn2d(x, fir, down=2, padding=[1, 1, 1, 1]),
        },
        {
            "name": f"ADA upsample2d sym6 [{n},3,{r + 2 * margin},{r + 2 * margin}]",
            "x": randn(n, 3, r + 2 * margin, r + 2 * margin),
            "op": lambda x, impl: upfirdn2d(x, sym6, up=2, padding=[6, 5, 6, 5], gain=4, impl=impl),
            "before": lambda x: zero_insertion_upfirdn2d(x, sym6, up=2, padding=[6, 5, 6, 5], gain=4),
        },
        {
            "name": f"ADA downsample2d sym6 [{n},3,{2 * r + 12},{2 * r + 12}]",
            "x": randn(n, 3, 2 * r + 12, 2 * r + 12),
            "op": lambda x, impl: upfirdn2d(
                x, sym6, down=2, padding=[-1, -1, -1, -1], flip_filter=True, impl=impl
            ),
            "before": lambda x: zero_insertion_upfirdn2d(
                x, sym6, down=2, padding=[-1, -1, -1, -1], flip_filter=True
            ),
        },
    ]


def timed_run(fn: OpFn, x: torch.Tensor, grad: torch.Tensor) -> float:
    """Seconds of y = fn(x); y.backward(grad)."""
    x = x.detach().requires_grad_(True)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    fn(x).backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def bench_ops(
    shapes: Shapes,
    device: torch.device,
    repeats: int,
    use_compile: bool,
    kernels: bool,
    on_row: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Forward + backward seconds of every implementation of every op case.

    The implementations take turns within each round, so a busy machine slows them alike; the
    minimum over rounds (the least disturbed run) is the figure, the median is kept beside it.
    `on_row(rows so far)` runs after each op, so a caller cut off by a time limit keeps those.
    """
    rows = []
    for case in op_cases(shapes, device):
        op, x = case["op"], case["x"]
        row: dict[str, Any] = {"op": case["name"]}
        candidates: dict[str, OpFn] = {"ref": lambda t, op=op: op(t, "ref")}
        if case["before"] is not None:
            candidates["ref_before_polyphase"] = case["before"]
        if kernels:
            candidates["cuda"] = lambda t, op=op: op(t, "cuda")
        if use_compile:
            torch._dynamo.reset()  # each op compiles afresh, for its static shapes
            start = time.perf_counter()
            try:
                compiled = torch.compile(lambda t, op=op: op(t, "ref"), dynamic=False)
                compiled(x.detach().requires_grad_(True)).sum().backward()
                row["compile_first_call_s"] = time.perf_counter() - start
                candidates["compile"] = compiled
            except RuntimeError as error:  # a compiler failure (dynamo, inductor) is a result, not a crash
                row["compile_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        grad = torch.randn_like(op(x, "ref"))
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for round_index in range(repeats + 2):  # two warm-up rounds
            for name, fn in candidates.items():
                seconds = timed_run(fn, x, grad)
                if round_index >= 2:
                    times[name].append(seconds)
        for name, values in times.items():
            row[f"{name}_s"] = min(values)
            row[f"{name}_median_s"] = statistics.median(values)
        rows.append(row)
        print(f"  {_format_row(row)}", file=sys.stderr)
        if on_row is not None:
            on_row(rows)
    return rows


def _format_row(row: dict[str, Any]) -> str:
    columns = [f"{row['op']:<52}", f"ref {row['ref_s'] * 1e3:9.2f} ms"]
    if "ref_before_polyphase_s" in row:
        columns.append(
            f"before {row['ref_before_polyphase_s'] * 1e3:9.2f} ms "
            f"({row['ref_before_polyphase_s'] / row['ref_s']:.1f}x)"
        )
    if "cuda_s" in row:
        columns.append(f"cuda {row['cuda_s'] * 1e3:8.3f} ms ({row['ref_s'] / row['cuda_s']:.1f}x)")
    if "compile_s" in row:
        columns.append(f"compile {row['compile_s'] * 1e3:9.2f} ms ({row['ref_s'] / row['compile_s']:.1f}x)")
    if "compile_error" in row:
        columns.append(f"compile failed ({row['compile_error'][:60]})")
    return " | ".join(columns)


def random_dataset(folder: Path, resolution: int, count: int) -> Path:
    """`count` random RGB PNGs: step timing does not depend on the image content."""
    import PIL.Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, size=(resolution, resolution, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    return folder


def bench_training_step(resolution: int, batch: int, steps: int) -> dict[str, Any]:
    """sec/kimg of a full step (G, D, lazy R1 and path length amortised, EMA) with each implementation,
    ADA on at the start of training (p = 0) and once p has grown (fixed p = 0.5)."""
    from stylegan2ada.training import TrainOptions, measure_sec_per_kimg

    results: dict[str, Any] = {"resolution": resolution, "batch": batch, "cfg": "auto"}
    with tempfile.TemporaryDirectory() as tmp:
        data = random_dataset(Path(tmp) / "data", resolution, count=max(batch, 64))
        for aug_name, aug in (("ada_p0", {"aug": "ada"}), ("ada_p0.5", {"aug": "fixed", "p": 0.5})):
            for impl in ("ref", "cuda"):
                ops.set_impl(impl)
                options = TrainOptions(
                    data=str(data),
                    run_dir=str(Path(tmp) / f"run-{aug_name}-{impl}"),
                    cfg="auto",
                    batch=batch,
                    device="cuda",
                    workers=0,
                    **aug,
                )
                if "ops" in {field.name for field in dataclasses.fields(TrainOptions)}:
                    options = dataclasses.replace(options, ops=impl)
                results[f"{aug_name}_{impl}_sec_per_kimg"] = measure_sec_per_kimg(options, steps=steps)
                print(
                    f"  step {aug_name} {impl}: {results[f'{aug_name}_{impl}_sec_per_kimg']:.2f} sec/kimg",
                    file=sys.stderr,
                )
            results[f"{aug_name}_speedup"] = (
                results[f"{aug_name}_ref_sec_per_kimg"] / results[f"{aug_name}_cuda_sec_per_kimg"]
            )
    ops.set_impl("auto")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--resolution", type=int, help="layer resolution of the op shapes (cpu 64, cuda 256)")
    parser.add_argument("--batch", type=int, help="batch of the op shapes (cpu 4, cuda 32)")
    parser.add_argument(
        "--channels", type=int, help="channels of the op shapes (cpu 32, cuda 64: auto at 256 px)"
    )
    parser.add_argument(
        "--repeats", type=int, help="timed runs per op (cpu 5, cuda 20); the median is reported"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--no-step", action="store_true", help="skip the training-step timing (CUDA only)")
    parser.add_argument(
        "--step-steps", type=int, default=5, help="timed repeats per phase of the training step"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    shapes = Shapes(
        args.resolution or (256 if cuda else 64),
        args.batch or (32 if cuda else 4),
        args.channels or (64 if cuda else 32),
    )
    kernels = False
    kernel_note = "the CUDA columns need a GPU: no CUDA device here" if not cuda else ""
    if cuda:
        try:
            build.load_kernels()
            kernels = True
        except build.KernelsUnavailable as error:
            kernel_note = f"CUDA kernels unavailable: {error}"
    if kernel_note:
        print(f"note: {kernel_note}", file=sys.stderr)

    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shapes": dataclasses.asdict(shapes),
        "note": kernel_note,
    }
    print(
        f"ops on {report['device']}, {report['threads']} threads, torch {torch.__version__}:", file=sys.stderr
    )
    report["ops"] = bench_ops(
        shapes, device, args.repeats or (20 if cuda else 5), not args.no_compile, kernels
    )
    if cuda and kernels and not args.no_step:
        report["training_step"] = bench_training_step(256, 32, args.step_steps)
    elif not args.no_step:
        report["training_step"] = "not measured: the 256 px step (batch 32) needs a GPU with the kernels"
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
