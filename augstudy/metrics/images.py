"""Image sources the GAN metrics compare: folders, class folders, prepared folders, NVlabs zips.

A source is a set of images per class. Which layout a path has is decided once, here:

- ``*.zip``: an NVlabs dataset zip; per class (in label order) when its ``dataset.json`` has
  labels and ``class_names`` (``gan/all.zip``), otherwise one set.
- a folder with ``images/train/``: a prepared folder. Per class, the images the GAN trained on:
  those of ``gan/<class>.zip`` (prepare's kept train images), named by the ``images/train/<class>/``
  file with the same bytes; all of ``images/train/<class>/`` where that zip is missing.
- a folder whose subfolders hold images: one class per subfolder, images found recursively. Image
  files directly in the folder belong to no class (a pool's ``preview.png`` is one).
- any other folder: one set of the images in it.

Images are decoded by `augstudy.data.decode` (EXIF, 16-bit, palette, alpha handled there) and
kept as 8-bit arrays, one channel when the file carries no colour.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from augstudy.data.decode import UnreadableImage, decode_image, kinds_warning
from stylegan2ada.io import sha256_bytes

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# The key of the one set of a source without classes.
UNCLASSED = "all"


@dataclass(frozen=True)
class ImageRef:
    """One image: a file on disk, or a member of a zip archive at `path`."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        """How reports and error messages name the image."""
        return str(self.path) if self.member is None else f"{self.path}:{self.member}"


@dataclass(frozen=True)
class ImageSource:
    """The images of one side of a comparison, grouped by class.

    Attributes:
        path: what the user passed.
        layout: "folder", "class-folders", "prepared" or "zip".
        classed: whether `classes` holds real class names (otherwise one set under UNCLASSED).
        classes: class name -> images; names sorted, except zips keep label order.
    """

    path: Path
    layout: str
    classed: bool
    classes: dict[str, tuple[ImageRef, ...]]

    def all_images(self) -> tuple[ImageRef, ...]:
        return tuple(ref for refs in self.classes.values() for ref in refs)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: `pixels` is (H, W, 1) for grey files and (H, W, 3) for colour ones."""

    ref: ImageRef
    pixels: np.ndarray


def open_source(path: str | Path) -> ImageSource:
    """Find the images under `path` and group them by class (layouts in the module docstring).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` holds no images, or a zip is not a readable NVlabs dataset zip.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(
            f"{root}: no such file or folder (expected images, a pool, a prepared folder or a zip)"
        )
    if root.is_file():
        if root.suffix.lower() != ".zip":
            raise ValueError(
                f"{root}: a file source must be an NVlabs dataset .zip; pass a folder of images otherwise"
            )
        return _zip_source(root)
    if (root / "images" / "train").is_dir():
        return _prepared_source(root)
    class_dirs = {child.name: _images_under(child) for child in _visible_children(root) if child.is_dir()}
    class_dirs = {name: refs for name, refs in class_dirs.items() if refs}
    if class_dirs:
        return ImageSource(root, "class-folders", True, dict(sorted(class_dirs.items())))
    refs = tuple(ImageRef(file) for file in _visible_children(root) if _is_image_file(file))
    if not refs:
        raise ValueError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return ImageSource(root, "folder", False, {UNCLASSED: refs})


def iter_image_bytes(refs: Sequence[ImageRef]) -> Iterator[tuple[ImageRef, bytes]]:
    """The bytes of each image in order, opening each zip archive once."""
    with contextlib.ExitStack() as stack:
        archives: dict[Path, zipfile.ZipFile] = {}
        for ref in refs:
            if ref.member is None:
                yield ref, ref.path.read_bytes()
                continue
            if ref.path not in archives:
                archives[ref.path] = stack.enter_context(zipfile.ZipFile(ref.path))
            yield ref, archives[ref.path].read(ref.member)


def iter_loaded(refs: Sequence[ImageRef]) -> Iterator[LoadedImage]:
    """Decode each image to 8-bit pixels.

    Raises:
        ValueError: an image cannot be decoded; the message names it.
    """
    for ref, data in iter_image_bytes(refs):
        yield LoadedImage(ref, decode_pixels(ref, data))


def source_kinds(source: ImageSource) -> Counter[str]:
    """How many images of a source have each size and mode ("256x256 L"), from their headers."""
    kinds: Counter[str] = Counter()
    for _, data in iter_image_bytes(source.all_images()):
        try:
            with Image.open(io.BytesIO(data)) as opened:
                kinds[f"{opened.width}x{opened.height} {opened.mode}"] += 1
        except (OSError, ValueError):
            kinds["unreadable"] += 1
    return kinds


def fake_kinds_warning(real: ImageSource, fake: ImageSource) -> str | None:
    """A warning with counts when the fake images mix sizes or modes, or differ in size from the real ones
    (the GAN's output size is the real images' size)."""
    real_sides = {kind.split(" ")[0] for kind in source_kinds(real)}
    side = int(next(iter(real_sides)).split("x")[0]) if len(real_sides) == 1 and real_sides != {"unreadable"} \
        else None
    return kinds_warning(f"fake images {fake.path}", source_kinds(fake), side)


def decode_pixels(ref: ImageRef, data: bytes) -> np.ndarray:
    """The (H, W, 1|3) uint8 pixels of `ref`'s bytes: one channel unless the file carries colour.

    Raises:
        ValueError: the bytes are not a readable image; the message names `ref`.
    """
    try:
        decoded = decode_image(data, channels=3)
    except UnreadableImage as error:
        raise ValueError(f"{ref.name}: cannot read this image ({error})") from error
    pixels = np.asarray(decoded.image) if decoded.colour else decoded.luma[:, :, None]
    return np.ascontiguousarray(pixels)


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """(H, W, C) uint8 to (size, size, C) uint8 with antialiased bicubic resampling."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    if pixels.shape[2] == 1:
        return np.asarray(
            Image.fromarray(pixels[:, :, 0], "L").resize((size, size), Image.Resampling.BICUBIC)
        )[:, :, None]
    return np.asarray(Image.fromarray(pixels, "RGB").resize((size, size), Image.Resampling.BICUBIC))


def stack_nchw(images: Sequence[np.ndarray], size: int, channels: int) -> np.ndarray:
    """(H, W, 1|3) uint8 arrays to one (N, channels, size, size) uint8 array; grey is repeated to 3."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    batch = np.empty((len(images), channels, size, size), dtype=np.uint8)
    for index, pixels in enumerate(images):
        resized = resize_pixels(pixels, size)
        if resized.shape[2] != channels:
            if channels == 1:
                raise ValueError("cannot stack colour images as 1 channel; pass channels=3")
            resized = np.repeat(resized, 3, axis=2)
        batch[index] = resized.transpose(2, 0, 1)
    return batch


def _visible_children(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if not child.name.startswith("."))


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _images_under(folder: Path) -> tuple[ImageRef, ...]:
    files = sorted(
        path
        for path in folder.rglob("*")
        if _is_image_file(path) and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    return tuple(ImageRef(path) for path in files)


def _prepared_source(root: Path) -> ImageSource:
    train = root / "images" / "train"
    classes: dict[str, tuple[ImageRef, ...]] = {}
    for class_dir in _visible_children(train):
        if not class_dir.is_dir():
            continue
        gan_zip = root / "gan" / f"{class_dir.name}.zip"
        files = _images_under(class_dir)
        refs = _files_in_zip(files, _zip_source(gan_zip).all_images()) if gan_zip.is_file() else files
        if refs:
            classes[class_dir.name] = refs
    if not classes:
        raise ValueError(f"{root}: a prepared folder without train images (images/train/<class>/ is empty)")
    return ImageSource(root, "prepared", True, classes)


def prepared_heldout_images(root: Path, class_name: str) -> tuple[ImageRef, ...]:
    """The validation and test images of one class in a prepared folder (none when absent)."""
    return tuple(ref for split in ("valid", "test") if (root / "images" / split / class_name).is_dir()
                 for ref in _images_under(root / "images" / split / class_name))


def _files_in_zip(files: tuple[ImageRef, ...], members: tuple[ImageRef, ...]) -> tuple[ImageRef, ...]:
    """The members of a GAN zip, named by the train files they were stored from where the bytes match.

    prepare stores the train PNGs unchanged, so a memorisation report can name
    `images/train/<class>/<file>.png` rather than an anonymous `img00000004.png`.
    """
    file_of = {sha256_bytes(data): ref for ref, data in iter_image_bytes(files)}
    return tuple(file_of.get(sha256_bytes(data), member) for member, data in iter_image_bytes(members))


def _zip_source(path: Path) -> ImageSource:
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(
                name
                for name in archive.namelist()
                if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.endswith("/")
            )
            meta = json.loads(archive.read("dataset.json")) if "dataset.json" in archive.namelist() else {}
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable NVlabs dataset zip ({error})") from error
    if not names:
        raise ValueError(f"{path}: the zip holds no images")
    labels = (meta or {}).get("labels")
    class_names = (meta or {}).get("class_names")
    if not labels or not class_names:
        return ImageSource(path, "zip", False, {UNCLASSED: tuple(ImageRef(path, name) for name in names)})
    label_of = {str(name): label for name, label in labels}
    grouped: dict[str, list[ImageRef]] = {}
    for name in names:
        label = label_of.get(name)
        if not isinstance(label, int) or not 0 <= label < len(class_names):
            raise ValueError(
                f"{path}: {name} has label {label!r}, not an index into class_names {class_names}"
            )
        grouped.setdefault(str(class_names[label]), []).append(ImageRef(path, name))
    ordered = [str(name) for name in class_names if str(name) in grouped]  # label order
    return ImageSource(path, "zip", True, {name: tuple(grouped[name]) for name in ordered})
