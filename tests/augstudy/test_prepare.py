"""`prepare` end to end: a small source with every quirk of real sets, the phantom, idempotence,
resuming, --strict, and the outputs the GAN and sweep steps read."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.data import prepare as prepare_module
from augstudy.data.phantom import PhantomOptions, render_slice, write_phantom
from augstudy.data.prepare import PrepareError, PrepareOptions, prepare
from augstudy.data.prepared import MANIFEST_COLUMNS, PreparedDataError, load_prepared
from augstudy.outputs import OutputError

SQUAMOUS_LONG = "squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa"
OPTIONS = PhantomOptions(Path("unused"), min_width=240, max_width=300)


def _save(path: Path, image: Image.Image, **params: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **params)


def make_quirky_source(root: Path) -> Path:
    """A Kaggle-layout source with one file per quirk; every image a different phantom slice."""
    def grey(index: int, class_name: str = "normal") -> np.ndarray:
        return render_slice(11, class_name, index, OPTIONS)

    train, valid, test = root / "Data/train", root / "Data/valid", root / "Data/test"
    _save(train / "normal/plain (1).png", Image.fromarray(grey(0), "L"))
    rgba = grey(1)
    _save(train / "normal/rgba opaque.png", Image.fromarray(np.dstack([rgba] * 3 + [np.full_like(rgba, 255)])))
    _save(train / "normal/deep 16-bit.png", Image.fromarray(grey(2).astype(np.uint16) * 257))
    _save(train / "normal/cmyk.jpg", Image.fromarray(grey(3), "L").convert("CMYK"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(train / "normal/rotated.jpg", Image.fromarray(grey(4), "L"), quality=95, exif=exif.tobytes())
    _save(train / "normal/palette.png", Image.fromarray(grey(5), "L").convert("P"))
    marked = np.dstack([grey(6)] * 3)
    marked[30:40, 100:160] = (255, 0, 0)
    _save(train / "normal/marked.png", Image.fromarray(marked, "RGB"))
    truncated = io.BytesIO()
    Image.fromarray(grey(7), "L").save(truncated, format="PNG")
    (train / "normal/truncated.png").write_bytes(truncated.getvalue()[:2000])
    (train / "normal/notes.png").write_text("not an image\n")
    _save(train / f"{SQUAMOUS_LONG}/s1.png", Image.fromarray(grey(0, "squamous"), "L"))
    _save(train / f"{SQUAMOUS_LONG}/s2.png", Image.fromarray(grey(1, "squamous"), "L"))
    # valid: the same pixels as a train image in other bytes; test: a byte copy and a resized copy
    _save(valid / "normal/plain again.png", Image.fromarray(grey(0), "L"), compress_level=1)
    _save(valid / f"{SQUAMOUS_LONG}/s3.png", Image.fromarray(grey(2, "squamous"), "L"))
    (test / "normal").mkdir(parents=True)
    (test / "normal/plain (1) - Copy.png").write_bytes((train / "normal/plain (1).png").read_bytes())
    source = Image.fromarray(rgba, "L")
    _save(test / "normal/smaller.png", source.resize((source.width * 3 // 4, source.height * 3 // 4)))
    _save(test / "normal/own.png", Image.fromarray(grey(8), "L"))
    _save(test / "squamous.cell.carcinoma/s4.png", Image.fromarray(grey(3, "squamous"), "L"))
    return root


@pytest.fixture(scope="module")
def quirky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, prepare_module.PrepareResult]:
    source = make_quirky_source(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("prepared")
    return source, prepare(PrepareOptions(source=str(source), out=out, resolution=32))


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        return {row["source_path"]: row for row in csv.DictReader(handle)}


def test_quirky_source_counts_and_leakage(quirky: tuple[Path, prepare_module.PrepareResult]) -> None:
    _, result = quirky
    report = result.report
    assert report["classes"] == ["normal", "squamous"]
    assert report["class_folders"]["test"] == {"normal": "normal", "squamous.cell.carcinoma": "squamous"}
    assert report["files"] == 17 and report["readable"] == 15
    assert report["counts_official"] == {"train": {"normal": 7, "squamous": 2}, "valid": {"normal": 1, "squamous": 1},
                                         "test": {"normal": 3, "squamous": 1}}
    assert report["duplicates_across_splits"] == {"valid": {"normal": 1, "squamous": 0},
                                                  "test": {"normal": 1, "squamous": 0}}
    assert report["near_duplicates_across_splits"]["test"] == {"normal": 1, "squamous": 0}
    assert report["counts"] == report["counts_dedup"] == {
        "train": {"normal": 7, "squamous": 2}, "valid": {"normal": 0, "squamous": 1},
        "test": {"normal": 1, "squamous": 1}}
    assert report["removed"]["test"]["normal"] == 2 and report["removed"]["valid"]["normal"] == 1
    assert sorted(item["path"] for item in report["unreadable"]) == ["train/normal/notes.png",
                                                                      "train/normal/truncated.png"]
    assert report["colour"]["images"]["train"]["normal"] == 1
    assert {"CMYK", "I;16", "P", "RGBA", "RGB", "L"} <= set(report["source_modes"])


def test_quirky_manifest_rows(quirky: tuple[Path, prepare_module.PrepareResult]) -> None:
    _, result = quirky
    rows = _manifest(result.out)
    assert len(rows) == 17 and list(next(iter(rows.values()))) == list(MANIFEST_COLUMNS)
    copy = rows["test/normal/plain (1) - Copy.png"]
    assert copy["dup_kind"] == "bytes" and copy["dup_of"] == "train/normal/plain (1).png"
    assert copy["official_keep"] == "1" and copy["dedup_keep"] == copy["kept"] == "0"
    assert rows["valid/normal/plain again.png"]["dup_kind"] == "pixels"
    assert rows["test/normal/smaller.png"]["dup_kind"] == "near"
    assert rows["test/normal/smaller.png"]["dup_of"] == "train/normal/rgba opaque.png"
    assert rows["test/normal/smaller.png"]["dup_group"] == rows["train/normal/rgba opaque.png"]["dup_group"] != ""
    rotated = rows["train/normal/rotated.jpg"]
    assert int(rotated["height"]) > int(rotated["width"])  # stored landscape, EXIF says portrait
    assert rows["train/normal/marked.png"]["colour"] == "1" and rows["train/normal/plain (1).png"]["colour"] == "0"
    truncated = rows["train/normal/truncated.png"]
    assert truncated["image"] == "" and truncated["official_keep"] == "0"
    assert truncated["reason"].startswith("unreadable:")
    assert rows["train/normal/plain (1).png"]["image"] == "images/train/normal/plain_1.png"
    assert rows[f"train/{SQUAMOUS_LONG}/s1.png"]["image"] == "images/train/squamous/s1.png"


def test_quirky_images_zips_and_loader(quirky: tuple[Path, prepare_module.PrepareResult]) -> None:
    _, result = quirky
    out = result.out
    pngs = sorted((out / "images").rglob("*.png"))
    assert len(pngs) == 15
    for path in pngs:
        with Image.open(path) as image:
            assert image.size == (32, 32) and image.mode == "L"
    with zipfile.ZipFile(out / "gan/all.zip") as archive:
        names = archive.namelist()
        meta = json.loads(archive.read("dataset.json"))
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert meta["class_names"] == ["normal", "squamous"]
        assert [label for _, label in meta["labels"]] == [0] * 7 + [1] * 2
        assert names[0] == "00000/img00000000.png" and len(names) == 10
        first = archive.read(names[0])
    with zipfile.ZipFile(out / "gan/squamous.zip") as archive:
        assert json.loads(archive.read("dataset.json"))["labels"] is None
        assert len(archive.namelist()) == 3
    dedup = load_prepared(out)
    assert dedup.split_mode == "dedup" and dedup.classes == ("normal", "squamous")
    assert dedup.counts() == result.report["counts_dedup"]
    assert first == dedup.paths("train", "normal")[0].read_bytes()
    official = load_prepared(out, split="official")
    assert official.counts() == result.report["counts_official"]
    assert [label for _, label in official.labelled("test")] == [0, 0, 0, 1]
    assert (official.resolution, official.channels) == (32, 1)
    options = json.loads((out / "prepare_options.json").read_text())
    assert options["split"] == "dedup" and options["classes"] == ["normal", "squamous"]


def test_second_run_does_no_work(quirky: tuple[Path, prepare_module.PrepareResult],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source, result = quirky
    before = {path: path.stat().st_mtime_ns for path in result.out.rglob("*") if path.is_file()}

    def must_not_decode(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(prepare_module, "_decode_one", must_not_decode)
    again = prepare(PrepareOptions(source=str(source), out=result.out, resolution=32))
    assert again.up_to_date and again.report == result.report
    assert before == {path: path.stat().st_mtime_ns for path in result.out.rglob("*") if path.is_file()}


def test_other_split_reuses_decoded_files_and_a_lost_image_is_redone(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_phantom(tmp_path / "phantom", per_class=6, seed=0, copies=1).root
    out = tmp_path / "out"
    first = prepare(PrepareOptions(source=str(source), out=out, resolution=16))
    assert first.report["counts"]["test"] == {"normal": 1, "squamous": 1}
    decoded: list[str] = []
    real_decode_one = prepare_module._decode_one

    def counting(file: prepare_module.SourceFile, *args: object) -> prepare_module.FileRecord:
        decoded.append(file.relative_path)
        return real_decode_one(file, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare_module, "_decode_one", counting)
    official = prepare(PrepareOptions(source=str(source), out=out, resolution=16, split="official"))
    assert not official.up_to_date and decoded == []
    assert official.report["counts"]["test"] == {"normal": 2, "squamous": 2}
    (out / "images/train/normal/0000.png").unlink()
    prepare(PrepareOptions(source=str(source), out=out, resolution=16, split="official"))
    assert decoded == ["train/normal/0000.png"]
    assert (out / "images/train/normal/0000.png").is_file()


def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_phantom(tmp_path / "phantom", per_class=5, seed=2).root
    out = tmp_path / "out"
    real_decode_one = prepare_module._decode_one
    calls: list[str] = []

    def dies_after_four(file: prepare_module.SourceFile, *args: object) -> prepare_module.FileRecord:
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(file.relative_path)
        return real_decode_one(file, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare_module, "_decode_one", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        prepare(PrepareOptions(source=str(source), out=out, resolution=16))
    assert not (out / "report.json").exists()
    calls.clear()
    monkeypatch.setattr(prepare_module, "_decode_one", lambda file, *args: (calls.append(file.relative_path),
                                                                            real_decode_one(file, *args))[1])
    result = prepare(PrepareOptions(source=str(source), out=out, resolution=16))
    assert len(calls) == 10 - 4 and result.report["readable"] == 10


def test_strict_fails_naming_every_unreadable_file(tmp_path: Path) -> None:
    source = make_quirky_source(tmp_path / "source")
    with pytest.raises(PrepareError, match=r"2 unreadable.*notes\.png.*truncated\.png"):
        prepare(PrepareOptions(source=str(source), out=tmp_path / "out", resolution=8, strict=True))
    assert not (tmp_path / "out/report.json").exists()


def test_phantom_rgb_crop_and_changed_options_replace_old_images(tmp_path: Path) -> None:
    source = write_phantom(tmp_path / "phantom", per_class=8, seed=4, copies=2).root
    out = tmp_path / "out"
    result = prepare(PrepareOptions(source=str(source), out=out, resolution=16, channels=3, fit="crop"))
    assert result.report["duplicate_groups"] == 4  # the copies, and no distinct slices merged
    assert result.report["duplicates_across_splits"]["test"] == {"normal": 2, "squamous": 2}
    with Image.open(next((out / "images").rglob("*.png"))) as image:
        assert image.mode == "RGB" and image.size == (16, 16)
    narrowed = prepare(PrepareOptions(source=str(source), out=out, resolution=16, classes=("normal",)))
    assert narrowed.report["classes"] == ["normal"]
    assert not (out / "images/train/squamous").exists() and not (out / "gan/squamous.zip").exists()
    with Image.open(next((out / "images").rglob("*.png"))) as image:
        assert image.mode == "L"


def test_bad_options_and_folders(tmp_path: Path) -> None:
    source = write_phantom(tmp_path / "phantom", per_class=3, seed=0).root
    with pytest.raises(PrepareError, match="power of two"):
        prepare(PrepareOptions(source=str(source), out=tmp_path / "out", resolution=100))
    with pytest.raises(OutputError, match="inside SOURCE"):
        prepare(PrepareOptions(source=str(source), out=source / "prepared"))
    with pytest.raises(PreparedDataError, match="not a prepared folder"):
        load_prepared(tmp_path)
