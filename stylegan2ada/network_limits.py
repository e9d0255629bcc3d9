"""Recorded network arguments are checked before a network is built from them.

A snapshot or an official pickle records the constructor arguments of its networks, and building
a network allocates what they say: z_dim = w_dim = 36000 or a million mapping layers ask for
gigabytes before any tensor of the file is looked at. `check_network_arguments` refuses values
outside sane ranges and a network whose parameter count (bounded from above by
`parameter_bound`, computed from the arguments alone) exceeds `MAX_PARAMETERS`;
`state_mismatch` compares a file's tensors with the built network before they are loaded.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

MAX_PARAMETERS = 200_000_000  # per network; the largest official StyleGAN2 (1024 px, config F) has 30 M
_INTS = {  # argument: (lowest, highest)
    "z_dim": (1, 4096),
    "w_dim": (1, 4096),
    "c_dim": (0, 10_000),
    "img_resolution": (4, 4096),
    "img_channels": (1, 16),
    "num_layers": (1, 32),
    "embed_features": (1, 4096),
    "layer_features": (1, 4096),
    "channel_base": (1, 1 << 20),
    "channel_max": (1, 4096),
    "num_fp16_res": (0, 16),
    "cmap_dim": (1, 4096),
    "mbstd_group_size": (1, 256),
    "mbstd_num_channels": (0, 64),
    "freeze_layers": (0, 64),
}
_FLOATS = {"conv_clamp": (0.0, 1e6), "lr_multiplier": (0.0, 1e3), "w_avg_beta": (0.0, 1.0)}
_MAY_BE_NONE = {"embed_features", "layer_features", "cmap_dim", "mbstd_group_size", "conv_clamp", "w_avg_beta"}
_NESTED = ("mapping_kwargs", "synthesis_kwargs", "epilogue_kwargs")


def _check_value(key: str, value: Any, where: str) -> None:
    if value is None and key in _MAY_BE_NONE:
        return
    if key in _INTS:
        low, high = _INTS[key]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{where}{key}={_short(value)} (an integer from {low} to {high} is expected)")
    elif key in _FLOATS:
        low, high = _FLOATS[key]
        if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{where}{key}={_short(value)} (a number from {low:g} to {high:g} is expected)")
    elif key == "resample_filter":
        if (type(value) is not list or not 1 <= len(value) <= 16
                or not all(type(tap) in (int, float) and math.isfinite(tap) for tap in value)):
            raise ValueError(f"{where}resample_filter={_short(value)} (a list of at most 16 numbers is expected)")
    elif key in ("architecture", "activation") and (type(value) is not str or len(value) > 32):
        raise ValueError(f"{where}{key}={_short(value)} (a short name is expected)")


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, (int, float, str, type(None))) else f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def check_network_arguments(class_name: str, kwargs: Any) -> None:
    """Refuse arguments outside sane ranges and networks above `MAX_PARAMETERS`, before allocating.

    Raises ValueError naming the argument (TypeError for a container that is not a dict); unknown
    arguments are left to the constructor (TypeError).
    """
    if not isinstance(kwargs, dict):
        raise TypeError(f"{class_name} arguments are a {type(kwargs).__name__}, not a dict")
    for key, value in kwargs.items():
        if key in _NESTED:
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{class_name} {key} is a {type(value).__name__}, not a dict")
            for inner, inner_value in (value or {}).items():
                _check_value(inner, inner_value, f"{class_name} {key}: ")
        else:
            _check_value(key, value, f"{class_name} ")
    resolution = kwargs.get("img_resolution")
    if type(resolution) is int and resolution & (resolution - 1):
        raise ValueError(f"{class_name} img_resolution={resolution} (a power of two is expected)")
    count = parameter_bound(class_name, kwargs)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{class_name} with these arguments would hold about {count:,} parameters (at most "
            f"{MAX_PARAMETERS:,} are accepted)"
        )


def parameter_bound(class_name: str, kwargs: dict[str, Any]) -> int:
    """An upper bound on the parameter count (at most 15 % above it), from the arguments alone."""
    get = kwargs.get
    resolution, channels, c_dim = get("img_resolution") or 4, get("img_channels") or 1, get("c_dim") or 0
    nested = {key: get(key) or {} for key in _NESTED}
    base = get("channel_base") or nested["synthesis_kwargs"].get("channel_base") or 32768
    cmax = get("channel_max") or nested["synthesis_kwargs"].get("channel_max") or 512
    mapping = nested["mapping_kwargs"]

    def width(res: int) -> int:
        return max(min(base // res, cmax), 1)

    def fc(dims: list[int]) -> int:
        return sum(a * b + b for a, b in itertools.pairwise(dims))

    resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
    if class_name == "Generator":
        w_dim = get("w_dim") or 512
        embed = (mapping.get("embed_features") or w_dim) if c_dim else 0
        layer = mapping.get("layer_features") or w_dim
        layers = mapping.get("num_layers") or 8
        total = fc([c_dim, embed] if c_dim else []) + fc([(get("z_dim") or 0) + embed] + [layer] * (layers - 1)
                                                         + [w_dim])
        for res in resolutions:  # const (4x4), conv0 (above 4x4), conv1 and torgb, each with its affine
            prev, cur = (width(res // 2) if res > 4 else 0), width(res)
            total += 16 * cur * (res == 4) + 9 * cur * (prev + cur) + w_dim * (prev + 2 * cur) + prev + 4 * cur + 2
            total += (cur + 1) * channels
        return total
    cmap = get("cmap_dim") or width(4)
    epilogue = nested["epilogue_kwargs"]
    mbstd = epilogue.get("mbstd_num_channels", 1) or 0
    total = (channels + 1) * width(resolution)
    for res in resolutions[1:]:
        tmp, out = width(res), width(res // 2)
        total += 9 * tmp * tmp + 9 * tmp * out + tmp * out + tmp + out
    ch4 = width(4)
    total += 9 * (ch4 + mbstd) * ch4 + ch4 + 16 * ch4 * ch4 + ch4 + ch4 * (cmap if c_dim else 1) + cmap
    if c_dim:
        total += fc([c_dim, cmap]) + fc([cmap] * ((mapping.get("num_layers") or 8) + 1))
    return total


def state_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """What differs between a built network's state dict and a file's tensors, or None (names, shapes)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(key for key in set(expected) & set(found) if tuple(found[key].shape) != tuple(expected[key].shape))
    if not (missing or unexpected or wrong):
        return None
    return "; ".join(
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
        if keys
    )
