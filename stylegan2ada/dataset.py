"""Training images in the NVlabs dataset format, and the sampler that feeds them to the loop.

A dataset is a folder or an uncompressed zip of same-sized square PNG/JPEG images (mode L or RGB)
with an optional `dataset.json` of the form ``{"labels": [[relative_path, label], ...],
"class_names": [...]}``, where a label is a class index or a list of floats. This is the format the
reference `dataset_tool.py` writes, so its datasets work unchanged.

The sampler makes the index at global sample position *i* a pure function of (seed, i): a resumed
run sees exactly the images an uninterrupted one would, and ranks of a multi-process run read
disjoint slices of every global batch.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from stylegan2ada.io import atomic_write_bytes, atomic_write_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_CHANNELS_OF_MODE = {"L": 1, "RGB": 3}


class DatasetError(ValueError):
    """A dataset cannot be read as training data; the message names the file and the problem."""


class ImageDataset(torch.utils.data.Dataset):
    """Images (uint8 CHW) and labels (float32 one-hot, or the stored vector) of an NVlabs dataset.

    Args:
        path: a folder or a .zip of images, with an optional dataset.json.
        use_labels: return labels from dataset.json (required for conditional training).
        xflip: append a mirrored copy of every image (index >= raw size gives the mirror).
        max_size: keep a fixed random subset (seed 0, as the reference) of at most this many images.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        use_labels: bool = False,
        xflip: bool = False,
        max_size: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.use_labels = use_labels
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        if self.path.is_dir():
            self._kind = "dir"
            names = [
                file.relative_to(self.path).as_posix()
                for file in self.path.rglob("*")
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
            ]
        elif self.path.is_file() and self.path.suffix.lower() == ".zip":
            self._kind = "zip"
            try:
                names = [name for name in self._zipfile().namelist() if Path(name).suffix.lower() in IMAGE_SUFFIXES]
            except zipfile.BadZipFile as error:
                raise DatasetError(f"{self.path}: not a readable zip file ({error}).") from error
        else:
            raise DatasetError(f"{self.path}: no such folder or .zip file; a dataset is a folder or zip of images.")
        self.image_names = sorted(names)
        if not self.image_names:
            raise DatasetError(f"{self.path}: holds no images ({', '.join(IMAGE_SUFFIXES)}).")

        raw_idx = np.arange(len(self.image_names), dtype=np.int64)
        if max_size is not None and raw_idx.size > max_size:
            raw_idx = np.sort(np.random.default_rng(0).permutation(raw_idx)[:max_size])
        self._raw_idx = np.concatenate([raw_idx, raw_idx]) if xflip else raw_idx
        self._xflip = np.repeat([False, True], raw_idx.size) if xflip else np.zeros(raw_idx.size, dtype=bool)

        first = self._load_raw_image(int(raw_idx[0]))
        self.num_channels, self.resolution = int(first.shape[0]), int(first.shape[1])
        if first.shape[1] != first.shape[2] or self.resolution & (self.resolution - 1):
            raise DatasetError(
                f"{self.path}: {self.image_names[raw_idx[0]]} is {first.shape[2]}x{first.shape[1]}; training "
                f"needs square images whose side is a power of two (e.g. resize with `augstudy prepare`)."
            )
        self.class_names: list[str] | None = None
        self._labels = self._load_labels() if use_labels else np.zeros([len(self.image_names), 0], np.float32)
        self.label_dim = int(self._labels.shape[1])

    # -- reading ---------------------------------------------------------------------------------
    def _zipfile(self) -> zipfile.ZipFile:
        """One open handle per process: DataLoader workers must not share the parent's file offset."""
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def _read_bytes(self, name: str) -> bytes:
        if self._kind == "zip":
            return self._zipfile().read(name)
        return (self.path / name).read_bytes()

    def _has_file(self, name: str) -> bool:
        if self._kind == "zip":
            return name in self._zipfile().namelist()
        return (self.path / name).is_file()

    def _load_raw_image(self, raw_index: int) -> np.ndarray:
        name = self.image_names[raw_index]
        try:
            with PIL.Image.open(io.BytesIO(self._read_bytes(name))) as image:
                mode = image.mode
                if mode not in _CHANNELS_OF_MODE:
                    raise DatasetError(
                        f"{self.path}: {name} has image mode {mode}; training reads 8-bit grayscale (L) or "
                        f"RGB images only (convert it, e.g. with `augstudy prepare`)."
                    )
                array = np.array(image, dtype=np.uint8)  # a writable copy
        except (OSError, PIL.UnidentifiedImageError) as error:
            raise DatasetError(f"{self.path}: cannot read image {name} ({error}).") from error
        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        array = array.transpose(2, 0, 1)
        expected = getattr(self, "resolution", None)
        if expected is not None and array.shape != (self.num_channels, expected, expected):
            raise DatasetError(
                f"{self.path}: {name} has shape {tuple(array.shape)} (CHW) but the dataset's first image has "
                f"{(self.num_channels, expected, expected)}; all images must share size and mode."
            )
        return array

    def _load_labels(self) -> np.ndarray:
        if not self._has_file("dataset.json"):
            raise DatasetError(
                f"{self.path}: has no dataset.json, but labels were requested (conditional training needs "
                f'{{"labels": [[file, class_index], ...]}} in dataset.json).'
            )
        try:
            meta = json.loads(self._read_bytes("dataset.json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetError(f"{self.path}: dataset.json is not valid JSON ({error}).") from error
        entries = meta.get("labels") if isinstance(meta, dict) else None
        if not entries:
            raise DatasetError(f'{self.path}: dataset.json has no "labels" list, but labels were requested.')
        by_name = {str(name).replace("\\", "/"): label for name, label in entries}
        missing = [name for name in self.image_names if name not in by_name]
        if missing:
            raise DatasetError(
                f"{self.path}: dataset.json has no label for {len(missing)} image(s), e.g. {missing[0]}."
            )
        raw = [by_name[name] for name in self.image_names]
        self.class_names = list(meta["class_names"]) if meta.get("class_names") else None
        if all(isinstance(label, int) for label in raw):
            classes = np.asarray(raw, dtype=np.int64)
            if classes.min() < 0:
                raise DatasetError(f"{self.path}: dataset.json holds a negative class index ({classes.min()}).")
            label_dim = max(int(classes.max()) + 1, len(self.class_names or ()))
            onehot = np.zeros([classes.size, label_dim], dtype=np.float32)
            onehot[np.arange(classes.size), classes] = 1
            return onehot
        try:
            vectors = np.asarray(raw, dtype=np.float32)
        except ValueError as error:
            raise DatasetError(
                f"{self.path}: dataset.json labels must be class indices or equal-length float lists ({error})."
            ) from error
        if vectors.ndim != 2:
            raise DatasetError(f"{self.path}: dataset.json labels must be class indices or equal-length lists.")
        return vectors

    # -- Dataset protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._raw_idx.size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = self._load_raw_image(int(self._raw_idx[index]))
        if self._xflip[index]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(index)

    def get_label(self, index: int) -> np.ndarray:
        return self._labels[int(self._raw_idx[index])].copy()

    @property
    def labels(self) -> np.ndarray:
        """Labels of every item in index order (mirrored items included), [len, label_dim]."""
        return self._labels[self._raw_idx]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None, "_zip_pid": None}

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path.resolve()), "size": len(self), "raw_size": len(self.image_names),
            "resolution": self.resolution, "num_channels": self.num_channels, "label_dim": self.label_dim,
            "class_names": self.class_names, "xflip": bool(self._xflip.any()),
        }


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Endless dataset indices for one rank, starting at a given global minibatch.

    Global sample position ``step * batch + rank * batch_per_rank + j`` maps to
    ``permutation(seed, epoch)[position % size]`` with ``epoch = position // size``: no state but
    the minibatch counter, which the snapshot stores.
    """

    def __init__(
        self, size: int, batch: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> None:
        if size < 1:
            raise ValueError("InfiniteSampler needs a non-empty dataset.")
        if batch % world_size:
            raise ValueError(f"batch {batch} is not divisible by world size {world_size}.")
        self.size, self.batch, self.seed = size, batch, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.batch_per_rank = batch // world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            first = step * self.batch + self.rank * self.batch_per_rank
            for position in range(first, first + self.batch_per_rank):
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = self._permutation(epoch)
                yield int(order[position % self.size])
            step += 1


def write_dataset(
    path: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write uint8 HW or HWC images as an NVlabs dataset (a folder, or an uncompressed zip for *.zip)."""
    path = Path(path)
    files: dict[str, bytes] = {}
    for index, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"image {index}: expected uint8 HW or HWC, got {array.dtype} {array.shape}.")
        buffer = io.BytesIO()
        PIL.Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array).save(
            buffer, format="png"
        )
        files[f"{index // 1000:05d}/img{index:08d}.png"] = buffer.getvalue()
    meta: dict[str, Any] | None = None
    if labels is not None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images.")
        meta = {"labels": [[name, int(label)] for name, label in zip(files, labels)]}
        if class_names is not None:
            meta["class_names"] = list(class_names)
    if path.suffix.lower() == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
            if meta is not None:
                archive.writestr("dataset.json", json.dumps(meta))
        atomic_write_bytes(path, buffer.getvalue())
    else:
        for name, data in files.items():
            atomic_write_bytes(path / name, data)
        if meta is not None:
            atomic_write_json(path / "dataset.json", meta)
    return path
