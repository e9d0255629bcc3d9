"""The sweep's data warnings: small validation/test classes, validation/test copies of train
images, train imbalance; quiet on a clean set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from augstudy.classify.checks import data_warnings
from augstudy.classify.data import read_prepared
from augstudy.classify.toydata import write_toy_study


def test_a_clean_set_gives_no_warning(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=4, valid=10, test=10, pool=0, size=16, duplicates=0)
    assert data_warnings(read_prepared(study.data)) == []


def test_small_validation_and_test_classes_are_named(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=4, valid=3, test=10, pool=0, size=16, duplicates=0)
    warnings = data_warnings(read_prepared(study.data))
    assert len(warnings) == 1
    assert "Small validation class(es)" in warnings[0] and "'normal' has 3" in warnings[0]


def _leak_a_train_image_into_validation(data: Path) -> None:
    manifest = pd.read_csv(data / "manifest.csv", dtype=str, keep_default_na=False)
    source = manifest[manifest["split"] == "train"].iloc[0].copy()
    target = Path("images/valid/normal/leak.png")
    shutil.copy(data / source["image"], data / target)
    source["split"], source["image"], source["source_path"] = "valid", target.as_posix(), "source/valid/leak.png"
    pd.concat([manifest, source.to_frame().T]).to_csv(data / "manifest.csv", index=False)


def test_validation_and_test_copies_of_train_images_are_reported(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=4, valid=10, test=10, pool=0, size=16, duplicates=1)
    _leak_a_train_image_into_validation(study.data)
    warnings = data_warnings(read_prepared(study.data, "official"))
    assert len(warnings) == 2
    assert warnings[0].startswith("1 of 21 validation images on the official split duplicate train images")
    assert warnings[1].startswith("2 of 22 test images on the official split duplicate train images")
    assert "--split dedup" in warnings[1]
    dedup = data_warnings(read_prepared(study.data, "dedup"))
    assert len(dedup) == 1 and "validation" in dedup[0]  # the dedup split drops the test copies only


def test_train_imbalance_offers_balanced_class_weights(tmp_path: Path) -> None:
    study = write_toy_study(tmp_path, train=7, valid=10, test=10, pool=0, size=16, duplicates=0)
    manifest = pd.read_csv(study.data / "manifest.csv", dtype=str, keep_default_na=False)
    drop = manifest.index[(manifest["split"] == "train") & (manifest["class"] == "tumour")][:4]
    manifest.loc[drop, ["official_keep", "dedup_keep"]] = "0"  # 7 normal vs 3 tumour train images
    manifest.to_csv(study.data / "manifest.csv", index=False)
    data = read_prepared(study.data)
    warnings = data_warnings(data)
    assert len(warnings) == 1 and "beyond 2:1" in warnings[0] and "Consider --class-weight balanced" in warnings[0]
    assert "--class-weight balanced is on" in data_warnings(data, "balanced")[0]
