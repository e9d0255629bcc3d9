"""The cv design's fold plan: stratified, grouped (duplicates and --group-by ids), every image tested once
per repeat, validation carved from the training part, deterministic by seed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from augstudy.classify.toydata import write_toy_study
from augstudy.data.folds import FoldError, FoldOptions, plan_folds

CLASSES = ("normal", "tumour")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 12 + 4 + 6 unique images and 3 test copies of train images per class; 25 files a class (official)
    return write_toy_study(tmp_path_factory.mktemp("folds"), train=12, valid=4, test=6, pool=1,
                           duplicates=3).data


def _manifest(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / "manifest.csv", keep_default_na=False)


def _label_of(data: Path) -> dict[str, str]:
    manifest = _manifest(data)
    return dict(zip(manifest["image"], manifest["class"]))


def test_every_image_is_tested_exactly_once_per_repeat_and_parts_are_disjoint(data: Path) -> None:
    plan = plan_folds(data, "official", CLASSES, FoldOptions(folds=4, repeats=3, seed=7))
    pooled = set(_manifest(data)["image"])
    assert len(pooled) == 2 * 25 and len(plan.folds) == 12
    for repeat in range(3):
        tested = Counter(image for fold in plan.folds if fold.repeat == repeat for image in fold.test)
        assert set(tested) == pooled and set(tested.values()) == {1}
    for fold in plan.folds:
        parts = [set(fold.train), set(fold.valid), set(fold.test)]
        assert set.union(*parts) == pooled and sum(map(len, parts)) == len(pooled)
        assert fold.valid, "every fold carves a validation set from its training part"


def test_duplicate_groups_never_straddle_train_valid_and_test(data: Path) -> None:
    manifest = _manifest(data)
    groups = manifest[manifest["dup_group"] != ""].groupby("dup_group")["image"].apply(set)
    assert len(groups) == 6 and all(len(members) == 2 for members in groups)  # original + test copy
    plan = plan_folds(data, "official", CLASSES, FoldOptions(folds=5, repeats=2, seed=0))
    for fold in plan.folds:
        for members in groups:
            places = [part for part in ("train", "valid", "test") if members & set(getattr(fold, part))]
            assert len(places) == 1, (fold.name, members, places)


def test_folds_are_stratified(data: Path) -> None:
    labels = _label_of(data)
    plan = plan_folds(data, "dedup", CLASSES, FoldOptions(folds=4, repeats=2, seed=3))
    for fold in plan.folds:  # 22 images a class over 4 folds: 5 or 6 of each class in every test fold
        counts = Counter(labels[image] for image in fold.test)
        assert set(counts) == set(CLASSES) and all(5 <= count <= 6 for count in counts.values()), counts
        valid = Counter(labels[image] for image in fold.valid)
        assert set(valid) == set(CLASSES) and max(valid.values()) - min(valid.values()) <= 1, valid


def test_the_dedup_split_pools_one_file_per_duplicate_group(data: Path) -> None:
    plan = plan_folds(data, "dedup", CLASSES, FoldOptions(folds=3, repeats=1))
    manifest = _manifest(data)
    assert {item.image for item in plan.images} == set(manifest[manifest["dedup_keep"] == 1]["image"])
    assert len(plan.images) == 2 * 22


def test_same_seed_same_plan_other_seed_other_plan(data: Path) -> None:
    first = plan_folds(data, "official", CLASSES, FoldOptions(folds=4, repeats=2, seed=1))
    again = plan_folds(data, "official", CLASSES, FoldOptions(folds=4, repeats=2, seed=1))
    other = plan_folds(data, "official", CLASSES, FoldOptions(folds=4, repeats=2, seed=2))
    assert first.to_dict() == again.to_dict() and first.digest() == again.digest()
    assert first.digest() != other.digest()
    assert first.fold(0, 0).test != first.fold(1, 0).test, "repeats reshuffle the folds"


def test_group_by_regex_keeps_a_patients_images_out_of_each_others_folds(data: Path, tmp_path: Path) -> None:
    manifest = _manifest(data)
    manifest["source_path"] = [f"{cls}/patient-{index % 5}/{Path(path).name}"
                               for index, (cls, path) in enumerate(zip(manifest["class"], manifest["source_path"]))]
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "prepare_options.json").write_text((data / "prepare_options.json").read_text())
    patient = dict(zip(manifest["image"], manifest["source_path"].str.rsplit("/", n=1).str[0]))
    plan = plan_folds(tmp_path, "dedup", CLASSES, FoldOptions(folds=5, repeats=2, val_fraction=0.25,
                                                                 group_by=r"regex:^(\w+/patient-\d)/"))
    assert len({item.group for item in plan.images}) == 10  # 5 patients a class
    for fold in plan.folds:
        seen = [{patient[image] for image in getattr(fold, part)} for part in ("train", "valid", "test")]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), fold.name
        assert len(seen[2]) == 2, "5 patients a class in 5 folds: one of each class tested per fold"


def test_group_by_csv_column_and_its_errors(data: Path, tmp_path: Path) -> None:
    manifest = _manifest(data)
    kept = manifest[manifest["dedup_keep"] == 1]
    table = pd.DataFrame({"source_path": kept["source_path"],
                          "patient": [f"{cls}-{index % 4}" for index, cls in enumerate(kept["class"])]})
    path = tmp_path / "patients.csv"
    table.to_csv(path, index=False)
    plan = plan_folds(data, "dedup", CLASSES, FoldOptions(folds=4, repeats=1, val_fraction=0.34,
                                                            group_by=f"csv:{path}:patient"))
    patient = dict(zip(kept["image"], table["patient"]))
    for fold in plan.folds:  # 4 patients a class, 4 folds: each fold tests exactly one patient per class
        assert len({patient[image] for image in fold.test}) == 2
        assert not {patient[image] for image in fold.test} & {patient[image] for image in fold.train + fold.valid}
    with pytest.raises(FoldError, match="no 'visit' column"):
        plan_folds(data, "dedup", CLASSES, FoldOptions(group_by=f"csv:{path}:visit"))
    table.iloc[:-1].to_csv(path, index=False)
    with pytest.raises(FoldError, match="gives no 'patient' for 1 file"):
        plan_folds(data, "dedup", CLASSES, FoldOptions(group_by=f"csv:{path}:patient"))


@pytest.mark.parametrize(("options", "message"), [
    (FoldOptions(group_by="regex:nomatch"), "does not match"),
    (FoldOptions(group_by="patient"), "give regex:PATTERN"),
    (FoldOptions(group_by="regex:("), "not a valid regular expression"),
    (FoldOptions(folds=30), "fewer than the 30 folds"),
    (FoldOptions(folds=1), "at least 2 folds"),
])
def test_impossible_plans_are_refused_with_a_message(data: Path, options: FoldOptions, message: str) -> None:
    with pytest.raises(FoldError, match=message):
        plan_folds(data, "dedup", CLASSES, options)
