"""Image sources: which layout a path has and which images each class holds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.data.nvlabs_zip import write_dataset_zip
from augstudy.metrics.images import ImageRef, iter_loaded, open_source, stack_nchw


def save(path: Path, value: int, mode: str = "L", size: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size) if mode == "L" else (size, size, 3), value, np.uint8)
    if mode == "RGB":
        pixels[..., 0] = 255 - value
    Image.fromarray(pixels, mode).save(path)
    return path


def test_a_pool_is_one_class_per_subfolder_and_ignores_top_level_and_hidden_files(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    save(pool / "b" / "seed00001.png", 1)
    save(pool / "a" / "nested" / "seed00000.png", 2)
    save(pool / "a" / ".seed00002.png.tmp.png", 3)
    save(pool / "preview.png", 4)
    (pool / "manifest.csv").write_text("file\n")
    (pool / "empty").mkdir()
    source = open_source(pool)
    assert source.layout == "class-folders" and source.classed
    assert {name: [ref.path.name for ref in refs] for name, refs in source.classes.items()} == {
        "a": ["seed00000.png"],
        "b": ["seed00001.png"],
    }


def test_a_flat_folder_is_one_set_and_an_empty_one_an_error(tmp_path: Path) -> None:
    save(tmp_path / "flat" / "x.png", 1)
    save(tmp_path / "flat" / "y.jpg", 2)
    source = open_source(tmp_path / "flat")
    assert source.layout == "folder" and not source.classed
    assert [ref.path.name for ref in source.classes["all"]] == ["x.png", "y.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images found"):
        open_source(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing: no such file"):
        open_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="must be an NVlabs dataset .zip"):
        open_source(tmp_path / "notes.txt")


def test_zips_are_one_set_without_labels_and_per_class_in_label_order_with_them(tmp_path: Path) -> None:
    images = [save(tmp_path / "src" / f"{index}.png", index * 10) for index in range(4)]
    write_dataset_zip(tmp_path / "plain.zip", images, None, ["only"])
    plain = open_source(tmp_path / "plain.zip")
    assert not plain.classed and len(plain.classes["all"]) == 4
    write_dataset_zip(tmp_path / "all.zip", images, [1, 0, 1, 1], ["zebra", "apple"])
    labelled = open_source(tmp_path / "all.zip")
    assert list(labelled.classes) == ["zebra", "apple"]
    assert [len(refs) for refs in labelled.classes.values()] == [1, 3]
    loaded = list(iter_loaded(labelled.classes["zebra"]))
    assert loaded[0].pixels[0, 0, 0] == 10

    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:
        archive.writestr("a.png", (tmp_path / "src" / "0.png").read_bytes())
        archive.writestr("dataset.json", json.dumps({"labels": [["a.png", 5]], "class_names": ["x"]}))
    with pytest.raises(ValueError, match="a.png has label 5"):
        open_source(tmp_path / "bad.zip")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.zip: not a readable NVlabs dataset zip"):
        open_source(tmp_path / "broken.zip")


def test_a_prepared_folder_gives_the_gan_training_images_by_their_train_file_names(tmp_path: Path) -> None:
    root = tmp_path / "prepared"
    kept = [save(root / "images/train/normal" / f"{index}.png", index) for index in range(3)]
    save(root / "images/train/normal/dropped.png", 99)
    save(root / "images/train/tumour/t.png", 50)
    save(root / "images/valid/normal/v.png", 60)
    write_dataset_zip(root / "gan/normal.zip", kept, None, ["normal"])
    source = open_source(root)
    assert source.layout == "prepared"
    assert [ref.path.name for ref in source.classes["normal"]] == ["0.png", "1.png", "2.png"]
    assert all(ref.member is None for ref in source.classes["normal"])
    assert [ref.path.name for ref in source.classes["tumour"]] == ["t.png"]  # no zip: the whole folder


def test_zip_members_without_a_matching_train_file_stay_zip_members(tmp_path: Path) -> None:
    root = tmp_path / "prepared"
    save(root / "images/train/normal/0.png", 0)
    outside = save(tmp_path / "outside.png", 77)
    write_dataset_zip(root / "gan/normal.zip", [outside], None, ["normal"])
    (ref,) = open_source(root).classes["normal"]
    assert ref.member == "00000/img00000000.png" and ref.name.endswith("normal.zip:00000/img00000000.png")


def test_loaded_images_keep_one_channel_for_grey_and_three_for_colour(tmp_path: Path) -> None:
    grey, colour = save(tmp_path / "g.png", 30), save(tmp_path / "c.png", 30, "RGB", size=24)
    loaded = list(iter_loaded([ImageRef(grey), ImageRef(colour)]))
    assert [item.pixels.shape for item in loaded] == [(20, 20, 1), (24, 24, 3)]
    stacked = stack_nchw([item.pixels for item in loaded], 16, 3)
    assert stacked.shape == (2, 3, 16, 16) and (stacked[0, 0] == stacked[0, 2]).all()
    with pytest.raises(ValueError, match="pass channels=3"):
        stack_nchw([loaded[1].pixels], 16, 1)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="bad.png: cannot read this image"):
        list(iter_loaded([ImageRef(tmp_path / "bad.png")]))
