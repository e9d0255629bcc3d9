"""Images from a trained denoiser with MONAI's DDPM or DDIM sampler; image i depends on seed i only.

Each image owns one torch.Generator seeded with its seed: it draws the starting noise and, for DDPM,
the noise of every reverse step, so an image is the same whatever the batch it is made in (up to the
rounding of batched float32 kernels). The UNet runs batched on the chosen device; the scheduler steps,
which are cheap elementwise updates, run on the CPU where the per-seed generators live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from augstudy.diffusion.model import SAMPLERS, build_scheduler

DEFAULT_DDIM_STEPS = 50


def sampler_problem(sampler: str, steps: int, timesteps: int) -> str | None:
    """Why `steps` of `sampler` cannot run on a model trained with `timesteps` steps; None when it can.

    MONAI's DDPMScheduler.step always moves from t to t-1 (its posterior uses alphas_cumprod[t-1]), so
    a DDPM chain is only correct over every training step; fewer steps need DDIM.
    """
    if sampler not in SAMPLERS:
        return f"sampler {sampler!r}: choose from {', '.join(SAMPLERS)}"
    if sampler == "ddpm" and steps != timesteps:
        return (f"--sampler ddpm runs all {timesteps} training steps of this model (MONAI's DDPM step goes "
                f"from t to t-1); give --steps {timesteps}, or --sampler ddim for fewer steps")
    if not 1 <= steps <= timesteps:
        return f"--steps {steps}: the model was trained with {timesteps} steps; give 1 to {timesteps}"
    return None


def default_steps(sampler: str, timesteps: int) -> int:
    return timesteps if sampler == "ddpm" else min(DEFAULT_DDIM_STEPS, timesteps)


def seed_noise(seeds: Sequence[int], shape: Sequence[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Starting noise [N, *shape] with row k from seeds[k]'s generator, and those generators."""
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    noise = torch.stack([torch.randn(tuple(shape), generator=generator) for generator in generators])
    return noise, generators


@torch.no_grad()
def sample_images(model: torch.nn.Module, scheduler_kwargs: dict[str, Any], seeds: Sequence[int],
                  image_shape: Sequence[int], *, class_index: int | None = None, sampler: str = "ddim",
                  steps: int = DEFAULT_DDIM_STEPS, device: Any = "cpu") -> np.ndarray:
    """uint8 images [N, H, W, C] of `seeds` (DDIM with eta 0: deterministic given the starting noise)."""
    problem = sampler_problem(sampler, steps, int(scheduler_kwargs["num_train_timesteps"]))
    if problem:
        raise ValueError(problem)
    scheduler = build_scheduler(scheduler_kwargs, sampler)
    scheduler.set_timesteps(steps)
    sample, generators = seed_noise(seeds, image_shape)
    labels = None
    if class_index is not None:
        labels = torch.full((len(seeds),), class_index, dtype=torch.long, device=device)
    for timestep in scheduler.timesteps:
        batch_t = torch.full((len(seeds),), int(timestep), dtype=torch.long, device=device)
        output = model(x=sample.to(device), timesteps=batch_t, class_labels=labels).float().cpu()
        if sampler == "ddpm":  # each row's step noise from its own generator
            sample = torch.cat([scheduler.step(output[k:k + 1], int(timestep), sample[k:k + 1],
                                               generator=generators[k])[0] for k in range(len(seeds))])
        else:
            sample = scheduler.step(output, int(timestep), sample)[0]
    pixels = (sample * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()
