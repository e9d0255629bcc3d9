"""Diffusion snapshots: plain tensors and JSON-able data, read with `torch.load(weights_only=True)`.

`RUN/diffusion-snapshot-NNNNNN.pt` (NNNNNN = kimg, with thousandths when not whole, as GAN snapshots)
holds::

    format, version
    model, ema                 UNet state_dicts (the EMA weights make the pools)
    unet_kwargs                JSON-able DiffusionModelUNet arguments (model.unet_kwargs)
    scheduler_kwargs           the training noise schedule (model.scheduler_kwargs)
    options                    the resolved training options
    meta                       kimg, cur_nimg, step, train_s (training wall time), resolution, channels,
                               class_name / class_names, versions
    state                      optimizer, the training RNG (torch.Generator state) and the global RNGs

Everything a training step draws comes from the stored generator and `step`, so a run resumed from a
snapshot continues exactly as if it had never stopped. Files are written atomically.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from stylegan2ada.io import atomic_open
from stylegan2ada.snapshot import SnapshotError, describe_file, progress_label

FORMAT = "augstudy.diffusion.snapshot"
VERSION = 1
KIND = "diffusion"
_NAME = re.compile(r"^diffusion-snapshot-\d+(\.\d{3})?\.pt$")
_EXPECTED = "a diffusion snapshot (diffusion-snapshot-*.pt written by `augstudy train-diffusion`)"


def snapshot_name(cur_nimg: int) -> str:
    return f"diffusion-snapshot-{progress_label(cur_nimg)}.pt"


def save_snapshot(path: str | os.PathLike[str], snapshot: dict[str, Any]) -> Path:
    with atomic_open(path, "wb") as handle:
        torch.save({"format": FORMAT, "version": VERSION, **snapshot}, handle)
    return Path(path)


def _read(path: Path, mmap: bool) -> Any:
    """The file's torch data if it is a torch zip of tensors and plain data, else None (never runs code)."""
    if not path.is_file() or describe_file(path) != "a zip archive":
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError):
        return None


def is_diffusion_snapshot(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a diffusion snapshot (read memory-mapped: the weights are not loaded)."""
    data = _read(Path(path), mmap=True)
    return isinstance(data, dict) and data.get("format") == FORMAT


def load_snapshot(path: str | os.PathLike[str], *, mmap: bool = False) -> dict[str, Any]:
    """The whole snapshot dict on the CPU; SnapshotError naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such file; expected {_EXPECTED}.")
    data = _read(path, mmap)
    if data is None:
        raise SnapshotError(f"{path}: not a diffusion snapshot: it is {describe_file(path)} that torch cannot read "
                            f"as tensors and plain data. Expected {_EXPECTED}.")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"{path}: a torch file, but not a diffusion snapshot (no format={FORMAT!r} key).")
    if data.get("version") != VERSION:
        raise SnapshotError(f"{path}: diffusion snapshot version {data.get('version')}; this code reads {VERSION}.")
    return data


def snapshot_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """meta, options, unet_kwargs and scheduler_kwargs, without reading the weights."""
    data = load_snapshot(path, mmap=True)
    return {**data["meta"], "options": data["options"], "unet_kwargs": data["unet_kwargs"],
            "scheduler_kwargs": data["scheduler_kwargs"]}


def load_denoiser(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                  weights: str = "ema") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The snapshot's UNet (EMA weights by default) in eval mode, and its scheduler_kwargs.

    The network is first built on the "meta" device and its shapes compared with the stored tensors,
    so hand-edited arguments that ask for a huge network are refused before anything is allocated.
    """
    from augstudy.diffusion.model import build_unet

    data = load_snapshot(path)
    try:
        kwargs, state = dict(data["unet_kwargs"]), data[weights]
        shapes = {name: tuple(value.shape) for name, value in build_unet(kwargs, "meta").state_dict().items()}
        stored = {name: tuple(value.shape) for name, value in state.items()}
        if shapes != stored:
            raise ValueError("the stored weights do not fit the stored network arguments")
        model = build_unet(kwargs)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise SnapshotError(f"{path}: its network cannot be rebuilt ({detail}); the snapshot is damaged.") from None
    return model.eval().requires_grad_(False).to(device), dict(data["scheduler_kwargs"])


def latest_snapshot(run_dir: str | os.PathLike[str]) -> Path | None:
    """The diffusion snapshot of `run_dir` with the most training inside (cur_nimg), or None."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [(snapshot_meta(file)["cur_nimg"], file.stat().st_mtime_ns, file.name, file)
             for file in run_dir.iterdir() if _NAME.match(file.name)]
    return max(found)[-1] if found else None
