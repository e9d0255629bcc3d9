"""The study report: `OUT/report.md` and `OUT/report.html` from what the steps wrote.

It only reads the steps' own outputs (report.json, stats.jsonl, metrics.json, summary.csv, the
figures), so it can be rebuilt at any time and every number in it has a file behind it. Each
figure names the command and the options file that made it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from augstudy.report.document import Code, Document, Figure, Heading, Paragraph, Table
from stylegan2ada.io import atomic_write_text

if TYPE_CHECKING:
    from augstudy.pipeline import Study

GRID_PER_CLASS = 8


def write_study_report(study: Study) -> Path:
    """Write report.md and report.html under the study folder; returns the Markdown path."""
    out = study.out
    doc = Document(f"augstudy report: {study.config.name}")
    if study.config.description:
        doc.add(Paragraph(study.config.description))
    doc.add(Paragraph(f"Config: `{study.config.path}`. Re-run (resumes, skips finished steps):"),
            Code(f"augstudy run {study.config.path} --out {out}"))
    _data_section(doc, study)
    _gan_section(doc, study)
    for split, results in study.sweep_outputs().items():
        _classifier_section(doc, study, results, split)
    _timing_section(doc, study)
    report = out / "report.md"
    atomic_write_text(report, doc.to_markdown())
    atomic_write_text(out / "report.html", doc.to_html())
    return report


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


def _data_section(doc: Document, study: Study) -> None:
    report = _read_json(study.prepared / "report.json")
    doc.add(Heading("Data"))
    if report is None:
        doc.add(Paragraph("The prepare step has not written report.json yet."))
        return
    classes = report["classes"]
    doc.add(Paragraph(
        f"Source `{report['source']}`, {report['files']} files, {report['readable']} readable, "
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
    grid = _real_grid(study, classes)
    if grid is not None:
        doc.add(Figure(_rel(study, grid), f"Real train images, {GRID_PER_CLASS} per class (rows: {', '.join(classes)})",
                       f"augstudy prepare (options: {_rel(study, study.prepared / 'prepare_options.json')})"))


def _real_grid(study: Study, classes: list[str]) -> Path | None:
    rows = []
    for name in classes:
        files = sorted((study.prepared / "images" / "train" / name).glob("*.png"))[:GRID_PER_CLASS]
        if not files:
            return None
        tiles = [np.asarray(Image.open(path).convert("L")) for path in files]
        tiles += [np.zeros_like(tiles[0])] * (GRID_PER_CLASS - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    path = study.out / "report_files" / "real_grid.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def _gan_section(doc: Document, study: Study) -> None:
    doc.add(Heading("GAN"))
    rows = []
    for run in sorted(path for path in study.runs.glob("*") if (path / "stats.jsonl").is_file()):
        records = [json.loads(line) for line in (run / "stats.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        last = next((record for record in reversed(records) if "kimg" in record), {})
        swd = next((record["swd"] for record in reversed(records) if "swd" in record), None)
        rows.append([run.name, f"{last['kimg']:g}" if "kimg" in last else "–", _fmt(last.get("sec_per_kimg")),
                     _fmt(last.get("augment_p")), _fmt(swd)])
    if rows:
        doc.add(Paragraph(f"StyleGAN2-ADA runs under `{_rel(study, study.runs)}` (options in each run's "
                          "training_options.json; per-tick figures in stats.jsonl)."),
                Table(["run", "kimg", "sec/kimg", "augment p", "SWD at last snapshot (x1e3)"], rows))
    preview = study.pool / "preview.png"
    if preview.is_file():
        doc.add(Figure(_rel(study, preview), "Synthetic images (rows: classes; image i from seed i)",
                       f"augstudy generate (options: {_rel(study, study.pool / 'generate_options.json')})"))
    metrics = _read_json(study.pool / "metrics.json")
    if metrics is None:
        doc.add(Paragraph("GAN quality metrics were not computed (metrics step disabled or not run)."))
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
    doc.add(Heading("GAN quality and memorisation", 3),
            Paragraph("SWD: multi-scale sliced Wasserstein distance on Laplacian pyramids (x1e3; lower is "
                      "closer), needs no downloaded weights. KID/FID need the Inception network (`--inception "
                      "PATH`); FID is unreliable with fewer than 2048 images per set. Memorisation: synthetic "
                      "images flagged as near-copies of a training image."),
            Table(["class", "real", "synthetic", "SWD", "KID", "FID", "near-copies flagged"], rows))
    for line in metrics.get("warnings", []) + metrics.get("notes", []):
        doc.add(Paragraph(f"Note: {line}"))
    doc.add(Paragraph(f"Made by: augstudy gan-metrics (report: {_rel(study, study.pool / 'metrics.json')})."))


def _classifier_section(doc: Document, study: Study, results: Path, split: str | None) -> None:
    doc.add(Heading(f"Classifier{f' ({split} split)' if split else ''}"))
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
        doc.add(Paragraph("WARNING: the backbone is randomly initialised (no ImageNet weights were available), "
                          "so these accuracies test the pipeline, not the research question."))
    figure = results / "figures" / "accuracy_vs_ratio.png"
    if figure.is_file():
        doc.add(Figure(_rel(study, figure), "Test accuracy vs synthetic % (mean, 95% CI, one point per seed)",
                       f"augstudy sweep (options: {_rel(study, results / 'sweep_options.json')})"))
    table = []
    for row in rows:
        if row["metric"] not in ("accuracy", "balanced_accuracy", "roc_auc"):
            continue
        table.append([f"{_number(row['ratio']):g}", row["metric"], row["n"], _fmt(_number(row["mean"])),
                      f"[{_fmt(_number(row['ci_low']))}, {_fmt(_number(row['ci_high']))}]",
                      _fmt(_number(row["mean_difference"])), _fmt(_number(row["p_holm"])), row["n_degenerate"]])
    doc.add(Table(["synthetic %", "metric", "seeds", "mean", "95% CI", "diff. vs 0%", "p (Holm)", "degenerate"],
                  table),
            Paragraph(f"Per-seed rows: `{_rel(study, results / 'results.csv')}`; test used: "
                      f"{next((row['test'] for row in rows if row['test']), '–')}."))


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
