"""Start a run from a trained network of another shape: channels, resolution or conditioning.

The new networks keep the source's architecture (widths, mapping depth, minibatch-stddev group,
conv clamp) at the new dataset's resolution, channel count and number of classes. Every tensor is
then taken from the source when names and shapes agree ("transferred"), converted when a known
rule maps it ("adapted"), or left at the new network's seeded initialisation ("initialised"):

- RGB -> grey: G's ToRGB weights and biases become the luma (ITU-R 601, as PIL's "L") combination
  of the three colour rows, so G_grey(z) = luma(G_rgb(z)); D's FromRGB weights are summed over the
  input channels, so D_grey(x) = D_rgb(x repeated over 3 channels). Grey -> RGB is the converse
  (G writes R = G = B; D sees the luma of its input).
- another resolution: the blocks of the resolutions both networks have are transferred; the rest
  start fresh (and D's FromRGB moves to the new top block, so it starts fresh when that changes).
- unconditional -> conditional: G's label embedding is added with zero weight into the first
  mapping layer, so the new G starts as the old one for every label; D's projection head and label
  mapping start fresh. Conditional -> unconditional drops them.

Equalised learning rate stores weights scaled by 1/sqrt(fan_in), so every adapted weight is
rescaled when its fan-in changes and the effective weights are exactly the converted ones.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import torch

from stylegan2ada.networks import build_module

LUMA = (0.299, 0.587, 0.114)
STATUSES = ("transferred", "adapted", "initialised", "dropped")


@dataclasses.dataclass(frozen=True)
class TransferRow:
    """What happened to one block of G or D (`detail` names its layers that were not transferred)."""

    network: str
    block: str
    status: str
    detail: str = ""


def _channel_map(source: int, target: int) -> torch.Tensor:
    """[target, source] matrix taking image channels of the source to the target's."""
    if source == target:
        return torch.eye(target)
    if (source, target) == (3, 1):
        return torch.tensor([LUMA])
    if (source, target) == (1, 3):
        return torch.ones([3, 1])
    raise ValueError(f"cannot transfer between {source} and {target} image channels (only 1 <-> 3 or equal)")


def target_kwargs(
    source_meta: dict[str, Any],
    resolution: int,
    channels: int,
    c_dim: int,
    *,
    num_fp16_res: int,
    conv_clamp: float | None,
    freeze_layers: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """init_kwargs of G and D: the source's architecture at this size, channel count and labels.

    The source's conv_clamp is kept (its weights were trained with it); `conv_clamp` applies only
    when the source had none. `num_fp16_res` is the new run's choice (speed only).
    """
    G_kwargs = copy.deepcopy(source_meta["G_init_kwargs"])
    D_kwargs = copy.deepcopy(source_meta["D_init_kwargs"])
    _channel_map(int(G_kwargs["img_channels"]), channels)  # refuse unsupported channel changes early
    for kwargs in (G_kwargs, D_kwargs):
        kwargs.update(img_resolution=resolution, img_channels=channels, c_dim=c_dim)
    synthesis = G_kwargs.setdefault("synthesis_kwargs", {})
    clamp = synthesis.get("conv_clamp")
    clamp = conv_clamp if clamp is None else clamp
    synthesis.update(num_fp16_res=num_fp16_res, conv_clamp=clamp)
    D_kwargs.update(
        num_fp16_res=num_fp16_res,
        conv_clamp=clamp if D_kwargs.get("conv_clamp") is None else D_kwargs["conv_clamp"],
        freeze_layers=freeze_layers,
    )
    return G_kwargs, D_kwargs


def build_target(
    source_meta: dict[str, Any],
    resolution: int,
    channels: int,
    c_dim: int,
    *,
    num_fp16_res: int = 0,
    conv_clamp: float | None = None,
    freeze_layers: int = 0,
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Freshly initialised G and D for `target_kwargs` (draws from the global RNG, as any build)."""
    G_kwargs, D_kwargs = target_kwargs(
        source_meta,
        resolution,
        channels,
        c_dim,
        num_fp16_res=num_fp16_res,
        conv_clamp=conv_clamp,
        freeze_layers=freeze_layers,
    )
    return build_module("Generator", G_kwargs), build_module("Discriminator", D_kwargs)


# -- adapters: (source tensor, target shape) -> the target tensor, or None when the rule does not apply
Adapter = Callable[[torch.Tensor, torch.Size], "torch.Tensor | None"]


def _torgb(source_channels: int, target_channels: int) -> Adapter:
    matrix = _channel_map(source_channels, target_channels)

    def adapt(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
        flat = matrix.to(tensor.dtype) @ tensor.reshape(tensor.shape[0], -1)  # output rows combined
        return flat.reshape(shape) if flat.numel() == math.prod(shape) else None

    return adapt


def _fromrgb(source_channels: int, target_channels: int) -> Adapter:
    # D_t(x) = D_s(M x): weight_t = weight_s @ M over the input channels; gain 1/sqrt(fan_in) changes.
    matrix = _channel_map(target_channels, source_channels)  # [source, target]
    rescale = math.sqrt(target_channels / source_channels)

    def adapt(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
        out = torch.einsum("oikl,it->otkl", tensor, matrix.to(tensor.dtype)) * rescale
        return out if out.shape == shape else None

    return adapt


def _first_mapping_layer(z_dim: int) -> Adapter:
    # Columns [:z_dim] read z, the rest the label embedding; weight gain is 1/sqrt(in_features).
    def adapt(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
        if tensor.shape[0] != shape[0]:
            return None
        out = torch.zeros(shape, dtype=tensor.dtype)
        out[:, :z_dim] = tensor[:, :z_dim] * math.sqrt(shape[1] / tensor.shape[1])
        return out

    return adapt


def _adapters(
    network: str, source_kwargs: dict[str, Any], target_init: dict[str, Any]
) -> dict[str, tuple[Adapter, str]]:
    """Per tensor-name suffix, the rule converting it and a word on what it does."""
    source_channels, target_channels = int(source_kwargs["img_channels"]), int(target_init["img_channels"])
    channels = f"{source_channels} -> {target_channels} channels"
    if network == "G":
        how = (
            "luma of the colour outputs"
            if (source_channels, target_channels) == (3, 1)
            else "grey to R = G = B"
        )
        rules = {
            ".torgb.weight": (_torgb(source_channels, target_channels), f"{channels}: {how}"),
            ".torgb.bias": (_torgb(source_channels, target_channels), f"{channels}: {how}"),
        }
        if int(source_kwargs["c_dim"]) != int(target_init["c_dim"]):
            rules["mapping.fc0.weight"] = (
                _first_mapping_layer(int(target_init["z_dim"])),
                "label columns added at zero" if int(target_init["c_dim"]) else "label columns dropped",
            )
        return rules
    how = (
        "summed over the input channels"
        if (source_channels, target_channels) == (3, 1)
        else "luma of the input"
    )
    return {".fromrgb.weight": (_fromrgb(source_channels, target_channels), f"{channels}: {how}")}


def _block(name: str) -> tuple[str, str]:
    """(block, rest) of a tensor name: G's `synthesis.b32` or `mapping`, D's `b32`, `b4` or `mapping`."""
    parts = name.split(".")
    cut = 2 if parts[0] == "synthesis" else 1
    return ".".join(parts[:cut]), ".".join(parts[cut:-1])


def adapt_state(
    network: str,
    source_state: dict[str, torch.Tensor],
    source_kwargs: dict[str, Any],
    target: torch.nn.Module,
) -> tuple[dict[str, torch.Tensor], list[TransferRow]]:
    """The tensors to load into `target` (those not initialised) and one row per layer saying why."""
    rules = _adapters(network, source_kwargs, target.init_kwargs)
    loaded: dict[str, torch.Tensor] = {}
    status: dict[str, tuple[str, str]] = {}  # tensor name -> (status, detail)
    for name, current in target.state_dict().items():
        tensor = source_state.get(name)
        if tensor is not None and tensor.shape == current.shape:
            loaded[name], status[name] = tensor, ("transferred", "")
            continue
        rule = next((rule for suffix, rule in rules.items() if name.endswith(suffix)), None)
        adapted = (
            rule[0](tensor.detach().cpu(), current.shape) if tensor is not None and rule is not None else None
        )
        if adapted is not None:
            loaded[name], status[name] = adapted, ("adapted", rule[1])
        elif tensor is not None:
            status[name] = ("initialised", f"shape {list(tensor.shape)} -> {list(current.shape)}")
        else:
            status[name] = ("initialised", "not in the source")
    return loaded, _rows(network, status, [name for name in source_state if name not in status])


def _rows(network: str, status: dict[str, tuple[str, str]], dropped: list[str]) -> list[TransferRow]:
    """One row per block: its least-transferred status, and which layers were not transferred and why."""
    blocks: dict[str, list[tuple[str, str, str]]] = {}
    for name, (state, detail) in status.items():
        block, layer = _block(name)
        blocks.setdefault(block, []).append((layer, state, detail))
    rows = []
    for block, entries in blocks.items():
        worst = max((state for _, state, _ in entries), key=STATUSES.index)
        notes: dict[tuple[str, str], str] = {}
        for layer, state, detail in entries:
            if state != "transferred":
                notes.setdefault(
                    (layer or block, state), f"{layer or block}: {state}{f' ({detail})' if detail else ''}"
                )
        everything_fresh = worst == "initialised" and all(state == worst for _, state, _ in entries)
        rows.append(
            TransferRow(
                network, block, worst, "not in the source" if everything_fresh else "; ".join(notes.values())
            )
        )
    grouped: dict[str, list[str]] = {}
    for name in dropped:
        block, layer = _block(name)
        grouped.setdefault(block, [])
        if layer and layer not in grouped[block]:
            grouped[block].append(layer)
    for block, layers in grouped.items():
        whole = block not in blocks
        rows.append(
            TransferRow(
                network,
                block,
                "dropped",
                "not in the new network" if whole else f"{', '.join(layers)}: not in the new network",
            )
        )
    return rows


def transfer_weights(
    source: dict[str, Any], G: torch.nn.Module, D: torch.nn.Module, G_ema: torch.nn.Module
) -> list[TransferRow]:
    """Load what `source` (a snapshot dict) can give into G, D and G_ema; the table of what happened.

    Tensors left out keep their current values, so G_ema = deepcopy(G) before the call gives G and
    G_ema the same fresh layers.
    """
    table: list[TransferRow] = []
    for name, module, kwargs in (
        ("G", G, "G_init_kwargs"),
        ("D", D, "D_init_kwargs"),
        ("G_ema", G_ema, "G_init_kwargs"),
    ):
        loaded, rows = adapt_state("D" if name == "D" else "G", source[name], source[kwargs], module)
        current = module.state_dict()
        module.load_state_dict({**current, **{key: value.to(current[key]) for key, value in loaded.items()}})
        if name != "G_ema":  # G_ema follows G's rows exactly
            table += rows
    return table


def format_table(rows: list[TransferRow]) -> str:
    """The transfer table as aligned text, with a count per status at the end."""
    width = max((len(f"{row.network} {row.block}") for row in rows), default=10)
    lines = [f"{'block':<{width}}  {'status':<11}  detail"]
    lines += [
        f"{row.network + ' ' + row.block:<{width}}  {row.status:<11}  {row.detail}".rstrip() for row in rows
    ]
    counts = {state: sum(row.status == state for row in rows) for state in STATUSES}
    lines.append("blocks: " + ", ".join(f"{count} {state}" for state, count in counts.items()))
    return "\n".join(lines) + "\n"


def transfer_table(
    source_path: str | os.PathLike[str], resolution: int, channels: int, c_dim: int, freeze_layers: int = 0
) -> list[TransferRow]:
    """The table `transfer_weights` gives for starting a run of this shape from `source_path`.

    Computes the real transfer on throw-away networks, without touching the global RNG.
    """
    from stylegan2ada.snapshot import load_snapshot

    source = load_snapshot(source_path)
    with torch.random.fork_rng(devices=[]):
        G, D = build_target(source, resolution, channels, c_dim, freeze_layers=freeze_layers)
        return transfer_weights(source, G, D, copy.deepcopy(G))
