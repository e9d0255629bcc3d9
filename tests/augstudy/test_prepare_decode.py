"""Decoding every quirk of real image sets, fitting to a square, and duplicate detection."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.data.decode import UnreadableImage, decode_image, fit_square
from augstudy.data.dedup import (
    PHASH_THRESHOLD,
    HashedFile,
    dedup_decisions,
    find_groups,
    hamming_distance,
    leakage_counts,
    near_pairs,
    phash,
)
from augstudy.data.phantom import PhantomOptions, render_slice

OPTIONS = PhantomOptions(Path("unused"), min_width=240, max_width=300)


def grey(index: int) -> np.ndarray:
    return render_slice(5, "normal", index, OPTIONS)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_sixteen_bit_rgba_palette_and_grey_decode_to_the_same_pixels() -> None:
    pixels = grey(0)
    reference = decode_image(encode(Image.fromarray(pixels, "L")), channels=1)
    assert np.array_equal(np.asarray(reference.image), pixels)
    sixteen = decode_image(encode(Image.fromarray(pixels.astype(np.uint16) * 257)), channels=1)
    assert sixteen.source_mode.startswith("I;16")
    assert np.array_equal(np.asarray(sixteen.image), pixels)
    rgba = Image.fromarray(np.dstack([pixels, pixels, pixels, np.full_like(pixels, 255)]), "RGBA")
    decoded = decode_image(encode(rgba), channels=1)
    assert decoded.source_mode == "RGBA" and not decoded.colour
    assert np.array_equal(np.asarray(decoded.image), pixels)
    palette = decode_image(encode(Image.fromarray(pixels, "L").convert("P")), channels=1)
    assert palette.source_mode == "P"
    assert np.array_equal(np.asarray(palette.image), pixels)


def test_transparent_pixels_are_composited_on_black() -> None:
    pixels = np.full((40, 60), 200, dtype=np.uint8)
    alpha = np.full_like(pixels, 255)
    alpha[:, :30] = 0
    decoded = decode_image(encode(Image.fromarray(np.dstack([pixels] * 3 + [alpha]), "RGBA")), channels=1)
    values = np.asarray(decoded.image)
    assert values[:, :30].max() == 0 and values[:, 30:].min() == 200


def test_cmyk_jpeg_and_exif_rotation() -> None:
    pixels = grey(1)
    cmyk = decode_image(encode(Image.fromarray(pixels, "L").convert("CMYK"), "JPEG", quality=95), channels=1)
    assert cmyk.source_mode == "CMYK" and cmyk.source_format == "JPEG"
    assert np.abs(np.asarray(cmyk.image, dtype=int) - pixels).mean() < 3
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate it 90 degrees clockwise
    stored = Image.fromarray(pixels, "L")
    rotated = decode_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), channels=1)
    assert (rotated.width, rotated.height) == (stored.height, stored.width)
    expected = np.asarray(stored.transpose(Image.Transpose.ROTATE_270), dtype=int)
    assert np.abs(np.asarray(rotated.image, dtype=int) - expected).mean() < 3


def test_colour_marks_count_but_jpeg_chroma_noise_does_not() -> None:
    pixels = grey(2)
    rgb = np.dstack([pixels] * 3)
    assert not decode_image(encode(Image.fromarray(rgb, "RGB"), "JPEG", quality=80), channels=1).colour
    rgb[20:30, 100:140] = (255, 0, 0)
    marked = decode_image(encode(Image.fromarray(rgb, "RGB")), channels=3)
    assert marked.colour and marked.image.mode == "RGB"
    assert decode_image(encode(Image.fromarray(rgb, "RGB")), channels=1).image.mode == "L"


def test_truncated_and_non_image_files_are_unreadable_with_a_reason() -> None:
    whole = encode(Image.fromarray(grey(3), "L"))
    with pytest.raises(UnreadableImage, match="truncated|broken|EOF"):
        decode_image(whole[: len(whole) // 2], channels=1)
    with pytest.raises(UnreadableImage, match="cannot identify"):
        decode_image(b"these are my notes, not an image\n", channels=1)


def test_fit_square_pad_crop_stretch() -> None:
    white = Image.new("L", (80, 40), 255)
    padded = np.asarray(fit_square(white, 16, "pad"))
    assert padded.shape == (16, 16)
    assert padded[0].max() == 0 and padded[8].min() > 200  # black bands above and below
    assert np.asarray(fit_square(white, 16, "crop")).min() > 200
    assert np.asarray(fit_square(white, 16, "stretch")).min() > 200
    with pytest.raises(ValueError, match="fit"):
        fit_square(white, 16, "zoom")  # type: ignore[arg-type]


def test_phash_tolerates_resizing_and_jpeg_but_separates_different_slices() -> None:
    images = [grey(index) for index in range(6)]
    hashes = [phash(image) for image in images]
    assert len(hashes[0]) == 64  # 256 bits as hex
    distinct = [hamming_distance(a, b) for i, a in enumerate(hashes) for b in hashes[:i]]
    assert min(distinct) > PHASH_THRESHOLD
    source = Image.fromarray(images[0], "L")
    resized = source.resize((source.width * 3 // 4, source.height * 3 // 4), Image.Resampling.BILINEAR)
    assert hamming_distance(hashes[0], phash(np.asarray(resized))) <= PHASH_THRESHOLD
    jpeg = np.asarray(Image.open(io.BytesIO(encode(source, "JPEG", quality=75))))
    assert hamming_distance(hashes[0], phash(jpeg)) <= PHASH_THRESHOLD
    pairs = near_pairs(hashes + [phash(np.asarray(resized))], PHASH_THRESHOLD)
    assert [(i, j) for i, j, _ in pairs] == [(0, 6)]


def _file(split: str, name: str, sha: str, pixels: str, ph: str, class_name: str = "normal") -> HashedFile:
    return HashedFile(split, class_name, f"{split}/{class_name}/{name}", sha, pixels, ph)


def test_groups_keep_the_train_copy_with_the_shortest_name_and_drop_conflicts() -> None:
    far = [phash(grey(index)) for index in range(4)]
    files = [
        _file("train", "10 - Copy.png", "a", "A", far[0]),
        _file("train", "10.png", "a", "A", far[0]),
        _file("valid", "10 (2).png", "b", "A", far[0]),      # re-encoded: same pixels, other bytes
        _file("test", "10 - Copy (2).png", "a", "A", far[0]),
        _file("test", "x.png", "c", "C", far[1]),             # test-only pair: first copy kept
        _file("test", "x (2).png", "c", "C", far[1]),
        _file("train", "s.png", "d", "D", far[2], "squamous"),
        _file("test", "n.png", "d", "D", far[2]),              # same image under another class
        _file("valid", "alone.png", "e", "E", far[3]),
    ]
    groups = find_groups(files)
    assert groups[:4] == [1, 1, 1, 1] and groups[4:6] == [2, 2] and groups[6:8] == [3, 3] and groups[8] == 0
    decisions = dedup_decisions(files, groups)
    assert [d.keep for d in decisions] == [False, True, False, False, True, False, False, False, True]
    assert decisions[0].kind == "bytes" and decisions[0].duplicate_of == "train/normal/10.png"
    assert decisions[2].kind == "pixels" and decisions[3].kind == "bytes"
    assert decisions[6].kind == decisions[7].kind == "conflict"
    counts = leakage_counts(files, groups)
    assert counts["exact"]["valid"]["normal"] == 1 and counts["exact"]["test"]["normal"] == 2
    assert counts["within"]["train"]["normal"] == 1 and counts["within"]["test"]["normal"] == 1
