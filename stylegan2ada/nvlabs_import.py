"""Official NVlabs network pickles as our networks and snapshots (no embedded code is run).

`import_network_pickle` reads a `.pkl` through `stylegan2ada.nvlabs_pickle` (a restricted
unpickler), maps the recorded constructor arguments of the official Generator and Discriminator
onto `stylegan2ada.networks`, loads their parameters and buffers by name (both implementations
name every tensor alike), and keeps the augment probability p. `imported_snapshot` turns the result
into our snapshot format, so every verb that reads snapshots reads it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from stylegan2ada.network_limits import state_mismatch
from stylegan2ada.networks import build_module
from stylegan2ada.nvlabs_pickle import NetworkFile, NetworkPickleError, PersistentObject, read_network_pickle

# Positional order of the official constructors, for files whose networks were built with init_args.
_G_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_D_ARGS = (
    "c_dim",
    "img_resolution",
    "img_channels",
    "architecture",
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "cmap_dim",
    "block_kwargs",
    "mapping_kwargs",
    "epilogue_kwargs",
)
_MAPPING_KEYS = {
    "num_layers",
    "embed_features",
    "layer_features",
    "activation",
    "lr_multiplier",
    "w_avg_beta",
}
_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "resample_filter"}
_EPILOGUE_KEYS = {"mbstd_group_size", "mbstd_num_channels", "activation"}
# Official options that change speed or memory layout only, never the numbers.
_SPEED_ONLY = {"fp16_channels_last"}
# Official options our implementation has fixed at the official defaults: accepted at that value only.
_FIXED_G = {"architecture": "skip", "use_noise": True, "activation": "lrelu"}
_FIXED_D_BLOCK = {"activation": "lrelu", "resample_filter": [1, 3, 3, 1]}


@dataclasses.dataclass
class ImportedNetworks:
    """Our G, D and G_ema rebuilt from an official pickle, with what else the file recorded."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_p: float | None
    training_set_kwargs: dict[str, Any] | None
    source: Path


def _kwargs(obj: PersistentObject, positional: tuple[str, ...], path: Path, name: str) -> dict[str, Any]:
    if len(obj.init_args) > len(positional):
        raise NetworkPickleError(
            f"{path}: {name} was built with {len(obj.init_args)} positional arguments; "
            f"the official {obj.class_name} takes at most {len(positional)}."
        )
    kwargs = dict(zip(positional, obj.init_args))
    kwargs.update(obj.init_kwargs)
    return kwargs


def _take(
    options: dict[str, Any] | None, allowed: set[str], fixed: dict[str, Any], where: str
) -> dict[str, Any]:
    """The options our constructors take; refuses values our architecture does not implement."""
    taken = {}
    for key, value in (options or {}).items():
        if key in allowed:
            taken[key] = value
        elif key in fixed:
            if value != fixed[key]:
                raise NetworkPickleError(
                    f"{where}: {key}={value!r} is not supported (only {fixed[key]!r} is implemented)"
                )
        elif key not in _SPEED_ONLY:
            raise NetworkPickleError(f"{where}: unknown option {key}={value!r}")
    return taken


def _check_arguments(official: dict[str, Any], known: tuple[str, ...], required: int, kind: str,
                     where: str) -> None:
    """The recorded constructor arguments hold the first `required` of `known` and nothing else."""
    missing = [key for key in known[:required] if key not in official]
    if missing:
        raise NetworkPickleError(f"{where}: its recorded arguments lack {', '.join(missing)}")
    unknown = set(official) - set(known)
    if unknown:
        raise NetworkPickleError(f"{where}: unknown {kind} arguments {', '.join(sorted(unknown))}")


def generator_kwargs(official: dict[str, Any], where: str = "G") -> dict[str, Any]:
    """Our Generator's init_kwargs for the official Generator's constructor arguments."""
    _check_arguments(official, _G_ARGS, 5, "Generator", where)
    return {
        **{key: official[key] for key in _G_ARGS[:5]},
        "mapping_kwargs": _take(official.get("mapping_kwargs"), _MAPPING_KEYS, {}, f"{where} mapping_kwargs"),
        "synthesis_kwargs": _take(
            official.get("synthesis_kwargs"), _SYNTHESIS_KEYS, _FIXED_G, f"{where} synthesis_kwargs"
        ),
    }


def discriminator_kwargs(official: dict[str, Any], where: str = "D") -> dict[str, Any]:
    """Our Discriminator's init_kwargs for the official Discriminator's constructor arguments."""
    _check_arguments(official, _D_ARGS, 3, "Discriminator", where)
    block = dict(official.get("block_kwargs") or {})
    freeze_layers = int(block.pop("freeze_layers", 0))
    _take(block, set(), _FIXED_D_BLOCK, f"{where} block_kwargs")
    kwargs = {key: official[key] for key in _D_ARGS[:9] if key in official}
    kwargs["mapping_kwargs"] = _take(
        official.get("mapping_kwargs"), _MAPPING_KEYS, {}, f"{where} mapping_kwargs"
    )
    kwargs["epilogue_kwargs"] = _take(
        official.get("epilogue_kwargs"), _EPILOGUE_KEYS, {}, f"{where} epilogue_kwargs"
    )
    kwargs["freeze_layers"] = freeze_layers
    return kwargs


def _network(data: NetworkFile, name: str, class_name: str, path: Path) -> PersistentObject:
    obj = data.networks.get(name)
    if obj is None or obj.class_name != class_name:
        found = data.entries.get(name, "nothing") if obj is None else obj.class_name
        raise NetworkPickleError(f"{path}: its {name!r} entry is {found}, not an official {class_name}.")
    return obj


def _build(class_name: str, kwargs: dict[str, Any], path: Path, name: str) -> torch.nn.Module:
    """Our network for recorded arguments; arguments no network can be built from are the file's fault.

    build_module range-checks the arguments and bounds the parameter count before allocating.
    """
    try:
        return build_module(class_name, kwargs)
    except (TypeError, ValueError, RuntimeError, OverflowError, AssertionError, MemoryError) as error:
        raise NetworkPickleError(
            f"{path}: its {name} cannot be built from its recorded arguments ({error})."
        ) from None


def _load(module: torch.nn.Module, obj: PersistentObject, path: Path, name: str) -> torch.nn.Module:
    """The file's tensors into `module`, once their names and shapes match it (checked first)."""
    tensors = obj.state_dict()
    expected = module.state_dict()
    mismatch = state_mismatch(expected, tensors)
    if mismatch:
        raise NetworkPickleError(
            f"{path}: its {name} does not match the network its arguments describe ({mismatch})."
        )
    module.load_state_dict({key: value.to(expected[key].dtype) for key, value in tensors.items()})
    return module


def import_network_pickle(path: str | os.PathLike[str]) -> ImportedNetworks:
    """G, D and G_ema of an official pickle as our networks (eval mode), with the augment p it recorded."""
    path = Path(path)
    data = read_network_pickle(path)
    g_obj, d_obj, ema_obj = (
        _network(data, name, cls, path)
        for name, cls in (("G", "Generator"), ("D", "Discriminator"), ("G_ema", "Generator"))
    )
    try:  # the recorded arguments are the file's data: containers or numbers of the wrong kind are its fault
        g_kwargs = generator_kwargs(_kwargs(g_obj, _G_ARGS, path, "G"), f"{path}: G")
        d_kwargs = discriminator_kwargs(_kwargs(d_obj, _D_ARGS, path, "D"), f"{path}: D")
        ema_kwargs = generator_kwargs(_kwargs(ema_obj, _G_ARGS, path, "G_ema"), f"{path}: G_ema")
    except (TypeError, ValueError, AttributeError) as error:
        if isinstance(error, NetworkPickleError):
            raise
        raise NetworkPickleError(f"{path}: its recorded network arguments are malformed ({error}).") from None
    if ema_kwargs != g_kwargs:
        raise NetworkPickleError(f"{path}: G and G_ema were built with different arguments.")
    with torch.random.fork_rng(devices=[]):  # initial values are all overwritten; keep the caller's RNG
        G = _load(_build("Generator", g_kwargs, path, "G"), g_obj, path, "G")
        D = _load(_build("Discriminator", d_kwargs, path, "D"), d_obj, path, "D")
        G_ema = _load(_build("Generator", ema_kwargs, path, "G_ema"), ema_obj, path, "G_ema")
    pipe = data.networks.get("augment_pipe")
    augment_p = None
    pipe_tensors = pipe.state_dict() if pipe is not None and pipe.class_name == "AugmentPipe" else {}
    if "p" in pipe_tensors:
        p = pipe_tensors["p"]
        if p.numel() != 1 or not (p.is_floating_point() and torch.isfinite(p).all()):
            raise NetworkPickleError(f"{path}: its augment_pipe p is not a single finite number.")
        augment_p = float(p)
    return ImportedNetworks(
        G=G.eval().requires_grad_(False),
        D=D.eval().requires_grad_(False),
        G_ema=G_ema.eval().requires_grad_(False),
        augment_p=augment_p,
        training_set_kwargs=data.training_set_kwargs,
        source=path,
    )


def imported_snapshot(imported: ImportedNetworks, source_sha256: str) -> dict[str, Any]:
    """Our snapshot dict for an imported pickle (kimg 0, no optimiser state: for generating and transfer)."""
    return {
        "G": imported.G.state_dict(),
        "D": imported.D.state_dict(),
        "G_ema": imported.G_ema.state_dict(),
        "G_init_kwargs": imported.G.init_kwargs,
        "D_init_kwargs": imported.D.init_kwargs,
        "options": {},
        "meta": {
            "kimg": 0.0,
            "cur_nimg": 0,
            "batch_idx": 0,
            "world_size": 1,
            "extra_meta": {
                "imported_from": str(imported.source.resolve()),
                "imported_sha256": source_sha256,
                "augment_p": imported.augment_p,
                "training_set_kwargs": imported.training_set_kwargs,
            },
            "torch_version": str(torch.__version__),
            "device": "cpu",
            "stats": {},
        },
        "state": None,
    }

