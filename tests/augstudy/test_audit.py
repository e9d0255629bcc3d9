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
    from augstudy.classify.sweep import FoldUnit, Sweep, SweepOptions, resolve_options

    data = _prepared(tmp_path, size_leaks=False, per_class=10)
    cache = tmp_path / "cache"
    report = run_audit(AuditOptions(data=data, out=tmp_path / "audit", input_size=32, cache_dir=cache,
                                    progress=False))
    backbone = next(item for item in report["groups"] if item["name"] == "backbone")
    assert backbone["title"] == "resnet50 features (random-init backbone)" and backbone["features"] == 2048
    prepared = read_prepared(data)
    options = resolve_options(SweepOptions(data=data, out=tmp_path / "sweep", ratios=(0,), weights="none",
                                           input_size=32, cache_dir=cache), prepared)
    folder = cache / f"resnet50-32px-{Sweep(options, FoldUnit(0, 0, prepared, {})).feature_spec().digest()}"
    assert len(list(folder.glob("*/*.npy"))) == 20


def test_a_flagged_size_cue_is_also_read_from_the_prepared_pixels(tmp_path: Path) -> None:
    """Widths differ by class and every image is resized to 32 px: does the cue reach the pixels the
    classifier sees? Here it does, because shrinking a wider noise image averages more pixels (its
    prepared contrast is lower), a trace a classifier can learn."""
    report = _audit(_prepared(tmp_path, size_leaks=True), tmp_path / "audit")
    size = next(item for item in report["groups"] if item["name"] == "size")
    survival = size["from_prepared_pixels"]
    assert survival["target"] == "log_area above its median"
    assert survival["survives"] == (survival["auc"] >= 0.7) and survival["survives"]
    assert "survives preparation" in survival["sentence"]
    quiet = _audit(_prepared(tmp_path / "quiet", size_leaks=False), tmp_path / "quiet-audit")
    assert all("from_prepared_pixels" not in item for item in quiet["groups"])  # nothing flagged, nothing asked


def _entry(**fields) -> dict:
    return {"auc": 0.69, "p_value": 1.7e-12, "flagged": False, "weak": False, "exclusive": [], **fields}


def test_flags_follow_the_evidence_not_only_the_line() -> None:
    """The committed chest CT audit: padding at AUC 0.693 with p = 1.7e-12 read "does not predict", and
    colour (all 32 colour images normal) read "does not predict" too."""
    from augstudy.audit.features import FeatureGroup
    from augstudy.audit.run import _sentence

    padding = FeatureGroup("padding", "padding after --fit pad", "metadata", ("a",), np.zeros((2, 1)))
    assert _sentence(padding, _entry(weak=True), ("normal", "squamous"), 0.7).startswith(
        "Padding after --fit pad weakly predicts the label: AUC 0.69, p = 1.7e-12")
    colour = FeatureGroup("colour", "colour content of the source file", "metadata", ("has_colour",), np.zeros((2, 1)))
    cue = {"sentence": "All 32 images with has_colour are normal: a classifier can label them from that alone."}
    text = _sentence(colour, _entry(auc=0.55, p_value=0.05, exclusive=[cue]), ("normal", "squamous"), 0.7)
    assert "does not predict the label overall" in text and "All 32 images with has_colour are normal" in text


def test_histogram_wording_follows_the_class_means() -> None:
    """Squamous (the lesion class) p99 133 vs normal 240: darker, so "a bright lesion" cannot explain it."""
    from augstudy.audit.features import FeatureGroup
    from augstudy.audit.run import _sentence

    histogram = FeatureGroup("histogram", "intensity histogram of the prepared image", "content", ("p99",),
                             np.zeros((2, 1)))
    darker = _entry(auc=0.98, flagged=True, class_means={"normal": {"p99": 239.8}, "squamous": {"p99": 133.5}})
    text = _sentence(histogram, darker, ("normal", "squamous"), 0.7)
    assert "the lesion class is the darker one" in text and "bright lesion can do that" not in text
    brighter = _entry(auc=0.98, flagged=True, class_means={"normal": {"p99": 120.0}, "squamous": {"p99": 200.0}})
    assert "a large, bright lesion can do that" in _sentence(histogram, brighter, ("normal", "squamous"), 0.7)
