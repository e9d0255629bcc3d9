"""The one device check: everything a GPU machine must verify and time, in one command.

    python bench/gpu_check.py --out DIR              # on an NVIDIA GPU: at most 8 minutes (see BUDGETS)
    python bench/gpu_check.py --out DIR --dry-run    # anywhere: lists the parts, runs what the CPU can, tiny
    make gpu-check                                   # the first, into gpu-check-out/

Every part runs in its own process under its own time budget, so a crash, a hang or a failed
kernel build in one part never loses the others, and a part writes its results as it goes, so one
cut off by its budget still reports what it finished. The kernels are built once, cold, into
DIR/torch_extensions (the `kernel_build` part times that) and the later parts reuse them. DIR
receives `gpu_check.json` (every part: status, seconds, budget, results, error) and
`gpu_check.md` (the summary for bench/RESULTS.md), plus one log per part in DIR/logs/.

Parts: the environment; the kernel build; `pytest -m gpu`; each op with the reference, the CUDA
kernels and torch.compile (bench/ops.py); a full training step at 256 px `auto`, batch 32, ADA at
p = 0 and p = 0.5, FP16 on and off, with the reference ops and with the kernels, in sec/kimg
(bench/gan_step.py); generation images/s at 256 px (bench/generate.py); and a 1-kimg run on the
chest CT squamous class at 256 px with its SWD, through the augstudy CLI (prepare, then
train-gan with the SWD computed on the final snapshot). A dry run uses tiny sizes and the CPU,
and skips the parts that need CUDA, saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOTAL_BUDGET_S = 480  # the check must finish within 8 minutes on one H200, kernel build included
P_VALUES = (0.0, 0.5)
# The chest CT data beside the repository (../shared), or inside it (shared/) where a copy put it there.
DATA_CANDIDATES = (ROOT.parent / "shared" / "data" / "chest-ct", ROOT / "shared" / "data" / "chest-ct")
STEP_TARGETS = {"cuda_speedup_min": 1.5, "sec_per_kimg_max": 3.0}
# The study's training setting: 256 px `auto`, batch 32 on a GPU; the dry run's stand-in is tiny.
STEP_256 = {"resolution": 256, "cfg": "auto", "batch": 32}
STEP_TINY = {"resolution": 16, "cfg": "auto", "channel_base": 256, "channel_max": 32, "mapping_layers": 1, "batch": 2}


@dataclasses.dataclass(frozen=True)
class Part:
    """One independently timed piece of the check."""

    name: str
    budget_s: int  # wall-clock limit of its process on the GPU machine
    gpu_only: bool  # skipped by the dry run (it needs CUDA even at tiny sizes)
    what: str
    dry_budget_s: float = 120  # the limit in a dry run (CPU, tiny sizes; generous for a busy CI machine)


class Recorder:
    """A part's results, rewritten atomically after each addition so a timeout keeps what was done."""

    def __init__(self, path: Path) -> None:
        self.path, self.results = path, {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.results[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------------- the parts
def part_environment(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    import torch

    rec["python"] = platform.python_version()
    rec["platform"] = platform.platform()
    rec["cpu_count"] = os.cpu_count()
    rec["torch"] = torch.__version__
    rec["torch_cuda"] = torch.version.cuda
    rec["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    rec["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        rec["gpus"] = [
            {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
             "capability": f"{props.major}.{props.minor}"}
            for props in (torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count()))
        ]
    smi = _run_quietly(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    rec["nvidia_smi"] = smi
    commit = _run_quietly(["git", "-C", str(ROOT), "rev-parse", "HEAD"])
    rec["git_commit"] = commit


def part_kernel_build(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    from stylegan2ada.ops import build

    rec["cache"] = str(build.cache_root())
    rec["cached_before"] = any(build.cache_root().glob("*")) if build.cache_root().is_dir() else False
    start = time.perf_counter()
    build.load_kernels()
    rec["build_s"] = round(time.perf_counter() - start, 1)
    rec["compiler"] = build.compiler_used()


def part_pytest_gpu(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    """pytest -m gpu, its lines passed on to the part's log and counted as they come, so a run cut off by
    the budget still says which tests passed."""
    command = [sys.executable, "-m", "pytest", "-v", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "tests")]
    rec["command"] = " ".join(command[1:])
    lines, outcomes = [], {}
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as done:
        for line in done.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
            outcome = re.search(r"::\S+ (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", line)
            if outcome:
                outcomes[outcome[1].lower()] = outcomes.get(outcome[1].lower(), 0) + 1
                rec["so_far"] = outcomes
    rec["exit_code"] = done.returncode
    rec["summary"] = lines[-1] if lines else ""
    rec["counts"] = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)",
                                                             rec.results["summary"])}
    rec["output_tail"] = "\n".join(lines[-40:])
    if done.returncode != 0:
        raise RuntimeError(f"pytest -m gpu: {rec.results['summary']}")


def _op_shapes(dry_run: bool) -> Any:
    import ops as ops_bench  # bench/ops.py

    return ops_bench.Shapes(8, 2, 4) if dry_run else ops_bench.Shapes(256, 32, 64)


def part_ops(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    """Forward + backward of each op at the 256 px layer shapes: reference vs CUDA kernels."""
    import ops as ops_bench  # bench/ops.py
    import torch

    from stylegan2ada.ops import build

    device = torch.device("cpu" if dry_run else "cuda")
    shapes = _op_shapes(dry_run)
    rec["shapes"] = dataclasses.asdict(shapes)
    kernels = False
    if not dry_run:
        try:  # without kernels the reference figures still count
            build.load_kernels()
            kernels = True
        except build.KernelsUnavailable as error:
            rec["kernels_unavailable"] = str(error)
    ops_bench.bench_ops(shapes, device, repeats=1 if dry_run else 10, use_compile=False, kernels=kernels,
                        on_row=lambda rows: rec.__setitem__("rows", rows))


def part_ops_compile(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    """The same ops with torch.compile (inductor) against the reference; first-call compile time too."""
    import ops as ops_bench  # bench/ops.py
    import torch

    shapes = _op_shapes(dry_run)
    rec["shapes"] = dataclasses.asdict(shapes)
    ops_bench.bench_ops(shapes, torch.device("cuda"), repeats=10, use_compile=True, kernels=False,
                        on_row=lambda rows: rec.__setitem__("rows", rows))  # each op's compile is slow: keep rows


def _step_part(impl: str) -> Callable[[Recorder, bool, argparse.Namespace], None]:
    def part(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
        """sec/kimg of the full step, ADA p = 0 and 0.5, FP16 then FP32 (FP32 only on a CPU)."""
        import gan_step  # bench/gan_step.py

        config = STEP_TINY if dry_run else STEP_256
        rec["config"] = config
        for fp32 in (True,) if dry_run else (False, True):  # the CPU has no FP16
            for p in P_VALUES:
                result = gan_step.measure(config, "cpu" if dry_run else "cuda", repeats=1 if dry_run else 2, p=p,
                                          threads=None, fp32=fp32, ops=impl)
                rec[f"p{p:g}_{'fp32' if fp32 else 'fp16'}"] = {
                    key: result[key] for key in ("sec_per_kimg", "step_s", "phase_s", "fp16", "peak_gpu_mem_gb")
                    if key in result
                }

    return part


def part_generate(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    """Images/s of `augstudy generate`'s batched synthesis (and one image per pass) at 256 px, grey."""
    import generate as generate_bench  # bench/generate.py
    import torch

    sizes = ({"resolution": 32, "channel_base": 1024, "channel_max": 64, "mapping_layers": 2, "batch": 4, "images": 4}
             if dry_run else
             {"resolution": 256, "channel_base": None, "channel_max": None, "mapping_layers": None, "batch": 32,
              "images": 128})
    settings = argparse.Namespace(cfg="auto", channels=1, noise_mode="const", **sizes)
    rec["config"] = vars(settings)
    rec["result"] = generate_bench.bench_device(settings, torch.device("cpu" if dry_run else "cuda"))


def part_train_1kimg(rec: Recorder, dry_run: bool, args: argparse.Namespace) -> None:
    """prepare -> train-gan (1 kimg, SWD on the final snapshot) through the augstudy CLI."""
    work = Path(args.part_dir) / "train_1kimg"
    cli = [sys.executable, "-m", "augstudy"]
    if dry_run:  # the built-in phantom stands in for the real data
        source = work / "phantom"
        _cli(rec, "phantom", [*cli, "phantom", "--out", str(source), "--per-class", "12", "--classes",
                              "normal,squamous"])
        resolution, sizes = 32, ["--batch", "4", "--cbase", "1024", "--cmax", "64", "--map", "2", "--device", "cpu",
                                 "--threads", "1", "--workers", "0"]
        kimg, metrics_images = "0.004", "16"
    else:
        source = Path(args.data)
        if not source.is_dir():
            raise FileNotFoundError(f"no chest CT data at {source}: pass --data FOLDER (the Kaggle layout)")
        # the study's setting, as the step parts time it (`auto` alone would pick batch 16 at 256 px)
        resolution, sizes = 256, ["--batch", str(STEP_256["batch"]), "--device", "cuda", "--workers", "4"]
        kimg, metrics_images = "1", "256"
    rec["source"] = str(source)
    _cli(rec, "prepare", [*cli, "prepare", str(source), "--out", str(work / "prep"), "--classes", "squamous",
                          "--resolution", str(resolution)])
    _cli(rec, "train_gan", [*cli, "train-gan", "--data", str(work / "prep"), "--out", str(work / "runs"),
                            "--classes", "squamous", "--kimg", kimg, "--snap", kimg, "--tick", kimg, "--seed", "0",
                            "--metrics", "swd", "--metrics-images", metrics_images, *sizes])
    stats = [json.loads(line) for line in (work / "runs" / "squamous" / "stats.jsonl").read_text().splitlines()]
    final = stats[-1]
    rec["kimg"] = final["kimg"]
    rec["sec_per_kimg"] = final["sec_per_kimg"]
    rec["swd"] = {key: value for key, value in final.items() if key.startswith("swd")}
    rec["nonfinite_steps"] = sum(record.get("nonfinite_steps", 0) for record in stats)
    if not rec.results["swd"]:
        raise RuntimeError(f"no SWD in the final stats.jsonl record: {sorted(final)}")


PARTS: list[tuple[Part, Callable[[Recorder, bool, argparse.Namespace], None]]] = [
    (Part("environment", 15, False, "GPU, driver, CUDA, torch"), part_environment),
    (Part("kernel_build", 100, True, "cold build of the CUDA kernels"), part_kernel_build),
    (Part("pytest_gpu", 60, True, "pytest -m gpu"), part_pytest_gpu),
    (Part("ops", 25, False, "each op: reference vs CUDA kernels"), part_ops),
    (Part("ops_compile", 60, True, "each op: reference vs torch.compile"), part_ops_compile),
    (Part("step_ref", 60, False, "full step, reference ops: p 0/0.5, FP16/FP32"), _step_part("ref")),
    (Part("step_cuda", 50, True, "full step, CUDA kernels: p 0/0.5, FP16/FP32"), _step_part("cuda")),
    (Part("generate", 25, False, "generation images/s at 256 px"), part_generate),
    (Part("train_1kimg", 85, False, "1 kimg on chest CT squamous at 256 px, SWD"), part_train_1kimg),
]


def _run_quietly(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cli(rec: Recorder, name: str, command: list[str]) -> None:
    """Run one CLI step, recording its seconds; its output goes to this part's log."""
    start = time.perf_counter()
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, check=False, cwd=ROOT)
    rec[f"{name}_s"] = round(time.perf_counter() - start, 1)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:4])} exited with {done.returncode} (see the part's log)")


# ---------------------------------------------------------------------------------- the driver
def run_part(name: str, dry_run: bool, args: argparse.Namespace) -> None:
    """Inside the part's own process: run it, results into part_dir/NAME.json as they come."""
    sys.path.insert(0, str(BENCH))  # the bench modules whose functions the parts reuse
    function = {part.name: fn for part, fn in PARTS}[name]
    function(Recorder(Path(args.part_dir) / f"{name}.json"), dry_run, args)


def _cuda_present() -> bool:
    return _run_quietly(["nvidia-smi", "-L"]) is not None


def check(out: Path, dry_run: bool, data: Path, only: list[str] | None = None) -> dict[str, Any]:
    """Run every part in turn, each in a fresh process under its budget; write the JSON and Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    part_dir, log_dir = out / "parts", out / "logs"
    part_dir.mkdir(exist_ok=True)
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "TORCH_EXTENSIONS_DIR": str(out / "torch_extensions"), "PYTHONUNBUFFERED": "1"}
    report: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "dry_run": dry_run, "data": str(data),
        "total_budget_s": sum(part.budget_s for part, _ in PARTS), "parts": {},
    }
    for part, _ in PARTS:
        if only and part.name not in only:
            continue
        entry: dict[str, Any] = {"what": part.what, "budget_s": part.dry_budget_s if dry_run else part.budget_s}
        report["parts"][part.name] = entry
        if part.gpu_only and dry_run:
            entry.update(status="skipped", reason="needs CUDA")
            print(f"{part.name:<13} skipped ({entry['reason']})", flush=True)
            continue
        result_path = part_dir / f"{part.name}.json"
        result_path.unlink(missing_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--part", part.name, "--part-dir", str(part_dir),
                   "--data", str(data), *(["--dry-run"] if dry_run else [])]
        start = time.perf_counter()
        with open(log_dir / f"{part.name}.log", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # its own group: a timeout kills its children too
            try:
                code = process.wait(timeout=entry["budget_s"])
                entry["status"] = "ok" if code == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                entry["status"] = "timeout"
        entry["seconds"] = round(time.perf_counter() - start, 1)
        entry["results"] = json.loads(result_path.read_text()) if result_path.exists() else {}
        if entry["status"] != "ok":
            entry["log_tail"] = (log_dir / f"{part.name}.log").read_text(errors="replace")[-3000:]
        print(f"{part.name:<13} {entry['status']:<8} {entry['seconds']:6.1f} s of {entry['budget_s']} s", flush=True)
    report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    _write(out / "gpu_check.json", json.dumps(report, indent=2, default=str) + "\n")
    _write(out / "gpu_check.md", markdown(report))
    return report


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -------------------------------------------------------------------------------- the summary
def markdown(report: dict[str, Any]) -> str:
    """The summary: parts and their status, then each part's figures against the issue's targets."""
    parts = report["parts"]
    lines = [f"# Device check ({'dry run, tiny sizes, not GPU figures' if report['dry_run'] else 'GPU'})", "",
             f"Started {report['started']}, finished {report['finished']}: `{report['command']}`.", "",
             "| part | what | status | seconds | budget |", "|---|---|---|---:|---:|"]
    for name, entry in parts.items():
        status = entry["status"] + (f" ({entry['reason']})" if "reason" in entry else "")
        lines.append(f"| {name} | {entry['what']} | {status} | {entry.get('seconds', '')} | {entry['budget_s']} |")
    res = {name: entry.get("results", {}) for name, entry in parts.items()}
    env = res.get("environment", {})
    if env:
        gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in env.get("gpus", [])) or "none"
        lines += ["", (f"Environment: GPU {gpus}; nvidia-smi `{env.get('nvidia_smi')}`; torch {env.get('torch')}, "
                      f"CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}; Python {env.get('python')}; "
                      f"commit {env.get('git_commit')}.")]
    if "build_s" in res.get("kernel_build", {}):
        lines += ["", (f"Kernel build (cold, cache {res['kernel_build']['cache']}): {res['kernel_build']['build_s']} s "
                      f"with {res['kernel_build'].get('compiler')}.")]
    if "summary" in res.get("pytest_gpu", {}):
        lines += ["", f"`pytest -m gpu`: {res['pytest_gpu']['summary']}"]
    lines += _ops_table(res.get("ops", {}).get("rows", []), res.get("ops_compile", {}).get("rows", []))
    lines += _step_table(res.get("step_ref", {}), res.get("step_cuda", {}))
    generated = res.get("generate", {}).get("result")
    if generated:
        lines += ["", (f"Generation at {res['generate']['config']['resolution']} px ({generated['device_name']}): "
                      f"{generated['batched']['images_per_s']} images/s batched ({generated['batched']['batch']} a "
                      f"pass), {generated['one_per_pass']['images_per_s']} images/s one per pass.")]
    train = res.get("train_1kimg", {})
    if "swd" in train:
        swd = ", ".join(f"{key} {value:.4g}" for key, value in sorted(train["swd"].items()))
        lines += ["", (f"Training on {train['source']} (squamous) to {train['kimg']} kimg: {train['sec_per_kimg']:.2f} "
                      f"sec/kimg (first tick, start-up included), non-finite minibatches {train['nonfinite_steps']}; "
                      f"{swd}; prepare {train.get('prepare_s')} s, train-gan {train.get('train_gan_s')} s.")]
    return "\n".join(lines) + "\n"


def _ops_table(rows: list[dict[str, Any]], compile_rows: list[dict[str, Any]]) -> list[str]:
    if not rows and not compile_rows:
        return []
    compiled = {row["op"]: row for row in compile_rows}
    lines = ["", "| op (forward + backward) | ref | CUDA | torch.compile |", "|---|---:|---:|---:|"]
    for row in rows or compile_rows:
        other = compiled.get(row["op"], {})
        cuda = f"{row['cuda_s'] * 1e3:.3f} ms ({row['ref_s'] / row['cuda_s']:.1f}x)" if "cuda_s" in row else "–"
        comp = (f"{other['compile_s'] * 1e3:.3f} ms ({other['ref_s'] / other['compile_s']:.1f}x)"
                if "compile_s" in other else other.get("compile_error", "–"))
        lines.append(f"| {row['op']} | {row['ref_s'] * 1e3:.3f} ms | {cuda} | {comp} |")
    return lines


def _step_table(ref: dict[str, Any], cuda: dict[str, Any]) -> list[str]:
    keys = [key for key in ("p0_fp16", "p0.5_fp16", "p0_fp32", "p0.5_fp32") if key in ref or key in cuda]
    if not keys:
        return []
    config = ref.get("config") or cuda.get("config")
    lines = ["", (f"Full training step, {config['resolution']} px `{config['cfg']}`, batch {config['batch']}, sec/kimg "
                 f"(targets: CUDA >= {STEP_TARGETS['cuda_speedup_min']}x faster than ref; <= "
                 f"{STEP_TARGETS['sec_per_kimg_max']} sec/kimg):"), "",
             "| ADA p, precision | ref | CUDA | speed-up | target met |", "|---|---:|---:|---:|---|"]
    for key in keys:
        r, c = ref.get(key, {}).get("sec_per_kimg"), cuda.get(key, {}).get("sec_per_kimg")
        speedup = r / c if r and c else None
        met = ("–" if speedup is None else
               "yes" if speedup >= STEP_TARGETS["cuda_speedup_min"] and c <= STEP_TARGETS["sec_per_kimg_max"] else "no")
        lines.append(f"| {key.replace('_', ', ')} | {_num(r)} | {_num(c)} | "
                     f"{'–' if speedup is None else f'{speedup:.2f}x'} | {met} |")
    return lines


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for gpu_check.json, gpu_check.md and the logs")
    parser.add_argument("--dry-run", action="store_true", help="list the parts; run the CPU-capable ones, tiny")
    parser.add_argument("--data", type=Path,
                        default=next((path for path in DATA_CANDIDATES if path.is_dir()), DATA_CANDIDATES[0]),
                        help="chest CT data in the Kaggle layout [default: ../shared/data/chest-ct, else "
                             "shared/data/chest-ct]")
    parser.add_argument("--only", action="append", choices=[part.name for part, _ in PARTS],
                        help="run only this part (repeatable)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    parser.add_argument("--part-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part(args.part, args.dry_run, args)
        return
    if args.out is None:
        parser.error("--out DIR is required")
    if not args.dry_run and not _cuda_present():
        parser.error("no NVIDIA GPU found (nvidia-smi -L failed): run this on a GPU machine, or pass --dry-run")
    report = check(args.out, args.dry_run, args.data.resolve(), args.only)
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    failed = [name for name, entry in report["parts"].items() if entry["status"] in ("failed", "timeout")]
    if failed:
        sys.exit(f"parts that did not finish: {', '.join(failed)} (their logs are in {args.out / 'logs'})")


if __name__ == "__main__":
    main()
