"""Finding the CUDA compiler without a system toolkit (stylegan2ada.ops.toolkit), on fake toolkit folders.

A fake toolkit is a folder with a ``bin/nvcc`` script that prints what a real nvcc prints for
``--version``; the registry layout puts it at ``<site-packages>/nvidia/cu13``.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import warnings
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
import torch

from stylegan2ada import ops
from stylegan2ada.ops import build, toolkit

NO_SYSTEM: tuple[Path, ...] = ()


def fake_toolkit(home: Path, version: str, cudart: str | None = "lib/libcudart.so.13") -> Path:
    """A toolkit folder whose nvcc reports `version` ("13.0.88"); returns its home."""
    nvcc = home / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    major_minor = ".".join(version.split(".")[:2])
    nvcc.write_text("#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    f"echo 'Cuda compilation tools, release {major_minor}, V{version}'\n")
    nvcc.chmod(0o755)
    (home / "include").mkdir()
    (home / "include" / "cuda_runtime.h").write_text("// fake\n")
    if cudart:
        (home / cudart).parent.mkdir(parents=True, exist_ok=True)
        (home / cudart).write_text("fake runtime")
    return home


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site-packages folder holding the registry toolkit 13.0.88."""
    fake_toolkit(tmp_path / "site" / "nvidia" / "cu13", "13.0.88")
    return tmp_path / "site"


def test_the_registry_compiler_is_found_in_site_packages_when_no_nvcc_is_installed(site: Path) -> None:
    found = toolkit.find_toolkit("13.0", env={"PATH": ""}, search_paths=["", str(site)], system_homes=NO_SYSTEM)
    assert found.origin == toolkit.REGISTRY_ORIGIN
    assert found.home == (site / "nvidia" / "cu13").resolve()
    assert found.version == "13.0.88"
    assert "nvcc 13.0.88" in found.describe() and str(found.nvcc) in found.describe()


def test_the_registry_compiler_comes_before_a_system_one_and_a_wrong_major_version_is_skipped(
    site: Path, tmp_path: Path
) -> None:
    system = fake_toolkit(tmp_path / "usr-local-cuda", "13.0.48")
    found = toolkit.find_toolkit("13.0", env={"PATH": ""}, search_paths=[str(site)], system_homes=[system])
    assert found.origin == toolkit.REGISTRY_ORIGIN
    old_system = fake_toolkit(tmp_path / "cuda-12", "12.4.131")
    on_path = toolkit.find_toolkit("12.4", env={"PATH": str(old_system / "bin")}, search_paths=[str(site)],
                                   system_homes=NO_SYSTEM)
    assert on_path.origin == "PATH" and on_path.version == "12.4.131"  # the CUDA 13 registry one is refused


def test_an_explicit_cuda_home_is_used_or_refused_never_replaced(site: Path, tmp_path: Path) -> None:
    chosen = fake_toolkit(tmp_path / "mine", "13.0.88")
    found = toolkit.find_toolkit("13.0", env={"CUDA_HOME": str(chosen)}, search_paths=[str(site)],
                                 system_homes=NO_SYSTEM)
    assert (found.origin, found.home) == ("$CUDA_HOME", chosen)
    old = fake_toolkit(tmp_path / "old", "12.1.105")
    with pytest.raises(toolkit.ToolkitNotFound) as refused:
        toolkit.find_toolkit("13.0", env={"CUDA_HOME": str(old)}, search_paths=[str(site)], system_homes=NO_SYSTEM)
    assert "$CUDA_HOME" in str(refused.value) and "CUDA 12.1.105, but torch is built with CUDA 13.0" in str(
        refused.value)


def test_no_compiler_names_every_candidate_and_the_extra_to_install(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "nvcc").write_text("#!/bin/sh\nexit 1\n")
    (broken / "bin" / "nvcc").chmod(0o755)
    with pytest.raises(toolkit.ToolkitNotFound) as missing:
        toolkit.find_toolkit("13.0", env={"PATH": ""}, search_paths=[str(tmp_path)],
                             system_homes=[broken, tmp_path / "absent"])
    message = str(missing.value)
    assert f"{broken / 'bin' / 'nvcc'}: `nvcc --version` failed" in message
    assert f"{tmp_path / 'absent'}: no bin/nvcc" in message
    assert "augstudy[cuda-build]" in message


def test_link_home_gives_torch_an_unversioned_cudart_to_link(site: Path, tmp_path: Path) -> None:
    registry = toolkit.find_toolkit("13.0", env={"PATH": ""}, search_paths=[str(site)], system_homes=NO_SYSTEM)
    shim = toolkit.link_home(registry, tmp_path / "cache")
    assert shim != registry.home and shim.parent == tmp_path / "cache"
    assert (shim / "lib64" / "libcudart.so").resolve() == registry.home / "lib" / "libcudart.so.13"
    assert (shim / "bin" / "nvcc").resolve() == registry.nvcc.resolve()
    assert (shim / "include" / "cuda_runtime.h").is_file()
    assert toolkit.link_home(registry, tmp_path / "cache") == shim  # made once
    system = toolkit.Toolkit(fake_toolkit(tmp_path / "system", "13.0.48", cudart="lib64/libcudart.so"),
                             "13.0.48", "PATH")
    assert toolkit.link_home(system, tmp_path / "cache") == system.home  # links as it is
    bare = toolkit.Toolkit(fake_toolkit(tmp_path / "bare", "13.0.88", cudart=None), "13.0.88", "PATH")
    with pytest.raises(toolkit.ToolkitNotFound, match="libcudart"):
        toolkit.link_home(bare, tmp_path / "cache")


def test_ninja_installed_beside_python_is_put_on_path(tmp_path: Path) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "ninja").write_text("#!/bin/sh\n")
    (venv_bin / "ninja").chmod(0o755)
    python = str(venv_bin / "python")
    env = {"PATH": str(tmp_path / "empty")}
    assert toolkit.ensure_ninja_on_path(env, python)
    assert env["PATH"].split(os.pathsep)[0] == str(venv_bin)
    (venv_bin / "ninja").unlink()
    assert not toolkit.ensure_ninja_on_path({"PATH": str(tmp_path / "empty")}, python)


@pytest.fixture
def gpu_machine_without_nvcc(monkeypatch: pytest.MonkeyPatch, site: Path, tmp_path: Path) -> Path:
    """What build.py sees on a GPU machine with a CUDA 13 torch, no system toolkit, and the registry's nvcc."""
    monkeypatch.setattr(ops, "_selected", None)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    for name, value in (("_kernels", None), ("_failure", None), ("_warned", False), ("_compiler", None)):
        monkeypatch.setattr(build, name, value)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(toolkit, "SYSTEM_HOMES", ())
    find_toolkit = toolkit.find_toolkit
    monkeypatch.setattr(toolkit, "find_toolkit", lambda torch_cuda: find_toolkit(torch_cuda, search_paths=[str(site)]))
    # a PATH with the host compiler and ninja but no nvcc
    path = tmp_path / "path"
    path.mkdir()
    for tool in ("c++", "ninja"):
        found = shutil.which(tool, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        assert found, f"the test needs {tool}"
        (path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv("CXX", raising=False)
    for name in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    return site


def test_the_kernels_build_with_the_registry_compiler_and_say_so(gpu_machine_without_nvcc: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    seen: dict[str, Any] = {}
    torch_cuda_home = cpp_extension.CUDA_HOME

    def fake_build(name: str, sources: list[Path], build_dir: Path, **kwargs: Any) -> Any:
        seen["cuda_home"] = cpp_extension.CUDA_HOME
        return "kernels"

    monkeypatch.setattr(build, "build_extension", fake_build)
    stderr = io.StringIO()
    with redirect_stderr(stderr), warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        assert ops.resolve_impl("auto") == "cuda"
    registry_home = (gpu_machine_without_nvcc / "nvidia" / "cu13").resolve()
    assert Path(seen["cuda_home"], "lib64", "libcudart.so").resolve() == registry_home / "lib" / "libcudart.so.13"
    assert cpp_extension.CUDA_HOME == torch_cuda_home  # restored after the build
    lines = [line for line in stderr.getvalue().splitlines() if "compiled by" in line]
    assert len(lines) == 1 and f"nvcc 13.0.88 (registry package: {registry_home / 'bin' / 'nvcc'})" in lines[0]
    assert build.compiler_used() == f"nvcc 13.0.88 (registry package: {registry_home / 'bin' / 'nvcc'})"


def test_without_any_compiler_auto_falls_back_naming_the_extra(gpu_machine_without_nvcc: Path) -> None:
    shutil.rmtree(gpu_machine_without_nvcc / "nvidia")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert ops.resolve_impl("auto") == "ref"
    assert [w.category for w in record] == [build.KernelFallbackWarning]
    assert "no usable nvcc" in str(record[0].message) and "augstudy[cuda-build]" in str(record[0].message)


@pytest.mark.gpu
def test_on_a_gpu_the_kernels_build_with_a_compiler_of_torchs_cuda_version() -> None:
    build.load_kernels()
    used = build.compiler_used()
    assert used is not None and used.startswith(f"nvcc {torch.version.cuda.split('.')[0]}.")
