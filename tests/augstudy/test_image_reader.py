"""One image reader for every verb, and one path from any image to the backbone's input.

The same picture stored as 8-bit grey, 16-bit grey, RGB, opaque RGBA, palette or JPEG must give the
same pixels to the classifier (sweep, predict), the GAN metrics and publish; and a real training
image copied into a synthetic pool must reach the backbone as exactly the same array.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.audit.features import AuditImage, prepared_pixels
from augstudy.classify.features import FeatureCache, FeatureSpec, ImageRef, InputPipeline
from augstudy.classify.images import (
    Geometry,
    ViewParams,
    backbone_input,
    load_view,
    prepared_geometry,
    read_rgb,
)
from augstudy.data.decode import UnreadableImage, decode_file, image_kinds, kinds_warning
from augstudy.data.phantom import PhantomOptions, render_slice, write_phantom
from augstudy.data.prepare import PrepareOptions, prepare
from augstudy.metrics.images import ImageRef as MetricsRef
from augstudy.metrics.images import decode_pixels, fake_kinds_warning, open_source
from augstudy.publish.build import PlannedImage, _write_image
from augstudy.publish.pool import PoolImage
from stylegan2ada.io import sha256_file

SIDE = 40


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A CT-like grey slice with its full range of grey levels, SIDE x SIDE."""
    slice_ = render_slice(3, "squamous", 0, PhantomOptions(Path("unused"), min_width=64, max_width=64))
    return np.ascontiguousarray(slice_[:SIDE, 12:12 + SIDE])


def save_formats(pixels: np.ndarray, folder: Path) -> dict[str, Path]:
    """The same grey picture in every storage the readers meet in practice."""
    folder.mkdir(parents=True, exist_ok=True)
    grey = Image.fromarray(pixels, "L")
    paths = {name: folder / f"{name}.{'jpg' if name == 'jpeg' else 'png'}" for name in
             ("grey8", "grey16", "rgb", "rgba", "palette", "jpeg")}
    grey.save(paths["grey8"])
    Image.fromarray(pixels.astype(np.uint16) * 257).save(paths["grey16"])  # 8-bit levels stored in 16 bits
    grey.convert("RGB").save(paths["rgb"])
    rgba = grey.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(paths["rgba"])
    grey.convert("RGB").quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE).save(
        paths["palette"])
    grey.save(paths["jpeg"], quality=95)
    return paths


def test_sixteen_bit_files_are_scaled_not_read_as_near_white(picture: np.ndarray, tmp_path: Path) -> None:
    paths = save_formats(picture, tmp_path)
    with Image.open(paths["grey16"]) as opened:
        assert opened.mode.startswith("I")  # the file really is 16-bit
    assert np.array_equal(read_rgb(paths["grey16"])[:, :, 0], picture)
    assert abs(read_rgb(paths["grey16"]).mean() - picture.mean()) < 0.5


@pytest.mark.parametrize("stored", ["grey16", "rgb", "rgba", "palette"])
def test_every_lossless_storage_gives_the_same_pixels_to_every_reader(
    picture: np.ndarray, tmp_path: Path, stored: str
) -> None:
    paths = save_formats(picture, tmp_path)
    geometry = Geometry(SIDE, "pad")
    classifier_input = load_view(paths[stored], "", 0, 32, ViewParams(), geometry)
    assert np.array_equal(classifier_input, load_view(paths["grey8"], "", 0, 32, ViewParams(), geometry))
    metrics = decode_pixels(MetricsRef(paths[stored]), paths[stored].read_bytes())
    assert np.array_equal(metrics[:, :, 0], picture)
    audited = prepared_pixels([AuditImage(paths[stored], "normal", 0, "g0", {})])[0]  # audit and report
    assert np.array_equal(audited, picture)


def test_an_unreadable_file_is_named_by_the_reader(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UnreadableImage, match="broken.png"):
        decode_file(broken, channels=1)


def test_jpeg_gives_the_same_picture_within_compression_error(picture: np.ndarray, tmp_path: Path) -> None:
    paths = save_formats(picture, tmp_path)
    jpeg = read_rgb(paths["jpeg"]).astype(int)
    assert np.abs(jpeg - picture[:, :, None].astype(int)).mean() < 2.0
    assert np.abs(jpeg - picture[:, :, None].astype(int)).max() < 40


def test_exif_orientation_is_applied_by_the_classifier_reader(picture: np.ndarray, tmp_path: Path) -> None:
    wide = np.ascontiguousarray(picture[:, : SIDE // 2])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(wide, "L").save(tmp_path / "sideways.png", exif=exif)
    shown = read_rgb(tmp_path / "sideways.png")
    assert shown.shape[:2] == (SIDE // 2, SIDE)
    assert np.array_equal(shown[:, :, 0], np.rot90(wide, k=-1))


def test_publish_resizes_through_the_same_reader(picture: np.ndarray, tmp_path: Path) -> None:
    paths = save_formats(picture, tmp_path / "in")
    written = {}
    for stored in ("grey8", "grey16"):
        target = tmp_path / f"{stored}-out.png"
        image = PoolImage(f"normal/{stored}.png", "normal", 0, "G.pt", "0" * 64, "1.0", "const",
                          sha256_file(paths[stored]))
        _write_image(PlannedImage(paths[stored], target.name, image, True, "L"), target, 24)
        written[stored] = np.asarray(Image.open(target))
    assert np.array_equal(written["grey8"], written["grey16"])
    assert abs(float(written["grey16"].mean()) - float(picture.mean())) < 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parity")
    source = write_phantom(root / "phantom", per_class=6, seed=0).root
    return prepare(PrepareOptions(source=str(source), out=root / "prepared", resolution=32)).out


def test_a_real_image_copied_into_a_pool_reaches_the_backbone_unchanged(prepared: Path, tmp_path: Path) -> None:
    """Issue 12 item 3: real and synthetic images share one path, so the copy gives the same array
    bit for bit, also when the pool stores it as RGB or 16-bit (as a 3-channel GAN or a tool would)."""
    real = min((prepared / "images" / "train").rglob("*.png"))
    pool = tmp_path / "pool" / "normal"
    pool.mkdir(parents=True)
    shutil.copyfile(real, pool / "copy.png")
    grey = np.asarray(Image.open(real))
    Image.fromarray(grey, "L").convert("RGB").save(pool / "as-rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(pool / "as-16bit.png")

    pipeline = InputPipeline(64, lambda batch: batch, ViewParams(), prepared_geometry(prepared))
    refs = [ImageRef(path, sha256_file(path)) for path in (real, pool / "copy.png", pool / "as-rgb.png",
                                                           pool / "as-16bit.png")]
    batch = pipeline.batch(refs)
    for row in batch[1:]:
        assert np.array_equal(row, batch[0])


def test_a_pool_stored_at_another_size_takes_the_path_prepare_gave_the_real_images(prepared: Path) -> None:
    """Pools may be stored at any size and shape: read as a pool image, a source file gives bit for bit
    the array its prepared (resized by `augstudy prepare`) version gives as a real image."""
    with open(prepared / "manifest.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    row = next(row for row in rows if row["image"] and row["split"] == "train")
    source = Path(json.loads((prepared / "report.json").read_text())["source_dir"]) / row["source_path"]
    with Image.open(source) as opened:
        assert opened.size != (32, 32)  # the source is larger and not square
    geometry = prepared_geometry(prepared)
    as_pool = backbone_input(read_rgb(source), 24, geometry)
    as_real = backbone_input(read_rgb(prepared / row["image"]), 24, geometry)
    assert np.array_equal(as_pool, as_real)


def test_the_feature_cache_key_names_the_path(tmp_path: Path) -> None:
    """Features of one file under another path or prepared size never share a cache folder."""
    folders = {
        FeatureCache(tmp_path, FeatureSpec("resnet50", "w", 224, f"{geometry.id}+pre", "tensorflow"), ViewParams()).folder
        for geometry in (Geometry(), Geometry(256, "pad"), Geometry(512, "pad"), Geometry(256, "crop"))
    }
    assert len(folders) == 4


def test_a_pool_mixing_sizes_and_modes_is_reported_with_counts(tmp_path: Path) -> None:
    for index, (side, mode) in enumerate([(32, "L"), (32, "L"), (32, "L"), (48, "RGB")]):
        Image.new(mode, (side, side)).save(tmp_path / f"{index}.png")
    kinds = image_kinds(sorted(tmp_path.glob("*.png")))
    warning = kinds_warning("pool P", kinds, expected_side=32)
    assert warning is not None and "3 at 32x32 L" in warning and "1 at 48x48 RGB" in warning
    same = image_kinds(sorted(tmp_path.glob("*.png"))[:3])
    assert kinds_warning("pool P", same, expected_side=32) is None
    assert "the real images are 64x64" in str(kinds_warning("pool P", same, expected_side=64))


def test_gan_metrics_reports_a_fake_set_off_the_real_size_with_counts(tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / "real").mkdir(exist_ok=True)
        Image.new("L", (32, 32), index).save(tmp_path / "real" / f"{index}.png")
    (tmp_path / "fake" / "normal").mkdir(parents=True)
    for index, (side, mode) in enumerate([(32, "L"), (32, "L"), (24, "RGB")]):
        Image.new(mode, (side, side)).save(tmp_path / "fake" / "normal" / f"{index}.png")
    warning = fake_kinds_warning(open_source(tmp_path / "real"), open_source(tmp_path / "fake"))
    assert warning is not None and "2 at 32x32 L, 1 at 24x24 RGB" in warning
    (tmp_path / "fake" / "normal" / "2.png").unlink()
    assert fake_kinds_warning(open_source(tmp_path / "real"), open_source(tmp_path / "fake")) is None
