"""The study report opens with the answer, then the audit's verdict, then the answer's figures in
order; it shows real and synthetic images side by side at a judgeable size, flags a random-init
backbone, explains "degenerate", and renders Markdown marks as HTML."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.pipeline import Study, demo_config_path, load_config
from augstudy.report.document import Document, Paragraph, inline_html
from augstudy.report.study import GRID_PER_CLASS, write_study_report

SUMMARY_COLUMNS = ["ratio", "metric", "n", "mean", "std", "ci_low", "ci_high", "n_degenerate", "mean_difference",
                   "p_holm", "test", "backbone", "weights", "head", "split"]
SENTENCE = "Adding 50 % synthetic images raised balanced accuracy from 0.80 to 0.84, which 12 real images match."


def _png(path: Path, value: int, side: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side), value, np.uint8), "L").save(path)


def _study(tmp_path: Path, weights: str = "random-init backbone", answer: bool = True,
           diffusion: bool = False) -> Study:
    config = tmp_path / "study.toml"
    config.write_text('[study]\nname = "constructed"\nsource = "phantom"\n'
                      + ('[train_diffusion]\n[sweep]\narms = ["gan", "diffusion"]\n' if diffusion else ""),
                      encoding="utf-8")
    study = Study(load_config(config, tmp_path / "out"), log=lambda line: None)
    for index, name in enumerate(("normal", "squamous")):
        for number in range(GRID_PER_CLASS + 2):
            _png(study.prepared / "images" / "train" / name / f"{number:03d}.png", 40 + index)
            _png(study.pool / name / f"seed{number:05d}.png", 200 + index)
            if diffusion:
                _png(study.pool_of("diffusion") / name / f"seed{number:05d}.png", 120 + index)
    counts = {split: {"normal": GRID_PER_CLASS + 2, "squamous": GRID_PER_CLASS + 2} for split in ("train", "valid", "test")}
    (study.prepared / "report.json").write_text(json.dumps({
        "source": "constructed", "files": 36, "readable": 36, "unreadable": [], "resolution": 32, "fit": "pad",
        "channels": 1, "split": "dedup", "classes": ["normal", "squamous"], "counts_official": counts,
        "counts_dedup": counts, "duplicates_across_splits": {}, "near_duplicates_across_splits": {}}),
        encoding="utf-8")
    results = study.out / "results"
    (results / "figures").mkdir(parents=True)
    with open(results / "summary.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerow({"ratio": "0", "metric": "balanced_accuracy", "n": "3", "mean": "0.8", "std": "0.01",
                         "ci_low": "0.78", "ci_high": "0.82", "n_degenerate": "1", "mean_difference": "",
                         "p_holm": "", "test": "t", "backbone": "resnet50", "weights": weights,
                         "head": "compact", "split": "dedup"})
    for name in ("arms.png", "learning_curve.png", "confusion.png", "accuracy_vs_ratio.png"):
        _png(results / "figures" / name, 128)
    if answer:
        (results / "answer.json").write_text(json.dumps({
            "primary_metric": "balanced_accuracy", "sentence": SENTENCE, "positive_class": "squamous",
            "warnings": ["1 of 3 runs at 0 % is degenerate."],
            "figures": [{"path": "figures/learning_curve.png", "caption": "Learning curve on real data"},
                        {"path": "figures/arms.png", "caption": "Balanced accuracy by arm"},
                        {"path": "figures/confusion.png", "caption": "Confusion matrices"}]}), encoding="utf-8")
    study.audit.mkdir(parents=True)
    (study.audit / "audit.json").write_text(json.dumps({
        "verdict": "Shortcut warning: original image size predicts the label.", "threshold": 0.7,
        "split": "dedup", "images": {"normal": 10, "squamous": 10}, "partial_shortcuts": [],
        "groups": [{"name": "size", "title": "original image size", "kind": "metadata", "auc": 0.91,
                    "flagged": True}]}), encoding="utf-8")
    return study


def test_report_opens_with_answer_then_audit_then_figures_in_order(tmp_path: Path) -> None:
    study = _study(tmp_path)
    text = write_study_report(study).read_text(encoding="utf-8")
    positions = [text.index(SENTENCE), text.index("Shortcut warning: original image size"),
                 text.index("figures/learning_curve.png"), text.index("figures/arms.png"),
                 text.index("figures/confusion.png"), text.index("## Data")]
    assert positions == sorted(positions)
    assert text.index("Random-init backbone") < positions[0]  # the banner comes before everything
    assert "is degenerate. (A degenerate run predicts one class for every test image" in text
    assert "accuracy_vs_ratio.png" not in text  # answer.json chose the figures


def test_without_answer_json_the_report_falls_back_to_the_sweep_tables(tmp_path: Path) -> None:
    study = _study(tmp_path, weights="imagenet", answer=False)
    text = write_study_report(study).read_text(encoding="utf-8")
    assert "stated no answer" in text
    figures = ["accuracy_vs_ratio.png", "arms.png", "confusion.png", "learning_curve.png"]
    positions = [text.index(f"](results/figures/{name})") for name in figures]
    assert positions == sorted(positions)  # every figure of the sweep is embedded, the accuracy plot first
    assert "Random-init" not in text
    # in the banner's place, what the classifier saw
    assert text.index("a frozen resnet50 backbone, pretrained on ImageNet (weights: imagenet)") < text.index("The answer")


def test_grid_shows_real_and_synthetic_side_by_side_upscaled(tmp_path: Path) -> None:
    study = _study(tmp_path)
    write_study_report(study)
    grid = np.asarray(Image.open(study.out / "report_files" / "real_vs_synthetic.png"))
    side = 128  # 32 px images enlarged four times
    assert grid.shape[0] == 2 * side
    for row, (real, synthetic) in enumerate(((40, 200), (41, 201))):
        band = grid[row * side:(row + 1) * side]
        assert (band[:, :GRID_PER_CLASS * side] == real).all()
        assert (band[:, -GRID_PER_CLASS * side:] == synthetic).all()


def test_with_two_generators_the_grid_shows_both_pools_and_each_has_its_section(tmp_path: Path) -> None:
    study = _study(tmp_path, diffusion=True)
    metrics = {"classes": {name: {"num_real": 6, "num_fake": 6, "swd": {"mean": 1.5}} for name in ("normal", "squamous")}}
    (study.pool_of("diffusion") / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    text = write_study_report(study).read_text(encoding="utf-8")
    grid = np.asarray(Image.open(study.out / "report_files" / "real_vs_synthetic.png"))
    side, gap = 128, 128 // 8
    assert grid.shape[1] == 3 * GRID_PER_CLASS * side + 2 * gap  # real | GAN | diffusion
    for row, values in enumerate(((40, 200, 120), (41, 201, 121))):
        band = grid[row * side:(row + 1) * side]
        for block, value in enumerate(values):
            start = block * (GRID_PER_CLASS * side + gap)
            assert (band[:, start:start + GRID_PER_CLASS * side] == value).all(), (row, block)
    assert "then, after each gap, 4 of the same class from each pool: GAN images, then diffusion images" in text
    assert "## GAN" in text and "## Diffusion model" in text
    assert "Diffusion model quality and memorisation" in text and "pool-diffusion/metrics.json" in text


def test_html_renders_inline_marks_and_has_no_literal_backticks(tmp_path: Path) -> None:
    study = _study(tmp_path)
    write_study_report(study)
    page = (study.out / "report.html").read_text(encoding="utf-8")
    assert "`" not in page and "**" not in page
    assert '<div class="banner">' in page and "<strong>Verdict:</strong>" in page
    assert '<img src="results/figures/arms.png"' in page


@pytest.mark.parametrize("text, expected", [
    ("run `augstudy demo` now", "run <code>augstudy demo</code> now"),
    ("**bold** & <tag>", "<strong>bold</strong> &amp; &lt;tag&gt;"),
    ("a lone ` stays", "a lone ` stays"),
])
def test_inline_html(text: str, expected: str) -> None:
    assert inline_html(text) == expected
    document = Document("t", [Paragraph(text)])
    assert f"<p>{expected}</p>" in document.to_html()


def test_the_sweep_table_names_each_rows_arm_and_real_fraction(tmp_path: Path) -> None:
    study = _study(tmp_path, weights="imagenet")
    summary = study.out / "results" / "summary.csv"
    columns = SUMMARY_COLUMNS + ["arm", "real_fraction", "role"]
    common = {"metric": "balanced_accuracy", "n": "3", "std": "0.01", "n_degenerate": "0", "test": "t",
              "backbone": "resnet50", "weights": "imagenet", "head": "compact", "split": "dedup",
              "role": "primary"}
    with open(summary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for arm, ratio, fraction, mean in (("gan", "0", "100", "0.8"), ("classic", "25", "100", "0.71"),
                                           ("real", "0", "50", "0.62")):
            writer.writerow({**common, "arm": arm, "ratio": ratio, "real_fraction": fraction, "mean": mean,
                             "ci_low": "0.5", "ci_high": "0.9", "mean_difference": "", "p_holm": ""})
    rows = [line for line in write_study_report(study).read_text(encoding="utf-8").splitlines()
            if "balanced_accuracy" in line and line.startswith("|")]
    classic = next(line for line in rows if "0.710" in line)
    real = next(line for line in rows if "0.620" in line)
    assert "classic" in classic and "synthetic" not in classic
    assert "real" in real and "50" in real  # the learning-curve point is not shown as "0 % synthetic"
    assert all("synthetic %" not in line for line in rows)


def test_the_real_image_grid_shows_one_image_per_duplicate_group(tmp_path: Path) -> None:
    """The official chest CT split keeps copies of one slice: the grid showed four copies of it."""
    import numpy as np
    from PIL import Image

    from augstudy.report.study import image_grid

    prepared = tmp_path / "prepared"
    folder = prepared / "images" / "train" / "normal"
    folder.mkdir(parents=True)
    rows = ["image,dup_group"]
    for index in range(6):
        value = 40 if index < 4 else 40 * index  # files 0-3: copies of one slice
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{index}.png")
        rows.append(f"images/train/normal/{index}.png,{'g1' if index < 4 else f'g{index}'}")
    (prepared / "manifest.csv").write_text("\n".join(rows) + "\n")
    path, side = image_grid(prepared / "images" / "train", [tmp_path / "pool"], ["normal"], tmp_path / "grid.png")
    tiles = np.asarray(Image.open(path))[0, ::side][:4]
    assert list(tiles[:3]) == [40, 160, 200] and tiles[3] == 0  # three distinct slices, then a blank tile


def test_the_report_names_paths_relative_to_the_config(tmp_path: Path) -> None:
    """The committed chest CT report carried this machine's absolute paths (source and re-run command)."""
    study = _study(tmp_path)
    source = tmp_path / "data" / "chest-ct"
    report = json.loads((study.prepared / "report.json").read_text(encoding="utf-8"))
    (study.prepared / "report.json").write_text(json.dumps({**report, "source": str(source)}), encoding="utf-8")
    text = write_study_report(study).read_text(encoding="utf-8")
    assert str(tmp_path) not in text
    assert "augstudy run study.toml --out out" in text and "Source `data/chest-ct`" in text


def test_the_demos_report_says_how_to_re_run_the_demo(tmp_path: Path) -> None:
    study = Study(load_config(demo_config_path(), tmp_path / "my-demo"), log=lambda line: None)
    assert study.config.builtin_demo and not _study(tmp_path).config.builtin_demo
    study.prepared.mkdir(parents=True)
    (study.prepared / "report.json").write_text((tmp_path / "out" / "prepared" / "report.json").read_text()
                                                .replace('"constructed"', json.dumps(str(study.out / "phantom"))))
    text = write_study_report(study).read_text(encoding="utf-8")
    assert "augstudy demo --out my-demo" in text and str(tmp_path) not in text
    assert "Source `phantom`" in text  # the phantom's images, inside the study folder
