"""Which CUDA compiler builds the kernels: a system toolkit, or the one from the package registry.

Most build failures users of the reference implementation report are about the toolkit: no
``nvcc``, an ``nvcc`` whose CUDA major version differs from torch's, ``ninja`` installed in the venv
but not on ``PATH``. The CUDA 13 compiler and headers are also published as Python packages
(``cuda-toolkit[nvcc,cccl]``, installed by ``augstudy[cuda-build]``) into
``site-packages/nvidia/cu13``, so a GPU machine needs no system toolkit at all.

Candidates, in order: ``$CUDA_HOME`` / ``$CUDA_PATH`` (the user's explicit choice), the registry
toolkit in this Python environment (pinned to torch's own CUDA version by torch's requirements),
``nvcc`` on ``PATH``, then ``/usr/local/cuda``. A candidate whose CUDA major version differs from
torch's is skipped with the reason; when none is left, `ToolkitNotFound` names every candidate
tried and how to get one. (The CUDA 12 registry packages hold ``ptxas`` but no ``nvcc``, so the
registry route needs a CUDA 13 build of torch, which is what ``torch==2.13.0`` from the registry is.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REGISTRY_ORIGIN = "registry package"
SYSTEM_HOMES = (Path("/usr/local/cuda"),)
INSTALL_HINT = "pip install 'augstudy[cuda-build]' (the CUDA compiler from the package registry)"


class ToolkitNotFound(RuntimeError):
    """No usable CUDA compiler; the message lists what was tried and why each was refused."""


@dataclasses.dataclass(frozen=True)
class Toolkit:
    """A CUDA toolkit folder laid out as torch's extension builder expects (``bin/nvcc``, ``include``)."""

    home: Path
    version: str  # nvcc's full version, e.g. "13.0.88"
    origin: str  # where it was found: "$CUDA_HOME", "registry package", "PATH", "/usr/local/cuda"

    @property
    def nvcc(self) -> Path:
        return self.home / "bin" / "nvcc"

    def describe(self) -> str:
        return f"nvcc {self.version} ({self.origin}: {self.nvcc})"


def nvcc_version(nvcc: Path) -> str | None:
    """The version ``nvcc --version`` reports ("13.0.88"), or None when it does not run."""
    try:
        done = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\bV(\d+\.\d+(?:\.\d+)?)", done.stdout) or re.search(r"release (\d+\.\d+)", done.stdout)
    return match[1] if done.returncode == 0 and match else None


def registry_homes(search_paths: Sequence[str]) -> list[Path]:
    """Registry toolkits importable here: ``<site-packages>/nvidia/cuNN`` folders that hold ``bin/nvcc``."""
    homes: list[Path] = []
    for entry in filter(None, search_paths):  # "" (the working directory) is no install location
        for nvcc in sorted(Path(entry).glob("nvidia/cu[0-9]*/bin/nvcc")):
            home = nvcc.parent.parent.resolve()
            if home not in homes:
                homes.append(home)
    return homes


def candidates(env: Mapping[str, str], search_paths: Sequence[str],
               system_homes: Sequence[Path] = SYSTEM_HOMES) -> list[tuple[str, Path]]:
    """(origin, home) pairs in the order they are tried; see the module docstring."""
    found: list[tuple[str, Path]] = []
    for name in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(name):
            found.append((f"${name}", Path(env[name]).expanduser()))
            return found  # an explicit choice is used or refused, never silently replaced
    found += [(REGISTRY_ORIGIN, home) for home in registry_homes(search_paths)]
    on_path = shutil.which("nvcc", path=env.get("PATH", ""))
    if on_path:
        found.append(("PATH", Path(on_path).resolve().parent.parent))
    found += [(str(home), home) for home in system_homes]
    return found


def find_toolkit(torch_cuda: str | None, env: Mapping[str, str] | None = None,
                 search_paths: Sequence[str] | None = None, system_homes: Sequence[Path] | None = None) -> Toolkit:
    """The first candidate whose nvcc runs and matches torch's CUDA major version (`torch_cuda`, e.g. "13.0").

    Defaults: the process environment, ``sys.path`` and `SYSTEM_HOMES`.
    """
    env = os.environ if env is None else env
    search_paths = tuple(sys.path) if search_paths is None else search_paths
    system_homes = SYSTEM_HOMES if system_homes is None else system_homes
    refused: list[str] = []
    seen: set[Path] = set()
    for origin, home in candidates(env, search_paths, system_homes):
        if home in seen:
            continue
        seen.add(home)
        nvcc = home / "bin" / "nvcc"
        if not nvcc.is_file():
            refused.append(f"{origin} {home}: no bin/nvcc")
            continue
        version = nvcc_version(nvcc)
        if version is None:
            refused.append(f"{origin} {nvcc}: `nvcc --version` failed")
            continue
        if torch_cuda and version.split(".")[0] != torch_cuda.split(".")[0]:
            refused.append(f"{origin} {nvcc}: CUDA {version}, but torch is built with CUDA {torch_cuda}")
            continue
        return Toolkit(home=home, version=version, origin=origin)
    tried = "; ".join(refused) or "nothing found"
    raise ToolkitNotFound(f"no usable nvcc ({tried}). Install the compiler with {INSTALL_HINT}, "
                          "or set CUDA_HOME to a CUDA toolkit of torch's major version")


def link_home(toolkit: Toolkit, cache_dir: Path) -> Path:
    """A CUDA_HOME that torch's builder can also link with: the toolkit itself when it has an unversioned
    ``libcudart.so``, else a folder of links beside the cache whose ``lib64/libcudart.so`` points to the
    registry's ``lib/libcudart.so.NN`` (torch links extensions with ``-lcudart``; the registry ships only the
    versioned library, which torch itself loads at run time)."""
    home = toolkit.home
    if any((home / lib / "libcudart.so").exists() for lib in ("lib64", "lib")):
        return home
    runtimes = sorted((home / "lib").glob("libcudart.so.[0-9]*"))
    if not runtimes:
        raise ToolkitNotFound(f"{toolkit.describe()} has no lib/libcudart.so.*: install cuda-toolkit[cudart] "
                              "(a dependency of the CUDA build of torch)")
    tag = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    shim = cache_dir / f"cuda-home-{tag}"
    if (shim / "lib64" / "libcudart.so").exists():
        return shim
    staging = cache_dir / f".cuda-home-{tag}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "lib64").mkdir(parents=True)
    for entry in home.iterdir():
        if entry.name not in ("lib", "lib64"):
            (staging / entry.name).symlink_to(entry)
    for library in (home / "lib").iterdir():
        (staging / "lib64" / library.name).symlink_to(library)
    (staging / "lib64" / "libcudart.so").symlink_to(runtimes[0])
    try:
        staging.rename(shim)
    except OSError:  # another process made it first
        shutil.rmtree(staging, ignore_errors=True)
    return shim


def ensure_ninja_on_path(env: dict[str, str] | None = None, python: str | None = None) -> bool:
    """Put this interpreter's bin folder on PATH when ninja is installed there but PATH lacks it.

    torch's builder runs plain ``ninja``; ``.venv/bin/augstudy`` without an activated venv would
    otherwise report "ninja not installed" although ``pip install ninja`` put it beside Python.
    """
    env = os.environ if env is None else env
    if shutil.which("ninja", path=env.get("PATH", "")):
        return True
    venv_bin = str(Path(python or sys.executable).parent)
    if shutil.which("ninja", path=venv_bin):
        env["PATH"] = os.pathsep.join(filter(None, [venv_bin, env.get("PATH", "")]))
        return True
    return False
