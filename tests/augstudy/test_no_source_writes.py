"""No verb writes into, moves or deletes its input: an output inside an input, or around it, is
refused before any work and the input is left byte for byte as it was.

Issue 16 found `prepare proj/images --out proj` overwriting and deleting all 160 source images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.data.phantom import write_phantom
from augstudy.data.prepare import PrepareOptions, prepare


def tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("templates")
    phantom = write_phantom(root / "phantom", per_class=6, seed=0).root
    prepared = prepare(PrepareOptions(source=str(phantom), out=root / "prepared", resolution=32)).out
    pool = root / "pool"
    (pool / "normal").mkdir(parents=True)
    for index in range(3):
        Image.new("L", (32, 32), 50 * index).save(pool / "normal" / f"seed{index:05d}.png")
    return {"phantom": phantom, "prepared": prepared, "pool": pool}


def place(templates: dict[str, Path], kind: str, where: Path) -> Path:
    """A copy of a template input at `where` (a fresh project per test)."""
    shutil.copytree(templates[kind], where)
    return where


# verb: (input kind, command line with {input} and {out})
VERBS = {
    "prepare": ("phantom", "prepare {input} --out {out}"),
    "train-gan": ("prepared", "train-gan --data {input} --out {out}"),
    "train-diffusion": ("prepared", "train-diffusion --data {input} --out {out}"),
    "gan-metrics": ("prepared", "gan-metrics --real {input} --fake {pool} --out {out}/metrics.json"),
    "sweep": ("prepared", "sweep --data {input} --out {out} --ratios 0"),
    "sweep-pool": ("pool", "sweep --data {prepared} --pool {input} --out {out}"),
    "predict": ("pool", "predict --model {model} {input} --out {out}/p.csv"),
    "publish": ("pool", "publish --pool {input} --out {out} --owner o --slug s"),
    "generate": ("pool", "generate --network {input}/normal/seed00000.png --out {out} --per-class 1"),
}


# generate's input is a snapshot file, so only "input inside output" applies to it.
OVERLAPS = [(verb, layout) for verb in VERBS for layout in ("output-inside-input", "input-inside-output")
            if (verb, layout) != ("generate", "output-inside-input")]


@pytest.mark.parametrize(("verb", "layout"), OVERLAPS)
def test_an_overlapping_output_is_refused_and_the_input_untouched(
    templates: dict[str, Path], tmp_path: Path, verb: str, layout: str
) -> None:
    kind, line = VERBS[verb]
    project = tmp_path / "proj"
    if layout == "output-inside-input":
        source = place(templates, kind, project / "input")
        out = source / "out"
    else:
        source = place(templates, kind, project / "images")
        out = project
    if verb in ("predict", "gan-metrics") and layout == "input-inside-output":
        out = source  # a one-file output may sit beside its inputs, but not among them
    before, listing = tree(project), sorted(project.rglob("*"))
    (tmp_path / "model").mkdir()
    words = {"input": source, "out": out, "pool": templates["pool"], "prepared": templates["prepared"],
             "model": tmp_path / "model"}
    result = CliRunner().invoke(main, [part.format(**words) for part in line.split()])
    assert result.exit_code != 0, result.output
    assert "inside" in result.output or "same path" in result.output, result.output
    assert "Traceback" not in result.output
    assert tree(project) == before  # nothing written, moved or deleted ...
    assert sorted(project.rglob("*")) == listing  # ... not even an empty folder


def test_prepare_into_the_folder_around_its_images_keeps_every_source_file(templates: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    """The exact case of issue 16: `prepare proj/images --out proj`."""
    images = place(templates, "phantom", tmp_path / "proj" / "images")
    before = tree(images)
    result = CliRunner().invoke(main, ["prepare", str(images), "--out", str(tmp_path / "proj")])
    assert result.exit_code == 1 and "is inside --out" in result.output
    assert tree(images) == before and sum(name.endswith(".png") for name in before) == 12


def test_run_refuses_a_study_folder_inside_its_source(templates: dict[str, Path], tmp_path: Path) -> None:
    source = place(templates, "phantom", tmp_path / "data")
    before = tree(source)
    config = tmp_path / "study.toml"
    config.write_text('[study]\nname = "t"\nsource = "data"\nout = "data/study"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code != 0 and "inside source" in result.output, result.output
    assert tree(source) == before


@pytest.mark.parametrize("verb", ["phantom", "prepare"])
def test_a_folder_the_verb_did_not_write_is_never_emptied(templates: dict[str, Path], tmp_path: Path,
                                                          verb: str) -> None:
    """phantom replaces Data/ and prepare replaces images/ in their own output; a user's folder that
    happens to hold those names (a real Kaggle download has Data/) is refused, not cleaned."""
    out = place(templates, "phantom", tmp_path / "kaggle-download")
    for mark in ("phantom_options.json", ".augstudy-lock"):  # a real download, not a phantom folder
        (out / mark).unlink()
    if verb == "prepare":
        shutil.copytree(out / "Data", out / "images")
    before = tree(out)
    line = ["phantom", "--out", str(out), "--seed", "3"] if verb == "phantom" else [
        "prepare", str(templates["phantom"]), "--out", str(out)]
    result = CliRunner().invoke(main, line)
    assert result.exit_code != 0 and "did not write" in result.output, result.output
    assert tree(out) == before
