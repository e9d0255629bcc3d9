"""TOML sections shared by the tests that run whole studies (`augstudy run`): one tiny diffusion model
per class, trained and sampled in seconds."""

from __future__ import annotations


def tiny_diffusion(seed: int = 0) -> str:
    """[train_diffusion] and [generate_diffusion] for a 2-level UNet of width 8/16, a few steps each."""
    return f"""
[train_diffusion]
channels = [8, 16]
attention = [false, true]
norm_groups = 8
batch = 4
timesteps = 50
kimg = 0.02
snap = 0.02
tick_kimg = 0.02
threads = 1
seed = {seed}

[generate_diffusion]
steps = 5
"""
