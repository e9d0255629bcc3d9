"""Reading a prepared folder (docs/formats.md) and a synthetic pool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from augstudy.classify.data import DataError, read_pool, read_prepared
from augstudy.classify.toydata import write_toy_study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return write_toy_study(tmp_path_factory.mktemp("toy"), train=4, valid=2, test=2, pool=5, size=16)


def test_official_and_dedup_splits_follow_the_manifest(study) -> None:
    official = read_prepared(study.data)
    assert official.split == "official"  # prepare_options.json's split
    assert official.class_names == ("normal", "tumour")
    assert official.real_counts() == {"normal": 4, "tumour": 4}
    assert len(official.subsets["test"]) == 2 * (2 + 1)  # the duplicated train image is kept
    dedup = read_prepared(study.data, "dedup")
    assert len(dedup.subsets["test"]) == 2 * 2
    train_hashes = {item.ref.sha256 for item in official.subsets["train"]}
    assert any(item.ref.sha256 in train_hashes for item in official.subsets["test"])
    assert not any(item.ref.sha256 in train_hashes for item in dedup.subsets["test"])


def test_default_split_comes_from_prepare_options(study, tmp_path: Path) -> None:
    options = json.loads((study.data / "prepare_options.json").read_text())
    copy = tmp_path / "data"
    copy.mkdir()
    (copy / "manifest.csv").write_text((study.data / "manifest.csv").read_text())
    (copy / "images").symlink_to(study.data / "images")
    (copy / "prepare_options.json").write_text(json.dumps({**options, "split": "dedup"}))
    assert read_prepared(copy).split == "dedup"


def test_bad_prepared_folders_get_errors_naming_the_file(study, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"manifest\.csv not found: .* is not a prepared folder"):
        read_prepared(tmp_path)
    manifest = pd.read_csv(study.data / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.drop(columns=["dedup_keep"]).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DataError, match=r"manifest\.csv lacks the columns \['dedup_keep'\]"):
        read_prepared(tmp_path)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "prepare_options.json").write_text((study.data / "prepare_options.json").read_text())
    with pytest.raises(DataError, match=r"normal_000\.png is listed in .* but missing"):
        read_prepared(tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        read_prepared(study.data, "random")


def test_pool_is_read_by_class_folder(study, tmp_path: Path) -> None:
    pool = read_pool(study.pool)
    assert sorted(pool) == ["normal", "tumour"]
    assert [ref.path.name for ref in pool["normal"]] == [f"seed{i:05d}.png" for i in range(5)]
    assert len({ref.sha256 for ref in pool["normal"] + pool["tumour"]}) == 10
    with pytest.raises(DataError, match="no <class>/\\*.png"):
        read_pool(tmp_path)
