"""The study report: `OUT/report.md` and `OUT/report.html` from what the steps wrote.

It only reads the steps' own outputs (report.json, audit.json, stats.jsonl, metrics.json,
answer.json, summary.csv, the figures), so it can be rebuilt at any time and every number in it
has a file behind it. Each figure names the command and the options file that made it.

A researcher reads the top first, so it opens with the answer in plain words (each sweep's
answer.json: `sentence`, `warnings`, and `figures` in reading order), then the shortcut audit's
verdict, then those figures; the details (data, GAN, tables, timings) follow.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from augstudy.data.decode import decode_file
from augstudy.report.document import Banner, Bullets, Code, Document, Figure, Heading, Paragraph, Table
from stylegan2ada.io import atomic_write_text

if TYPE_CHECKING:
    from augstudy.pipeline import Study

GRID_PER_CLASS = 4  # real and synthetic tiles per class in the side-by-side grid
GRID_TILE = 128  # tiles are upscaled (nearest neighbour) to at least this side, so a reader can judge them
ANSWER_NAME = "answer.json"
FIGURE_CAPTIONS = {
    "accuracy_vs_ratio": "Test accuracy vs synthetic % (mean, 95% CI, one point per seed)",
    "balanced_accuracy_vs_ratio": "Test balanced accuracy vs synthetic % (mean, 95% CI, one point per seed)",
    "training_curves": "Training and validation loss per epoch, every cell",
}
AUDIT_NAME = "audit.json"
RANDOM_INIT_BANNER = ("Random-init backbone: no ImageNet weights were available offline, so the classifier "
                      "sees untrained features. The numbers below test the pipeline, not the research question; "
                      "put the weights file in place (see the README) for a meaningful study.")
DEGENERATE = ("A degenerate run predicts one class for every test image, or fits its training set perfectly "
              "while the test set is at chance; such runs are kept and counted, never dropped.")


def write_study_report(study: Study) -> Path:
    """Write report.md and report.html under the study folder; returns the Markdown path."""
    out = study.out
    doc = Document(f"augstudy report: {study.config.name}")
    if study.config.description:
        doc.add(Paragraph(study.config.description))
    outputs = study.sweep_outputs()
    if any(_random_init(results) for results in outputs.values()):
        doc.add(Banner(RANDOM_INIT_BANNER))
    else:
        doc.add(*(Paragraph(line) for line in sorted({_backbone_line(results) for results in outputs.values()} - {""})))
    _answer_section(doc, study, outputs)
    _audit_section(doc, study)
    _figures_section(doc, study, outputs)
    local = study.config.source != "phantom" and not study.config.source.startswith("kaggle:")
    if study.config.builtin_demo:
        doc.add(Paragraph(f"Config: the built-in demo (`augstudy/configs/{study.config.path.name}`). Re-run from the "
                          f"folder that holds `{out.name}` (resumes, skips finished steps):"),
                Code(f"augstudy demo --out {out.name}"))
    else:
        doc.add(Paragraph(f"Config: `{study.config.path.name}`. Re-run from the config's folder (resumes, skips "
                          "finished steps):"),
                Code(f"augstudy run {study.config.path.name} --out {_from_config(study, out)}"
                     + (f" --source {_from_config(study, Path(study.config.source))}" if local else "")))
    _data_section(doc, study)
    for generator in study.config.generators:
        _generator_section(doc, study, generator)
    for split, results in outputs.items():
        _classifier_section(doc, study, results, split)
    _timing_section(doc, study)
    report = out / "report.md"
    atomic_write_text(report, doc.to_markdown())
    atomic_write_text(out / "report.html", doc.to_html())
    return report


def _from_config(study: Study, path: Path) -> str:
    """A path as seen from the config's folder, so a committed report names no machine's absolute paths."""
    return Path(os.path.relpath(Path(path).resolve(), study.config.path.resolve().parent)).as_posix()


def _rel(study: Study, path: Path) -> str:
    return str(path.relative_to(study.out)) if path.is_relative_to(study.out) else str(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _number(text: str) -> float:
    """A CSV cell as a float; pandas writes NaN as an empty cell."""
    return float(text) if text.strip() else float("nan")


def _split_label(split: str | None) -> str:
    return f" ({split} split)" if split else ""


def _random_init(results: Path) -> bool:
    summary = results / "summary.csv"
    if not summary.is_file():
        return False
    with open(summary, newline="", encoding="utf-8") as handle:
        return any("random" in row.get("weights", "").lower() for row in csv.DictReader(handle))


def _backbone_line(results: Path) -> str:
    """What the classifier saw, said up front where a random-init study shows its banner."""
    summary = results / "summary.csv"
    if not summary.is_file():
        return ""
    with open(summary, newline="", encoding="utf-8") as handle:
        first = next(csv.DictReader(handle), None)
    if first is None:
        return ""
    pretraining = ", pretrained on ImageNet" if first["weights"].lower().startswith("imagenet") else ""
    return f"Classifier features: a frozen {first['backbone']} backbone{pretraining} (weights: {first['weights']})."


def _answer_section(doc: Document, study: Study, outputs: dict[str | None, Path]) -> None:
    doc.add(Heading("The answer"))
    for split, results in outputs.items():
        answer = _read_json(results / ANSWER_NAME)
        label = f"**{split} split:** " if split else ""
        if answer is None:
            state = "has not finished" if not (results / "summary.csv").is_file() else "stated no answer"
            doc.add(Paragraph(f"{label}The sweep {state} (no `{_rel(study, results / ANSWER_NAME)}`); its "
                              "tables are in the Classifier section below."))
            continue
        doc.add(Paragraph(f"{label}{answer['sentence']} (Primary metric: {answer['primary_metric']}; positive "
                          f"class: {answer['positive_class']}.)"))
        warnings = [_explain(text) for text in answer.get("warnings", [])]
        if warnings:
            doc.add(Bullets([f"Warning: {text}" for text in warnings]))


def _explain(text: str) -> str:
    """Add the definition of a term a reader may not know, where it first appears."""
    return f"{text} ({DEGENERATE})" if "degenerate" in text.lower() else text


def _audit_section(doc: Document, study: Study) -> None:
    audit = _read_json(study.audit / AUDIT_NAME)
    doc.add(Heading("Shortcut audit: can the label be predicted without pathology?"))
    if audit is None:
        doc.add(Paragraph("The audit did not run (`[audit] enabled = false`, or the study stopped before it). "
                          "Run `augstudy audit --data PREPARED --out DIR` before trusting any accuracy."))
        return
    doc.add(Paragraph(f"**Verdict:** {audit['verdict']}"),
            Paragraph(f"Each row is a simple classifier (logistic regression, and a depth-3 decision tree for "
                      f"small groups) trained on one kind of attribute only, scored by ROC AUC over "
                      f"cross-validation folds that keep copies of an image together: 0.5 means the attribute "
                      f"says nothing about the label, 1.0 that it gives the label away. Rows at or above "
                      f"{audit['threshold']:.2f} are flagged. Metadata cannot show pathology, so a flagged "
                      f"metadata row is a shortcut; content rows look at the pixels. {audit['split']} split, "
                      f"{', '.join(f'{n} {name}' for name, n in audit['images'].items())}."))
    rows = [[item["title"], item["kind"], _fmt(item.get("auc")) if "auc" in item else "skipped (constant)",
             "**yes**" if item.get("flagged") else "no"] for item in audit["groups"]]
    doc.add(Table(["attribute group", "kind", "ROC AUC", "flagged"], rows))
    if audit.get("partial_shortcuts"):
        doc.add(Bullets([cue["sentence"] for cue in audit["partial_shortcuts"]]))
    probe = audit.get("real_vs_synthetic")
    if probe:
        doc.add(Paragraph(f"Real vs synthetic: a linear probe on the classifier's backbone features "
                          f"({probe['weights']}) tries to tell a class's real train images from as many of its "
                          f"synthetic ones. Near 0.5 the classifier cannot tell them apart; near 1.0 \"synthetic\" "
                          f"is itself a cue it can learn."),
                Table(["class", "real", "synthetic", "ROC AUC", "flagged"],
                      [[name, str(item.get("n_real", "–")), str(item.get("n_synthetic", "–")),
                        _fmt(item["auc"]) if "auc" in item else item.get("skipped", "–"),
                        "**yes**" if item.get("flagged") else "no"] for name, item in probe["classes"].items()]))
    doc.add(Paragraph(f"Made by: augstudy audit (results: `{_rel(study, study.audit / AUDIT_NAME)}`)."))


def _figures_section(doc: Document, study: Study, outputs: dict[str | None, Path]) -> None:
    """The figures each answer.json lists, in its order (arms, learning curve, metrics, confusion, curves)."""
    for split, results in outputs.items():
        answer = _read_json(results / ANSWER_NAME)
        figures = [item for item in (answer or {}).get("figures", []) if (results / item["path"]).is_file()]
        if not figures:
            continue
        doc.add(Heading(f"Figures{_split_label(split)}"))
        for item in figures:
            doc.add(Figure(_rel(study, results / item["path"]), _explain(item["caption"]),
                           f"augstudy sweep (options: {_rel(study, results / 'sweep_options.json')})"))


def _data_section(doc: Document, study: Study) -> None:
    report = _read_json(study.prepared / "report.json")
    doc.add(Heading("Data"))
    if report is None:
        doc.add(Paragraph("The prepare step has not written report.json yet."))
        return
    classes = report["classes"]
    doc.add(Paragraph(
        f"Source `{_shown_source(study, str(report['source']))}`, {report['files']} files, {report['readable']} readable, "
        f"{len(report['unreadable'])} unreadable (listed in prepared/report.json). Every image was brought to "
        f"{report['resolution']} px square ({report['fit']}), {report['channels']} channel(s), so that image "
        f"size cannot leak the label. Split used by the GAN: `{report['split']}`."))
    rows = []
    for split in ("train", "valid", "test"):
        for name in classes:
            rows.append([split, name, str(report["counts_official"][split][name]),
                         str(report["counts_dedup"][split][name]),
                         str(report["duplicates_across_splits"].get(split, {}).get(name, 0)),
                         str(report["near_duplicates_across_splits"].get(split, {}).get(name, 0))])
    doc.add(Heading("Data leakage", 3),
            Paragraph("Images in valid/test that are exact (byte or pixel) or near (perceptual hash) copies of a "
                      "train image inflate test accuracy; the dedup split removes them."),
            Table(["split", "class", "official", "dedup", "exact copies of train", "near copies of train"], rows))
    pools = {GENERATOR_WORDS[generator].images: study.sample_pool_of(generator)  # cv: each one's first fold and seed
             for generator in study.config.generators}
    grid = image_grid(study.prepared / "images" / "train", list(pools.values()), classes,
                      study.out / "report_files" / "real_vs_synthetic.png")
    if grid is not None:
        shown = [name for name, pool in pools.items() if any((pool / cls).is_dir() for cls in classes)]
        caption = (f"Rows: {', '.join(classes)}. Left: {GRID_PER_CLASS} distinct real train images"
                   + (f"; then, after each gap, {GRID_PER_CLASS} of the same class from each pool: "
                      f"{', then '.join(shown)}" if shown else "") + f" (each shown at {grid[1]} px, nearest-neighbour).")
        options = ", ".join(_rel(study, pool / "generate_options.json") for pool in pools.values())
        doc.add(Figure(_rel(study, grid[0]), caption,
                       f"augstudy prepare and generate (options: "
                       f"{_rel(study, study.prepared / 'prepare_options.json')}, {options})"))


def _distinct(files: list[Path], manifest: Path) -> list[Path]:
    """One file per duplicate group of prepare's manifest (the official split keeps copies of a slice)."""
    if not manifest.is_file():
        return files
    with open(manifest, newline="", encoding="utf-8") as handle:
        group_of = {row["image"]: row.get("dup_group") or row["image"] for row in csv.DictReader(handle)}
    seen: set[str] = set()
    kept = []
    for path in files:
        name = path.relative_to(manifest.parent).as_posix()
        group = group_of.get(name, name)
        if group not in seen:
            seen.add(group)
            kept.append(path)
    return kept


def _shown_source(study: Study, source: str) -> str:
    """The prepared source as a reader can find it: the phantom is the study's own `phantom` folder (wherever
    the study folder has moved since), a local folder is named relative to the config."""
    if study.config.source == "phantom" and Path(source).name == "phantom":
        return "phantom"
    return _from_config(study, Path(source)) if Path(source).is_absolute() else source


def image_grid(real: Path, pools: Sequence[Path], classes: list[str], out: Path) -> tuple[Path, int] | None:
    """Real images and each pool's side by side, one row per class, tiles upscaled to >= GRID_TILE px;
    real tiles are distinct slices (one per duplicate group when `real` is a prepared folder's split).

    Returns the PNG path and the tile side, or None when a class has no real image. A pool's
    tiles are left blank where it lacks the class.
    """
    rows = []
    side = 0
    manifest = real.parent.parent / "manifest.csv"  # PREPARED/images/<split> -> PREPARED/manifest.csv
    for name in classes:
        real_files = _distinct(sorted((real / name).glob("*.png")), manifest)[:GRID_PER_CLASS]
        if not real_files:
            return None
        real_tiles = [decode_file(path, channels=1).luma for path in real_files]
        side = side or real_tiles[0].shape[0] * -(-GRID_TILE // real_tiles[0].shape[0])  # a whole multiple
        row = _tile_row(real_tiles, side)
        for pool in pools:
            fake_files = sorted((pool / name).glob("*.png"))[:GRID_PER_CLASS] if (pool / name).is_dir() else []
            row += [np.full((side, side // 8), 255, np.uint8)]
            row += _tile_row([decode_file(path, channels=1).luma for path in fake_files], side)
        rows.append(row)
    grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out)
    return out, side


def _tile_row(tiles: list[np.ndarray], side: int) -> list[np.ndarray]:
    """GRID_PER_CLASS tiles of side x side: each image enlarged by nearest neighbour, blanks to fill."""
    scaled = [np.asarray(Image.fromarray(tile).resize((side, side), Image.Resampling.NEAREST)) for tile in tiles]
    return scaled + [np.zeros((side, side), np.uint8)] * (GRID_PER_CLASS - len(scaled))


@dataclass(frozen=True)
class GeneratorWords:
    """How the report names one generator, and the two stats.jsonl columns its runs table adds."""

    heading: str
    images: str
    runs: str
    columns: tuple[tuple[str, str], tuple[str, str]]  # (table header, stats.jsonl key) x 2


GENERATOR_WORDS = {
    "gan": GeneratorWords("GAN", "GAN images", "StyleGAN2-ADA",
                          (("augment p", "augment_p"), ("SWD at last snapshot (x1e3)", "swd"))),
    "diffusion": GeneratorWords("Diffusion model", "diffusion images",
                                "Diffusion (MONAI DiffusionModelUNet, DDPM training)",
                                (("mean denoising loss (last tick)", "loss"), ("training wall time (s)", "total_s"))),
}


def _generator_section(doc: Document, study: Study, generator: str) -> None:
    words = GENERATOR_WORDS[generator]
    heading, images = words.heading, words.images
    (third, third_key), (fourth, fourth_key) = words.columns
    doc.add(Heading(heading))
    runs = study.runs_of(generator)
    rows = []
    for run in sorted(path.parent for path in runs.rglob("stats.jsonl")):  # cv: runs/<fold>/gan-<g>/<run>
        records = [json.loads(line) for line in (run / "stats.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        last = next((record for record in reversed(records) if "kimg" in record), {})
        fourth_value = next((record[fourth_key] for record in reversed(records) if fourth_key in record), None)
        rows.append([run.relative_to(runs).as_posix(), f"{last['kimg']:g}" if "kimg" in last else "–",
                     _fmt(last.get("sec_per_kimg")), _fmt(last.get(third_key)), _fmt(fourth_value)])
    if rows:
        doc.add(Paragraph(f"{words.runs} runs under `{_rel(study, runs)}` (options in each run's "
                          "training_options.json; per-tick figures in stats.jsonl)."),
                Table(["run", "kimg", "sec/kimg", third, fourth], rows))
    pool = study.sample_pool_of(generator)
    sampling = _read_json(pool / "sampling.json")
    if sampling:
        doc.add(Paragraph(f"Sampling ({images}): " + "; ".join(
            f"{name} {_fmt(value.get('images_per_s'))} images/s" for name, value in sampling.items()
            if isinstance(value, dict)) + f" (`{_rel(study, pool / 'sampling.json')}`)."))
    metrics = _read_json(pool / "metrics.json")
    if metrics is None:
        doc.add(Paragraph(f"Quality metrics of the {images} were not computed (metrics step disabled or not run)."))
        return
    rows = []
    for name, values in metrics["classes"].items():
        kid = values.get("kid")
        fid = values.get("fid")
        memo = values.get("memorisation", {})
        rows.append([name, str(values["num_real"]), str(values["num_fake"]),
                     _fmt(values["swd"]["mean"]) if "swd" in values else "not computed",
                     f"{_fmt(kid['mean'])} ± {_fmt(kid['std'])}" if kid else "not computed",
                     _fmt(fid["value"]) if fid else "not computed",
                     f"{memo['num_flagged']} of {memo['num_fake']}" if memo else "not computed"])
    doc.add(Heading(f"{heading} quality and memorisation", 3),
            Paragraph("SWD: multi-scale sliced Wasserstein distance on Laplacian pyramids (x1e3; lower is "
                      "closer), needs no downloaded weights. KID/FID need the Inception network (`--inception "
                      "PATH`); FID is unreliable with fewer than 2048 images per set. Memorisation: synthetic "
                      "images flagged as near-copies of a training image."),
            Table(["class", "real", "synthetic", "SWD", "KID", "FID", "near-copies flagged"], rows))
    for line in metrics.get("warnings", []) + metrics.get("notes", []):
        doc.add(Paragraph(f"Note: {line}"))
    doc.add(Paragraph(f"Made by: augstudy gan-metrics (report: {_rel(study, pool / 'metrics.json')})."))


def _classifier_section(doc: Document, study: Study, results: Path, split: str | None) -> None:
    doc.add(Heading(f"Classifier{_split_label(split)}"))
    summary = results / "summary.csv"
    if not summary.is_file():
        doc.add(Paragraph("The sweep has not finished."))
        return
    with open(summary, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    first = rows[0]
    doc.add(Paragraph(f"Backbone {first['backbone']} (weights: {first['weights']}), head {first['head']}, "
                      f"split {first['split']}. Validation and test images are real only."))
    if "random" in first["weights"].lower():
        doc.add(Banner("Random-init backbone: these accuracies test the pipeline, not the research question."))
    if not (results / ANSWER_NAME).is_file():  # with an answer, the figures it lists are shown above
        for figure in _sweep_figures(results):
            doc.add(Figure(_rel(study, figure), _caption(figure.stem),
                           f"augstudy sweep (options: {_rel(study, results / 'sweep_options.json')})"))
    table = []
    for row in rows:
        if row["metric"] not in ("accuracy", "balanced_accuracy", "roc_auc") and row.get("role") != "primary":
            continue
        # Each arm's level: images added (gan: synthetic, classic: augmented copies) and the share of
        # real train images kept (the real arm's learning curve); a summary without arms is the gan arm.
        table.append([row.get("arm") or "gan", f"{_number(row['ratio']):g}",
                      f"{_number(row.get('real_fraction') or '100'):g}", row["metric"], row["n"],
                      _fmt(_number(row["mean"])), f"[{_fmt(_number(row['ci_low']))}, {_fmt(_number(row['ci_high']))}]",
                      _fmt(_number(row["mean_difference"])), _fmt(_number(row["p_holm"])), row["n_degenerate"]])
    doc.add(Table(["arm", "added %", "real %", "metric", "seeds", "mean", "95% CI", "diff. vs real only (0 %)",
                   "p (Holm)", "degenerate"], table),
            Paragraph(f"Degenerate: {DEGENERATE} Per-seed rows: `{_rel(study, results / 'results.csv')}`; "
                      f"test used: {next((row['test'] for row in rows if row['test']), '–')}."))


def _sweep_figures(results: Path) -> list[Path]:
    """Every PNG figure of a sweep without an answer.json: the accuracy plots first, then the rest by name."""
    figures = sorted((results / "figures").glob("*.png"))
    return sorted(figures, key=lambda path: (path.stem not in FIGURE_CAPTIONS, path.name))


def _caption(stem: str) -> str:
    if stem in FIGURE_CAPTIONS:
        return FIGURE_CAPTIONS[stem]
    if stem.startswith("confusion_ratio-"):
        return f"Confusion matrix at {int(stem.rsplit('-', 1)[1])} % synthetic (test set, seeds summed)"
    return stem.replace("_", " ")


def _timing_section(doc: Document, study: Study) -> None:
    steps = study.state.get("steps", {})
    if not steps:
        return
    from augstudy.pipeline import STEPS

    order = {name: index for index, name in enumerate(STEPS)}
    steps = dict(sorted(steps.items(), key=lambda item: order.get(item[0].split(":")[0], len(order))))
    doc.add(Heading("Run time"),
            Table(["step", "seconds (last run of the step)"],
                  [[name, f"{record['seconds']:.1f}"] for name, record in steps.items()]))
