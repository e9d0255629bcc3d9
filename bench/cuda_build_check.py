"""Compile the CUDA kernels for every GPU generation users have, with the CUDA compiler from the package registry.

    python bench/cuda_build_check.py                  # = make cuda-build-check: record into bench/
    python bench/cuda_build_check.py --sources DIR --archs 8.0 --torch-headers installed --out DIR

No GPU and no system CUDA toolkit are needed. The check
1. installs ``cuda-toolkit[nvcc,cccl]`` (nvcc, its front end and the CUDA/CCCL headers, ~100 MB) with pip
   into a cache outside the project venv (``$AUGSTUDY_CUDA_TOOLCHAIN``, else
   ``~/.cache/augstudy/cuda-toolchain``), at the version the CUDA build of torch pins;
2. takes torch's headers from the CUDA build of torch that users install on a GPU machine (the same
   version as the installed torch, downloaded once with ``pip download``; only ``torch/include`` and the
   wheel's METADATA are kept), or with ``--torch-headers installed`` from the installed torch, which on a
   CPU-only build lacks the generated ``c10/cuda/impl/cuda_cmake_macros.h`` (then
   ``-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE`` stands in for it, and the record says so);
3. writes, per architecture, the ninja file torch's extension builder writes for the kernels
   (``torch.utils.cpp_extension._write_ninja_file_to_build_library``: the same flags, include paths and
   ``-gencode`` as ``build.py``'s JIT build on that GPU, plus ``--ptxas-options=-v``) and runs ninja on
   the object files. Linking needs torch's CUDA libraries and is left to the GPU machine;
4. writes ``cuda_build_check.json`` and ``cuda_build_check.md`` into ``--out``: toolkit, torch, host
   compiler, per-architecture status and seconds, warnings, registers and spills of every kernel, object
   sizes, and one nvcc command line.

Exit status: 0 all compiled; 1 a compiler error (each printed as ``FILE:LINE: message``); 2 the toolchain
could not be set up; 3 the package registry could not be reached (said so; tests skip on it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stylegan2ada.ops import build, toolkit

ARCHS = ("7.5", "8.0", "8.6", "8.9", "9.0")  # T4, A100, A10/RTX 30, L4/RTX 40, H100/H200
FALLBACK_TOOLKIT = "13.0.3"  # what torch 2.13.0's CUDA build pins, used where its wheel is not read
EXIT_COMPILE, EXIT_SETUP, EXIT_OFFLINE = 1, 2, 3
NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
    r"Name or service not known|Network is unreachable|ConnectTimeout|ReadTimeout|ProxyError|"
    r"Connection (?:refused|reset|aborted)|Max retries exceeded|Could not fetch URL"
)
# nvcc/cudafe "file(12): error: ...", gcc "file:12:3: error: ..."
DIAGNOSTIC = re.compile(
    r"^(?P<file>[^\s:(][^:(]*?)(?:\((?P<nline>\d+)\)|:(?P<gline>\d+):\d+): "
    r"(?P<kind>fatal error|error|warning|catastrophic error)(?: #[\w-]+)?: (?P<message>.*)$"
)
TOOL_DIAGNOSTIC = re.compile(r"^(?P<tool>ptxas|nvcc|nvlink|fatbinary)\s+(?P<kind>error|warning|fatal)\s*: (?P<message>.*)$")


class SetupError(RuntimeError):
    """The toolchain or torch's headers could not be installed."""


class RegistryUnreachable(SetupError):
    """pip could not reach the package registry."""


# ------------------------------------------------------------------------------------- the toolchain
def default_cache() -> Path:
    if os.environ.get("AUGSTUDY_CUDA_TOOLCHAIN"):
        return Path(os.environ["AUGSTUDY_CUDA_TOOLCHAIN"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "augstudy" / "cuda-toolchain"


def pip(*args: str) -> str:
    """Run pip with this interpreter; a network failure becomes RegistryUnreachable."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        last = [line for line in output.splitlines() if line.strip()][-3:]
        summary = f"`pip {' '.join(args)}` failed: {' / '.join(last)}"
        if NETWORK_ERRORS.search(output):
            raise RegistryUnreachable(f"the package registry could not be reached: {summary}")
        raise SetupError(summary)
    return output


def install_toolkit(cache: Path, version: str) -> toolkit.Toolkit:
    """cuda-toolkit[nvcc,cccl]==version installed once into cache/cuda-toolkit-VERSION."""
    target = cache / f"cuda-toolkit-{version}"
    if not (target / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix=f".cuda-toolkit-{version}.", dir=cache))
        print(f"installing cuda-toolkit[nvcc,cccl]=={version} into {target}", flush=True)
        pip("install", "--only-binary=:all:", "--no-warn-script-location", "--target", str(staging),
            f"cuda-toolkit[nvcc,cccl]=={version}")
        (staging / ".complete").write_text(version + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    homes = toolkit.registry_homes([str(target)])
    version = toolkit.nvcc_version(homes[0] / "bin" / "nvcc") if len(homes) == 1 else None
    if version is None:
        raise SetupError(f"{target}: expected one working nvidia/cuNN/bin/nvcc, found {homes or 'none'}")
    return toolkit.Toolkit(home=homes[0], version=version, origin=toolkit.REGISTRY_ORIGIN)


def cuda_torch_headers(cache: Path, torch_version: str) -> tuple[Path, str]:
    """The `torch` folder (include/ only) of the registry's CUDA build of torch==torch_version, and the
    cuda-toolkit version its METADATA pins."""
    target = cache / f"torch-{torch_version}-cuda-headers"
    if not (target / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix=f".torch-{torch_version}.", dir=cache))
        print(f"downloading the CUDA build of torch {torch_version} for its headers (kept: torch/include)",
              flush=True)
        # "===" matches the version string exactly, so a local "+cpu" build never stands in for it
        pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(staging / "wheel"),
            f"torch==={torch_version}")
        wheels = list((staging / "wheel").glob("torch-*.whl"))
        if len(wheels) != 1:
            raise SetupError(f"pip download torch==={torch_version} gave {wheels or 'no wheel'}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [name for name in wheel.namelist()
                       if name.startswith("torch/include/") or re.fullmatch(r"torch-[^/]+\.dist-info/METADATA", name)]
            wheel.extractall(staging, members)
        (staging / "wheel_name").write_text(wheels[0].name + "\n")
        shutil.rmtree(staging / "wheel")
        (staging / ".complete").write_text(torch_version + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    metadata = next(target.glob("torch-*.dist-info/METADATA")).read_text()
    pin = re.search(r"^Requires-Dist: cuda-toolkit\[[^\]]*\]==([\d.]+)", metadata, re.MULTILINE)
    if pin is None:
        raise SetupError(f"{target}: this torch wheel names no cuda-toolkit requirement: not a CUDA 13 build")
    return target / "torch", pin[1]


# ------------------------------------------------------------------------------------- compiling
@contextlib.contextmanager
def builder_for(cuda_home: Path, torch_dir: Path, arch: str) -> Iterator[Any]:
    """torch's extension builder pointed at this toolkit, these torch headers and one architecture."""
    from torch.utils import cpp_extension

    saved = cpp_extension.CUDA_HOME, cpp_extension._TORCH_PATH, os.environ.get("TORCH_CUDA_ARCH_LIST")
    cpp_extension.CUDA_HOME, cpp_extension._TORCH_PATH = str(cuda_home), str(torch_dir)
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    try:
        yield cpp_extension
    finally:
        cpp_extension.CUDA_HOME, cpp_extension._TORCH_PATH = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved[2]


def write_ninja(build_dir: Path, source: Path, arch: str, cuda_home: Path, torch_dir: Path,
                extra_flags: list[str]) -> str:
    """build.ninja for one source as torch's JIT builder writes it; returns the object's target name."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with builder_for(cuda_home, torch_dir, arch) as cpp_extension:
        cpp_extension._write_ninja_file_to_build_library(
            path=str(build_dir / "build.ninja"), name=build.EXTENSION_NAME, sources=[str(source)],
            extra_cflags=list(extra_flags), extra_cuda_cflags=[*extra_flags, "--ptxas-options=-v"],
            extra_sycl_cflags=[], extra_ldflags=[], extra_include_paths=[str(source.parent)], with_cuda=True,
            with_sycl=False, is_standalone=False)
    return f"{source.stem}.cuda.o" if source.suffix == ".cu" else f"{source.stem}.o"


def compile_object(build_dir: Path, target: str) -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(["ninja", "-v", target], cwd=build_dir, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    obj = build_dir / target
    return {"ok": done.returncode == 0 and obj.exists(), "seconds": round(time.perf_counter() - start, 1),
            "output": output, "object_bytes": obj.stat().st_size if obj.exists() else None}


def diagnostics(output: str, sources: Path) -> list[dict[str, Any]]:
    """Compiler errors and warnings with file and line (relative to `sources` when inside it)."""
    found = []
    for line in output.splitlines():
        if match := DIAGNOSTIC.match(line.strip()):
            path = Path(match["file"])
            with contextlib.suppress(ValueError):
                path = path.resolve().relative_to(sources.resolve())
            found.append({"kind": "error" if "error" in match["kind"] else "warning", "file": str(path),
                          "line": int(match["nline"] or match["gline"]), "message": match["message"].strip()})
        elif match := TOOL_DIAGNOSTIC.match(line.strip()):
            found.append({"kind": "warning" if match["kind"] == "warning" else "error", "file": match["tool"],
                          "line": None, "message": match["message"].strip()})
    return found


def ptxas_kernels(output: str) -> list[dict[str, Any]]:
    """Per kernel: registers, spill stores/loads and stack frame bytes from ``ptxas -v``."""
    kernels: dict[str, dict[str, Any]] = {}
    current = None
    for line in output.splitlines():
        if match := re.search(r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?", line):
            current = kernels.setdefault(match[1], {"mangled": match[1]})
        elif current is not None and (match := re.search(
                r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            current.update(stack_bytes=int(match[1]), spill_stores=int(match[2]), spill_loads=int(match[3]))
        elif current is not None and (match := re.search(r"Used (\d+) registers", line)):
            current["registers"] = int(match[1])
            if smem := re.search(r"(\d+) bytes smem", line):
                current["static_smem_bytes"] = int(smem[1])
    names = list(kernels)
    demangled = _demangle(names)
    for name, readable in zip(names, demangled, strict=True):
        kernels[name]["kernel"] = readable
    return list(kernels.values())


def _demangle(names: list[str]) -> list[str]:
    if not names or shutil.which("c++filt") is None:
        return names
    done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    return lines if len(lines) == len(names) else names


def host_compiler() -> str:
    compiler = os.environ.get("CXX", "c++")
    done = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else f"{compiler}: not found"


def nvcc_command(build_dir: Path) -> str:
    """The nvcc flags torch's builder wrote into a ninja file (the record's proof of what was compiled)."""
    text = (build_dir / "build.ninja").read_text()
    flags = re.search(r"^cuda_cflags = (.*)$", text, re.MULTILINE)
    return flags[1] if flags else ""


# ------------------------------------------------------------------------------------- the check
def run_check(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    torch_version = torch.__version__.split("+")[0]
    extra_flags: list[str] = []
    if args.torch_headers == "wheel":
        torch_dir, toolkit_version = cuda_torch_headers(cache, torch_version)
        pin_source = f"the version torch {torch_version}'s CUDA wheel requires"
        headers = f"the CUDA build of torch {torch_version} from the package registry ({torch_dir / 'include'})"
    else:
        torch_dir, toolkit_version = Path(torch.__file__).parent, FALLBACK_TOOLKIT
        pin_source = "the version torch 2.13.0's CUDA wheel requires, not read from a wheel here"
        headers = f"the installed torch {torch.__version__} ({torch_dir / 'include'})"
        if not (torch_dir / "include" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
            extra_flags.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
            headers += "; it lacks c10/cuda/impl/cuda_cmake_macros.h, so -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE"
    kit = install_toolkit(cache, args.toolkit or toolkit_version)
    if not toolkit.ensure_ninja_on_path():
        raise SetupError("ninja is not installed (pip install ninja)")
    sources = args.sources.resolve()
    chosen = [name for name in build.SOURCES if not args.files or name in args.files]
    cu_sources = [sources / name for name in chosen if name.endswith(".cu")]
    host_sources = [sources / name for name in chosen if not name.endswith(".cu")]
    work = Path(tempfile.mkdtemp(prefix="cuda-build-check-", dir=cache))
    jobs: list[tuple[str, Path, Path, str]] = []  # (arch or "host", source, build dir, target)
    for source in host_sources:
        directory = work / "host" / source.stem
        jobs.append(("host", source, directory, write_ninja(directory, source, args.archs[0], kit.home, torch_dir,
                                                              extra_flags)))
    for arch in args.archs:
        for source in cu_sources:
            directory = work / f"sm_{arch.replace('.', '')}" / source.stem
            jobs.append((arch, source, directory, write_ninja(directory, source, arch, kit.home, torch_dir,
                                                                extra_flags)))
    print(f"compiling {len(jobs)} objects with {kit.describe()}, {args.jobs} at a time", flush=True)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: compile_object(job[2], job[3]), jobs))
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python bench/cuda_build_check.py", *args.argv]),
        "cache": str(cache),
        "toolkit": {"version": kit.version, "nvcc": str(kit.nvcc), "origin": f"cuda-toolkit[nvcc,cccl]=="
                    f"{args.toolkit or toolkit_version} from the package registry"
                    + ("" if args.toolkit else f" ({pin_source})")},
        "torch": torch.__version__, "torch_headers": headers, "host_compiler": host_compiler(),
        "sources": str(sources), "archs": list(args.archs), "extra_flags": extra_flags, "objects": [],
    }
    for (arch, source, directory, target), result in zip(jobs, results, strict=True):
        found = diagnostics(result["output"], sources)
        entry = {"arch": arch, "source": source.name, "ok": result["ok"] and not any(
            d["kind"] == "error" for d in found), "seconds": result["seconds"], "object_bytes": result["object_bytes"],
            "errors": [d for d in found if d["kind"] == "error"], "warnings": [d for d in found if d["kind"] == "warning"]}
        if arch != "host":
            entry["kernels"] = ptxas_kernels(result["output"])
            report.setdefault("nvcc_flags", {})[arch] = nvcc_command(directory)
        if not entry["ok"]:
            entry["output_tail"] = result["output"][-4000:]
            if not entry["errors"]:  # a failure without a parsable diagnostic still names its file
                entry["errors"] = [{"kind": "error", "file": source.name, "line": None,
                                    "message": (result["output"].strip().splitlines() or ["no output"])[-1]}]
        report["objects"].append(entry)
    shutil.rmtree(work, ignore_errors=True)
    report["ok"] = all(entry["ok"] for entry in report["objects"])
    return report


def markdown(report: dict[str, Any]) -> str:
    tk = report["toolkit"]
    lines = ["# CUDA build check", "",
             (f"{report['date']}: `{report['command']}` — "
             f"{'all objects compiled' if report['ok'] else '**compiler errors**'}."), "",
             (f"- Compiler: nvcc {tk['version']} (`{tk['nvcc']}`), {tk['origin']}; $CACHE is the toolchain "
             "cache (`$AUGSTUDY_CUDA_TOOLCHAIN`, else `~/.cache/augstudy/cuda-toolchain`)."),
             f"- Host compiler: {report['host_compiler']}.",
             f"- Torch: installed {report['torch']}; headers from {report['torch_headers']}.",
             ("- Flags: those of torch's extension builder (`_write_ninja_file_to_build_library`, as `build.py`'s "
             "JIT build), one `-gencode` per architecture, plus `--ptxas-options=-v`; compile only (linking "
             "needs torch's CUDA libraries)."),
             "- Seconds: wall clock per object, `--jobs` objects at a time, on whatever else the machine runs.", "",
             ("| arch | source | status | seconds | object bytes | kernels | registers | spill stores / loads (bytes) "
             "| stack (bytes) |"), "|---|---|---|---:|---:|---:|---|---|---:|"]
    for entry in report["objects"]:
        kernels = entry.get("kernels", [])
        registers = [k["registers"] for k in kernels if "registers" in k]
        spills = (sum(k.get("spill_stores", 0) for k in kernels), sum(k.get("spill_loads", 0) for k in kernels))
        arch = "host (g++)" if entry["arch"] == "host" else f"sm_{entry['arch'].replace('.', '')}"
        lines.append(
            f"| {arch} | {entry['source']} | {'ok' if entry['ok'] else 'FAILED'} | {entry['seconds']} | "
            f"{entry['object_bytes'] or '–'} | {len(kernels) if entry['arch'] != 'host' else '–'} | "
            f"{f'{min(registers)}–{max(registers)}' if registers else '–'} | "
            f"{f'{spills[0]} / {spills[1]}' if entry['arch'] != 'host' else '–'} | "
            f"{max((k.get('stack_bytes', 0) for k in kernels), default='–')} |")
    warnings = [(entry, d) for entry in report["objects"] for d in entry["warnings"]]
    errors = [(entry, d) for entry in report["objects"] for d in entry["errors"]]
    lines += ["", f"Warnings: {len(warnings) or 'none'}."]
    lines += [f"- {_where(d)} ({entry['source']}, {entry['arch']}): {d['message']}" for entry, d in warnings[:40]]
    if errors:
        lines += ["", "Errors:"] + [f"- {_where(d)} ({entry['arch']}): {d['message']}" for entry, d in errors[:40]]
    top = _most_registers(report)
    if top:
        lines += ["", "Kernels with the most registers per architecture:", ""]
        lines += [f"- sm_{arch.replace('.', '')}: {k['registers']} registers, {k.get('spill_stores', 0)} B spill "
                  f"stores — `{k['kernel'][:160]}`" for arch, k in top]
    return "\n".join(lines) + "\n"


def _where(diagnostic: dict[str, Any]) -> str:
    return f"{diagnostic['file']}:{diagnostic['line']}" if diagnostic["line"] else diagnostic["file"]


def _most_registers(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    top: dict[str, dict[str, Any]] = {}
    for entry in report["objects"]:
        for kernel in entry.get("kernels", []):
            if kernel.get("registers", -1) > top.get(entry["arch"], {}).get("registers", -1):
                top[entry["arch"]] = kernel
    return sorted(top.items())


def _portable(text: str, cache: Path) -> str:
    """The record without this machine's paths: $CACHE for the toolchain cache, repository-relative sources."""
    text = text.replace(str(cache.resolve()), "$CACHE").replace(str(cache), "$CACHE")
    return text.replace(str(ROOT) + "/", "").replace(str(Path.home()), "~")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench",
                        help="folder for cuda_build_check.json and .md [default: bench/]")
    parser.add_argument("--sources", type=Path, default=build.SOURCE_DIR,
                        help="kernel sources [default: stylegan2ada/ops/cuda]")
    parser.add_argument("--archs", type=lambda text: tuple(text.split(",")), default=ARCHS,
                        help=f"compute capabilities, comma-separated [default: {','.join(ARCHS)}]")
    parser.add_argument("--torch-headers", choices=("wheel", "installed"), default="wheel",
                        help="torch headers: the registry's CUDA build of the installed version (wheel), or the "
                             "installed torch's [default: wheel]")
    parser.add_argument("--toolkit", help="cuda-toolkit version [default: the one the CUDA build of torch pins]")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="toolchain cache [default: $AUGSTUDY_CUDA_TOOLCHAIN, else ~/.cache/augstudy/cuda-toolchain]")
    parser.add_argument("--files", type=lambda text: tuple(text.split(",")), default=(),
                        help=f"compile only these of {','.join(build.SOURCES)} [default: all]")
    parser.add_argument("--jobs", type=int, default=2, help="objects compiled at a time [default: 2]")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = [arch for arch in args.archs if not re.fullmatch(r"\d+\.\d+", arch)]
    if unknown:
        parser.error(f"--archs: {', '.join(unknown)} is not a compute capability such as 8.0")
    if not (args.sources / "ops.cpp").is_file():
        parser.error(f"--sources {args.sources}: no ops.cpp there")
    if set(args.files) - set(build.SOURCES):
        parser.error(f"--files: choose from {', '.join(build.SOURCES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run_check(args)
    except RegistryUnreachable as error:
        print(f"cuda_build_check: SKIPPED: {error}", file=sys.stderr)
        return EXIT_OFFLINE
    except SetupError as error:
        print(f"cuda_build_check: setup failed: {error}", file=sys.stderr)
        return EXIT_SETUP
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "cuda_build_check.json", _portable(json.dumps(report, indent=2) + "\n", args.cache))
    _write(args.out / "cuda_build_check.md", _portable(markdown(report), args.cache))
    for entry in report["objects"]:
        print(f"{entry['arch']:>5} {entry['source']:<14} {'ok' if entry['ok'] else 'FAILED':<7} "
              f"{entry['seconds']:6.1f} s  {len(entry['warnings'])} warning(s)")
    print(f"wrote {args.out / 'cuda_build_check.json'} and {args.out / 'cuda_build_check.md'}")
    if report["ok"]:
        return 0
    for entry in report["objects"]:
        for error in entry["errors"]:
            print(f"error: {_where(error)}: {error['message']} (arch {entry['arch']})", file=sys.stderr)
    return EXIT_COMPILE


if __name__ == "__main__":
    sys.exit(main())
