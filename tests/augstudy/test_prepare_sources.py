"""Where prepare's files come from: layouts, class mapping, the seeded split, kaggle sources, the CLI."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.data.phantom import write_phantom
from augstudy.data.prepare import PrepareOptions, prepare
from augstudy.data.sources import SourceError, discover, parse_class_map
from augstudy.optional import MissingDependencyError


def make_class_folders(root: Path, sizes: dict[str, int]) -> Path:
    """A single folder of class folders holding small random (hence distinct) images."""
    rng = np.random.default_rng(0)
    for folder, count in sizes.items():
        (root / folder).mkdir(parents=True)
        for index in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), "L").save(root / folder / f"{index}.png")
    return root


def _assignment(discovery: object) -> dict[str, str]:
    return {file.relative_path: file.split for file in discovery.files}  # type: ignore[attr-defined]


def test_class_folders_get_a_seeded_stratified_split(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, {"normal": 20, "squamous.cell.carcinoma": 10})
    found = discover(root, {}, val_frac=0.1, test_frac=0.2, seed=0)
    assert found.layout == "class-folders" and found.classes == ("normal", "squamous")
    counts = {(f.split, f.class_name) for f in found.files}
    assert len(counts) == 6
    per = {key: sum(1 for f in found.files if (f.split, f.class_name) == key) for key in counts}
    assert per == {("train", "normal"): 14, ("valid", "normal"): 2, ("test", "normal"): 4,
                   ("train", "squamous"): 7, ("valid", "squamous"): 1, ("test", "squamous"): 2}
    assert _assignment(discover(root, {}, val_frac=0.1, test_frac=0.2, seed=0)) == _assignment(found)
    other_seed = _assignment(discover(root, {}, val_frac=0.1, test_frac=0.2, seed=1))
    assert other_seed != _assignment(found)
    normal_only = _assignment(discover(root, {}, classes=("normal",), val_frac=0.1, test_frac=0.2, seed=0))
    assert normal_only == {path: split for path, split in _assignment(found).items() if path.startswith("normal/")}


def test_prepare_resolves_the_fractions_it_used(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "src", {"normal": 10, "squamous": 10})
    result = prepare(PrepareOptions(source=str(root), out=tmp_path / "out", resolution=8))
    assert result.report["layout"] == "class-folders"
    assert result.report["counts_official"]["test"] == {"normal": 2, "squamous": 2}
    written = (tmp_path / "out/prepare_options.json").read_text()
    assert '"val_frac": 0.1' in written and '"test_frac": 0.2' in written


def test_unmapped_folder_is_an_error_that_says_how_to_map_it(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, {"normal": 2, "cats": 2, "squamous": 2})
    with pytest.raises(SourceError, match=r"\['cats'\].*--class-map"):
        discover(root, {})
    mapped = discover(root, parse_class_map(["cats=feline"]))
    assert mapped.classes == ("feline", "normal", "squamous")
    ignored = discover(root, parse_class_map(["cats="]))
    assert ignored.classes == ("normal", "squamous") and ignored.ignored_folders == ("all/cats",)
    overridden = discover(root, parse_class_map(["SQUA*=tumour,cats=feline"]))
    assert overridden.classes == ("feline", "normal", "tumour")
    with pytest.raises(SourceError, match="asks for"):
        discover(root, parse_class_map(["cats="]), classes=("adenocarcinoma",))
    with pytest.raises(SourceError, match="FOLDER=CLASS"):
        parse_class_map(["cats"])


def test_split_layouts_wrappers_and_their_errors(tmp_path: Path) -> None:
    phantom = write_phantom(tmp_path / "archive" / "chest", per_class=3, seed=0).root
    found = discover(tmp_path / "archive", {})  # descends through the lone wrapper folder into Data/
    assert found.layout == "splits" and found.root == phantom / "Data"
    assert found.class_folders["test"] == {"normal": "normal", "squamous.cell.carcinoma": "squamous"}
    with pytest.raises(SourceError, match="only apply to a folder of class folders"):
        discover(phantom, {}, val_frac=0.2)
    shutil.rmtree(phantom / "Data" / "valid")
    with pytest.raises(SourceError, match=r"no \['valid'\]"):
        discover(phantom, {})


def test_kaggle_offline_says_how_to_download_by_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kagglehub = pytest.importorskip("kagglehub")

    def offline(handle: str, *args: object, **kwargs: object) -> str:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(SourceError) as caught:
        prepare(PrepareOptions(source="kaggle:someone/chest-ct", out=tmp_path / "out"))
    message = str(caught.value)
    assert "https://www.kaggle.com/datasets/someone/chest-ct" in message
    assert "by hand" in message and "augstudy prepare /path/to/folder" in message
    assert "ConnectionError" in message
    with pytest.raises(SourceError, match="OWNER/SLUG"):
        prepare(PrepareOptions(source="kaggle:no-slash", out=tmp_path / "out"))


def test_kaggle_download_is_prepared_like_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kagglehub = pytest.importorskip("kagglehub")
    downloaded = write_phantom(tmp_path / "cache", per_class=4, seed=0).root
    handles: list[str] = []

    def download(handle: str, *args: object, **kwargs: object) -> str:
        handles.append(handle)
        return str(downloaded)

    monkeypatch.setattr(kagglehub, "dataset_download", download)
    result = prepare(PrepareOptions(source="kaggle:someone/chest-ct", out=tmp_path / "out", resolution=8))
    assert handles == ["someone/chest-ct"]
    assert result.report["source"] == "kaggle:someone/chest-ct"
    assert result.report["source_dir"] == str((downloaded / "Data").resolve())
    assert result.report["counts_official"]["train"] == {"normal": 2, "squamous": 2}


def test_kaggle_without_kagglehub_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # makes `import kagglehub` fail
    with pytest.raises(MissingDependencyError, match=r"augstudy\[kaggle\]"):
        prepare(PrepareOptions(source="kaggle:someone/chest-ct", out=tmp_path / "out"))


def test_cli_prints_a_summary_and_reports_errors_cleanly(tmp_path: Path) -> None:
    source = write_phantom(tmp_path / "phantom", per_class=4, seed=0, copies=1).root
    runner = CliRunner()
    args = ["prepare", str(source), "--out", str(tmp_path / "out"), "--resolution", "8", "--split", "official"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "exact copies of a train image: test normal 1, test squamous 1" in first.output
    assert "split official" in first.output
    second = runner.invoke(main, args)
    assert second.exit_code == 0 and "up to date" in second.output
    missing = runner.invoke(main, ["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "is not a folder" in missing.output
    unmapped = runner.invoke(main, ["prepare", str(make_class_folders(tmp_path / "odd", {"cats": 2})),
                                    "--out", str(tmp_path / "o2")])
    assert unmapped.exit_code == 1 and "--class-map" in unmapped.output
