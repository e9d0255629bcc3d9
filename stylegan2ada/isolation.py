"""Untrusted network files are read in a child process with hard limits; only checked data comes back.

Whatever a downloaded `.pkl` or a `.pt` from elsewhere holds, reading it must not run code, must
stay bounded in time and memory, and must end in one message naming the file. The readers
(stylegan2ada.nvlabs_pickle, stylegan2ada.torch_format) already refuse what they do not know;
this module is the second wall for what they might miss: they run in a fresh interpreter
(``python -I``, no torch and usually no numpy, so it starts in a fraction of a second) under an address-space limit
(RLIMIT_AS), a CPU limit (RLIMIT_CPU), a wall-clock limit, a limit on what it may write
(RLIMIT_FSIZE) and no core dumps. A crash (SIGSEGV), a hang or a memory blow-up of the child
becomes one `ReadResult.error` naming what happened.

The child hands back one file in the safetensors layout: each tensor's raw bytes, and as
metadata the JSON of every file's plain data (tensors replaced by ``{"__tensor__": name}``,
tuples by ``{"__tuple__": [...]}``, dicts with non-string keys by ``{"__items__": [[k, v], ...]}``).
The parent parses that with the safetensors library and never sees the untrusted object graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BASE_MEMORY = 512 << 20  # address space for the interpreter (with numpy it starts in under 150 MiB)
MEMORY_PER_BYTE = 3  # the file's bytes, its storages' checked copies, and one tensor being written
BASE_SECONDS = 20.0
SECONDS_PER_GB = 40.0  # the pure-Python reader handles about 100 MB/s on one core of this machine
RECURSION_LIMIT = 400  # the readers nest at most MAX_NESTING (32) containers deep
_ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The hard limits of one child: address space in bytes, CPU and wall seconds."""

    memory: int
    cpu_seconds: int
    wall_seconds: float

    @classmethod
    def for_bytes(cls, nbytes: int) -> Limits:
        seconds = BASE_SECONDS + SECONDS_PER_GB * nbytes / 1e9
        return cls(BASE_MEMORY + MEMORY_PER_BYTE * nbytes, int(seconds) + 1, 1.5 * seconds)


@dataclasses.dataclass(frozen=True)
class ChildUsage:
    """What the last child used: CPU and wall time, and its own peak resident memory (None if it died)."""

    cpu_seconds: float
    wall_seconds: float
    peak_rss_bytes: int | None = None


last_usage: ChildUsage | None = None


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """One file's plain data (tensors as torch tensors) or why it was refused (without the file name)."""

    tree: Any = None
    error: str | None = None


def read_isolated(kind: str, paths: Sequence[Path], keys: Sequence[str] | None = None,
                  limits: Limits | None = None) -> list[ReadResult]:
    """Read each file in one child; when the child dies, read the files one by one to say which did it.

    Args:
        kind: "nvlabs" (official network pickles) or "torch-zip" (torch.save archives: our snapshots).
        keys: torch-zip only: read just these top-level keys (metadata without the weights).
        limits: the child's limits (default: scaled by the files' total size).
    """
    results = _run_child(kind, paths, keys, limits)
    if isinstance(results, str) and len(paths) > 1:
        return [item for path in paths for item in read_isolated(kind, [path], keys, limits)]
    return [ReadResult(error=results)] * len(paths) if isinstance(results, str) else results


def _run_child(kind: str, paths: Sequence[Path], keys: Sequence[str] | None,
               limits: Limits | None) -> list[ReadResult] | str:
    limits = limits or Limits.for_bytes(sum(path.stat().st_size for path in paths))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="stylegan2ada-read-", dir=_scratch(limits.memory)) as folder:
        out = Path(folder) / "result.safetensors"
        request = {"kind": kind, "paths": [str(path) for path in paths], "keys": keys, "out": str(out),
                   "memory": limits.memory, "cpu_seconds": limits.cpu_seconds}
        returncode, stderr = _wait(child_command(), json.dumps(request).encode(), env, limits.wall_seconds)
        if returncode is None:
            return (f"reading it took longer than {limits.wall_seconds:.0f} s, so it was stopped "
                    f"(the file is damaged or crafted to hang a reader)")
        if returncode != 0:
            return _death(returncode, stderr, limits)
        return _read_result(out)


def _scratch(nbytes: int) -> str | None:
    """Shared memory for the hand-back file where it has room (no disk writes), else the default temp folder."""
    shm = Path("/dev/shm")
    try:
        return str(shm) if shm.is_dir() and shutil.disk_usage(shm).free > 2 * nbytes else None
    except OSError:
        return None


def child_command() -> list[str]:
    """The child's command line: this interpreter, isolated mode (no user site, no PYTHON* variables)."""
    code = f"import sys; sys.path.insert(0, {str(_ROOT)!r}); import stylegan2ada.isolation as m; m.child_main()"
    return [sys.executable, "-I", "-c", code]


def _wait(command: list[str], request: bytes, env: dict[str, str], timeout: float) -> tuple[int | None, bytes]:
    """Run the child to its end or kill it at `timeout`; its exit status (None: killed) and stderr.

    Polls os.wait4 rather than subprocess.run: it also reports the child's CPU time, and the child
    is killed only while it is certainly still ours (never a reaped, possibly reused, process id).
    """
    global last_usage
    start = time.monotonic()
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env
    ) as child:
        assert child.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a child that died at once is reported below
            child.stdin.write(request)
            child.stdin.close()
        killed = False
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout and not killed:
                child.kill()
                killed = True
            time.sleep(0.005)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        last_usage = ChildUsage(usage.ru_utime + usage.ru_stime, time.monotonic() - start)
        errors.seek(0)
        return (None if killed else child.returncode), errors.read(1 << 16)


def _death(returncode: int, stderr: bytes, limits: Limits) -> str:
    """Why the child ended without a result, in words."""
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        if -returncode in (signal.SIGXCPU, signal.SIGKILL):
            return (f"reading it used more than {limits.cpu_seconds} s of CPU, so it was stopped "
                    f"(the file is damaged or crafted to hang a reader)")
        return f"reading it crashed the isolated reader ({name}); the file is damaged or crafted"
    last = (stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1][:300]
    return f"the isolated reader failed (exit status {returncode}: {last})"


def _read_result(out: Path) -> list[ReadResult]:
    from safetensors import safe_open

    global last_usage
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
        results = json.loads(metadata["results"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    if last_usage is not None:
        last_usage = dataclasses.replace(last_usage, peak_rss_bytes=int(metadata["peak_rss_bytes"]))
    return [ReadResult(error=item["error"]) if "error" in item else ReadResult(tree=_restore(item["ok"], tensors))
            for item in results]


def _restore(value: Any, tensors: dict[str, Any]) -> Any:
    """The child's JSON with tensors, tuples and non-string keys put back."""
    if isinstance(value, list):
        return [_restore(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if len(value) == 1 and "__tuple__" in value:
        return tuple(_restore(item, tensors) for item in value["__tuple__"])
    if len(value) == 1 and "__items__" in value:
        return {_restore(key, tensors): _restore(item, tensors) for key, item in value["__items__"]}
    return {key: _restore(item, tensors) for key, item in value.items()}


# -- the child -------------------------------------------------------------------------------------
class _TensorWriter:
    """Collects the tensors of the files read and writes them, streamed, in the safetensors layout."""

    def __init__(self, budget: int) -> None:
        self.pending: list[tuple[str, Any]] = []
        self.budget = budget

    def emit(self, record: Any) -> dict[str, str]:
        self.budget -= record.nbytes
        if self.budget < 0:
            from stylegan2ada.bounded_pickle import UntrustedDataError

            raise UntrustedDataError("its tensors hold more bytes than the file (views repeating one storage)")
        name = f"t{len(self.pending)}"
        self.pending.append((name, record))
        return {"__tensor__": name}

    def write(self, path: Path, results: list[dict[str, Any]]) -> None:
        header: dict[str, Any] = {"__metadata__": {"results": json.dumps(results), "peak_rss_bytes": str(_peak_rss())}}
        offset = 0
        for name, record in self.pending:
            header[name] = {"dtype": record.dtype, "shape": list(record.shape),
                            "data_offsets": [offset, offset + record.nbytes]}
            offset += record.nbytes
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as handle:
            handle.write(struct.pack("<Q", len(text)) + text)
            for _, record in self.pending:
                handle.write(record.contiguous_bytes())


def _peak_rss() -> int:
    """This process's own peak resident memory (VmHWM: unlike ru_maxrss, it excludes the parent's before exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def _readers() -> dict[str, Callable[..., Any]]:
    from stylegan2ada.nvlabs_pickle import parse_network_pickle
    from stylegan2ada.torch_format import read_torch_zip_tree

    return {"nvlabs": lambda path, emit, keys: parse_network_pickle(path, emit), "torch-zip": read_torch_zip_tree}


def child_main() -> None:
    """Entry point of the child: the request comes on stdin (see `read_isolated`)."""
    serve(json.loads(sys.stdin.buffer.read(1 << 20)))


def serve(request: dict[str, Any]) -> None:
    """Set the limits first, then read each requested file and write what came of it."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
    resource.setrlimit(resource.RLIMIT_CPU, (request["cpu_seconds"], request["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.setrecursionlimit(RECURSION_LIMIT)
    from stylegan2ada.bounded_pickle import UntrustedDataError
    from stylegan2ada.torch_format import TensorFormatError

    readers = _readers()
    total = sum(os.path.getsize(path) for path in request["paths"])
    writer = _TensorWriter(budget=2 * total + (1 << 20))
    results: list[dict[str, Any]] = []
    for path in request["paths"]:
        mark = len(writer.pending)
        try:
            results.append({"ok": readers[request["kind"]](Path(path), writer.emit, request["keys"])})
            continue
        except TensorFormatError as error:
            message = f"cannot read its tensors: {error}"
        except UntrustedDataError as error:
            message = str(error)
        except MemoryError:
            message = (f"reading it needs more than the {request['memory'] >> 20} MiB allowed for a file of "
                       f"its size (sizes in the file are forged or it is damaged)")
        except RecursionError:
            message = "its data nests too deep to read (or is cyclic)"
        except OSError as error:
            message = f"cannot be read ({error.strerror or error})"
        except Exception as error:  # noqa: BLE001  a reader's slip is still this file's refusal, never a crash
            message = f"cannot be read ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
        del writer.pending[mark:]
        results.append({"error": message})
    out = Path(request["out"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * total + (64 << 20),) * 2)
    writer.write(out, results)
