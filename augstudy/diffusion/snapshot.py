"""Diffusion snapshots: plain tensors and JSON-able data, written with `torch.save` and read back in
an isolated child with hard limits (`stylegan2ada.isolation`), so a crafted file can neither run code
nor crash, hang or exhaust the reading process.

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


META_KEYS = ("format", "version", "meta", "options", "unet_kwargs", "scheduler_kwargs")


def _read(path: Path, keys: tuple[str, ...] | None) -> tuple[Any, str | None]:
    """(the file's top-level data, None), or (None, why it cannot be read as tensors and plain data).

    The untrusted bytes are parsed in a child with memory, CPU and recursion limits that hands back
    only tensors and plain data; `keys` reads just those top-level entries (metadata without weights).
    """
    if not path.is_file():
        return None, "no such file"
    kind = describe_file(path)
    if kind != "a zip archive":
        return None, f"it is {kind}"
    from stylegan2ada.isolation import read_isolated

    result = read_isolated("torch-zip", [path], keys)[0]
    return result.tree, result.error


def is_diffusion_snapshot(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a diffusion snapshot (only its format key is read)."""
    data, _ = _read(Path(path), ("format",))
    return isinstance(data, dict) and data.get("format") == FORMAT


def load_snapshot(path: str | os.PathLike[str], *, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The whole snapshot dict on the CPU (or just `keys`); SnapshotError naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"{path}: no such file; expected {_EXPECTED}.")
    data, error = _read(path, keys)
    if error is not None:
        raise SnapshotError(f"{path}: not a diffusion snapshot: {error}. Expected {_EXPECTED}.")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"{path}: a torch file, but not a diffusion snapshot (no format={FORMAT!r} key).")
    if data.get("version") != VERSION:
        raise SnapshotError(f"{path}: diffusion snapshot version {data.get('version')!r:.40}; this code reads "
                            f"{VERSION}.")
    return data


def snapshot_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """meta, options, unet_kwargs and scheduler_kwargs, without reading the weights."""
    data = load_snapshot(path, keys=META_KEYS)
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
