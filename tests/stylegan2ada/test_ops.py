"""Reference ops: values against independent formulas, and gradients of gradients in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from stylegan2ada import ops
from stylegan2ada.ops import (
    bias_act,
    conv2d_resample,
    downsample2d,
    filter2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from stylegan2ada.ops.bias_act import ACTIVATIONS

DOUBLE = torch.float64


def _away_from(values: torch.Tensor, kinks: list[float], margin: float = 0.05) -> torch.Tensor:
    """Move entries away from non-differentiable points so finite differences are valid."""
    for kink in kinks:
        close = (values - kink).abs() < margin
        values = torch.where(close, values + 2 * margin, values)
    return values


# ---------------------------------------------------------------- implementation selection


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the kernels may build; test_ops_cuda.py covers it")
def test_impl_selection_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "_selected", None)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    assert ops.get_impl() == "ref"
    monkeypatch.setenv(ops.ENV_VAR, "ref")
    assert ops.get_impl() == "ref"
    monkeypatch.setenv(ops.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="CUDA kernels"):
        ops.get_impl()
    monkeypatch.setenv(ops.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=ops.ENV_VAR):
        ops.get_impl()
    ops.set_impl("auto")
    assert ops.get_impl() == "ref"
    with pytest.raises(RuntimeError, match="CUDA kernels"):
        ops.set_impl("cuda")
    with pytest.raises(RuntimeError, match="CUDA kernels"):
        bias_act(torch.zeros(2, 3), impl="cuda")


# ---------------------------------------------------------------- bias_act


def test_bias_act_values() -> None:
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    b = torch.tensor([0.5, -1.0, 2.0, 0.0])
    pre = x + b.reshape(1, 4, 1)
    lrelu = torch.where(pre >= 0, pre, 0.2 * pre) * math.sqrt(2)
    torch.testing.assert_close(bias_act(x, b, act="lrelu"), lrelu)
    torch.testing.assert_close(bias_act(x, b, act="lrelu", clamp=0.3), lrelu.clamp(-0.3, 0.3))
    torch.testing.assert_close(bias_act(x, b, act="relu", gain=3.0), pre.clamp(min=0) * 3)
    torch.testing.assert_close(bias_act(x, b, act="swish"), torch.sigmoid(pre) * pre * math.sqrt(2))
    torch.testing.assert_close(
        bias_act(x, b, act="lrelu", alpha=0.5, gain=1), torch.where(pre >= 0, pre, 0.5 * pre)
    )
    b_last = torch.randn(5)
    torch.testing.assert_close(bias_act(x, b_last, dim=-1), x + b_last)
    torch.testing.assert_close(bias_act(x), x)


def test_bias_act_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="does not match"):
        bias_act(torch.zeros(2, 3, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(torch.zeros(2, 3), act="gelu")


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_gradgradcheck(act: str, clamp: float | None) -> None:
    gen = torch.Generator().manual_seed(1)
    b = torch.randn(3, dtype=DOUBLE, generator=gen)
    base = _away_from(torch.randn(2, 3, 4, dtype=DOUBLE, generator=gen), [0.0])
    gain = 1.3
    if clamp is not None:  # keep act(pre) * gain away from +-clamp
        post = bias_act(base, act=act, gain=gain)
        base = torch.where((post.abs() - clamp).abs() < 0.05, base * 0.5, base)
        base = _away_from(base, [0.0])
    x = (base - b.reshape(1, 3, 1)).requires_grad_(True)
    b.requires_grad_(True)

    def fn(x_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return bias_act(x_, b_, act=act, gain=gain, clamp=clamp)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ---------------------------------------------------------------- upfirdn2d


def _naive_upfirdn2d(
    x: np.ndarray,
    f: np.ndarray,
    up: tuple[int, int],
    down: tuple[int, int],
    pad: list[int],
    flip: bool,
    gain: float,
) -> np.ndarray:
    """Zero insertion, padding/cropping, scipy 2-D convolution, decimation: one image at a time."""
    upx, upy = up
    px0, px1, py0, py1 = pad
    f2 = np.outer(f, f) if f.ndim == 1 else f
    f2 = f2 * gain
    if flip:
        f2 = f2[::-1, ::-1]
    out = []
    for image in x.reshape(-1, *x.shape[2:]):
        u = np.zeros((image.shape[0] * upy, image.shape[1] * upx))
        u[::upy, ::upx] = image
        u = np.pad(u, [(max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
        u = u[max(-py0, 0) : u.shape[0] - max(-py1, 0), max(-px0, 0) : u.shape[1] - max(-px1, 0)]
        y = scipy.signal.convolve2d(u, f2, mode="valid")
        out.append(y[:: down[1], :: down[0]])
    return np.stack(out).reshape(*x.shape[:2], *out[0].shape)


@pytest.mark.parametrize(
    ("up", "down", "pad", "flip", "separable"),
    [
        ((1, 1), (1, 1), [0, 0, 0, 0], False, False),
        ((2, 2), (1, 1), [2, 1, 2, 1], False, False),
        ((1, 1), (2, 2), [1, 1, 1, 1], True, False),
        ((2, 1), (1, 2), [3, 0, -1, 2], False, True),
        ((3, 3), (2, 2), [-1, 2, 1, 1], True, True),
    ],
)
def test_upfirdn2d_matches_naive(
    up: tuple[int, int], down: tuple[int, int], pad: list[int], flip: bool, separable: bool
) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    taps = np.array([1.0, 2.0, 5.0, 3.0])  # asymmetric, so flipping matters
    f = setup_filter(taps, separable=separable).double()
    ours = upfirdn2d(torch.from_numpy(x), f, up=up, down=down, padding=pad, flip_filter=flip, gain=2.0)
    naive = _naive_upfirdn2d(x, f.numpy(), up, down, pad, flip, 2.0)
    np.testing.assert_allclose(ours.numpy(), naive, rtol=1e-10, atol=1e-10)


def test_setup_filter() -> None:
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(
        f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64
    )
    assert setup_filter(list(range(1, 9))).ndim == 1  # 8+ taps stay separable by default
    torch.testing.assert_close(setup_filter([1, 3, 3, 1], gain=4).sum(), torch.tensor(4.0))
    torch.testing.assert_close(setup_filter([1, 2], flip_filter=True), setup_filter([2, 1]))
    with pytest.raises(ValueError, match="filter"):
        setup_filter(torch.zeros(2, 2, 2))


def test_resampling_preserves_constants_and_shapes() -> None:
    f = setup_filter([1, 3, 3, 1])
    x = torch.full((1, 2, 8, 8), 3.0)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    filtered = filter2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4) and filtered.shape == x.shape
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full((1, 2, 12, 12), 3.0))
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))
    torch.testing.assert_close(filtered[:, :, 2:-2, 2:-2], torch.full((1, 2, 4, 4), 3.0))
    with pytest.raises(ValueError, match="NCHW"):
        upfirdn2d(torch.zeros(3, 8, 8), f)


@pytest.mark.parametrize(
    ("up", "down", "pad", "flip"), [(1, 1, [1, 2, 0, 1], False), (2, 1, 1, True), (1, 2, 2, False)]
)
def test_upfirdn2d_gradgradcheck(up: int, down: int, pad: int | list[int], flip: bool) -> None:
    x = torch.randn(1, 2, 5, 5, dtype=DOUBLE, generator=torch.Generator().manual_seed(3), requires_grad=True)
    f = setup_filter([1, 2, 3, 1]).double()

    def fn(x_: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x_, f, up=up, down=down, padding=pad, flip_filter=flip, gain=1.5)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ---------------------------------------------------------------- conv2d_resample


@pytest.mark.parametrize("kernel", [1, 3])
@pytest.mark.parametrize(("up", "down"), [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("flip_weight", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_resample_matches_composition(
    kernel: int, up: int, down: int, flip_weight: bool, groups: int
) -> None:
    """Away from the borders (where zero padding happens at different stages), every fast path
    equals the plain composition upsample -> convolve (same padding) -> downsample."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 12, 12, dtype=DOUBLE, generator=gen)
    w = torch.randn(6, 4 // groups, kernel, kernel, dtype=DOUBLE, generator=gen)
    f = setup_filter([1, 3, 3, 1]).double()
    pad = kernel // 2
    ours = conv2d_resample(x, w, f, up=up, down=down, padding=pad, groups=groups, flip_weight=flip_weight)
    y = upsample2d(x, f, up=up) if up > 1 else x
    y = F.conv2d(y, w if flip_weight else w.flip([2, 3]), padding=pad, groups=groups)
    expected = downsample2d(y, f, down=down) if down > 1 else y
    assert ours.shape == (2, 6, 12 * up // down, 12 * up // down)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    torch.testing.assert_close(ours[inner], expected[inner], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("up", "down"), [(1, 1), (2, 1), (1, 2)])
def test_conv2d_resample_gradgradcheck(up: int, down: int) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 4, 4, dtype=DOUBLE, generator=gen, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=DOUBLE, generator=gen, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()

    def fn(x_: torch.Tensor, w_: torch.Tensor) -> torch.Tensor:
        return conv2d_resample(x_, w_, f, up=up, down=down, padding=1, flip_weight=up == 1)

    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


# ---------------------------------------------------------------- modulated_conv2d


def test_modulated_conv2d_matches_per_sample_conv() -> None:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 4, 6, 6, dtype=DOUBLE, generator=gen)
    weight = torch.randn(5, 4, 3, 3, dtype=DOUBLE, generator=gen)
    styles = torch.randn(3, 4, dtype=DOUBLE, generator=gen)
    noise = torch.randn(3, 1, 6, 6, dtype=DOUBLE, generator=gen)
    expected = []
    for i in range(3):
        wi = weight * styles[i].reshape(1, 4, 1, 1)
        wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
        expected.append(F.conv2d(x[i : i + 1], wi, padding=1) + noise[i])
    expected_t = torch.cat(expected)
    for fused in (True, False):
        out = modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=fused)
        torch.testing.assert_close(out, expected_t)
    # Without demodulation the two code paths still agree.
    plain = [
        modulated_conv2d(x, weight, styles, demodulate=False, padding=1, fused_modconv=f)
        for f in (True, False)
    ]
    torch.testing.assert_close(plain[0], plain[1])
    with pytest.raises(ValueError, match="styles"):
        modulated_conv2d(x, weight, styles[:, :3], padding=1)


def test_modulated_conv2d_demodulation_normalises_output_scale() -> None:
    """Scaling the styles of a sample leaves its demodulated output unchanged."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 6, 6, dtype=DOUBLE, generator=gen)
    weight = torch.randn(5, 4, 3, 3, dtype=DOUBLE, generator=gen)
    styles = torch.randn(2, 4, dtype=DOUBLE, generator=gen)
    out = modulated_conv2d(x, weight, styles, padding=1)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles * 10, padding=1), out)


@pytest.mark.parametrize(("up", "fused"), [(1, False), (2, True)])
def test_modulated_conv2d_gradgradcheck(up: int, fused: bool) -> None:
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 2, 3, 3, dtype=DOUBLE, generator=gen, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, dtype=DOUBLE, generator=gen, requires_grad=True)
    styles = torch.randn(2, 2, dtype=DOUBLE, generator=gen, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()

    def fn(x_: torch.Tensor, w_: torch.Tensor, s_: torch.Tensor) -> torch.Tensor:
        return modulated_conv2d(
            x_, w_, s_, up=up, padding=1, resample_filter=f, flip_weight=up == 1, fused_modconv=fused
        )

    assert torch.autograd.gradcheck(fn, (x, weight, styles))
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles))
