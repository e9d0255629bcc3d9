"""Named training configurations of StyleGAN2-ADA (NVlabs train.py) and their size overrides.

`auto` derives its values from the resolution and GPU count; the others are the paper setups.
Overrides (issue 9) let a CPU user shrink any config; each one replaces exactly the named value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class _Spec:
    batch: int
    mbstd_group: int
    fmaps: float
    lrate: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    mapping_layers: int
    d_architecture: str = "resnet"
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9


_SPECS: dict[str, _Spec] = {
    "stylegan2": _Spec(32, 4, 1.0, 0.002, 10.0, 10.0, None, 8),
    "paper256": _Spec(64, 8, 0.5, 0.0025, 1.0, 20.0, None, 8),
    "paper512": _Spec(64, 8, 1.0, 0.0025, 0.5, 20.0, None, 8),
    "paper1024": _Spec(32, 4, 1.0, 0.002, 2.0, 10.0, None, 8),
    # cifar: D without residual connections, no path-length regularisation, no style mixing.
    "cifar": _Spec(64, 32, 1.0, 0.0025, 0.01, 500.0, 0.05, 2, "orig", 0.0, 0.0),
}

CONFIG_NAMES: tuple[str, ...] = ("auto", *_SPECS)


@dataclass(frozen=True)
class NetworkConfig:
    """Resolved network sizes and training hyper-parameters of one config.

    `batch` is the total minibatch over all GPUs; `gamma` the R1 weight; `ema_kimg` the half-life
    of G's EMA (`ema_rampup` None: no ramp-up); `mbstd_group` the minibatch-stddev group size.
    """

    cfg: str
    channel_base: int
    channel_max: int
    mapping_layers: int
    batch: int
    glr: float
    dlr: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    mbstd_group: int
    d_architecture: str = "resnet"
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


def _resolve(
    cfg: str,
    resolution: int,
    gpus: int = 1,
    *,
    channel_base: int | None = None,
    channel_max: int | None = None,
    mapping_layers: int | None = None,
    batch: int | None = None,
    gamma: float | None = None,
    glr: float | None = None,
    dlr: float | None = None,
    mbstd_group: int | None = None,
) -> NetworkConfig:
    """`resolve_config` without the batch checks (the networks do not depend on the batch)."""
    if cfg not in CONFIG_NAMES:
        raise ValueError(f"unknown config {cfg!r}; choose one of {', '.join(CONFIG_NAMES)}")
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, not {resolution!r}")
    if not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, not {gpus!r}")
    for name, value in [
        ("channel_base", channel_base),
        ("channel_max", channel_max),
        ("mapping_layers", mapping_layers),
        ("batch", batch),
        ("glr", glr),
        ("dlr", dlr),
        ("mbstd_group", mbstd_group),
    ]:
        _check_positive(name, value)
    if gamma is not None and not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be a finite number >= 0, not {gamma!r}")

    if cfg == "auto":
        spec_batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        spec = _Spec(
            batch=spec_batch,
            mbstd_group=min(spec_batch // gpus, 4),
            fmaps=1.0 if resolution >= 512 else 0.5,
            lrate=0.002 if resolution >= 1024 else 0.0025,
            gamma=0.0002 * resolution**2 / spec_batch,
            ema_kimg=spec_batch * 10 / 32,
            ema_rampup=0.05,
            mapping_layers=2,
        )
    else:
        spec = _SPECS[cfg]

    return NetworkConfig(
        cfg=cfg,
        channel_base=int(channel_base if channel_base is not None else spec.fmaps * 32768),
        channel_max=int(channel_max if channel_max is not None else 512),
        mapping_layers=int(mapping_layers if mapping_layers is not None else spec.mapping_layers),
        batch=int(batch if batch is not None else spec.batch),
        glr=float(glr if glr is not None else spec.lrate),
        dlr=float(dlr if dlr is not None else spec.lrate),
        gamma=float(gamma if gamma is not None else spec.gamma),
        ema_kimg=float(spec.ema_kimg),
        ema_rampup=spec.ema_rampup,
        mbstd_group=int(mbstd_group if mbstd_group is not None else spec.mbstd_group),
        d_architecture=spec.d_architecture,
        pl_weight=spec.pl_weight,
        style_mixing_prob=spec.style_mixing_prob,
    )


def resolve_config(
    cfg: str,
    resolution: int,
    gpus: int = 1,
    *,
    channel_base: int | None = None,
    channel_max: int | None = None,
    mapping_layers: int | None = None,
    batch: int | None = None,
    gamma: float | None = None,
    glr: float | None = None,
    dlr: float | None = None,
    mbstd_group: int | None = None,
) -> NetworkConfig:
    """Resolve a named config for `resolution` and `gpus`, then apply the overrides given.

    As in NVlabs train.py, `auto`'s gamma and EMA length follow from its own minibatch size, so a
    `batch` override alone changes neither (pass `gamma` to change R1). The batch must split evenly
    over the GPUs and each GPU's share into minibatch-stddev groups.
    """
    resolved = _resolve(
        cfg,
        resolution,
        gpus,
        channel_base=channel_base,
        channel_max=channel_max,
        mapping_layers=mapping_layers,
        batch=batch,
        gamma=gamma,
        glr=glr,
        dlr=dlr,
        mbstd_group=mbstd_group,
    )
    if resolved.batch % gpus:
        raise ValueError(f"batch {resolved.batch} is not divisible by the number of GPUs ({gpus})")
    batch_gpu = resolved.batch // gpus
    if batch_gpu > resolved.mbstd_group and batch_gpu % resolved.mbstd_group:
        raise ValueError(
            f"the per-GPU batch ({batch_gpu}) must be a multiple of the minibatch-stddev group size "
            f"({resolved.mbstd_group}) or at most that size; change batch or mbstd_group"
        )
    return resolved
