"""The network, the noise schedule and the training loss, each rebuilt from JSON-able arguments.

The UNet and both schedulers are MONAI's (`monai.networks.nets.DiffusionModelUNet`,
`monai.networks.schedulers`); this module only fixes the few arguments the study needs (2-D, images
in [-1, 1], noise prediction) so a snapshot can carry plain dicts instead of pickled objects.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

# Noise schedules MONAI knows (monai.networks.schedulers.NoiseSchedules).
SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")
SAMPLERS = ("ddpm", "ddim")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """A named UNet size and the training defaults that go with it.

    Args:
        channels: UNet feature channels per level (one level per entry, halving resolution between).
        attention: self-attention at each level (costly at high resolution).
        res_blocks: residual blocks per level.
        norm_groups: GroupNorm groups; every entry of `channels` must be a multiple of it.
        batch, lr, ema_kimg: training defaults (minibatch, Adam learning rate, EMA half-life in kimg).
    """

    channels: tuple[int, ...]
    attention: tuple[bool, ...]
    res_blocks: int
    norm_groups: int
    batch: int
    lr: float
    ema_kimg: float


# `cpu`: about 1.1 M parameters, trains at ~25 s/kimg at 32 px on one CPU thread (measured in the
# README); `base`: the width MONAI's 2-D tutorials use, for a GPU.
CONFIGS: dict[str, NetworkConfig] = {
    "cpu": NetworkConfig((32, 64, 64), (False, False, True), 1, 16, 16, 1e-3, 0.5),
    "base": NetworkConfig((64, 128, 256, 256), (False, False, True, True), 2, 32, 32, 1e-4, 10.0),
}


def unet_kwargs(channels: tuple[int, ...], attention: tuple[bool, ...], res_blocks: int, norm_groups: int,
                image_channels: int, num_classes: int) -> dict[str, Any]:
    """DiffusionModelUNet arguments as plain data (what a snapshot stores to rebuild the network)."""
    return {
        "spatial_dims": 2, "in_channels": image_channels, "out_channels": image_channels,
        "channels": list(channels), "attention_levels": list(attention), "num_res_blocks": res_blocks,
        "norm_num_groups": norm_groups, "num_head_channels": [max(channels)] * len(channels),
        "num_class_embeds": num_classes or None,
    }


def check_unet_kwargs(kwargs: dict[str, Any], resolution: int) -> str | None:
    """Why these arguments cannot make a UNet for `resolution`-px images, in words; None when they can."""
    channels, attention = kwargs["channels"], kwargs["attention_levels"]
    if len(channels) != len(attention):
        return f"{len(channels)} channel levels but {len(attention)} attention flags; give one flag per level"
    bad = [width for width in channels if width % kwargs["norm_num_groups"]]
    if bad:
        return f"channels {bad} are not multiples of the {kwargs['norm_num_groups']} GroupNorm groups"
    if resolution % 2 ** (len(channels) - 1):
        return f"{len(channels)} levels halve {resolution} px {len(channels) - 1} times; use fewer levels"
    return None


def build_unet(kwargs: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """MONAI's DiffusionModelUNet from `unet_kwargs` (on the "meta" device it allocates nothing)."""
    from monai.networks.nets import DiffusionModelUNet

    with torch.device(device):
        return DiffusionModelUNet(**kwargs)


def scheduler_kwargs(timesteps: int, schedule: str) -> dict[str, Any]:
    return {"num_train_timesteps": timesteps, "schedule": schedule}


def build_scheduler(kwargs: dict[str, Any], sampler: str = "ddpm") -> Any:
    """MONAI's DDPMScheduler or DDIMScheduler over the same training noise schedule."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: choose from {', '.join(SAMPLERS)}")
    return (DDPMScheduler if sampler == "ddpm" else DDIMScheduler)(**kwargs)


def denoising_loss(model: torch.nn.Module, scheduler: Any, images: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The DDPM simple loss: mean squared error of the predicted noise (Ho et al. 2020, eq. 14).

    Class labels go straight to the UNet's class embedding (MONAI's DiffusionInferer only passes
    cross-attention context), which is why the forward pass is spelled out here.
    """
    noisy = scheduler.add_noise(original_samples=images, noise=noise, timesteps=timesteps)
    prediction = model(x=noisy, timesteps=timesteps, class_labels=labels)
    return torch.nn.functional.mse_loss(prediction.float(), noise.float())


def parameter_count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
