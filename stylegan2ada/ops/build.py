"""Just-in-time build of the CUDA kernels of `stylegan2ada.ops`, once per machine and version.

The kernels are compiled with torch's extension builder and ninja on first use on a CUDA device
and cached in ``$TORCH_EXTENSIONS_DIR`` when set, else ``~/.cache/stylegan2ada/ops`` (honouring
``$XDG_CACHE_HOME``). The cache folder is keyed by a hash of the sources and of everything the
binary depends on (torch, CUDA, Python, GPU architectures), so an edit or an upgrade rebuilds
instead of loading a stale module. When several ranks start together, an exclusive file lock lets
one process build while the others wait and then load the result; a crashed builder releases
the lock with its process, so no stale lock file can block the next run.

The CUDA compiler is found by `stylegan2ada.ops.toolkit`: ``$CUDA_HOME``, else the registry's
``nvcc`` in this Python environment (``pip install 'augstudy[cuda-build]'``), else a system toolkit,
always of torch's CUDA major version; the line that announces the kernels names the compiler.
Whether the kernels can be used is decided once per process: `load_kernels` raises
`KernelsUnavailable` with the reason (no CUDA build of torch, no device, no ninja, no host C++
compiler or Python headers, no matching nvcc, a compiler error) and `try_load_kernels` turns the
same failure into one `KernelFallbackWarning`. ``STYLEGAN2ADA_OPS_VERBOSE=1`` shows the compiler
commands and output while building.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import sys
import sysconfig
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

from stylegan2ada.ops import toolkit

SOURCE_DIR = Path(__file__).resolve().parent / "cuda"
SOURCES = ("ops.cpp", "bias_act.cu", "upfirdn2d.cu")
HEADERS = ("common.cuh", "bias_act.cuh", "upfirdn2d.cuh", "ops.h")
EXTENSION_NAME = "stylegan2ada_ops"
LOCK_NAME = "build.lock"
ERROR_LOG_NAME = "build-error.log"


class KernelsUnavailable(RuntimeError):
    """The CUDA kernels cannot be used here; the message says why."""


class KernelFallbackWarning(UserWarning):
    """Issued once per process when ``auto`` falls back to the reference ops."""


def cache_root() -> Path:
    """Where built kernels live: ``$TORCH_EXTENSIONS_DIR``, else the user's cache folder."""
    torch_dir = os.environ.get("TORCH_EXTENSIONS_DIR")
    if torch_dir:
        return Path(torch_dir).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "stylegan2ada" / "ops"


def toolchain_fingerprint(compiler: toolkit.Toolkit | None = None) -> dict[str, object]:
    """What a built module depends on besides its sources (`compiler`: the nvcc used): a change means a rebuild."""
    capabilities: list[str] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            capabilities.append(f"{major}.{minor}")
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": sys.platform,
        "capabilities": sorted(set(capabilities)),
        "arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST", ""),
        "nvcc": "" if compiler is None else f"{compiler.nvcc} {compiler.version}",
    }


def build_key(
    source_dir: Path = SOURCE_DIR,
    files: Sequence[str] = SOURCES + HEADERS,
    fingerprint: dict[str, object] | None = None,
) -> str:
    """Hash of the source files' names and contents plus the toolchain fingerprint."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update((source_dir / name).read_bytes() + b"\0")
    digest.update(json.dumps(fingerprint or toolchain_fingerprint(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing); other holders wait for it.

    flock locks belong to the open file, so they also exclude other threads that open the file
    themselves, and the kernel drops them when the holder exits, cleanly or not.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"stylegan2ada.ops: waiting for another process to build the kernels in {path.parent}",
                file=sys.stderr,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def missing_prerequisite() -> str | None:
    """The first reason found, without compiling anything, why the kernels cannot be built.

    On success the CUDA compiler found is kept for `load_kernels`.
    """
    global _compiler
    if torch.version.cuda is None:
        return f"this PyTorch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)"
    if not toolkit.ensure_ninja_on_path():
        return "ninja is not installed (pip install ninja)"
    host_compiler = os.environ.get("CXX", "c++")
    if shutil.which(host_compiler) is None:
        return f"no C++ compiler ({host_compiler}) for the host code: install g++ (e.g. apt install g++)"
    python_include = sysconfig.get_path("include", scheme="posix_prefix")
    if not (Path(python_include) / "Python.h").exists():
        return f"the Python headers are missing ({python_include}/Python.h): install python3-dev for this Python"
    try:
        _compiler = toolkit.find_toolkit(torch.version.cuda)
    except toolkit.ToolkitNotFound as error:
        return str(error)
    return None


@contextmanager
def _cuda_home(home: Path | None) -> Iterator[None]:
    """torch's builder pointed at `home` (None: torch's own choice) for the duration of a build."""
    from torch.utils import cpp_extension

    saved = cpp_extension.CUDA_HOME
    if home is not None:
        cpp_extension.CUDA_HOME = str(home)
    try:
        yield
    finally:
        cpp_extension.CUDA_HOME = saved


def _summarise_build_error(error: BaseException, log_path: Path) -> str:
    """One line for the warning: the first compiler error, and where the full log is."""
    text = str(error)
    log_path.write_text(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    diagnostics = [
        line for line in lines if "error:" in line.lower()
    ]  # gcc "f:1:2: error:", nvcc "f(1): error:"
    first = diagnostics[0] if diagnostics else (lines[-1] if lines else repr(error))
    return f"the build failed: {first[:300]} (full log: {log_path})"


def build_extension(
    name: str,
    sources: Sequence[Path],
    build_dir: Path,
    include_dirs: Sequence[Path] = (),
    verbose: bool = False,
) -> ModuleType:
    """Compile (if needed) and import an extension in `build_dir`, one process at a time.

    Raises KernelsUnavailable on any failure, with the first compiler error in the message and
    the full output in ``build_dir/build-error.log``.
    """
    from torch.utils import cpp_extension

    with file_lock(build_dir / LOCK_NAME):
        # torch's own lock file is left behind when a builder is killed and then blocks every
        # later run; under our lock nobody else is building, so any such file is stale.
        (build_dir / "lock").unlink(missing_ok=True)
        if not any(build_dir.glob(f"{name}*.so")):
            print(
                f"stylegan2ada.ops: building {name} in {build_dir} (first use: a minute or two)",
                file=sys.stderr,
            )
        try:
            return cpp_extension.load(
                name=name,
                sources=[str(source) for source in sources],
                build_directory=str(build_dir),
                extra_include_paths=[str(directory) for directory in include_dirs],
                verbose=verbose,
            )
        except Exception as error:  # compiler, linker, loader: all mean "use the reference ops"
            raise KernelsUnavailable(_summarise_build_error(error, build_dir / ERROR_LOG_NAME)) from error


_load_lock = threading.Lock()
_compiler: toolkit.Toolkit | None = None
_kernels: ModuleType | None = None
_failure: str | None = None
_warned = False


def load_kernels() -> ModuleType:
    """The compiled kernels module (built on first call); raises KernelsUnavailable."""
    global _kernels, _failure
    with _load_lock:
        if _kernels is not None:
            return _kernels
        if _failure is None:
            _failure = missing_prerequisite()
        if _failure is None:
            key = build_key(fingerprint=toolchain_fingerprint(_compiler))
            build_dir = cache_root() / f"{EXTENSION_NAME}-{key}"
            try:
                home = None if _compiler is None else toolkit.link_home(_compiler, cache_root())
                with _cuda_home(home):
                    _kernels = build_extension(
                        f"{EXTENSION_NAME}_{key}",
                        [SOURCE_DIR / source for source in SOURCES],
                        build_dir,
                        include_dirs=[SOURCE_DIR],
                        verbose=os.environ.get("STYLEGAN2ADA_OPS_VERBOSE", "") == "1",
                    )
                compiler = "torch's CUDA_HOME" if _compiler is None else _compiler.describe()
                print(f"stylegan2ada.ops: CUDA kernels ready, compiled by {compiler}, cached in {build_dir}",
                      file=sys.stderr)
                return _kernels
            except (KernelsUnavailable, toolkit.ToolkitNotFound, OSError) as error:
                _failure = str(error)
        raise KernelsUnavailable(_failure)


def compiler_used() -> str | None:
    """The CUDA compiler `load_kernels` found ("nvcc 13.0.88 (registry package: PATH)"), once it has looked."""
    return None if _compiler is None else _compiler.describe()


def try_load_kernels() -> ModuleType | None:
    """The kernels, or None after one `KernelFallbackWarning` per process naming the reason."""
    global _warned
    if _kernels is not None:
        return _kernels
    if _failure is not None and _warned:  # settled: no exception per op call
        return None
    try:
        return load_kernels()
    except KernelsUnavailable as error:
        with _load_lock:
            if not _warned:
                _warned = True
                warnings.warn(
                    f"stylegan2ada.ops: the CUDA kernels are unavailable ({error}); using the reference "
                    "ops instead, which are slower. Set STYLEGAN2ADA_OPS=ref to choose them explicitly.",
                    KernelFallbackWarning,
                    stacklevel=3,
                )
        return None
