"""The diffusion generator does what the papers and MONAI's documentation say, and it learns.

Closed forms (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"; Song et al. 2021, "Denoising
Diffusion Implicit Models"): q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I); the loss is
||eps - eps_theta(x_t, t)||^2; a DDPM step samples the posterior with mean
sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t and
variance (1 - abar_{t-1}) / (1 - abar_t) beta_t; a DDIM step with eta 0 is
sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_theta.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from augstudy.diffusion.model import build_scheduler, build_unet, denoising_loss
from augstudy.diffusion.sample import sample_images, sampler_problem, seed_noise
from augstudy.diffusion.snapshot import load_denoiser, load_snapshot
from augstudy.diffusion.train import TrainDiffusionOptions, train_diffusions
from augstudy.metrics.swd import sliced_wasserstein_distance
from stylegan2ada.dataset import write_dataset

T = 100
SCHEDULE = {"num_train_timesteps": T, "schedule": "linear_beta"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _betas() -> torch.Tensor:
    """MONAI's linear_beta defaults: beta from 1e-4 to 2e-2 over T steps."""
    return torch.linspace(1e-4, 2e-2, T, dtype=torch.float32)


class EchoModel(torch.nn.Module):
    """A stand-in noise predictor with a known output: 0.3 x_t + t / T."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None = None
                ) -> torch.Tensor:
        return 0.3 * x + (timesteps.float() / T).view(-1, 1, 1, 1)


def test_add_noise_and_loss_follow_the_closed_form() -> None:
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand((3, 1, 8, 8), generator=generator) * 2 - 1
    noise = torch.randn((3, 1, 8, 8), generator=generator)
    timesteps = torch.tensor([0, 37, 99])
    abar = torch.cumprod(1 - _betas(), 0)[timesteps].view(-1, 1, 1, 1)
    expected_xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    scheduler = build_scheduler(SCHEDULE)
    assert torch.allclose(scheduler.add_noise(x0, noise, timesteps), expected_xt, atol=1e-6)
    loss = denoising_loss(EchoModel(), scheduler, x0, noise, timesteps)
    expected_loss = ((0.3 * expected_xt + timesteps.view(-1, 1, 1, 1) / T - noise) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)


def test_ddpm_step_samples_the_posterior_of_the_paper() -> None:
    generator = torch.Generator().manual_seed(1)
    x_t = torch.randn((2, 1, 8, 8), generator=generator)
    eps = torch.randn((2, 1, 8, 8), generator=generator)
    betas = _betas()
    alphas, abar = 1 - betas, torch.cumprod(1 - betas, 0)
    scheduler = build_scheduler(SCHEDULE, "ddpm")
    for t in (50, 1):
        x0_hat = ((x_t - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1, 1)  # clip_sample, the default
        mean = (abar[t - 1].sqrt() * betas[t] / (1 - abar[t]) * x0_hat
                + alphas[t].sqrt() * (1 - abar[t - 1]) / (1 - abar[t]) * x_t)
        variance = (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7))
        stepped, predicted_x0 = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(7))
        assert torch.allclose(predicted_x0, x0_hat, atol=1e-5)
        assert torch.allclose(stepped, mean + variance.sqrt() * z, atol=1e-5)
    last, x0_at_0 = scheduler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(7))
    # No noise at t = 0: the final image is x0_hat (up to float32 rounding of beta_0 / (1 - abar_0) = 1).
    assert torch.allclose(last, x0_at_0, atol=1e-3)
    other, _ = scheduler.step(eps, 0, x_t, generator=torch.Generator().manual_seed(8))
    assert torch.equal(last, other)


def test_ddim_step_is_the_deterministic_update_of_the_paper() -> None:
    generator = torch.Generator().manual_seed(2)
    x_t = torch.randn((2, 1, 8, 8), generator=generator)
    eps = torch.randn((2, 1, 8, 8), generator=generator) * 0.1
    abar = torch.cumprod(1 - _betas(), 0)
    scheduler = build_scheduler(SCHEDULE, "ddim")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]
    t, previous = 55, 55 - T // 10
    x0_hat = ((x_t - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1, 1)
    expected = abar[previous].sqrt() * x0_hat + (1 - abar[previous]).sqrt() * eps
    assert torch.allclose(scheduler.step(eps, t, x_t)[0], expected, atol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_image_i_comes_from_seed_i_whatever_the_batch(sampler: str) -> None:
    torch.manual_seed(0)
    model = build_unet({"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": [8, 8],
                        "attention_levels": [False, False], "num_res_blocks": 1, "norm_num_groups": 8,
                        "num_head_channels": [8, 8], "num_class_embeds": None}).eval()
    schedule = {"num_train_timesteps": 20, "schedule": "linear_beta"}
    steps = 20 if sampler == "ddpm" else 5
    together = sample_images(model, schedule, [4, 9, 2], (1, 8, 8), sampler=sampler, steps=steps)
    alone = sample_images(model, schedule, [9], (1, 8, 8), sampler=sampler, steps=steps)
    assert together.dtype == np.uint8 and together.shape == (3, 8, 8, 1)
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1
    assert np.abs(together[0].astype(int) - together[2].astype(int)).max() > 10  # seeds differ
    noise, _ = seed_noise([9], (1, 8, 8))
    assert torch.equal(noise[0], torch.randn((1, 8, 8), generator=torch.Generator().manual_seed(9)))


def test_sampler_settings_the_library_cannot_honour_are_refused() -> None:
    assert sampler_problem("ddpm", 50, 1000) is not None  # MONAI's DDPM step always goes t -> t-1
    assert sampler_problem("ddpm", 1000, 1000) is None
    assert sampler_problem("ddim", 1001, 1000) is not None
    assert sampler_problem("ddim", 50, 1000) is None
    assert sampler_problem("euler", 50, 1000) is not None


def _toy(count: int, seed: int) -> list[np.ndarray]:
    """16-px crosses: one horizontal and one vertical bright bar at random positions on a dark ground."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = np.full((16, 16), 40, np.uint8)
        row, column = rng.integers(3, 13, size=2)
        image[row - 2:row + 2, :] = 215
        image[:, column - 1:column + 1] = 215
        images.append(image)
    return images


@pytest.mark.slow
def test_the_model_learns_a_toy_distribution(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data/gan/cross.zip", _toy(64, seed=0))
    held_out = np.stack(_toy(64, seed=1))[:, None]
    snapshot = train_diffusions(TrainDiffusionOptions(
        data=tmp_path / "data", out=tmp_path / "runs", kimg=12.8, snap=12.8, tick_kimg=3.2, batch=16, lr=2e-3,
        ema_kimg=0.2, channels=(16, 32), attention=(False, False), norm_groups=8, timesteps=200, seed=0,
        threads=1))["cross"]

    def swd(images: np.ndarray) -> float:
        return sliced_wasserstein_distance(images, held_out).mean

    trained, schedule = load_denoiser(snapshot)
    untrained = build_unet(load_snapshot(snapshot)["unet_kwargs"]).eval()
    made = sample_images(trained, schedule, range(64), (1, 16, 16), sampler="ddim", steps=20)
    unmade = sample_images(untrained, schedule, range(64), (1, 16, 16), sampler="ddim", steps=20)
    noise = np.random.default_rng(2).integers(0, 256, (64, 1, 16, 16), dtype=np.uint8)
    swd_trained, swd_untrained, swd_noise = swd(made.transpose(0, 3, 1, 2)), swd(unmade.transpose(0, 3, 1, 2)), swd(
        noise)
    assert swd_trained < swd_noise / 2, (swd_trained, swd_noise)
    assert swd_trained < swd_untrained / 2, (swd_trained, swd_untrained)
