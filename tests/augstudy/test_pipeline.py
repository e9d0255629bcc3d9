"""`augstudy run CONFIG` / `augstudy demo`: one file drives every step, resumably."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from study_configs import tiny_diffusion

from augstudy.cli import main
from augstudy.pipeline import ConfigError, Study, demo_config_path, load_config

TINY = """
[study]
name = "tiny"
source = "phantom"

[phantom]
per_class = 24
seed = 3

[prepare]
resolution = 16
split = "dedup"

[audit]
input_size = 32

[train_gan]
channel_base = 256
channel_max = 16
mapping_layers = 1
batch = 4
gamma = 0.1
kimg = 0.04
snap = 0.02
tick_kimg = 0.02
workers = 0
threads = 1

[generate]
per_class = 20

[metrics]
metrics = ["swd", "memo"]

[sweep]
ratios = [0, 100]
seeds = {seeds}
weights = "none"
input_size = 32
epochs = 2
save_models = "none"
"""


def _write(path: Path, seeds: int = 2) -> Path:
    path.write_text(TINY.replace("{seeds}", str(seeds)), encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_run_makes_every_output_then_resumes_only_what_changed(tmp_path: Path) -> None:
    config = _write(tmp_path / "tiny.toml")
    out = tmp_path / "study"
    log: list[str] = []
    report = Study(load_config(config, out), log=log.append).run()

    assert report == out / "report.md" and (out / "report.html").is_file()
    text = report.read_text(encoding="utf-8")
    for section in ("## Data", "## GAN", "## Classifier", "random-init",
                    "results/figures/balanced_accuracy_vs_added.png", "results/figures/confusion_matrices.png"):
        assert section in text
    assert json.loads((out / "results" / "answer.json").read_text())["sentence"] in text  # the answer, first
    assert len(list((out / "pool" / "normal").glob("seed*.png"))) == 20
    assert json.loads((out / "pool" / "metrics.json").read_text())["classes"]["squamous"]["swd"]["mean"] > 0
    assert len(_rows(out / "results" / "results.csv")) == 4
    state = json.loads((out / "study_state.json").read_text())
    assert set(state["steps"]) == {"phantom", "prepare", "audit", "train_gan", "generate", "audit:pool", "metrics",
                                   "sweep:default"}
    audit = json.loads((out / "audit" / "audit.json").read_text())
    assert set(audit["real_vs_synthetic"]["classes"]) == {"normal", "squamous"}
    assert audit["verdict"] in text

    log.clear()
    Study(load_config(config, out), log=log.append).run()
    assert sum("skipped" in line for line in log) == 8

    _write(config, seeds=3)
    log.clear()
    Study(load_config(config, out), log=log.append).run()
    skipped = [line for line in log if "skipped" in line]
    assert len(skipped) == 7 and not any("sweep" in line for line in skipped)
    assert len(_rows(out / "results" / "results.csv")) == 6


def test_unknown_key_names_file_section_and_allowed_keys(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace("{seeds}", "2").replace("epochs = 2", "epoch = 2"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key\(s\) \['epoch'\] in \[sweep\]; allowed: .*epochs"):
        load_config(config)


def test_wired_paths_cannot_be_set_in_a_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace("{seeds}", "2").replace("[generate]\n", '[generate]\nout = "elsewhere"\n'),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\['out'\] in \[generate\]"):
        load_config(config)


def test_missing_source_and_bad_toml_are_reported_with_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[study]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.toml: \[study\] needs 'source'"):
        load_config(config)
    config.write_text("[study\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        load_config(config)


def test_relative_paths_are_relative_to_the_config_and_source_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "data").mkdir()
    config = tmp_path / "exp" / "c.toml"
    config.write_text('[study]\nname = "x"\nsource = "../data"\nout = "results/x"\n', encoding="utf-8")
    loaded = load_config(config)
    assert loaded.source == str((tmp_path / "data").resolve())
    assert loaded.out == (tmp_path / "exp" / "results" / "x").resolve()
    assert load_config(config, source="phantom").source == "phantom"


def test_dry_run_prints_each_step_with_the_study_layout(tmp_path: Path) -> None:
    config = _write(tmp_path / "tiny.toml")
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["steps"]["train_gan"]["data"] == str(tmp_path / "s" / "prepared")
    assert plan["steps"]["sweep"]["pool"] == str(tmp_path / "s" / "pool")
    assert plan["steps"]["train_gan"]["kimg"] == 0.04
    assert not (tmp_path / "s").exists()


def test_shipped_configs_are_valid() -> None:
    demo = load_config(demo_config_path())
    assert demo.source == "phantom"
    offline = load_config(Path(__file__).parents[2] / "experiments" / "chestct-cpu.toml")
    for config in (demo, offline):  # both generators, each with its arm in the sweep
        assert config.generators == ("gan", "diffusion") and "diffusion" in config.sections["sweep"]["arms"]
    for config in (demo, offline):  # pretrained without a download, in the sweep and the audit alike
        for step in ("sweep", "audit"):
            assert config.sections[step]["backbone"] == "efficientnet-lite0", (config.name, step)
            assert config.sections[step]["weights"] == "imagenet", (config.name, step)
    repro = load_config(Path(__file__).parents[2] / "experiments" / "stebbins2024.toml")
    assert repro.sections["train_gan"] | {"batch": 8, "gamma": 50.0, "kimg": 80} == repro.sections["train_gan"]
    assert repro.sections["generate"]["per_class"] == 501 and repro.sections["sweep"]["head"] == "paper"


def test_auto_weights_without_a_local_file_stop_and_name_the_file(tmp_path: Path, monkeypatch) -> None:
    """Before: weights = "auto" fell back to a random-init backbone with only a log line."""
    import dataclasses

    import click
    import pytest

    from augstudy.classify.sweep import SweepOptions
    from augstudy.pipeline import _resolve_auto_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    options = SweepOptions(data=tmp_path, out=tmp_path / "r", weights="auto")
    with pytest.raises(click.ClickException) as caught:
        _resolve_auto_weights(options, print)
    message = caught.value.message
    expected = tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert str(expected) in message and 'weights = "none"' in message
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"")
    assert _resolve_auto_weights(options, print).weights == "imagenet"
    explicit = dataclasses.replace(options, weights="none")
    assert _resolve_auto_weights(explicit, print) is explicit


def _with_diffusion(path: Path, arms: str = '["gan", "diffusion", "diffusion-only"]') -> Path:
    text = TINY.replace("{seeds}", "2").replace("[sweep]\n", f"[sweep]\narms = {arms}\n") + tiny_diffusion()
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_config_with_both_generators_trains_samples_and_compares_them(tmp_path: Path) -> None:
    config = _with_diffusion(tmp_path / "both.toml")
    out = tmp_path / "study"
    log: list[str] = []
    report = Study(load_config(config, out), log=log.append).run()

    state = json.loads((out / "study_state.json").read_text())
    assert {"train_gan", "generate", "train_diffusion", "generate_diffusion", "metrics", "metrics:diffusion"} \
        <= set(state["steps"])
    for name in ("normal", "squamous"):  # [generate]'s per_class, since [generate_diffusion] names none
        assert len(list((out / "pool-diffusion" / name).glob("*.png"))) == 20
    sampling = json.loads((out / "pool-diffusion" / "sampling.json").read_text())
    assert sampling["normal"]["generator"] == "diffusion" and sampling["normal"]["sampler"] == "ddim:5"
    assert json.loads((out / "pool-diffusion" / "metrics.json").read_text())["classes"]["normal"]["swd"]["mean"] > 0
    results = pd.read_csv(out / "results" / "results.csv")
    assert set(results["arm"]) == {"gan", "diffusion", "diffusion-only"}
    cells = [json.loads(path.read_text()) for path in (out / "results" / "cells").glob("diffusion*.json")]
    assert cells and all(cell["generator"] == "diffusion" for cell in cells)
    pool = {path.relative_to(out / "pool-diffusion").as_posix() for path in (out / "pool-diffusion").rglob("*.png")}
    assert all(set(cell["added_images"]) <= pool for cell in cells)
    summary = pd.read_csv(out / "results" / "summary.csv")
    assert "gan - diffusion" in set(summary.loc[summary["p_holm"].notna(), "arm"])
    text = report.read_text(encoding="utf-8")
    assert "## Diffusion model" in text and "GAN minus diffusion images" in text

    log.clear()
    Study(load_config(config, out), log=log.append).run()
    assert not any(line.startswith("== ") and "skipped" not in line for line in log), log


def test_diffusion_sections_and_arms_must_come_together(tmp_path: Path) -> None:
    config = _with_diffusion(tmp_path / "c.toml", arms='["gan"]')
    with pytest.raises(ConfigError, match=r"c\.toml: \[train_diffusion\] is given but no \[sweep\] arm reads its pool"):
        load_config(config)
    config.write_text(TINY.replace("{seeds}", "2").replace("[sweep]\n", '[sweep]\narms = ["diffusion"]\n'),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"arms \['diffusion'\] read a diffusion pool; add a \[train_diffusion\]"):
        load_config(config)
    config.write_text(TINY.replace("{seeds}", "2") + "[generate_diffusion]\nsteps = 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[generate_diffusion\] is given without \[train_diffusion\]"):
        load_config(config)


def test_dry_run_lists_the_diffusion_steps_only_when_configured(tmp_path: Path) -> None:
    for config, expected in ((_write(tmp_path / "gan.toml"), False), (_with_diffusion(tmp_path / "both.toml"), True)):
        result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "s"), "--dry-run"])
        assert result.exit_code == 0, result.output
        steps = json.loads(result.output)["steps"]
        assert ("train_diffusion" in steps) is expected and ("generate_diffusion" in steps) is expected
        assert (steps["sweep"]["diffusion_pool"] == str(tmp_path / "s" / "pool-diffusion")) is expected


@pytest.mark.parametrize(("setting", "message"), [
    ('sensitivity = {schedule = "fixed", epochs = 0}', r"\[sweep\] sensitivity: epochs = 0: give a whole number"),
    ('sensitivity = {schedule = "plateau", epochs = 5}', r"\[sweep\] sensitivity: schedule = 'plateau'"),
    ('sensitivity = "fixed"', r"\[sweep\] sensitivity: 'fixed': expected a table"),
    ('schedule = "fixed"\nsensitivity = {schedule = "fixed", epochs = 5}', "already uses schedule"),
])
def test_a_bad_sensitivity_setting_is_refused_before_any_work(tmp_path: Path, setting: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace("{seeds}", "2").replace("epochs = 2\n", f"epochs = 2\n{setting}\n"),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"bad\.toml: .*{message}"):
        load_config(config)


def test_shipped_configs_run_the_fixed_schedule_sensitivity_sweep() -> None:
    experiments = Path(__file__).parents[2] / "experiments"
    for path in (demo_config_path(), experiments / "chestct-cpu.toml", experiments / "chestct-cv.toml"):
        assert load_config(path).sections["sweep"]["sensitivity"] == {"schedule": "fixed", "epochs": 5}, path


@pytest.mark.slow
def test_run_adds_the_fixed_schedule_sweep_and_states_whether_the_answer_agrees(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.replace("{seeds}", "2").replace("epochs = 2\n", "epochs = 2\nsensitivity = "
                                                           '{schedule = "fixed", epochs = 3}\n'), encoding="utf-8")
    out = tmp_path / "study"
    log: list[str] = []
    report = Study(load_config(config, out), log=log.append).run()
    fixed = out / "results" / "sensitivity-fixed"
    options = json.loads((fixed / "sweep_options.json").read_text())
    assert options["schedule"] == "fixed" and options["epochs"] == 3 and options["save_models"] == "none"
    assert {row["epochs_trained"] for row in _rows(fixed / "results.csv")} == {"3"}
    assert len(_rows(fixed / "results.csv")) == len(_rows(out / "results" / "results.csv")) == 4
    comparison = json.loads((fixed / "comparison.json").read_text())
    answer = json.loads((out / "results" / "answer.json").read_text())
    assert answer["sensitivity"] == comparison and comparison["agrees"] in (True, False)
    assert answer["sentence"].endswith(comparison["sentence"])
    assert comparison["sentence"].startswith("With a fixed 3-epoch schedule")
    assert comparison["sentence"] in report.read_text(encoding="utf-8")
    state = json.loads((out / "study_state.json").read_text())
    result = state["steps"]["sensitivity:default"]["result"]
    assert result["trained"] == 4 and result["features_computed"] == 0  # only heads: features are cached
    log.clear()
    Study(load_config(config, out), log=log.append).run()
    assert "== sensitivity:default: done earlier with the same options; skipped" in log
    assert json.loads((out / "results" / "answer.json").read_text())["sentence"].count("With a fixed") == 1
