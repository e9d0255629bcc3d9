"""CUDA kernels of stylegan2ada.ops.

Three layers, from any machine to a GPU:
- selection (auto/ref/cuda), the single fallback warning, the build cache key, the build lock and
  a real ninja build, all on CPU;
- the kernels' own logic: the index arithmetic and activation math in ``ops/cuda/*.cuh`` compiled
  for the host, launched block by block the way the GPU runs them (shared memory poisoned with
  NaN), behind the Python autograd wrappers, against the reference ops, gradcheck included;
- ``gpu`` tests: the compiled kernels against the reference at every op call the 32-1024 px
  networks and the ADA pipeline make, forward, first and second derivatives, FP32 and FP16.
"""

from __future__ import annotations

import ctypes
import importlib
import math
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from stylegan2ada import ops
from stylegan2ada.augment import make_augment_pipe
from stylegan2ada.ops import bias_act, build, setup_filter, upfirdn2d
from stylegan2ada.ops.bias_act import ACTIVATIONS

bias_act_module = importlib.import_module("stylegan2ada.ops.bias_act")
upfirdn2d_module = importlib.import_module("stylegan2ada.ops.upfirdn2d")
networks_module = importlib.import_module("stylegan2ada.networks")

DOUBLE = torch.float64
CUDA_AVAILABLE = torch.cuda.is_available()


@pytest.fixture
def selection(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No process-wide selection, no environment variable, no cached build outcome."""
    monkeypatch.setattr(ops, "_selected", None)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    monkeypatch.setattr(build, "_kernels", None)
    monkeypatch.setattr(build, "_failure", None)
    monkeypatch.setattr(build, "_warned", False)
    return monkeypatch


def _on_cuda() -> Any:
    """Stands for a CUDA tensor where routing only looks at the device (none exists here)."""
    return SimpleNamespace(device=torch.device("cuda", 0))


def _failing_build(calls: list[str]) -> Callable[..., Any]:
    def fake_build(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        raise build.KernelsUnavailable("the build failed: bias_act.cu(12): error: expected a ';'")

    return fake_build


# ------------------------------------------------------------------------------ selection


def test_env_var_and_set_impl_select_the_mode(selection: pytest.MonkeyPatch) -> None:
    assert ops.selected_impl() == "auto"
    selection.setenv(ops.ENV_VAR, " REF ")
    assert ops.selected_impl() == "ref"
    assert ops.get_impl() == "ref"
    ops.set_impl("auto")  # overrides the environment
    assert ops.selected_impl() == "auto"
    selection.setenv(ops.ENV_VAR, "triton")
    with pytest.raises(ValueError, match="set_impl"):
        ops.set_impl("triton")
    selection.setattr(ops, "_selected", None)
    with pytest.raises(ValueError, match=ops.ENV_VAR):
        ops.selected_impl()
    with pytest.raises(ValueError, match="impl must be one of"):
        bias_act(torch.zeros(2, 3), impl="fast")


def test_cpu_tensors_use_the_reference_without_building_or_warning(selection: pytest.MonkeyPatch) -> None:
    def must_not_build() -> None:
        raise AssertionError("CPU tensors must never trigger a kernel build")

    selection.setattr(build, "load_kernels", must_not_build)
    x = torch.randn(2, 3, 8, 8)
    b = torch.randn(3)
    f = setup_filter([1, 3, 3, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for impl in (None, "auto", "ref"):
            torch.testing.assert_close(
                bias_act(x, b, act="lrelu", impl=impl), bias_act(x, b, act="lrelu", impl="ref")
            )
            assert upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], impl=impl).shape == (2, 3, 16, 16)
        assert ops.kernels_for("auto", x) is None


def test_auto_falls_back_once_with_the_reason(selection: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    selection.setattr(build, "missing_prerequisite", lambda: None)
    selection.setattr(build, "build_extension", _failing_build(calls))
    selection.setattr(torch.cuda, "is_available", lambda: True)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            assert ops.kernels_for(None, _on_cuda()) is None
        assert ops.get_impl() == "ref"
        assert ops.resolve_impl("auto") == "ref"
    assert [w.category for w in record] == [build.KernelFallbackWarning]
    message = str(record[0].message)
    assert "bias_act.cu(12): error: expected a ';'" in message and "reference ops" in message
    assert len(calls) == 1  # the failure is remembered, not retried per call
    with pytest.raises(RuntimeError, match="cannot be used: the build failed"):
        ops.kernels_for("cuda", _on_cuda())


def test_auto_skips_the_kernels_for_what_they_do_not_support(selection: pytest.MonkeyPatch) -> None:
    def must_not_build() -> None:
        raise AssertionError("unsupported input must not trigger a build")

    selection.setattr(build, "load_kernels", must_not_build)
    selection.setattr(build, "try_load_kernels", must_not_build)
    assert ops.kernels_for("auto", _on_cuda(), unsupported="torch.bfloat16 input") is None
    with pytest.raises(RuntimeError, match="do not support torch.bfloat16 input"):
        ops.kernels_for("cuda", _on_cuda(), unsupported="torch.bfloat16 input")
    x16 = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert "bfloat16" in bias_act_module._unsupported_by_kernel(x16, "lrelu", 0.2)
    assert "negative alpha" in bias_act_module._unsupported_by_kernel(torch.zeros(2), "lrelu", -0.1)
    assert bias_act_module._unsupported_by_kernel(torch.zeros(2), "lrelu", 0.2) is None
    f = setup_filter([1, 3, 3, 1]).requires_grad_(True)
    assert "filter" in upfirdn2d_module._unsupported_by_kernel(torch.zeros(1, 1, 4, 4), f)


@pytest.mark.skipif(torch.version.cuda is not None, reason="checks the reason a CPU-only torch gives")
def test_cpu_only_torch_reports_its_real_reason(selection: pytest.MonkeyPatch) -> None:
    reason = build.missing_prerequisite()
    assert reason is not None and "no CUDA support" in reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.get_impl() == "ref"  # no CUDA tensor can exist: nothing to warn about
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert ops.kernels_for("auto", _on_cuda()) is None
        assert ops.kernels_for("auto", _on_cuda()) is None
    assert [w.category for w in record] == [build.KernelFallbackWarning]
    assert "no CUDA support" in str(record[0].message)
    for call in (lambda: ops.set_impl("cuda"), lambda: bias_act(torch.zeros(2, 3), impl="cuda")):
        with pytest.raises(RuntimeError, match="CUDA kernels"):
            call()
    assert ops.selected_impl() == "auto"  # a refused set_impl changes nothing
    selection.setenv(ops.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="no CUDA support"):
        ops.get_impl()


def test_cuda_mode_refuses_cpu_tensors(selection: pytest.MonkeyPatch) -> None:
    selection.setattr(build, "load_kernels", lambda: SimpleNamespace())
    with pytest.raises(RuntimeError, match="need CUDA tensors, got one on cpu"):
        upfirdn2d(torch.zeros(1, 1, 4, 4), None, impl="cuda")
    ops.set_impl("cuda")
    assert ops.get_impl() == "cuda"
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        bias_act(torch.zeros(2, 3))


# ------------------------------------------------------------------------------ build machinery


def test_cache_root_honours_torch_extensions_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    assert build.cache_root() == tmp_path / "ext"
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_root() == tmp_path / "xdg" / "stylegan2ada" / "ops"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert build.cache_root() == tmp_path / "home" / ".cache" / "stylegan2ada" / "ops"


def test_build_key_follows_sources_and_toolchain(tmp_path: Path) -> None:
    sources = tmp_path / "cuda"
    shutil.copytree(build.SOURCE_DIR, sources)
    fingerprint = build.toolchain_fingerprint()
    key = build.build_key(sources, fingerprint=fingerprint)
    assert key == build.build_key(sources, fingerprint=dict(fingerprint))
    assert key == build.build_key(build.SOURCE_DIR, fingerprint=fingerprint)  # content, not location
    header = sources / "upfirdn2d.cuh"
    header.write_text(header.read_text() + "\n// edited\n")
    edited = build.build_key(sources, fingerprint=fingerprint)
    assert edited != key
    assert build.build_key(sources, fingerprint={**fingerprint, "torch": "9.9.9"}) not in (key, edited)
    assert set(build.SOURCES + build.HEADERS) == {p.name for p in build.SOURCE_DIR.iterdir() if p.is_file()}


def test_file_lock_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "build.lock"
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, most_inside
        with build.file_lock(lock):
            with guard:
                inside += 1
                most_inside = max(most_inside, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1 and lock.exists()


def test_ranks_build_once_and_stale_torch_locks_are_cleared(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from torch.utils import cpp_extension

    build_dir = tmp_path / "build"
    build_dir.mkdir()
    (build_dir / "lock").write_text("left behind by a killed builder")
    builds: list[float] = []
    overlapping = threading.Event()
    busy = threading.Lock()

    def fake_load(name: str, sources: list[str], build_directory: str, **kwargs: Any) -> Any:
        assert not (Path(build_directory) / "lock").exists()
        if not busy.acquire(blocking=False):
            overlapping.set()
            return None
        try:
            if not (Path(build_directory) / f"{name}.so").exists():
                builds.append(time.monotonic())
                time.sleep(0.1)
                (Path(build_directory) / f"{name}.so").write_text("built")
            return SimpleNamespace(name=name)
        finally:
            busy.release()

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    results: list[Any] = []
    ranks = [
        threading.Thread(target=lambda: results.append(build.build_extension("probe", [], build_dir)))
        for _ in range(3)
    ]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join()
    assert not overlapping.is_set()
    assert len(builds) == 1 and [r.name for r in results] == ["probe"] * 3


def test_real_ninja_build_caches_and_reports_compiler_errors(tmp_path: Path) -> None:
    """The same load path as the CUDA kernels, with a tiny C++ module (compiles in seconds)."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available() or shutil.which("c++") is None:
        pytest.skip("needs ninja and a C++ compiler")
    source = tmp_path / "probe.cpp"
    source.write_text(
        "#include <Python.h>\n"
        'static PyModuleDef def_ = {PyModuleDef_HEAD_INIT, "sg2_probe", nullptr, -1, nullptr};\n'
        "PyMODINIT_FUNC PyInit_sg2_probe() {\n"
        "  PyObject* m = PyModule_Create(&def_);\n"
        '  PyModule_AddIntConstant(m, "answer", 42);\n'
        "  return m;\n"
        "}\n"
    )
    build_dir = tmp_path / "cache" / "sg2_probe-key"
    module = build.build_extension("sg2_probe", [source], build_dir)
    assert module.answer == 42
    built = build_dir / "sg2_probe.so"
    stamp = built.stat().st_mtime_ns
    assert build.build_extension("sg2_probe", [source], build_dir).answer == 42
    assert built.stat().st_mtime_ns == stamp  # loaded from the cache, not rebuilt

    broken = tmp_path / "broken.cpp"
    broken.write_text("int broken( {\n")
    broken_dir = tmp_path / "cache" / "sg2_broken-key"
    with pytest.raises(build.KernelsUnavailable, match="the build failed: .*error") as raised:
        build.build_extension("sg2_broken", [broken], broken_dir)
    log = broken_dir / build.ERROR_LOG_NAME
    assert str(log) in str(raised.value) and "broken.cpp" in log.read_text()


# ------------------------------------------------------------------------------ host-emulated kernels

_HARNESS = r"""
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "bias_act.cuh"
#include "upfirdn2d.cuh"

using namespace sg2;

template <typename T>
static void run_bias_act(const T* g, const T* b, const T* xref, const T* yref, const T* dy, T* out,
                         int64_t numel, int64_t inner, int64_t channels, int act, int mode, double alpha,
                         double gain, double clamp) {
  const BiasActScalars<T> s{act, mode, static_cast<T>(alpha), static_cast<T>(gain), static_cast<T>(clamp)};
  for (int64_t i = 0; i < numel; ++i) bias_act_at<T, T>(s, i, inner, channels, g, b, xref, yref, dy, out);
}

// Every block in turn: all its threads stage the tile, then all compute (the barrier between).
// Shared memory is poisoned with NaN and surrounded by NaN guards, so reading anything that was
// not staged shows up in the output.
template <int kUpX, int kUpY, int kDownX, int kDownY, int kFh, int kFw, typename T>
static void run_tiled(const Upfirdn2dParams& p, const T* x, const T* f, T* y) {
  const int threads = upfirdn2d_threads(p);
  const int grid_x = (p.out_w + p.tile_out_w - 1) / p.tile_out_w;
  const int grid_y = (p.out_h + p.tile_out_h - 1) / p.tile_out_h;
  const int64_t guard = 1 << 12;
  const int64_t staged = static_cast<int64_t>(p.tile_in_h) * p.tile_in_w + p.filter_h * p.filter_w;
  std::vector<T> shared(staged + 2 * guard);
  T* tile = shared.data() + guard;
  T* filter = tile + p.tile_in_h * p.tile_in_w;
  for (int64_t plane = 0; plane < p.planes; ++plane) {
    for (int by = 0; by < grid_y; ++by) {
      for (int bx = 0; bx < grid_x; ++bx) {
        std::fill(shared.begin(), shared.end(), std::numeric_limits<T>::quiet_NaN());
        const TileOrigin o = tile_origin<kUpX, kUpY, kDownX, kDownY>(p, bx, by);
        for (int tid = 0; tid < threads; ++tid) upfirdn2d_load_tile(p, plane, o, x, f, tile, filter, tid, threads);
        for (int tid = 0; tid < threads; ++tid) {
          upfirdn2d_compute_tile<kUpX, kUpY, kDownX, kDownY, kFh, kFw>(p, plane, o, tile, filter, y, tid, threads);
        }
      }
    }
  }
}

// Mirrors the host launcher of upfirdn2d.cu; returns -1 for the direct kernel, else the variant.
template <typename T>
static int run_upfirdn2d(const T* x, const T* f, T* y, int64_t planes, int in_h, int in_w, int fh, int fw,
                         int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0,
                         int pad_y1, int64_t shared_limit) {
  Upfirdn2dParams p{};
  p.in_h = in_h; p.in_w = in_w; p.up_x = up_x; p.up_y = up_y; p.down_x = down_x; p.down_y = down_y;
  p.pad_x0 = pad_x0; p.pad_y0 = pad_y0; p.filter_h = fh; p.filter_w = fw; p.planes = planes;
  p.out_h = (in_h * up_y + pad_y0 + pad_y1 - fh) / down_y + 1;
  p.out_w = (in_w * up_x + pad_x0 + pad_x1 - fw) / down_x + 1;
  if (!upfirdn2d_choose_tile(p, sizeof(T), shared_limit)) {
    for (int64_t i = 0; i < planes * p.out_h * p.out_w; ++i) upfirdn2d_direct_element(p, i, x, f, y);
    return -1;
  }
  const Upfirdn2dVariant variant = upfirdn2d_variant(p);
  switch (variant) {
    case kFilter4: run_tiled<1, 1, 1, 1, 4, 4>(p, x, f, y); break;
    case kUp2Filter4: run_tiled<2, 2, 1, 1, 4, 4>(p, x, f, y); break;
    case kDown2Filter4: run_tiled<1, 1, 2, 2, 4, 4>(p, x, f, y); break;
    default: run_tiled<0, 0, 0, 0, 0, 0>(p, x, f, y);
  }
  return variant;
}

#define BIAS_ACT(NAME, T)                                                                              \
  extern "C" void NAME(const T* g, const T* b, const T* xref, const T* yref, const T* dy, T* out,      \
                       int64_t numel, int64_t inner, int64_t channels, int act, int mode, double alpha, \
                       double gain, double clamp) {                                                    \
    run_bias_act(g, b, xref, yref, dy, out, numel, inner, channels, act, mode, alpha, gain, clamp);    \
  }
#define UPFIRDN2D(NAME, T)                                                                              \
  extern "C" int NAME(const T* x, const T* f, T* y, int64_t planes, int in_h, int in_w, int fh, int fw, \
                      int up_x, int up_y, int down_x, int down_y, int pad_x0, int pad_x1, int pad_y0,   \
                      int pad_y1, int64_t shared_limit) {                                               \
    return run_upfirdn2d(x, f, y, planes, in_h, in_w, fh, fw, up_x, up_y, down_x, down_y, pad_x0, pad_x1, \
                         pad_y0, pad_y1, shared_limit);                                                 \
  }
BIAS_ACT(bias_act_f32, float)
BIAS_ACT(bias_act_f64, double)
UPFIRDN2D(upfirdn2d_f32, float)
UPFIRDN2D(upfirdn2d_f64, double)
"""

_PTR = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_F64 = ctypes.c_double
SHARED_BYTES = 48 * 1024  # what upfirdn2d.cu uses


def _pointer(t: torch.Tensor) -> int | None:
    return t.data_ptr() if t.numel() > 0 else None


class EmulatedKernels:
    """The compiled module's interface (ops.cpp), run by the kernels' host-compiled logic.

    It checks what ops.cpp checks, so the Python wrappers are held to the real contract, and it
    records which upfirdn2d kernel variant each call took.
    """

    def __init__(self, library: ctypes.CDLL, shared_limit: int = SHARED_BYTES) -> None:
        self.library = library
        self.shared_limit = shared_limit
        self.variants: set[int] = set()

    def bias_act(
        self,
        x: torch.Tensor,
        b: torch.Tensor,
        xref: torch.Tensor,
        yref: torch.Tensor,
        dy: torch.Tensor,
        mode: int,
        dim: int,
        act: int,
        alpha: float,
        gain: float,
        clamp: float,
    ) -> torch.Tensor:
        assert x.is_contiguous() and x.dtype in (torch.float32, DOUBLE)
        if b.numel() > 0:
            assert b.shape == (x.shape[dim],) and b.dtype == x.dtype and b.is_contiguous()
        for saved in (xref, yref, dy):
            assert saved.numel() == 0 or (
                saved.shape == x.shape and saved.dtype == x.dtype and saved.is_contiguous()
            )
        if mode > 0:
            assert act < 3 or xref.numel() > 0, "activation needs xref"
            assert act >= 3 or (act == 0 and clamp < 0) or yref.numel() > 0, "activation needs yref"
            assert mode != 2 or dy.numel() > 0
        out = torch.empty_like(x)
        inner = math.prod(x.shape[dim + 1 :])
        channels = x.shape[dim] if b.numel() > 0 else 1
        run = self.library.bias_act_f32 if x.dtype == torch.float32 else self.library.bias_act_f64
        run(
            *(_pointer(t) for t in (x, b, xref, yref, dy, out)),
            x.numel(),
            inner,
            channels,
            act,
            mode,
            alpha,
            gain,
            clamp,
        )
        return out

    def upfirdn2d(
        self,
        x: torch.Tensor,
        f: torch.Tensor,
        up_x: int,
        up_y: int,
        down_x: int,
        down_y: int,
        pad_x0: int,
        pad_x1: int,
        pad_y0: int,
        pad_y1: int,
    ) -> torch.Tensor:
        assert x.is_contiguous() and x.ndim == 4 and f.ndim == 2 and f.is_contiguous()
        assert f.dtype == (DOUBLE if x.dtype == DOUBLE else torch.float32)
        batch, channels, height, width = x.shape
        fh, fw = f.shape
        out_h = (height * up_y + pad_y0 + pad_y1 - fh) // down_y + 1
        out_w = (width * up_x + pad_x0 + pad_x1 - fw) // down_x + 1
        y = torch.full([batch, channels, out_h, out_w], math.nan, dtype=x.dtype)
        run = self.library.upfirdn2d_f32 if x.dtype == torch.float32 else self.library.upfirdn2d_f64
        self.variants.add(
            run(
                _pointer(x),
                _pointer(f),
                _pointer(y),
                batch * channels,
                height,
                width,
                fh,
                fw,
                up_x,
                up_y,
                down_x,
                down_y,
                pad_x0,
                pad_x1,
                pad_y0,
                pad_y1,
                self.shared_limit,
            )
        )
        return y


@pytest.fixture(scope="session")
def emulator_library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("needs a C++ compiler to build the host emulation of the kernels")
    folder = tmp_path_factory.mktemp("kernel_emulation")
    (folder / "harness.cpp").write_text(_HARNESS)
    subprocess.run(
        [
            compiler,
            "-O2",
            "-std=c++17",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{build.SOURCE_DIR}",
            "harness.cpp",
            "-o",
            "harness.so",
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    library = ctypes.CDLL(str(folder / "harness.so"))
    for dtype_name in ("f32", "f64"):
        getattr(library, f"bias_act_{dtype_name}").argtypes = (
            [_PTR] * 6 + [_I64] * 3 + [_INT] * 2 + [_F64] * 3
        )
        upfirdn = getattr(library, f"upfirdn2d_{dtype_name}")
        upfirdn.argtypes = [_PTR] * 3 + [_I64] + [_INT] * 12 + [_I64]
        upfirdn.restype = _INT
    return library


@pytest.fixture
def emulated(emulator_library: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedKernels]:
    """Route CPU calls of bias_act/upfirdn2d through the emulated kernels (impl="ref" stays ref)."""
    kernels = EmulatedKernels(emulator_library)

    def kernels_for(
        impl: str | None, x: torch.Tensor, unsupported: str | None = None
    ) -> EmulatedKernels | None:
        return None if impl == "ref" or unsupported is not None else kernels

    monkeypatch.setattr(bias_act_module, "kernels_for", kernels_for)
    monkeypatch.setattr(upfirdn2d_module, "kernels_for", kernels_for)
    yield kernels


def _grad_or_zero(grads: tuple[torch.Tensor | None, ...], like: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


def _compare_through_second_order(
    op: Callable[..., torch.Tensor], inputs: list[torch.Tensor], rtol: float, atol: float, seed: int = 0
) -> None:
    """op(*inputs, impl=None) against op(*inputs, impl="ref"): values, gradients for a random
    upstream gradient w, and the gradient of <grad, v> with respect to the inputs and w (what R1
    and path-length regularisation compute)."""
    results = []
    for impl in (None, "ref"):
        leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
        y = op(*leaves, impl=impl)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=y.dtype)
        w.requires_grad_(True)
        grads = torch.autograd.grad((y * w).sum(), leaves, create_graph=True)
        v = [
            torch.randn(g.shape, generator=torch.Generator().manual_seed(seed + 2 + i), dtype=g.dtype)
            for i, g in enumerate(grads)
        ]
        inner = sum((g * vi).sum() for g, vi in zip(grads, v))
        second = (
            torch.autograd.grad(inner, leaves + [w], allow_unused=True)
            if inner.requires_grad
            else [None] * (len(leaves) + 1)
        )
        results.append((y.detach(), [g.detach() for g in grads], _grad_or_zero(tuple(second), leaves + [w])))
    (y_k, g_k, s_k), (y_r, g_r, s_r) = results
    assert not torch.isnan(y_k).any()
    torch.testing.assert_close(y_k, y_r, rtol=rtol, atol=atol)
    for a, b in zip(g_k + s_k, g_r + s_r):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _bias_act_inputs(
    dtype: torch.dtype, seed: int, shape: tuple[int, ...] = (3, 5, 4, 2), dim: int = 1
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype) * 2
    b = torch.randn(shape[dim], generator=gen, dtype=dtype)
    return [x, b]


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.8])
@pytest.mark.parametrize("dtype", [torch.float32, DOUBLE])
def test_emulated_bias_act_matches_reference(
    emulated: EmulatedKernels, act: str, clamp: float | None, dtype: torch.dtype
) -> None:
    tol = 1e-5 if dtype == torch.float32 else 1e-12

    def op(x: torch.Tensor, b: torch.Tensor, impl: str | None) -> torch.Tensor:
        return bias_act(x, b, act=act, gain=1.3, clamp=clamp, impl=impl)

    _compare_through_second_order(op, _bias_act_inputs(dtype, seed=len(act)), rtol=tol, atol=tol)


@pytest.mark.parametrize("dim", [0, 1, 3, -1])
def test_emulated_bias_act_bias_along_any_dim(emulated: EmulatedKernels, dim: int) -> None:
    x, b = _bias_act_inputs(DOUBLE, seed=dim, dim=dim % 4)

    def op(x_: torch.Tensor, b_: torch.Tensor, impl: str | None) -> torch.Tensor:
        return bias_act(x_, b_, dim=dim, act="lrelu", alpha=0.3, impl=impl)

    _compare_through_second_order(op, [x, b], rtol=1e-12, atol=1e-12)

    def no_bias(x_: torch.Tensor, impl: str | None) -> torch.Tensor:
        return bias_act(x_, act="swish", clamp=0.5, impl=impl)

    _compare_through_second_order(no_bias, [x], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_emulated_bias_act_gradgradcheck(emulated: EmulatedKernels, act: str) -> None:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 3, 4, dtype=DOUBLE, generator=gen)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)  # away from the kinks at 0
    b = torch.zeros(3, dtype=DOUBLE, requires_grad=True)

    def fn(x_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return bias_act(x_, b_, act=act, gain=1.3, clamp=5.0)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


UPFIRDN_CASES = [
    # up, down, padding, flip, separable, taps
    ((1, 1), (1, 1), [0, 0, 0, 0], False, False, 4),
    ((2, 2), (1, 1), [2, 1, 2, 1], False, False, 4),
    ((1, 1), (2, 2), [1, 1, 1, 1], True, False, 4),
    ((2, 1), (1, 2), [3, 0, -1, 2], False, True, 4),
    ((3, 3), (2, 2), [-1, 2, 1, 1], True, True, 5),
    ((2, 2), (1, 1), [6, 5, 6, 5], False, True, 12),
    ((1, 1), (2, 2), [-2, -3, -2, -3], True, True, 12),
    ((4, 2), (3, 1), [0, 3, 2, -2], False, False, 3),
]


@pytest.mark.parametrize(("up", "down", "pad", "flip", "separable", "taps"), UPFIRDN_CASES)
@pytest.mark.parametrize("shared_limit", [SHARED_BYTES, 1536, 0], ids=["tiles", "small-tiles", "direct"])
@pytest.mark.parametrize("dtype", [torch.float32, DOUBLE])
def test_emulated_upfirdn2d_matches_reference(
    emulated: EmulatedKernels,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: list[int],
    flip: bool,
    separable: bool,
    taps: int,
    shared_limit: int,
    dtype: torch.dtype,
) -> None:
    emulated.shared_limit = shared_limit
    gen = torch.Generator().manual_seed(taps)
    x = torch.randn(2, 3, 19, 23, generator=gen, dtype=dtype)
    f = setup_filter(torch.rand(taps, generator=gen) + 0.2, separable=separable).to(dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12

    def op(x_: torch.Tensor, impl: str | None) -> torch.Tensor:
        return upfirdn2d(x_, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.7, impl=impl)

    _compare_through_second_order(op, [x], rtol=tol, atol=tol)
    if shared_limit == 0:
        assert emulated.variants == {-1}  # nothing fits: the direct kernel
    elif shared_limit == SHARED_BYTES:
        assert -1 not in emulated.variants


@pytest.mark.parametrize(("up", "down", "pad"), [(2, 1, [2, 1, 1, 2]), (1, 2, [1, 2, 0, 1]), (3, 2, 1)])
def test_emulated_upfirdn2d_gradgradcheck(
    emulated: EmulatedKernels, up: int, down: int, pad: int | list[int]
) -> None:
    x = torch.randn(1, 2, 5, 6, dtype=DOUBLE, generator=torch.Generator().manual_seed(3), requires_grad=True)
    f = setup_filter([1, 2, 3, 1]).double()

    def fn(x_: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x_, f, up=up, down=down, padding=pad, flip_filter=True, gain=1.5)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ------------------------------------------------------------------------------ op calls of the networks


@dataclass(frozen=True)
class BiasActCall:
    shape: tuple[int, ...]
    dtype: torch.dtype
    has_bias: bool
    dim: int
    act: str
    alpha: float | None
    gain: float | None
    clamp: float | None

    def inputs(self, device: torch.device, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(self.shape, generator=gen, device=device).to(self.dtype)
        if not self.has_bias:
            return [x]
        return [x, torch.randn(self.shape[self.dim], generator=gen, device=device).to(self.dtype)]

    def __call__(self, x: torch.Tensor, b: torch.Tensor | None = None, *, impl: str | None) -> torch.Tensor:
        return bias_act(
            x, b, dim=self.dim, act=self.act, alpha=self.alpha, gain=self.gain, clamp=self.clamp, impl=impl
        )


@dataclass(frozen=True)
class Upfirdn2dCall:
    shape: tuple[int, ...]
    dtype: torch.dtype
    filter_taps: tuple[float, ...]
    filter_shape: tuple[int, ...]
    up: tuple[int, int]
    down: tuple[int, int]
    pad: tuple[int, int, int, int]
    flip: bool
    gain: float

    def inputs(self, device: torch.device, seed: int) -> list[torch.Tensor]:
        gen = torch.Generator(device=device).manual_seed(seed)
        return [torch.randn(self.shape, generator=gen, device=device).to(self.dtype)]

    def __call__(self, x: torch.Tensor, *, impl: str | None) -> torch.Tensor:
        f = torch.tensor(self.filter_taps, device=x.device).reshape(self.filter_shape)
        return upfirdn2d(
            x,
            f,
            up=self.up,
            down=self.down,
            padding=self.pad,
            flip_filter=self.flip,
            gain=self.gain,
            impl=impl,
        )


def record_network_calls(
    resolution: int,
    device: torch.device,
    batch: int,
    channel_base: int | None = None,
    channel_max: int | None = None,
    num_fp16_res: int = 0,
) -> list[BiasActCall | Upfirdn2dCall]:
    """Every distinct bias_act/upfirdn2d call of G, the bgc ADA pipeline and D on one batch."""
    calls: dict[Any, None] = {}
    real_bias_act = networks_module.bias_act
    real_ref = upfirdn2d_module._upfirdn2d_ref

    def recording_bias_act(
        x: torch.Tensor,
        b: torch.Tensor | None = None,
        dim: int = 1,
        act: str = "linear",
        alpha: float | None = None,
        gain: float | None = None,
        clamp: float | None = None,
        impl: str | None = None,
    ) -> torch.Tensor:
        calls[BiasActCall(tuple(x.shape), x.dtype, b is not None, dim % x.ndim, act, alpha, gain, clamp)] = (
            None
        )
        return real_bias_act(x, b, dim, act, alpha, gain, clamp, impl="ref")

    def recording_ref(
        x: torch.Tensor,
        f: torch.Tensor,
        up: tuple[int, int],
        down: tuple[int, int],
        pad: tuple[int, int, int, int],
        flip_filter: bool,
        gain: float,
    ) -> torch.Tensor:
        taps = tuple(float(v) for v in f.detach().flatten().cpu())
        calls[
            Upfirdn2dCall(tuple(x.shape), x.dtype, taps, tuple(f.shape), up, down, pad, flip_filter, gain)
        ] = None
        return real_ref(x, f, up, down, pad, flip_filter, gain)

    patcher = pytest.MonkeyPatch()
    try:
        patcher.setattr(networks_module, "bias_act", recording_bias_act)
        patcher.setattr(upfirdn2d_module, "_upfirdn2d_ref", recording_ref)
        patcher.setattr(upfirdn2d_module, "kernels_for", lambda impl, x, unsupported=None: None)
        G, D = networks_module.build_networks(
            "auto",
            resolution,
            3,
            channel_base=channel_base,
            channel_max=channel_max,
            mapping_layers=2,
            num_fp16_res=num_fp16_res,
            conv_clamp=256 if num_fp16_res else None,
            seed=0,
        )
        G, D = G.to(device), D.to(device)
        pipe = make_augment_pipe("bgc", p=1.0).to(device)
        gen = torch.Generator(device=device).manual_seed(0)
        z = torch.randn(batch, G.z_dim, generator=gen, device=device)
        c = torch.zeros(batch, 0, device=device)
        with torch.no_grad():
            D(pipe(G(z, c)), c)
    finally:
        patcher.undo()
    return list(calls)


NETWORK_RESOLUTIONS = [32, 64, 128, 256, 512, pytest.param(1024, marks=pytest.mark.slow)]


@pytest.mark.parametrize("resolution", NETWORK_RESOLUTIONS)
def test_emulated_kernels_at_every_network_call(emulated: EmulatedKernels, resolution: int) -> None:
    """The geometry of every call (narrow networks: channel counts do not change the indexing)."""
    calls = record_network_calls(
        resolution, torch.device("cpu"), batch=1, channel_base=resolution * 2, channel_max=2
    )
    assert any(isinstance(c, Upfirdn2dCall) and c.up != (1, 1) for c in calls)
    assert any(isinstance(c, Upfirdn2dCall) and c.down != (1, 1) for c in calls)
    for index, call in enumerate(calls):
        _compare_through_second_order(call, call.inputs(torch.device("cpu"), index), rtol=1e-4, atol=1e-4)
    assert {0, 1, 2, 3} <= emulated.variants  # generic (ADA's 12 taps) and the three 4x4 specialisations


# ------------------------------------------------------------------------------ GPU: the compiled kernels


@pytest.fixture(scope="module")
def cuda_kernels() -> Iterator[Any]:
    """The compiled kernels; the reference's convolutions in true FP32 (no TF32) while comparing."""
    if not CUDA_AVAILABLE:
        pytest.skip("needs an NVIDIA GPU")
    kernels = build.load_kernels()  # a build failure here is a test failure, with the compiler's reason
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield kernels
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def _compare_on_gpu(call: BiasActCall | Upfirdn2dCall, seed: int) -> None:
    device = torch.device("cuda")
    inputs = call.inputs(device, seed)
    fp16 = call.dtype == torch.float16
    rtol, atol = (1e-2, 1e-2) if fp16 else (1e-5, 1e-5)
    results = []
    for impl in ("cuda", "ref"):
        # FP16: the reference runs in float32 on the same (FP16-rounded) inputs.
        leaves = [
            (t.float() if fp16 and impl == "ref" else t).detach().clone().requires_grad_(True) for t in inputs
        ]
        y = call(*leaves, impl=impl)
        w = torch.randn(
            y.shape, generator=torch.Generator(device=device).manual_seed(seed + 1), device=device
        )
        grads = torch.autograd.grad(
            (y.float() * w).sum(), leaves, create_graph=True
        )  # FP32 sums: no overflow
        v = [
            torch.randn(
                g.shape, generator=torch.Generator(device=device).manual_seed(seed + 2 + i), device=device
            )
            for i, g in enumerate(grads)
        ]
        inner = sum((g.float() * vi).sum() for g, vi in zip(grads, v))
        second = (
            torch.autograd.grad(inner, leaves, allow_unused=True)
            if inner.requires_grad
            else [None] * len(leaves)
        )
        results.append(
            [
                y.float(),
                *[g.float() for g in grads],
                *[s.float() for s in _grad_or_zero(tuple(second), leaves)],
            ]
        )
    for got, expected in zip(*results):
        # Sums over many terms (bias gradients) are compared relative to their largest entry.
        scale = expected.abs().max().clamp(min=1).item()
        torch.testing.assert_close(got, expected, rtol=rtol, atol=atol * scale)


@pytest.mark.gpu
@pytest.mark.parametrize("resolution", [32, 64, 128, 256, 512, 1024])
@pytest.mark.parametrize("num_fp16_res", [0, 4], ids=["fp32", "fp16"])
def test_kernels_match_reference_at_every_network_call(
    cuda_kernels: Any, resolution: int, num_fp16_res: int
) -> None:
    calls = record_network_calls(resolution, torch.device("cuda"), batch=4, num_fp16_res=num_fp16_res)
    if num_fp16_res:
        assert any(c.dtype == torch.float16 for c in calls)
    for index, call in enumerate(calls):
        _compare_on_gpu(call, seed=index)


@pytest.mark.gpu
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_kernel_gradgradcheck_float64(cuda_kernels: Any, act: str) -> None:
    gen = torch.Generator(device="cuda").manual_seed(5)
    x = torch.randn(2, 3, 4, dtype=DOUBLE, device="cuda", generator=gen)
    x = torch.where(x.abs() < 0.05, x + 0.1, x).requires_grad_(True)
    b = torch.zeros(3, dtype=DOUBLE, device="cuda", requires_grad=True)

    def fn(x_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return bias_act(x_, b_, act=act, gain=1.3, clamp=5.0, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.gpu
@pytest.mark.parametrize(("up", "down"), [(1, 1), (2, 1), (1, 2), (3, 2)])
def test_upfirdn2d_kernel_gradgradcheck_float64(cuda_kernels: Any, up: int, down: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(6)
    x = torch.randn(1, 2, 6, 5, dtype=DOUBLE, device="cuda", generator=gen, requires_grad=True)
    f = setup_filter([1, 2, 3, 1], device="cuda").double()

    def fn(x_: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x_, f, up=up, down=down, padding=[2, 1, 1, 2], gain=1.5, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.gpu
def test_auto_uses_the_kernels_on_cuda(cuda_kernels: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "_selected", None)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    ops.set_impl("cuda")
    assert ops.get_impl() == "cuda"
    ops.set_impl("auto")
    assert ops.kernels_for(None, torch.zeros(1, device="cuda")) is not None
    assert ops.kernels_for(None, torch.zeros(1)) is None
