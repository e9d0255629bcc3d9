"""Every verb, thrown wrong paths, wrong numbers and unwritable outputs, answers with a message that
names the file or option, a non-zero exit and no traceback; `augstudy run` says the same as the
command it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.data.phantom import write_phantom
from augstudy.data.prepare import PrepareOptions, prepare


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small prepared folder, a pool, an image folder, a file where a folder is needed, and so on."""
    root = tmp_path_factory.mktemp("bad-inputs")
    phantom = write_phantom(root / "phantom", per_class=6, seed=0).root
    prepared = prepare(PrepareOptions(source=str(phantom), out=root / "prepared", resolution=32)).out
    pool = root / "pool" / "normal"
    pool.mkdir(parents=True)
    for index in range(3):
        Image.new("L", (32, 32), index * 40).save(pool / f"seed{index:05d}.png")
    (root / "model").mkdir()
    (root / "a-file").write_text("not a folder", encoding="utf-8")
    (root / "not-a-snapshot.pt").write_text("hello", encoding="utf-8")
    (root / "study.toml").write_text('[study]\nname = "t"\nsource = "phantom"\n', encoding="utf-8")
    return {"root": root, "phantom": phantom, "prepared": prepared, "pool": root / "pool",
            "images": pool, "model": root / "model", "file": root / "a-file",
            "not_snapshot": root / "not-a-snapshot.pt", "missing": root / "missing"}


# (command line with {placeholders}, text the message must contain)
CASES = [
    ("phantom --per-class 0 --out {root}/o1", "0: must be an integer >= 3"),
    ("phantom --val-frac 0 --out {root}/o1", "0.0: must be a number in (0, 1)"),
    ("phantom --out {file}/sub", "a-file exists and is not a folder"),
    ("prepare {missing} --out {root}/o2", "missing"),
    ("prepare --resolution 0 {phantom} --out {root}/o2", "0: must be an integer in [4, 8192]"),
    ("prepare --seed -1 {phantom} --out {root}/o2", "-1: must be an integer >= 0"),
    ("prepare {phantom} --out {phantom}/inside", "inside SOURCE"),
    ("prepare {phantom} --out {root}", "is inside --out"),
    ("prepare {phantom} --out {file}/sub", "a-file exists and is not a folder"),
    ("train-gan --batch 0 --data {prepared} --out {root}/o3", "0: must be an integer in [1, 2048]"),
    ("train-gan --gamma -1 --data {prepared} --out {root}/o3", "-1.0: must be a number >= 0"),
    ("train-gan --kimg 0 --data {prepared} --out {root}/o3", "0.0: must be a number > 0"),
    ("train-gan --data {missing} --out {root}/o3", "missing"),
    ("train-gan --data {prepared} --out {prepared}", "same path as --data"),
    ("train-gan --data {prepared} --out {file}/sub", "a-file exists and is not a folder"),
    ("generate --batch 0 --network {not_snapshot} --out {root}/o4 --per-class 1", "0: must be an integer in [1, 4096]"),
    ("generate --trunc 2 --network {not_snapshot} --out {root}/o4 --per-class 1", "2.0: must be a number in [0, 1]"),
    ("generate --per-class 0 --network {not_snapshot} --out {root}/o4", "0: must be an integer in [1, 4294967296]"),
    ("generate --network {missing} --out {root}/o4 --per-class 1", "missing"),
    ("generate --network {not_snapshot} --out {file}/sub --per-class 1", "a-file exists and is not a folder"),
    ("generate --network {not_snapshot} --out {root}/o4 --per-class 1", "not-a-snapshot.pt"),
    ("gan-metrics --real {missing} --fake {pool}", "missing"),
    ("gan-metrics --batch 0 --real {prepared} --fake {pool}", "0: must be an integer >= 1"),
    ("gan-metrics --real {prepared} --fake {pool} --out {prepared}/m.json", "inside --real"),
    ("gan-metrics --real {prepared} --fake {pool} --out {file}/m.json", "a-file exists and is not a folder"),
    ("sweep --epochs 0 --data {prepared} --out {root}/o5", "0: must be an integer >= 1"),
    ("sweep --epochs -4 --data {prepared} --out {root}/o5", "-4: must be an integer >= 1"),
    ("sweep --patience 0 --data {prepared} --out {root}/o5", "0: must be an integer >= 1"),
    ("sweep --batch-size 0 --data {prepared} --out {root}/o5", "0: must be an integer >= 1"),
    ("sweep --learning-rate 0 --data {prepared} --out {root}/o5", "0.0: must be a number > 0"),
    ("sweep --learning-rate inf --data {prepared} --out {root}/o5", "inf: must be a number > 0"),
    ("sweep --epochs 2.5 --data {prepared} --out {root}/o5", "'2.5': must be an integer >= 1"),
    ("sweep --input-size 0 --data {prepared} --out {root}/o5", "0: must be an integer in [32, 8192]"),
    ("sweep --seeds 0 --data {prepared} --out {root}/o5", "0: must be an integer >= 1"),
    ("sweep --ratios 0,-5 --data {prepared} --out {root}/o5", "percentages >= 0"),
    ("sweep --ratios 0,50 --primary-ratio 30 --data {prepared} --out {root}/o5",
     "--primary-ratio 30.0: name one of the gan arm's --ratios above 0"),
    ("sweep --data {missing} --out {root}/o5", "missing"),
    ("sweep --data {prepared} --out {prepared}/results", "inside --data"),
    ("sweep --data {prepared} --pool {pool} --out {root}", "is inside --out"),
    ("sweep --data {prepared} --out {file}/sub", "a-file exists and is not a folder"),
    ("predict --model {missing} {images}", "missing"),
    ("predict --batch-size 0 --model {model} {images}", "0: must be an integer >= 1"),
    ("predict --model {model} {images} --out {images}/p.csv", "inside IMAGE"),
    ("predict --model {model} {missing}", "missing"),
    ("predict --model {model} {images} --out {file}/p.csv", "a-file exists and is not a folder"),
    ("publish --pool {missing} --out {root}/o6 --owner o --slug s", "missing"),
    ("publish --per-class 0 --pool {pool} --out {root}/o6 --owner o --slug s", "--per-class"),
    ("publish --pool {pool} --out {pool}/release --owner o --slug s", "inside --pool"),
    ("publish --pool {pool} --out {file}/sub --owner o --slug s", "a-file exists and is not a folder"),
    ("audit --data {missing} --out {root}/o7", "missing"),
    ("audit --threshold 2 --data {prepared} --out {root}/o7", "2.0: must be a number in (0.5, 1]"),
    ("audit --data {prepared} --out {prepared}/audit", "inside --data"),
    ("audit --data {prepared} --out {file}/sub", "a-file exists and is not a folder"),
    ("import-network {missing} --out {root}/n.pt", "missing"),
    ("import-network {not_snapshot} --out {root}/n.pt", "not-a-snapshot.pt"),
    ("import-network {not_snapshot} --out {file}/n.pt", "a-file exists and is not a folder"),
    ("run {missing}.toml", "missing.toml"),
    ("run {root}/study.toml --out {file}/sub", "a-file exists and is not a folder"),
    ("demo --out {file}/sub", "a-file exists and is not a folder"),
]


def invoke(line: str, world: dict[str, Path]):
    return CliRunner().invoke(main, [part.format(**world) for part in line.split()])


def assert_clean_failure(result, expected: str) -> None:
    assert result.exit_code != 0, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.mark.parametrize(("line", "expected"), CASES, ids=[line.split()[0] + ":" + line.split()[1] for line, _ in CASES])
def test_every_verb_refuses_bad_input_cleanly(world: dict[str, Path], line: str, expected: str) -> None:
    assert_clean_failure(invoke(line, world), expected)


def test_zero_never_silently_becomes_the_default(world: dict[str, Path]) -> None:
    """The CLI check is not all: the options objects themselves refuse a 0 that means nothing."""
    from augstudy.classify.sweep import SweepOptions
    from augstudy.options import OptionError

    for field in ("epochs", "patience", "batch_size", "learning_rate", "input_size"):
        with pytest.raises(OptionError, match=f"--{field.replace('_', '-')} 0: must be"):
            SweepOptions(data=world["prepared"], out=world["root"] / "o", **{field: 0})


def write_config(folder: Path, sections: str, source: str = '"phantom"') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "study.toml"
    config.write_text(f'[study]\nname = "t"\nsource = {source}\nout = "out"\n{sections}', encoding="utf-8")
    return config


CONFIG_CASES = [
    ('[sweep]\nseeds = "3"\n', "[sweep] seeds = '3': expected an integer, got str"),
    ('[train_gan]\nkimg = "5"\n', "[train_gan] kimg = '5': expected a number, got str"),
    ('[train_gan]\nresume_from = "missing.pt"\n', "[train_gan] resume_from = 'missing.pt':"),
    ('[metrics]\ninception = "nowhere.pt"\n', "[metrics] inception = 'nowhere.pt':"),
    ('[sweep]\nepochs = 0\n', "[sweep] epochs = 0: must be an integer >= 1"),
    ('[train_gan]\nbatch = 0\n', "[train_gan] batch = 0: must be an integer in [1, 2048]"),
    ('[generate]\ntruncation = 3\n', "[generate] truncation = 3: must be a number in [0, 1]"),
    ('[sweep]\nsplits = "dedup"\n', "[sweep] splits = 'dedup'"),
    ('[metrics]\nmetrics = "swd"\n', "[metrics] metrics = 'swd': expected a list of strings, got str"),
    ('[sweep]\nratios = [0, "50"]\n', "[sweep] ratios = [0, '50']: expected a list of numbers, got list"),
    ('[prepare]\nclass_map = "a=b"\n', "[prepare] class_map = 'a=b': expected a table, got str"),
    ('[metrics]\nenabled = 1\n', "[metrics] enabled = 1: expected true or false"),
    ('[sweep]\nepoch = 3\n', "unknown key(s) ['epoch'] in [sweep]"),
]


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(("sections", "expected"), CONFIG_CASES, ids=[case[1].split("]")[0][1:] + "-"
                                                                      + case[1].split("] ")[1][:16]
                                                                      for case in CONFIG_CASES])
def test_run_checks_every_section_before_any_step(tmp_path: Path, sections: str, expected: str,
                                                  dry_run: bool) -> None:
    config = write_config(tmp_path, sections)
    result = CliRunner().invoke(main, ["run", str(config), *(["--dry-run"] if dry_run else [])])
    assert_clean_failure(result, expected)
    assert "study.toml" in result.output
    assert not (tmp_path / "out").exists()  # refused before any step wrote anything


def test_run_and_the_command_state_a_range_in_the_same_words(world: dict[str, Path], tmp_path: Path) -> None:
    command = invoke("sweep --epochs 0 --data {prepared} --out {root}/o7", world).output
    study = CliRunner().invoke(main, ["run", str(write_config(tmp_path, "[sweep]\nepochs = 0\n"))]).output
    rule = "0: must be an integer >= 1"
    assert rule in command and rule in study


def test_run_reports_a_missing_source_and_a_steps_user_error_like_the_command(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["run", str(write_config(tmp_path / "a", "", '"no-such-data"'))])
    assert_clean_failure(missing, "no-such-data")
    empty = tmp_path / "empty-source"
    empty.mkdir()
    config = write_config(tmp_path / "b", "", f'"{empty}"')
    step = CliRunner().invoke(main, ["run", str(config)])
    assert_clean_failure(step, "[prepare]")
    assert "empty-source" in step.output


def test_run_refuses_a_study_folder_around_its_source(tmp_path: Path) -> None:
    source = tmp_path / "out" / "data"
    source.mkdir(parents=True)
    result = CliRunner().invoke(main, ["run", str(write_config(tmp_path, "", '"out/data"'))])
    assert_clean_failure(result, "is inside --out")


def test_run_resolves_a_weights_file_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "resnet.weights.h5").write_bytes(b"weights")
    config = write_config(tmp_path, '[sweep]\nweights = "resnet.weights.h5"\n')
    result = CliRunner().invoke(main, ["run", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "resnet.weights.h5") in result.output
    missing = write_config(tmp_path / "b", '[sweep]\nweights = "gone.h5"\n')
    assert_clean_failure(CliRunner().invoke(main, ["run", str(missing), "--dry-run"]), "gone.h5")
