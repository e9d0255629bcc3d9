"""Named configs resolve to the NVlabs train.py values; overrides replace exactly what they name."""

from __future__ import annotations

import dataclasses

import pytest

from stylegan2ada.configs import CONFIG_NAMES, NetworkConfig, resolve_config


def test_config_names() -> None:
    assert set(CONFIG_NAMES) == {"auto", "paper256", "paper512", "paper1024", "stylegan2", "cifar"}


@pytest.mark.parametrize(
    ("cfg", "channel_base", "mapping_layers", "batch", "lr", "gamma", "ema_kimg", "mbstd"),
    [
        ("paper256", 16384, 8, 64, 0.0025, 1.0, 20.0, 8),
        ("paper512", 32768, 8, 64, 0.0025, 0.5, 20.0, 8),
        ("paper1024", 32768, 8, 32, 0.002, 2.0, 10.0, 4),
        ("stylegan2", 32768, 8, 32, 0.002, 10.0, 10.0, 4),
        ("cifar", 32768, 2, 64, 0.0025, 0.01, 500.0, 32),
    ],
)
def test_fixed_configs(
    cfg: str,
    channel_base: int,
    mapping_layers: int,
    batch: int,
    lr: float,
    gamma: float,
    ema_kimg: float,
    mbstd: int,
) -> None:
    config = resolve_config(cfg, 256)
    assert (config.cfg, config.channel_base, config.channel_max) == (cfg, channel_base, 512)
    assert (config.mapping_layers, config.batch, config.mbstd_group) == (mapping_layers, batch, mbstd)
    assert (config.glr, config.dlr, config.gamma, config.ema_kimg) == (lr, lr, gamma, ema_kimg)
    assert config.d_architecture == ("orig" if cfg == "cifar" else "resnet")
    assert config.style_mixing_prob == (0.0 if cfg == "cifar" else 0.9)
    assert config.pl_weight == (0.0 if cfg == "cifar" else 2.0)


@pytest.mark.parametrize(("resolution", "gpus"), [(32, 1), (64, 1), (256, 1), (256, 8), (512, 2), (1024, 1)])
def test_auto_config_formulas(resolution: int, gpus: int) -> None:
    config = resolve_config("auto", resolution, gpus)
    batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    assert config.batch == batch
    assert config.channel_base == (32768 if resolution >= 512 else 16384)
    assert config.channel_max == 512 and config.mapping_layers == 2
    assert config.glr == config.dlr == (0.002 if resolution >= 1024 else 0.0025)
    assert config.gamma == pytest.approx(0.0002 * resolution**2 / batch)
    assert config.ema_kimg == pytest.approx(batch * 10 / 32)
    assert config.ema_rampup == 0.05
    assert config.mbstd_group == min(batch // gpus, 4)


def test_auto_256_matches_design_notes() -> None:
    config = resolve_config("auto", 256)
    assert (config.batch, config.channel_base, config.mbstd_group) == (16, 16384, 4)
    assert config.gamma == pytest.approx(0.8192)
    assert config.ema_kimg == pytest.approx(5.0)


def test_overrides_replace_only_what_they_name() -> None:
    base = resolve_config("paper256", 64)
    changed = resolve_config(
        "paper256",
        64,
        channel_base=4096,
        channel_max=128,
        mapping_layers=3,
        batch=16,
        gamma=50.0,
        glr=0.001,
        dlr=0.003,
        mbstd_group=2,
    )
    expected = dataclasses.replace(
        base,
        channel_base=4096,
        channel_max=128,
        mapping_layers=3,
        batch=16,
        gamma=50.0,
        glr=0.001,
        dlr=0.003,
        mbstd_group=2,
    )
    assert changed == expected
    assert isinstance(changed, NetworkConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.batch = 4  # type: ignore[misc]


def test_batch_override_keeps_auto_gamma_and_ema() -> None:
    """As in NVlabs train.py, --batch does not re-derive gamma or the EMA length."""
    default = resolve_config("auto", 256)
    smaller = resolve_config("auto", 256, batch=8)
    assert smaller.batch == 8
    assert (smaller.gamma, smaller.ema_kimg) == (default.gamma, default.ema_kimg)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cfg": "paper2048", "resolution": 256}, "unknown config"),
        ({"cfg": "auto", "resolution": 48}, "power of two"),
        ({"cfg": "auto", "resolution": 2}, "power of two"),
        ({"cfg": "auto", "resolution": 256, "gpus": 0}, "gpus"),
        ({"cfg": "auto", "resolution": 256, "channel_base": 0}, "channel_base"),
        ({"cfg": "auto", "resolution": 256, "gamma": -1.0}, "gamma"),
        ({"cfg": "auto", "resolution": 256, "gamma": float("nan")}, "gamma"),
        ({"cfg": "auto", "resolution": 256, "batch": 6}, "minibatch-stddev"),
        ({"cfg": "auto", "resolution": 256, "gpus": 4, "batch": 6}, "divisible"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_config(**kwargs)


def test_small_batches_below_the_group_size_are_allowed() -> None:
    assert resolve_config("auto", 256, batch=2).batch == 2
