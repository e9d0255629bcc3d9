"""GAN training sets as NVlabs dataset zips, readable by the official StyleGAN2-ADA code too.

The format of NVlabs' `dataset_tool.py`: uncompressed PNGs named `00000/img00000000.png` plus a
`dataset.json` whose "labels" is a list of [name, class index] pairs, or null for an unlabelled
set. Entries carry a fixed timestamp so the same images give a byte-identical zip.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

from stylegan2ada.io import atomic_open

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def archive_name(index: int) -> str:
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def write_dataset_zip(path: Path, images: Sequence[Path], labels: Sequence[int] | None,
                      class_names: Sequence[str]) -> None:
    """Write `images` (PNG files, stored as they are) as an NVlabs dataset zip, atomically.

    Args:
        labels: one class index per image, or None for an unlabelled (single-class) set.
        class_names: stored as "class_names" in dataset.json so an index can be read back as a name.
    """
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    names = [archive_name(index) for index in range(len(images))]
    metadata = {
        "labels": None if labels is None else [[name, int(label)] for name, label in zip(names, labels)],
        "class_names": list(class_names),
    }
    with atomic_open(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        for name, image in zip(names, images):
            _write_entry(archive, name, image.read_bytes())
        _write_entry(archive, "dataset.json", json.dumps(metadata, indent=1).encode("utf-8"))


def _write_entry(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)
