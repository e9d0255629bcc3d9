"""prepare on the real chest-CT copy (../shared/data/chest-ct, or $AUGSTUDY_CHEST_CT): the counts and
the leakage its README states. Skipped where the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augstudy.data.prepare import PrepareOptions, PrepareResult, prepare
from augstudy.data.prepared import load_prepared, read_manifest

CHEST_CT = Path(os.environ.get("AUGSTUDY_CHEST_CT", Path(__file__).resolve().parents[3] / "shared/data/chest-ct"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHEST_CT / "Data").is_dir(), reason=f"chest-CT data not found at {CHEST_CT}"),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PrepareResult:
    return prepare(PrepareOptions(source=str(CHEST_CT), out=tmp_path_factory.mktemp("chest-ct"), resolution=32))


def test_counts_per_split_and_class(prepared: PrepareResult) -> None:
    report = prepared.report
    assert report["classes"] == ["normal", "squamous"]
    assert report["counts_official"] == {"train": {"normal": 148, "squamous": 155},
                                         "valid": {"normal": 13, "squamous": 15},
                                         "test": {"normal": 54, "squamous": 62}}
    assert report["unreadable"] == [] and report["label_conflicts"] == 0
    assert report["class_folders"]["test"]["squamous.cell.carcinoma"] == "squamous"
    assert report["class_folders"]["train"]["squamous.cell.carcinoma_left.hilum_T1_N2_M0_IIIa"] == "squamous"


def test_leakage_the_readme_states(prepared: PrepareResult) -> None:
    report = prepared.report
    assert report["duplicates_across_splits"] == {"valid": {"normal": 10, "squamous": 0},
                                                  "test": {"normal": 46, "squamous": 0}}
    rows = read_manifest(prepared.out)
    unique = {split: len({row["sha256"] for row in rows if row["split"] == split and row["class"] == "normal"})
              for split in ("train", "test")}
    assert unique == {"train": 55, "test": 27}


def test_dedup_split_has_no_train_image_left_in_valid_or_test(prepared: PrepareResult) -> None:
    rows = read_manifest(prepared.out)
    train_groups = {row["dup_group"] for row in rows if row["split"] == "train" and row["dup_group"]}
    train_hashes = {row["pixel_sha256"] for row in rows if row["split"] == "train"}
    for row in rows:
        if row["split"] != "train" and row["dedup_keep"] == "1":
            assert row["dup_group"] not in train_groups and row["pixel_sha256"] not in train_hashes
    counts = load_prepared(prepared.out).counts()
    assert counts["test"]["normal"] <= 54 - 46 and counts["valid"]["normal"] <= 13 - 10
    assert counts["test"]["squamous"] == 62  # squamous has no cross-split copy


def test_colour_marks_only_in_normal(prepared: PrepareResult) -> None:
    colour = prepared.report["colour"]["images"]
    assert sum(colour[split]["normal"] for split in colour) > 20
    assert all(colour[split]["squamous"] == 0 for split in colour)
