"""The phantom: deterministic, Kaggle layout with the real set's folder names, grey, varied sizes,
a hilar mass in the squamous class, and resumable writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.data.decode import fit_square
from augstudy.data.phantom import CLASS_FOLDERS, PhantomOptions, render_slice, write_phantom


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted((root / "Data").rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    first = write_phantom(tmp_path / "a", per_class=6, seed=3)
    second = write_phantom(tmp_path / "b", per_class=6, seed=3)
    third = write_phantom(tmp_path / "c", per_class=6, seed=4)
    assert _files(first.root) == _files(second.root)
    a, c = _files(first.root), _files(third.root)
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a)


def test_kaggle_layout_with_real_folder_names_grey_and_varied_sizes(tmp_path: Path) -> None:
    result = write_phantom(tmp_path, per_class=20, seed=0, val_frac=0.15, test_frac=0.2)
    data = tmp_path / "Data"
    assert sorted(p.name for p in data.iterdir()) == ["test", "train", "valid"]
    long_name, short_name = CLASS_FOLDERS["squamous"]
    assert sorted(p.name for p in (data / "train").iterdir()) == ["normal", long_name]
    assert sorted(p.name for p in (data / "valid").iterdir()) == ["normal", long_name]
    assert sorted(p.name for p in (data / "test").iterdir()) == ["normal", short_name]
    assert result.counts == {"train": {"normal": 13, "squamous": 13}, "valid": {"normal": 3, "squamous": 3},
                             "test": {"normal": 4, "squamous": 4}}
    sizes = set()
    for path in data.rglob("*.png"):
        with Image.open(path) as image:
            assert image.mode == "L"
            sizes.add(image.size)
    assert len(sizes) > 20  # nearly every image has its own size
    assert min(w for w, _ in sizes) >= 224 and max(w for w, _ in sizes) <= 480


def test_squamous_shows_a_mass_at_the_left_hilum_visible_at_the_demos_resolution() -> None:
    """Averaged over many slices brought to the demo's 32 px, squamous is much brighter than normal
    at the patient's left hilum (image right of centre), and not on the mirrored side. (The mass
    used to be small enough to vanish at 32 px: a difference of 7.6 grey levels here, and a demo
    classifier at chance.)"""
    options = PhantomOptions(Path("unused"), min_width=96, max_width=160)

    def mean_image(class_name: str) -> np.ndarray:
        return np.mean([np.asarray(fit_square(Image.fromarray(render_slice(0, class_name, i, options)), 32,
                                              "stretch"), dtype=np.float64) for i in range(40)], axis=0)

    difference = mean_image("squamous") - mean_image("normal")
    left_hilum = difference[10:19, 18:24].mean()
    mirrored = difference[10:19, 8:14].mean()
    assert left_hilum > 20
    assert abs(mirrored) < 3


def test_resume_skips_written_files_and_new_options_replace_all(tmp_path: Path) -> None:
    first = write_phantom(tmp_path, per_class=5, seed=1)
    before = _files(tmp_path)
    assert first.written == len(before) == 10
    again = write_phantom(tmp_path, per_class=5, seed=1)
    assert again.written == 0
    victim = tmp_path / min(before)
    victim.unlink()
    assert write_phantom(tmp_path, per_class=5, seed=1).written == 1
    assert _files(tmp_path) == before
    smaller = write_phantom(tmp_path, per_class=4, seed=2)
    after = _files(tmp_path)
    assert smaller.written == len(after) == 8  # no file of the seed-1 run is left behind
    common = after.keys() & before.keys()
    assert common and all(after[name] != before[name] for name in common)


def test_copies_are_byte_identical_train_images_in_test(tmp_path: Path) -> None:
    result = write_phantom(tmp_path, per_class=8, seed=0, copies=2)
    assert result.counts["test"] == {"normal": 4, "squamous": 4}  # 2 own test images + 2 copies each
    copy = tmp_path / "Data/test/normal/0001 - Copy.png"
    assert copy.read_bytes() == (tmp_path / "Data/train/normal/0001.png").read_bytes()


def test_all_four_classes_and_bad_options(tmp_path: Path) -> None:
    result = write_phantom(tmp_path, per_class=3, seed=0, classes=tuple(CLASS_FOLDERS))
    assert sorted(result.counts["train"]) == sorted(CLASS_FOLDERS)
    with pytest.raises(ValueError, match="choose from"):
        write_phantom(tmp_path / "x", per_class=3, seed=0, classes=("normal", "melanoma"))
    with pytest.raises(ValueError, match="--per-class 2: must be an integer >= 3"):
        write_phantom(tmp_path / "y", per_class=2, seed=0)


def test_cli_writes_the_phantom(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(main, ["phantom", "--out", str(tmp_path), "--per-class", "4", "--seed", "7"])
    assert outcome.exit_code == 0, outcome.output
    assert "8 files written" in outcome.output
    assert len(_files(tmp_path)) == 8
    assert (tmp_path / "phantom_options.json").is_file()
    outcome = CliRunner().invoke(main, ["phantom", "--out", str(tmp_path), "--classes", "normal,cats"])
    assert outcome.exit_code != 0 and "choose from" in outcome.output


def test_the_class_difference_is_the_mass_only_no_metadata_cue(tmp_path: Path) -> None:
    """The shortcut audit finds nothing but content on the phantom: size, file and padding do not
    predict the class, and no yes/no attribute belongs to one class only."""
    from augstudy.audit.run import AuditOptions, run_audit
    from augstudy.data.prepare import PrepareOptions, prepare

    write_phantom(tmp_path / "phantom", per_class=40, seed=0)
    prepare(PrepareOptions(source=str(tmp_path / "phantom"), out=tmp_path / "prepared", resolution=32))
    report = run_audit(AuditOptions(data=tmp_path / "prepared", out=tmp_path / "audit", backbone_features=False,
                                    progress=False))
    assert report["shortcuts"] == [] and report["partial_shortcuts"] == []
    groups = {item["name"]: item for item in report["groups"]}
    assert groups["histogram"]["flagged"]  # the mass itself shows in the intensity histogram
