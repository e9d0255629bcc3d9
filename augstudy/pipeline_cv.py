"""The cv design in `augstudy run`: a generator per fold, trained only on that fold's training part.

For every (repeat, fold) of the plan (augstudy.data.folds) the study writes
`folds/<fold>-<digest>/gan/<class>.zip` and `all.zip` (NVlabs zips of the fold's train images, never
its valid or test ones) with `fold.json` beside them, trains `--gan-seeds` GANs per class on them
(`runs/<fold>-<digest>/gan-<g>/`, seed = the config's seed + g), and generates each one's pool into
`pool/<fold>/gan-<g>/`; `pool/<fold>/fold.json` is written once all of a fold's pools are made, so
the sweep only ever uses pools whose GANs were trained under its own fold plan. The digest in the
folder names means a changed plan never resumes a GAN trained on other images. Each GAN and each
pool is a step of its own in study_state.json, so an interrupted run resumes per fold and generator.
A config with `[train_diffusion]` does the same for its diffusion models, from the same fold zips,
into `runs-diffusion/<fold>-<digest>/diffusion-<g>/` and `pool-diffusion/<fold>/diffusion-<g>/`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from augstudy.data.folds import FOLD_FILE, Fold, FoldPlan, fold_record
from stylegan2ada.io import atomic_write_json

if TYPE_CHECKING:
    from augstudy.pipeline import Study

# Seconds a classifier cell took on this 2-core machine with cached features and the compact head
# (experiments/chestct-cpu: 130 cells in 134 s, study_state.json); GPU runs are faster.
CELL_SECONDS = 1.0
# Seconds per image of the frozen ResNet50 at 224 px on this CPU (about 18 images/s in the demo,
# experiments/README.md); each pool image is embedded once.
FEATURE_SECONDS = 0.06


@dataclass(frozen=True)
class FoldJob:
    """Where one fold's generator data lives; `runs` and `pools` per generator."""

    fold: Fold
    data: Path  # holds gan/<class>.zip, gan/all.zip and fold.json
    runs: dict[str, Path]  # generator -> folder holding <generator>-<g>/<run>/
    pools: dict[str, Path]  # generator -> folder holding <generator>-<g>/<class>/*.png and, once all are made, fold.json


def cv_plan(study: Study, sweep_options: Any) -> tuple[Any, FoldPlan]:
    """The sweep's resolved options and its fold plan over the prepared images (the sweep makes the same)."""
    from augstudy.classify.data import read_prepared
    from augstudy.classify.sweep import fold_plan, resolve_options

    data = read_prepared(study.prepared, sweep_options.split)
    resolved = resolve_options(sweep_options, data)
    return resolved, fold_plan(resolved, data)


def check_pool_size(study: Study, resolved: Any, plan: FoldPlan) -> None:
    """Before any GAN trains: every fold's pool must hold the synthetic images its largest ratio draws
    (round(r % x the fold's train count) per class), or the sweep would stop after hours of training."""
    from augstudy.classify.mixing import synthetic_count
    from augstudy.classify.sweep import needed_generators, pool_ratios

    labels = {item.image: item.label for item in plan.images}
    largest = max(sum(labels[image] == label for image in fold.train)
                  for fold in plan.folds for label in range(len(plan.class_names)))
    for generator in needed_generators(resolved):
        ratios = pool_ratios(resolved, generator)
        section = study.layout(generator).generate
        generate = study.options(section)
        made = generate.per_class if generate.per_class is not None else len(generate.seeds)
        needed = synthetic_count(max(ratios), largest)
        if made < needed:
            raise click.ClickException(
                f"{study.config.path}: [{section}] per_class = {made} is too small for the cv design: a fold trains "
                f"on up to {largest} images of a class, so {max(ratios):g} % needs {needed} synthetic images per "
                f"class; set per_class = {needed} or more (no generator was trained for it)")


def fold_jobs(study: Study, plan: FoldPlan) -> list[FoldJob]:
    jobs = []
    for fold in plan.folds:
        folder = f"{fold.name}-{fold.digest()[:8]}"
        jobs.append(FoldJob(fold, study.out / "folds" / folder,
                            {generator: study.runs_of(generator) / folder for generator in study.config.generators},
                            {generator: study.pool_of(generator) / fold.name for generator in study.config.generators}))
    return jobs


def write_fold_data(study: Study, plan: FoldPlan, job: FoldJob) -> None:
    """The fold's GAN training zips: its train images only, per class (unlabelled) and all (labelled)."""
    from augstudy.data.nvlabs_zip import write_dataset_zip

    record = fold_record(plan, job.fold)
    marker = job.data / FOLD_FILE
    names = [*plan.class_names, "all"]
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == record \
            and all((job.data / "gan" / f"{name}.zip").is_file() for name in names):
        return
    labels = {item.image: item.label for item in plan.images}
    train = list(job.fold.train)
    for label, name in enumerate(plan.class_names):
        write_dataset_zip(job.data / "gan" / f"{name}.zip",
                          [study.prepared / image for image in train if labels[image] == label], None, [name])
    write_dataset_zip(job.data / "gan" / "all.zip", [study.prepared / image for image in train],
                      [labels[image] for image in train], list(plan.class_names))
    atomic_write_json(marker, record)  # last: it marks the folder complete


def run_fold_generators(study: Study, plan: FoldPlan, seeds: int) -> None:
    """Train and sample every fold's generators (`seeds` per generator of the config), each a resumable
    step."""
    for job in fold_jobs(study, plan):
        write_fold_data(study, plan, job)
        for generator in study.config.generators:
            layout = study.layout(generator)
            base_seed = int(study.config.sections[layout.train].get("seed", 0))
            for seed in range(seeds):
                name = f"{generator}-{seed}"
                wired = {layout.train: {"data": job.data, "out": job.runs[generator] / name, "seed": base_seed + seed},
                         layout.generate: {"out": job.pools[generator] / name}}
                study.train_and_sample(generator, f":{job.fold.name}:{name}", wired)
            atomic_write_json(job.pools[generator] / FOLD_FILE, fold_record(plan, job.fold))


def _model_count(study: Study, generator: str, n_classes: int | None, seeds: int, folds: int) -> int | None:
    """Models one generator trains over the plan: one per class, or one conditional model, per fold and seed."""
    per_fold = 1 if study.config.sections[study.layout(generator).train].get("conditional") else n_classes
    return None if per_fold is None else folds * seeds * per_fold


def _measured_sec_per_kimg(study: Study) -> float | None:
    """s/kimg of one of this config's GANs on this machine, from a short warm-up on random images of the
    configured size (so it needs no prepared data); None when it cannot be measured."""
    import numpy as np
    from PIL import Image

    from augstudy.data.nvlabs_zip import write_dataset_zip
    from augstudy.gan.train import GanRun, torch_threads, train_options_for
    from stylegan2ada.training import measure_sec_per_kimg

    prepare = study.config.sections["prepare"]
    resolution, channels = int(prepare.get("resolution", 256)), int(prepare.get("channels", 1))
    options = study.options("train_gan")
    with tempfile.TemporaryDirectory() as folder:
        images = []
        rng = np.random.default_rng(0)
        for index in range(max(8, int(options.batch or 8))):
            path = Path(folder) / f"{index}.png"
            shape = (resolution, resolution) if channels == 1 else (resolution, resolution, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
            images.append(path)
        data = Path(folder) / "data.zip"
        write_dataset_zip(data, images, None, ["any"])
        run = GanRun("estimate", data, Path(folder) / "run", {})
        try:
            with torch_threads(options.threads):
                return measure_sec_per_kimg(train_options_for(options, run, resume=False))
        except (ValueError, RuntimeError, click.ClickException):
            return None


def cv_dry_run(study: Study, sweep_options: Any, classes: Sequence[str] | None) -> dict[str, Any]:
    """How many GANs and classifier cells the cv design trains, and the time expected on this machine."""
    from augstudy.classify.sweep import CV_DEFAULTS, cells_per_fold
    from augstudy.gan.train import readable_duration

    section = study.config.sections["sweep"]
    folds, repeats = int(section.get("folds", CV_DEFAULTS["folds"])), int(section.get("repeats", CV_DEFAULTS["repeats"]))
    gan_seeds = int(section.get("gan_seeds", CV_DEFAULTS["gan_seeds"]))
    units = folds * repeats
    gans = _model_count(study, "gan", len(classes) if classes else None, gan_seeds, units)
    kimg = float(study.options("train_gan").kimg or 25000)  # the library's default length
    cells = units * cells_per_fold(sweep_options, gan_seeds)
    sec_per_kimg = _measured_sec_per_kimg(study)
    gan_seconds = None if gans is None or sec_per_kimg is None else gans * kimg * sec_per_kimg
    per_class = study.options("generate").per_class or len(study.options("generate").seeds)
    pool_images = None if gans is None else gans * per_class * (len(classes or ()) if
                                                                 study.config.sections["train_gan"].get("conditional")
                                                                 else 1)
    other_seconds = cells * CELL_SECONDS + (pool_images or 0) * FEATURE_SECONDS
    total = None if gan_seconds is None else gan_seconds + other_seconds
    return {
        "design": "cv", "folds": folds, "repeats": repeats, "gan_seeds": gan_seeds, "fold_units": units,
        "gans": gans if gans is not None else f"{units * gan_seeds} per class found by prepare",
        **({"diffusion_models": _model_count(study, "diffusion", len(classes) if classes else None, gan_seeds, units)}
           if "diffusion" in study.config.generators else {}),
        "kimg_per_gan": kimg, "gan_sec_per_kimg_measured": sec_per_kimg,
        "classifier_cells": cells, "classifier_sec_per_cell_assumed": CELL_SECONDS,
        "pool_images": pool_images, "feature_sec_per_image_assumed": FEATURE_SECONDS,
        "estimated_seconds": None if total is None else round(total),
        "estimated_time": "unknown" if total is None else readable_duration(total),
        "estimate": ("GANs x kimg x measured s/kimg (a warm-up on this machine, slower when the cores are shared) "
                     "+ cells x s/cell + pool images x s/image of the backbone; excludes prepare, audit, "
                     "generation and diffusion training (`augstudy train-diffusion --dry-run` measures that) "
                     "(seconds)"),
    }
