"""bench/cuda_build_check.py: the kernels compile with the registry's CUDA compiler, and a broken kernel fails it.

The slow tests download the CUDA compiler (~100 MB) into the toolchain cache once; where the package
registry cannot be reached the check says so, and the tests skip only when an independent pip probe
agrees (a wrong "unreachable" from the check fails them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cuda_build_check.py"
SOURCES = ROOT / "stylegan2ada" / "ops" / "cuda"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cuda_build_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=environment,
                          timeout=timeout, check=False)


def _skip_if_registry_unreachable(check_said: str, scratch: Path) -> None:
    """The check reported the registry unreachable: skip only when an independent probe agrees (pip
    downloading the small cuda-toolkit metapackage alone into `scratch`); when the registry answers, the
    check's verdict was wrong and the test fails."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--no-deps",
                            "--only-binary=:all:", "--dest", str(scratch), "cuda-toolkit"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert probe.returncode != 0, f"the package registry answers, yet the check said: {check_said}"
    pytest.skip(f"the package registry could not be reached: {check_said}")


def test_compiler_diagnostics_are_read_with_file_and_line(tmp_path: Path) -> None:
    check = _module()
    output = "\n".join([
        f"{tmp_path}/bias_act.cu(21): error: identifier \"grid_dim_x\" is undefined",
        f"{tmp_path}/upfirdn2d.cuh(88): warning #177-D: variable \"k\" was declared but never referenced",
        f"{tmp_path}/ops.cpp:14:3: error: 'foo' was not declared in this scope",
        "/usr/include/c++/12/bits/stl_vector.h:5:1: warning: something in a system header",
        "ptxas warning : Registers are spilled to local memory in function 'kernel', 8 bytes spill stores",
        "nvcc fatal   : Unsupported gpu architecture 'compute_35'",
        "1 error detected in the compilation of \"bias_act.cu\".",
    ])
    found = check.diagnostics(output, tmp_path)
    assert [(d["kind"], d["file"], d["line"]) for d in found] == [
        ("error", "bias_act.cu", 21), ("warning", "upfirdn2d.cuh", 88), ("error", "ops.cpp", 14),
        ("warning", "/usr/include/c++/12/bits/stl_vector.h", 5), ("warning", "ptxas", None), ("error", "nvcc", None)]
    assert found[0]["message"] == 'identifier "grid_dim_x" is undefined'


def test_ptxas_statistics_are_read_per_kernel() -> None:
    check = _module()
    mangled = "_ZN3sg212_GLOBAL__N_115bias_act_kernelIfEEvv"
    output = "\n".join([
        "ptxas info    : 0 bytes gmem",
        f"ptxas info    : Compiling entry function '{mangled}' for 'sm_80'",
        f"ptxas info    : Function properties for {mangled}",
        "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads",
        "ptxas info    : Used 46 registers, used 1 barriers, 1024 bytes smem, 432 bytes cmem[0]",
        "ptxas info    : Compiling entry function '_Z5otherv' for 'sm_80'",
        "ptxas info    : Function properties for _Z5otherv",
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads",
        "ptxas info    : Used 12 registers, used 0 barriers, 400 bytes cmem[0]",
    ])
    kernels = check.ptxas_kernels(output)
    assert [(k["registers"], k["spill_stores"], k["spill_loads"], k["stack_bytes"]) for k in kernels] == [
        (46, 8, 4, 16), (12, 0, 0, 0)]
    assert kernels[0]["static_smem_bytes"] == 1024
    if shutil.which("c++filt"):
        assert kernels[1]["kernel"] == "other()"


def test_an_unreachable_registry_is_reported_as_a_skip_not_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = "http://127.0.0.1:9/simple"  # the discard port on this machine: nothing listens
    (tmp_path / "no-wheels").mkdir()
    for name, value in (("PIP_INDEX_URL", unreachable), ("PIP_EXTRA_INDEX_URL", unreachable),
                        ("PIP_FIND_LINKS", str(tmp_path / "no-wheels")), ("PIP_RETRIES", "1"), ("PIP_TIMEOUT", "5")):
        monkeypatch.setenv(name, value)
    code = _module().main(["--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                           "--torch-headers", "installed"])
    assert code == 3
    assert "SKIPPED: the package registry could not be reached" in capsys.readouterr().err
    assert not (tmp_path / "out" / "cuda_build_check.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--archs", "sm_80"], "--archs: sm_80 is not a compute capability"),
    (["--files", "kernel.cu"], "--files: choose from ops.cpp, bias_act.cu, upfirdn2d.cu"),
])
def test_bad_options_are_refused_in_one_line(args: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _module().parse_args(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_sources_without_the_kernels_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _module().parse_args(["--sources", str(tmp_path)])
    assert f"--sources {tmp_path}: no ops.cpp there" in capsys.readouterr().err


@pytest.mark.slow
def test_a_broken_kernel_fails_the_check_naming_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "cuda"
    shutil.copytree(SOURCES, broken)
    source = broken / "bias_act.cu"
    lines = source.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "const int64_t stride =" in line)
    lines[number - 1] = lines[number - 1].replace("gridDim.x", "grid_dim_x")  # an undeclared name
    source.write_text("\n".join(lines) + "\n")
    done = _run("--sources", str(broken), "--files", "bias_act.cu", "--archs", "7.5", "--torch-headers", "installed",
                "--out", str(tmp_path / "out"))
    if done.returncode == 3:
        _skip_if_registry_unreachable(done.stderr.strip().splitlines()[-1], tmp_path / "probe")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: bias_act.cu:{number}: identifier \"grid_dim_x\" is undefined (arch 7.5)" in done.stderr
    record = json.loads((tmp_path / "out" / "cuda_build_check.json").read_text())
    assert record["ok"] is False
    assert record["toolkit"]["origin"].startswith("cuda-toolkit[nvcc,cccl]==")  # the registry's, not the system's
    (entry,) = record["objects"]
    assert (entry["arch"], entry["source"], entry["ok"]) == ("7.5", "bias_act.cu", False)
    assert [(e["file"], e["line"]) for e in entry["errors"]] == [("bias_act.cu", number)]


@pytest.mark.slow
def test_the_registry_compiler_builds_and_links_a_cuda_library_through_link_home(tmp_path: Path) -> None:
    """What torch's builder does on a GPU machine without a system toolkit: nvcc from the registry, and
    ``-L<home>/lib64 -lcudart`` against the registry's versioned runtime (the one torch loads)."""
    from stylegan2ada.ops import toolkit

    check = _module()
    try:
        registry = check.install_toolkit(check.default_cache(), check.FALLBACK_TOOLKIT)
    except check.RegistryUnreachable as error:
        _skip_if_registry_unreachable(str(error), tmp_path / "probe")
    home = toolkit.link_home(registry, tmp_path / "cache")
    (tmp_path / "k.cu").write_text("__global__ void twice(float* x) { x[threadIdx.x] *= 2.f; }\n"
                                   "extern \"C\" int launch(float* x) { twice<<<1, 32>>>(x); "
                                   "return static_cast<int>(cudaGetLastError()); }\n")
    done = subprocess.run([str(home / "bin" / "nvcc"), "-shared", "-Xcompiler", "-fPIC",
                           "-gencode=arch=compute_75,code=sm_75", str(tmp_path / "k.cu"), "-o",
                           str(tmp_path / "libk.so"), f"-L{home / 'lib64'}", "-lcudart"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    needed = subprocess.run(["readelf", "-d", str(tmp_path / "libk.so")], capture_output=True, text=True,
                            check=True).stdout
    assert "libcudart.so.13" in needed
