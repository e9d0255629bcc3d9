"""Training snapshots that load without executing code, and the RNG state that makes resume exact.

A snapshot `run_dir/network-snapshot-NNNNNN.pt` (NNNNNN = kimg; ``NNNNNN.FFF`` with the
thousandths when the kimg is not whole, so small runs never overwrite a snapshot) is ``torch.save`` of a dict
holding only tensors and plain Python data, so ``torch.load(weights_only=True)`` reads it: the
reference's pickles, by contrast, run embedded source code when loaded. Layout::

    format, version
    G, D, G_ema                state_dicts
    G_init_kwargs, D_init_kwargs   JSON-able arguments that rebuild the networks (networks.build_module)
    options                    the resolved training options (a JSON-able dict)
    meta                       kimg, cur_nimg, batch_idx, world_size, extra_meta, torch_version, ...
    state                      optimizers, augment pipe and ADA controller, loss buffers, per-rank RNG

The data sampler needs no state of its own: its position is `meta.batch_idx` (the index order is a
pure function of the seed and the minibatch counter, see `stylegan2ada.dataset.InfiniteSampler`).

Snapshots are written atomically (stylegan2ada.io), so a crash leaves the previous one intact.

A snapshot this process did not write is untrusted: it is read in an isolated child process with
hard limits on memory and time (stylegan2ada.isolation, through a bounded reader of torch's zip
format that refuses anything but tensors and plain data), and the arguments it records are
range-checked before a network is built from them (stylegan2ada.network_limits).

Every reader here also takes an official NVlabs network pickle (`.pkl`): it is imported through
`stylegan2ada.nvlabs_import` (a restricted unpickler that never runs the file's embedded code) and
presented as a snapshot at kimg 0 without training state.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylegan2ada.io import atomic_open
from stylegan2ada.network_limits import check_network_arguments

FORMAT = "stylegan2ada.snapshot"
VERSION = 1
_NAME = re.compile(r"^network-snapshot-\d+(\.\d{3})?\.pt$")


class SnapshotError(ValueError):
    """A file is not a readable stylegan2ada snapshot; the message names it and says why."""


def progress_label(cur_nimg: int) -> str:
    """'000080' at 80 kimg (the reference's labels), '000000.250' at 0.25: distinct for every image count."""
    fraction = f".{cur_nimg % 1000:03d}" if cur_nimg % 1000 else ""
    return f"{cur_nimg // 1000:06d}{fraction}"


def snapshot_name(cur_nimg: int) -> str:
    return f"network-snapshot-{progress_label(cur_nimg)}.pt"


def save_snapshot(path: str | os.PathLike[str], snapshot: dict[str, Any]) -> Path:
    """Atomically write a snapshot dict (see the module docstring for its keys), streamed to disk."""
    with atomic_open(path, "wb") as handle:
        torch.save({"format": FORMAT, "version": VERSION, **snapshot}, handle)
    _WRITTEN[str(Path(path).resolve())] = _identity(Path(path))
    return Path(path)


# Snapshots this process wrote, by resolved path: (device, inode, size, mtime). Only these are read with
# torch.load in this process; every other file is read in an isolated child (stylegan2ada.isolation).
_WRITTEN: dict[str, tuple[int, int, int, int]] = {}


def _identity(path: Path) -> tuple[int, int, int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _written_here(path: Path) -> bool:
    return _WRITTEN.get(str(path.resolve())) == _identity(path)


def load_snapshot(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """The whole snapshot dict, tensors on `device`; refuses anything that is not tensors and plain data."""
    return _load(Path(path), device, meta_only=False)


EXPECTED = ("a stylegan2ada snapshot (network-snapshot-*.pt written by training) or an official NVlabs "
            "StyleGAN2-ADA network pickle (.pkl)")


def describe_file(path: Path) -> str:
    """What a file looks like from its first bytes, in words, for messages about the wrong file."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    kinds = ((b"PK\x03\x04", "a zip archive"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
             (b"\x1f\x8b", "a gzip file"), (b"%PDF", "a PDF document"), (b"\x93NUMPY", "a numpy .npy array"),
             (b"\x89HDF", "an HDF5 file (Keras/TensorFlow weights?)"))
    if not head:
        return "an empty file"
    for magic, kind in kinds:
        if head.startswith(magic):
            return kind
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file starting with bytes {head[:8].hex(' ')}"
    return "a text file"


def _not_a_snapshot(path: Path, detail: str) -> SnapshotError:
    return SnapshotError(f"{path}: not a snapshot: {detail}. Expected {EXPECTED}.")


META_KEYS = ("format", "version", "meta", "G_init_kwargs", "D_init_kwargs", "options")


def _load(path: Path, device: str | torch.device, meta_only: bool) -> dict[str, Any]:
    if not path.is_file():
        raise SnapshotError(f"{path}: no such file; expected {EXPECTED}.")
    kind = describe_file(path)
    if kind == "a Python pickle":
        return _import_pickle(path, device)
    if kind != "a zip archive":
        raise _not_a_snapshot(path, f"it is {kind}")
    if _written_here(path):
        data = torch.load(path, map_location=device, weights_only=True, mmap=meta_only)
    else:
        data = _to_device(_read_untrusted([path], META_KEYS if meta_only else None)[0], device)
    return _checked(path, data)


def _read_untrusted(paths: list[Path], keys: tuple[str, ...] | None) -> list[Any]:
    """Snapshots from elsewhere, read in an isolated child with hard limits (stylegan2ada.isolation)."""
    from stylegan2ada.isolation import read_isolated

    results = read_isolated("torch-zip", paths, keys)
    for path, result in zip(paths, results):
        if result.error is not None:
            raise _not_a_snapshot(path, result.error)
    return [result.tree for result in results]


def _to_device(value: Any, device: str | torch.device) -> Any:
    if torch.device(device).type == "cpu":
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _checked(path: Path, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SnapshotError(f"{path}: a torch file, but not a stylegan2ada snapshot (no format={FORMAT!r} key).")
    if data.get("version") != VERSION:
        raise SnapshotError(f"{path}: snapshot version {data.get('version')!r:.40}; this code reads version {VERSION}.")
    for name in ("G", "D", "G_ema"):
        weights = data.get(name)
        if weights is not None and not (isinstance(weights, dict) and all(
                isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in weights.items())):
            raise SnapshotError(f"{path}: its {name} is not a state dict (names and tensors); the snapshot is damaged.")
    return data


def _import_pickle(path: Path, device: str | torch.device) -> dict[str, Any]:
    from stylegan2ada.io import sha256_file
    from stylegan2ada.nvlabs_import import import_network_pickle, imported_snapshot
    from stylegan2ada.nvlabs_pickle import NetworkPickleError

    try:
        imported = import_network_pickle(path)
    except NetworkPickleError as error:
        raise SnapshotError(
            f"{error} Expected {EXPECTED}; official pickles are read without running their embedded code, "
            f"so only files holding the official networks (G, D, G_ema) and tensors load."
        ) from None
    snapshot = imported_snapshot(imported, sha256_file(path))
    for name in ("G", "D", "G_ema"):
        snapshot[name] = {key: value.to(device) for key, value in snapshot[name].items()}
    return {"format": FORMAT, "version": VERSION, **snapshot}


def snapshot_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """kimg, cur_nimg, batch_idx, G/D init_kwargs, resolved training `options` and `extra_meta`, cheaply."""
    path = Path(path)
    return _meta(path, _load(path, "cpu", meta_only=True))  # the child reads only META_KEYS, not the weights


def _meta(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The metadata every reader relies on, checked for kind (a crafted file may hold anything there)."""
    kinds = {"meta": dict, "G_init_kwargs": dict, "D_init_kwargs": dict, "options": dict}
    wrong = [f"{key} is {type(data.get(key)).__name__}" for key, kind in kinds.items()
             if not isinstance(data.get(key), kind)]
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    cur_nimg, extra = meta.get("cur_nimg"), meta.get("extra_meta", {})
    if type(cur_nimg) is not int or cur_nimg < 0:
        wrong.append("meta.cur_nimg is not a count of images")
    if not isinstance(extra, dict):
        wrong.append("meta.extra_meta is not a dict")
    if wrong:
        raise SnapshotError(f"{path}: its metadata is malformed ({'; '.join(wrong)}); the snapshot is damaged.")
    try:  # every reader builds networks from these: refuse what no sane network records, before anyone does
        for class_name, key in (("Generator", "G_init_kwargs"), ("Discriminator", "D_init_kwargs")):
            check_network_arguments(class_name, data[key])
    except (TypeError, ValueError) as error:
        raise SnapshotError(f"{path}: its recorded network arguments are refused: {error}.") from None
    return {**meta, "G_init_kwargs": data["G_init_kwargs"], "D_init_kwargs": data["D_init_kwargs"],
            "options": data["options"]}


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The snapshot's G_ema, rebuilt from its init_kwargs, in eval mode with gradients off.

    The arguments are range-checked before the network is built and the weights' names and shapes
    are compared with it before they are loaded (network_limits).
    """
    from stylegan2ada.network_limits import state_mismatch
    from stylegan2ada.networks import build_module

    data = load_snapshot(path)
    try:  # a damaged or hand-edited snapshot: its arguments or weights do not make a generator
        weights = data["G_ema"]
        if not isinstance(weights, dict) or not all(
                isinstance(value, torch.Tensor) and value.is_floating_point() for value in weights.values()):
            raise TypeError("G_ema is not a dict of floating-point tensors")
        generator = build_module("Generator", data["G_init_kwargs"])
        mismatch = state_mismatch(generator.state_dict(), weights)
        if mismatch:
            raise ValueError(f"its weights do not match its arguments: {mismatch}")
        generator.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise SnapshotError(f"{path}: its G_ema cannot be rebuilt ({detail}); the snapshot is damaged.") from None
    return generator.eval().requires_grad_(False).to(device)


def snapshot_metas(paths: list[Path]) -> list[dict[str, Any]]:
    """`snapshot_meta` of many files, those from elsewhere read in one isolated child."""
    untrusted = [path for path in paths if path.is_file() and describe_file(path) == "a zip archive"
                 and not _written_here(path)]
    read = dict(zip(untrusted, _read_untrusted(untrusted, META_KEYS))) if untrusted else {}
    return [_meta(path, _checked(path, read[path])) if path in read else snapshot_meta(path) for path in paths]


def latest_snapshot(run_dir: str | os.PathLike[str]) -> Path | None:
    """The snapshot of `run_dir` with the most training recorded inside (cur_nimg), or None without one.

    The names are not trusted: a snapshot from before the thousandths were added is named by whole kimg.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    files = sorted(file for file in run_dir.iterdir() if _NAME.match(file.name))
    found = [(meta["cur_nimg"], file.stat().st_mtime_ns, file.name, file)
             for file, meta in zip(files, snapshot_metas(files))]
    return max(found)[-1] if found else None


# -- random number generators ---------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every global RNG a training step may draw from, as tensors and plain data."""
    version, mt_state, gauss_next = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (the CUDA state applies to the current device)."""
    torch.set_rng_state(state["torch"].cpu())
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].cpu().numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run side work (image grids, metric hooks) without moving the training RNG streams."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)
