"""The shortcut audit: it names a cue that predicts the label, stays quiet when none does, keeps
duplicate copies in one fold, and its real-vs-synthetic probe tells separable from identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.audit.probe import cross_validated_auc, grouped_folds, real_vs_synthetic_auc
from augstudy.audit.run import AuditOptions, run_audit
from augstudy.cli import main
from augstudy.data.prepare import PrepareOptions, prepare


def _prepared(tmp_path: Path, size_leaks: bool, per_class: int = 40, normal_jpegs: int = 0) -> Path:
    """Noise images of two classes whose content is drawn the same way; in the leaking set class
    normal images are wide (200-240 px) and squamous ones narrow (120-160 px), otherwise both 120-240."""
    rng = np.random.default_rng(7)
    source = tmp_path / "source"
    for name in ("normal", "squamous"):
        folder = source / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            low, high = ((200, 240) if name == "normal" else (120, 160)) if size_leaks else (120, 240)
            width = int(rng.integers(low, high + 1))
            height = int(width * rng.uniform(0.7, 0.9))
            pixels = rng.normal(110, 30, size=(height, width)).clip(0, 255).astype(np.uint8)
            jpeg = name == "normal" and index < normal_jpegs
            Image.fromarray(pixels, "L").save(folder / f"{index:03d}.{'jpg' if jpeg else 'png'}")
    out = tmp_path / "prepared"
    prepare(PrepareOptions(source=str(source), out=out, resolution=32))
    return out


def _audit(data: Path, out: Path) -> dict:
    return run_audit(AuditOptions(data=data, out=out, backbone_features=False, progress=False))


def test_audit_flags_size_when_it_leaks_the_label(tmp_path: Path) -> None:
    report = _audit(_prepared(tmp_path, size_leaks=True), tmp_path / "audit")
    groups = {item["name"]: item for item in report["groups"]}
    assert groups["size"]["flagged"] and groups["size"]["auc"] >= 0.9
    assert "size" in report["shortcuts"]
    assert groups["size"]["sentence"].startswith(f"Original image size (width, height, aspect ratio) alone "
                                                 f"predicts the label: AUC {groups['size']['auc']:.2f}")
    assert not groups["padding"]["flagged"]  # both classes share one aspect-ratio distribution
    assert report["verdict"].startswith("Shortcut warning")
    written = json.loads((tmp_path / "audit" / "audit.json").read_text(encoding="utf-8"))
    assert written["groups"] == report["groups"]
    options = json.loads((tmp_path / "audit" / "audit_options.json").read_text(encoding="utf-8"))
    assert options["split"] == "dedup" and options["threshold"] == 0.7


def test_audit_stays_quiet_when_nothing_but_chance_differs(tmp_path: Path) -> None:
    report = _audit(_prepared(tmp_path, size_leaks=False), tmp_path / "audit")
    assert report["shortcuts"] == [] and report["flags"] == []
    for item in report["groups"]:
        assert "skipped" in item or item["auc"] < 0.7, item
    assert report["verdict"].startswith("No metadata shortcut found")
    # every file is a PNG of one mode: the file group has format and mode constant but file size varies
    colour = next(item for item in report["groups"] if item["name"] == "colour")
    assert colour["skipped"].startswith("every image has the same value")


def test_a_format_only_one_class_has_is_named_as_a_partial_shortcut(tmp_path: Path) -> None:
    report = _audit(_prepared(tmp_path, size_leaks=False, normal_jpegs=4), tmp_path / "audit")
    assert [(cue["feature"], cue["class"], cue["images"]) for cue in report["partial_shortcuts"]] == [
        ("format=JPEG", "normal", 4)]
    assert "all 4 images with format=JPEG are normal" in report["verdict"]


def test_folds_never_split_a_duplicate_group() -> None:
    labels = np.repeat([0, 1], 30)
    groups = np.array([f"g{index // 3}" for index in range(60)])  # copies in threes
    folds = grouped_folds(labels, groups, seed=0)
    for _, test in folds.split(np.zeros((60, 1)), labels, groups):
        inside = set(groups[test])
        outside = set(np.delete(groups, test))
        assert not inside & outside


def test_copies_of_a_few_images_do_not_pass_for_a_learnable_cue() -> None:
    """Ten distinct random images per class, each copied six times: scored without grouping, a tree
    recognises the copies it trained on; grouped, it cannot do better than chance."""
    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(20, 3))
    labels = np.repeat(np.arange(20) % 2, 6)
    features = np.repeat(distinct, 6, axis=0)
    groups = np.repeat([f"g{index}" for index in range(20)], 6)
    grouped = cross_validated_auc(features, labels, groups, seed=0)
    ungrouped = cross_validated_auc(features, labels, None, seed=0)
    assert ungrouped.auc > 0.9
    assert grouped.auc < 0.7


def test_real_vs_synthetic_probe_separable_and_identical() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 16))
    shifted = rng.normal(size=(60, 16)) + np.r_[np.full(4, 1.5), np.zeros(12)]
    same = rng.normal(size=(60, 16))
    assert real_vs_synthetic_auc(real, shifted).auc > 0.95
    assert abs(real_vs_synthetic_auc(real, same).auc - 0.5) < 0.15


@pytest.mark.parametrize("arguments, message", [
    (["--threshold", "0.5"], "0.5: must be a number in (0.5, 1]"),
    (["--feature-batch-size", "0"], "0: must be an integer >= 1"),
    (["--no-backbone-features", "--pool", "{pool}"], "--pool needs the backbone's features"),
])
def test_cli_rejects_bad_options_with_a_message(tmp_path: Path, arguments: list[str], message: str) -> None:
    data = _prepared(tmp_path, size_leaks=False, per_class=4)
    (tmp_path / "pool" / "normal").mkdir(parents=True)
    arguments = [item.replace("{pool}", str(tmp_path / "pool")) for item in arguments]
    result = CliRunner().invoke(main, ["audit", "--data", str(data), "--out", str(tmp_path / "out"), *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_backbone_features_share_the_sweeps_cache(tmp_path: Path) -> None:
    """The audit's random-init features land under the key the sweep uses, so neither recomputes them."""
    from augstudy.classify.data import read_prepared
    from augstudy.classify.sweep import Sweep, SweepOptions, resolve_options

    data = _prepared(tmp_path, size_leaks=False, per_class=10)
    cache = tmp_path / "cache"
    report = run_audit(AuditOptions(data=data, out=tmp_path / "audit", input_size=32, cache_dir=cache,
                                    progress=False))
    backbone = next(item for item in report["groups"] if item["name"] == "backbone")
    assert backbone["title"] == "resnet50 features (random-init backbone)" and backbone["features"] == 2048
    prepared = read_prepared(data)
    options = resolve_options(SweepOptions(data=data, out=tmp_path / "sweep", ratios=(0,), weights="none",
                                           input_size=32, cache_dir=cache), prepared)
    folder = cache / f"resnet50-32px-{Sweep(options, prepared, {}).feature_spec().digest()}"
    assert len(list(folder.glob("*/*.npy"))) == 20
