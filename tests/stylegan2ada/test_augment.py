"""The ADA pipeline (every op and named pipeline) and its p controller."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from stylegan2ada.augment import (
    OP_NAMES,
    PIPELINES,
    SYM2,
    SYM6,
    AdaController,
    AugmentPipe,
    _imgfilter_bank,
    make_augment_pipe,
)
from stylegan2ada.ops.grid_sample import grid_sample

NAMES = ["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"]


def smooth_images(batch: int, channels: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Band-limited images in about [-1.3, 1.3]: flips and quarter turns through the single
    resampling pass (Symlet-6 is only nearly linear-phase) are within ~0.06 of exact on them."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand([batch, channels, size // 4, size // 4], generator=generator) * 2 - 1
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)


def pipe_with(p: float, **ops: float) -> AugmentPipe:
    pipe = AugmentPipe(**ops)
    pipe.p.fill_(p)
    return pipe


def tiny_discriminator(channels: int) -> torch.nn.Module:
    torch.manual_seed(123)
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, padding=1),
        torch.nn.Softplus(),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(1),
    )


# --- named pipelines -------------------------------------------------------------------------------


def test_pipelines_cover_the_design() -> None:
    assert list(PIPELINES) == NAMES
    for name, ops in PIPELINES.items():
        assert set(ops) <= set(OP_NAMES), name
    for shorter, longer in [("bg", "bgc"), ("bgc", "bgcf"), ("bgcf", "bgcfn"), ("bgcfn", "bgcfnc")]:
        assert set(PIPELINES[shorter]) < set(PIPELINES[longer])
    assert set(PIPELINES["bgcfnc"]) == set(OP_NAMES)
    assert set(PIPELINES["bg"]) == set(PIPELINES["blit"]) | set(PIPELINES["geom"])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_identity_at_p0(name: str, channels: int) -> None:
    images = torch.randn([4, channels, 16, 16])
    pipe = make_augment_pipe(name)
    assert float(pipe.p) == 0
    assert torch.equal(pipe(images), images)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_p1_changes_images_and_keeps_shape(name: str, channels: int) -> None:
    torch.manual_seed(0)
    images = smooth_images(8, channels)
    out = make_augment_pipe(name, p=1.0)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.isfinite(out).all()
    changed = [(out[i] - images[i]).abs().max() > 1e-3 for i in range(len(images))]
    assert sum(changed) >= len(images) // 2, f"{name}: only {sum(changed)} of {len(images)} images changed"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("height, width", [(1, 1), (4, 4), (8, 16), (16, 8)])
def test_tiny_and_non_square_images(channels: int, height: int, width: int) -> None:
    torch.manual_seed(0)
    images = torch.randn([3, channels, height, width])
    out = make_augment_pipe("bgcfnc", p=1.0)(images)
    assert out.shape == images.shape and torch.isfinite(out).all()


def test_unfired_images_are_untouched_bitwise() -> None:
    torch.manual_seed(1)
    images = torch.randn([200, 3, 8, 8])
    out = pipe_with(0.3, brightness=1)(images)
    untouched = torch.tensor([torch.equal(out[i], images[i]) for i in range(len(images))])
    assert 0.2 < 1 - untouched.float().mean() < 0.4  # brightness fires with probability p = 0.3


# --- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_r1_double_backward_through_pipe(channels: int) -> None:
    torch.manual_seed(0)
    discriminator = tiny_discriminator(channels)
    images = smooth_images(4, channels).requires_grad_(True)
    logits = discriminator(make_augment_pipe("bgcfnc", p=1.0)(images))
    (image_grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    assert image_grad.abs().sum() > 0
    penalty = image_grad.square().sum()
    penalty.backward()
    weight_grad = discriminator[0].weight.grad
    assert weight_grad is not None and torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0


def test_pipe_gradients_match_finite_differences() -> None:
    pipe = make_augment_pipe("bgcfnc", p=1.0)
    images = smooth_images(2, 3, size=8).double().requires_grad_(True)

    def augment(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(5)  # the same random augmentation on every call
        return pipe(x)

    assert gradcheck(augment, (images,), fast_mode=True)
    assert gradgradcheck(augment, (images,), fast_mode=True)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_grid_sample_matches_native_and_has_second_order_gradients(mode: str, padding_mode: str) -> None:
    torch.manual_seed(0)
    images = torch.randn([2, 3, 5, 6], dtype=torch.float64, requires_grad=True)
    grid = torch.rand([2, 4, 7, 2], dtype=torch.float64) * 2.4 - 1.2
    native = F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    assert torch.equal(grid_sample(images, grid, mode=mode, padding_mode=padding_mode), native)

    def sample(x: torch.Tensor) -> torch.Tensor:
        return grid_sample(x, grid, mode=mode, padding_mode=padding_mode)

    assert gradcheck(sample, (images,)) and gradgradcheck(sample, (images,))


def test_grid_sample_with_a_learned_grid_keeps_grid_gradients() -> None:
    images = torch.randn([1, 1, 4, 4], dtype=torch.float64)
    grid = (torch.rand([1, 3, 3, 2], dtype=torch.float64) - 0.5).requires_grad_(True)
    grid_sample(images, grid).sum().backward()
    assert grid.grad is not None and grid.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mode"):
        grid_sample(images, grid, mode="lanczos")


# --- randomness ------------------------------------------------------------------------------------


def test_deterministic_for_a_seed() -> None:
    images = smooth_images(6, 3)
    pipe = make_augment_pipe("bgcfnc", p=0.7)
    torch.manual_seed(42)
    first = pipe(images)
    torch.manual_seed(42)
    second = pipe(images)
    torch.manual_seed(43)
    other = pipe(images)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


# --- individual ops --------------------------------------------------------------------------------


def test_xflip_flips_about_half_and_leaves_the_rest_untouched() -> None:
    torch.manual_seed(0)
    images = smooth_images(64, 3)
    out = pipe_with(1.0, xflip=1)(images)
    flipped = 0
    for original, result in zip(images, out):
        if torch.equal(result, original):
            continue
        assert (result - original.flip(2)).abs().max() < 0.1
        assert (result - original).abs().max() > 0.3
        flipped += 1
    assert 20 <= flipped <= 44  # Binomial(64, 0.5): 32 +- 3 sigma


def test_rotate90_gives_quarter_turns_that_keep_the_pixels() -> None:
    torch.manual_seed(0)
    images = smooth_images(32, 1)
    out = pipe_with(1.0, rotate90=1)(images)
    turns = []
    for original, result in zip(images, out):
        errors = [(result - torch.rot90(original, k, dims=(1, 2))).abs().max().item() for k in range(4)]
        best = int(np.argmin(errors))
        assert errors[best] < 0.1 and sorted(errors)[1] > 0.3
        turns.append(best)
        assert torch.allclose(result.flatten().sort().values, original.flatten().sort().values, atol=0.1)
    assert set(turns) == {0, 1, 2, 3}


def test_xint_is_an_integer_shift_within_its_range() -> None:
    torch.manual_seed(0)
    size = 16
    images = torch.rand([8, 3, size, size])  # white noise: integer shifts must still be exact
    out = pipe_with(1.0, xint=1)(images)
    max_shift = round(0.125 * size)
    inner = slice(max_shift, size - max_shift)
    for original, result in zip(images, out):
        matches = [
            (dx, dy)
            for dx in range(-max_shift, max_shift + 1)
            for dy in range(-max_shift, max_shift + 1)
            if torch.allclose(
                result[:, inner, inner],
                torch.roll(original, (dy, dx), dims=(1, 2))[:, inner, inner],
                atol=1e-5,
            )
        ]
        assert len(matches) == 1


def test_hue_and_saturation_do_nothing_on_grey() -> None:
    torch.manual_seed(0)
    grey = smooth_images(8, 1)
    pipe = pipe_with(1.0, hue=1, saturation=1)
    assert torch.equal(pipe(grey), grey)
    rgb_grey = grey.repeat(1, 3, 1, 1)
    assert torch.allclose(pipe(rgb_grey), rgb_grey, atol=1e-5)
    colour = smooth_images(8, 3)
    assert not torch.allclose(pipe(colour), colour, atol=1e-2)


def test_colour_on_one_channel_equals_colour_on_replicated_grey() -> None:
    grey = smooth_images(16, 1)
    pipe = pipe_with(1.0, brightness=1, contrast=1, lumaflip=1)
    torch.manual_seed(7)
    out_grey = pipe(grey)
    torch.manual_seed(7)
    out_rgb = pipe(grey.repeat(1, 3, 1, 1))
    assert torch.allclose(out_rgb, out_grey.repeat(1, 3, 1, 1), atol=1e-5)


def test_lumaflip_negates_grey_images() -> None:
    torch.manual_seed(0)
    grey = smooth_images(32, 1)
    out = pipe_with(1.0, lumaflip=1)(grey)
    negated = sum(torch.allclose(o, -g, atol=1e-6) for o, g in zip(out, grey))
    kept = sum(torch.equal(o, g) for o, g in zip(out, grey))
    assert negated + kept == 32 and negated > 0 and kept > 0


def test_cutout_zeroes_one_rectangle_of_at_most_half_the_side() -> None:
    torch.manual_seed(0)
    images = torch.ones([16, 1, 32, 32])
    out = pipe_with(1.0, cutout=1)(images)
    for result in out[:, 0]:
        rows = (result == 0).any(dim=1).nonzero().flatten()
        cols = (result == 0).any(dim=0).nonzero().flatten()
        assert 0 < len(rows) <= 16 and 0 < len(cols) <= 16
        box = result[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (box == 0).all() and int((result == 0).sum()) == box.numel()


def test_noise_is_additive_gaussian_with_small_std() -> None:
    torch.manual_seed(0)
    images = torch.zeros([64, 3, 16, 16])
    out = pipe_with(1.0, noise=1)(images)
    stds = out.flatten(1).std(dim=1)
    assert (out.flatten(1).mean(dim=1).abs() < 4 * stds / math.sqrt(768) + 1e-6).all()
    assert 0.05 < float(stds.mean()) < 0.11  # E|N(0, 1)| * 0.1 ~= 0.08


def test_imgfilter_bank_is_a_partition_of_unity() -> None:
    bank = _imgfilter_bank()
    assert bank.shape[0] == 4
    impulse = np.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-9)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)  # zero-phase bands


@pytest.mark.parametrize("wavelet", [SYM2, SYM6])
def test_wavelets_are_orthonormal(wavelet: tuple[float, ...]) -> None:
    taps = np.asarray(wavelet)
    assert math.isclose(taps.sum(), math.sqrt(2), rel_tol=1e-12)
    for shift in range(len(taps) // 2):
        assert math.isclose(
            np.dot(taps[: len(taps) - 2 * shift], taps[2 * shift :]), shift == 0, abs_tol=1e-11
        )


# --- validation ------------------------------------------------------------------------------------


def test_bad_input_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match="bgc"):
        make_augment_pipe("bgx")
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter=1, imgfilter_bands=(1, 1))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        make_augment_pipe("bgc")(torch.zeros([2, 2, 8, 8]))
    with pytest.raises(ValueError, match="floating"):
        make_augment_pipe("bgc")(torch.zeros([2, 3, 8, 8], dtype=torch.uint8))


def test_only_p_is_saved_and_it_round_trips() -> None:
    pipe = make_augment_pipe("bgc", p=0.25)
    state = pipe.state_dict()
    assert set(state) == {"p"}
    restored = make_augment_pipe("bgc")
    restored.load_state_dict(state)
    assert float(restored.p) == 0.25
    assert AugmentPipe(**pipe.init_kwargs).spec == pipe.spec


# --- the p controller ------------------------------------------------------------------------------


def test_controller_raises_p_when_d_is_overconfident_by_exactly_the_formula() -> None:
    pipe = make_augment_pipe("bgc", p=0.5)
    controller = AdaController(target=0.6, interval=4, ada_kimg=500)
    for _ in range(4):
        controller.observe(torch.tensor([[2.0], [1.0], [0.5], [-1.0], [3.0]]))
    assert controller.update(pipe, batch_size=32) == 0.5  # E[sign] = 0.6 = target: p stays
    for _ in range(4):
        controller.observe(torch.ones([32, 1]))
    new_p = controller.update(pipe, batch_size=32)
    assert new_p == pytest.approx(0.5 + 32 * 4 / (500 * 1000), abs=1e-7)
    assert float(pipe.p) == new_p


def test_controller_lowers_p_otherwise_and_clamps_at_zero() -> None:
    pipe = make_augment_pipe("bgc", p=0.004)
    controller = AdaController(target=0.6, interval=4, ada_kimg=100)
    step = 64 * 4 / (100 * 1000)
    controller.observe(torch.tensor([1.0, 1.0, -1.0, 1.0]))  # E[sign] = 0.5 < 0.6
    assert controller.update(pipe, batch_size=64) == pytest.approx(0.004 - step, abs=1e-7)
    controller.observe(-torch.ones(8))
    assert controller.update(pipe, batch_size=64) == 0.0
    assert float(pipe.p) == 0.0


def test_controller_without_observations_keeps_p() -> None:
    pipe = make_augment_pipe("bgc", p=0.3)
    assert AdaController().update(pipe, batch_size=8) == pytest.approx(0.3)


def test_controller_schedule() -> None:
    controller = AdaController(interval=4)
    assert [controller.should_update(step) for step in range(9)] == [
        False, False, False, False, True, False, False, False, True,
    ]  # fmt: skip


def test_controller_all_reduce_uses_the_global_mean() -> None:
    pipe = make_augment_pipe("bgc", p=0.5)
    local, other_rank = AdaController(), AdaController()
    local.observe(torch.ones(4))  # this rank alone would raise p
    other_rank.observe(-torch.ones(12))
    other_stats = torch.tensor([other_rank.state_dict()["signs_sum"], other_rank.state_dict()["signs_count"]])

    def all_reduce(tensor: torch.Tensor) -> None:
        tensor.add_(other_stats)

    new_p = local.update(pipe, batch_size=16, all_reduce=all_reduce)
    assert new_p == pytest.approx(0.5 - 16 * 4 / (500 * 1000), abs=1e-7)


def test_controller_state_round_trips_mid_interval() -> None:
    pipe_a, pipe_b = make_augment_pipe("bgc", p=0.2), make_augment_pipe("bgc", p=0.2)
    original = AdaController()
    original.observe(torch.tensor([1.0, 1.0, 1.0]))
    resumed = AdaController()
    resumed.load_state_dict(original.state_dict())
    for controller in (original, resumed):
        controller.observe(torch.tensor([-1.0, -1.0]))  # 3 - 2 = 1 of 5: E = 0.2 < 0.6
    assert original.update(pipe_a, 8) == resumed.update(pipe_b, 8) == pytest.approx(0.2 - 8 * 4 / 500_000)
    with pytest.raises(ValueError, match="signs_count"):
        AdaController().load_state_dict({"signs_sum": 1.0})


def test_controller_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="target"):
        AdaController(target=1.5)
    with pytest.raises(ValueError, match="interval"):
        AdaController(interval=0)
    with pytest.raises(ValueError, match="ada_kimg"):
        AdaController(ada_kimg=0)


@pytest.mark.gpu
def test_pipe_on_cuda_is_deterministic_and_double_differentiable() -> None:
    device = torch.device("cuda")
    pipe = make_augment_pipe("bgcfnc", p=0.8).to(device)
    images = smooth_images(8, 3, size=32).to(device).requires_grad_(True)
    torch.manual_seed(3)
    first = pipe(images)
    torch.manual_seed(3)
    assert torch.equal(first, pipe(images))
    (grad,) = torch.autograd.grad(first.square().sum(), images, create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(images.grad).all()
