"""`augstudy sweep`: a classifier trained for every (synthetic ratio, seed) cell.

Backbone features of every image (and augmented view) the sweep needs are computed once through
the feature cache; each cell then trains only the head. Each finished cell is written atomically
to RESULTS/cells/ and skipped when the sweep runs again, and results.csv, summary.csv and the
figures are rebuilt from the cells of the requested grid at the end of every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from augstudy.classify import report
from augstudy.classify.backbones import (
    BACKBONES,
    BackboneSpec,
    WeightsChoice,
    WeightsUnavailableError,
    backbone_spec,
    build_backbone,
    parse_weights,
)
from augstudy.classify.backend import KERAS_BACKENDS, KerasBackendError, import_keras, resolve_keras_backend
from augstudy.classify.data import SPLITS, DataError, LabelledImage, PreparedData, read_pool, read_prepared
from augstudy.classify.features import (
    FeatureCache,
    FeatureSpec,
    ImageRef,
    InputPipeline,
    cached_features,
    default_cache_dir,
)
from augstudy.classify.heads import HEADS, HeadSpec, build_head, compile_classifier, head_spec
from augstudy.classify.images import IMAGE_PIPELINE_ID, ImageReadError, ViewParams, prepared_geometry
from augstudy.classify.metrics import classification_metrics, confusion_matrix, degenerate_reason
from augstudy.classify.mixing import PoolTooSmallError, check_pool, sample_synthetic, synthetic_counts
from augstudy.classify.saved import ClassifierInfo, save_classifier
from augstudy.classify.stats import PAIRED_TESTS
from augstudy.classify.train import (
    ArraySource,
    BatchSource,
    ImageSource,
    TrainSettings,
    end_to_end_model,
    fit,
    label_array,
    predict_proba,
    reset_model,
)
from augstudy.data.decode import image_kinds, kinds_warning
from augstudy.options import OptionError, RangedNumber, check_ranges, options_to_dict, ranged, write_options
from augstudy.outputs import OutputError, check_output
from stylegan2ada.io import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import keras

SAVE_MODELS = ("none", "first-seed", "all")


class SweepError(RuntimeError):
    """The sweep cannot run as asked (the message says what to change)."""


# Errors caused by the input or options: the CLI shows their message without a traceback.
USER_ERRORS = (SweepError, DataError, PoolTooSmallError, ImageReadError, WeightsUnavailableError,
               KerasBackendError, OptionError, OutputError)


@dataclass(frozen=True)
class SweepOptions:
    """Options of `augstudy sweep`; None means "resolve from the data, backbone or head"."""

    data: Path
    out: Path
    pool: Path | None = None
    ratios: tuple[float, ...] = (0, 25, 50, 75, 100)
    seeds: int = ranged(5, low=1, integer=True)
    split: str | None = None  # default: prepare's own --split
    backbone: str = "resnet50"
    weights: str = "imagenet"  # imagenet | none | PATH
    head: str = "compact"
    input_size: int | None = ranged(None, low=32, integer=True)  # default: the backbone's
    epochs: int | None = ranged(None, low=1, integer=True)  # defaults: the head's schedule
    batch_size: int | None = ranged(None, low=1, integer=True)
    learning_rate: float | None = ranged(None, low=0, low_open=True)
    patience: int | None = ranged(None, low=1, integer=True)
    aug_views: int = ranged(0, low=0, integer=True)
    aug_seed: int = ranged(0, low=0, integer=True)
    finetune: bool = False
    feature_cache: bool = True  # False: re-run the frozen backbone every step (benchmarks only)
    keras_backend: str | None = None  # default: $KERAS_BACKEND, else tensorflow
    cache_dir: Path | None = None  # default: <augstudy cache>/classifier-features
    feature_batch_size: int = ranged(32, low=1, integer=True)
    paired_test: str = "t"
    positive_class: str | None = None  # default: the second class in sorted order
    save_models: str = "first-seed"
    progress: bool = True

    def __post_init__(self) -> None:
        check_ranges(self)
        if any(isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0 for ratio in self.ratios):
            raise OptionError("--ratios", "ratios", list(self.ratios), "must be percentages >= 0")


@dataclass(frozen=True)
class SweepOutcome:
    out: Path
    trained: list[tuple[float, int]]
    skipped: list[tuple[float, int]]
    features_computed: int
    feature_seconds: float  # the backbone pass of the feature cache (0 when everything was cached)
    written: dict[str, Path]


def parse_ratios(text: str) -> tuple[float, ...]:
    """"0,25,50" -> (0, 25, 50): percentages >= 0, no repeats; whole numbers stay ints."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: give comma-separated percentages such as 0,25,50,75,100") from error
    if not values or any(value < 0 for value in values) or len(set(values)) != len(values):
        raise click.BadParameter(f"{text!r}: give distinct percentages >= 0, such as 0,25,50,75,100")
    return tuple(int(value) if value.is_integer() else value for value in values)


def cell_name(ratio: float, seed: int) -> str:
    return f"ratio-{report.ratio_label(ratio)}_seed-{seed:02d}"


def resolve_options(options: SweepOptions, data: PreparedData) -> SweepOptions:
    """Fill every None default, so sweep_options.json records what actually ran."""
    spec, head = backbone_spec(options.backbone), head_spec(options.head)
    if options.save_models not in SAVE_MODELS:
        raise SweepError(f"--save-models {options.save_models!r}: choose one of {', '.join(SAVE_MODELS)}")
    if options.paired_test not in PAIRED_TESTS:
        raise SweepError(f"--paired-test {options.paired_test!r}: choose one of {', '.join(PAIRED_TESTS)}")
    if any(ratio > 0 for ratio in options.ratios) and options.pool is None:
        raise SweepError("ratios above 0 need --pool (a folder of <class>/*.png synthetic images)")
    positive = options.positive_class or data.class_names[1]
    if positive not in data.class_names:
        raise SweepError(f"--positive-class {positive!r} is not one of {', '.join(data.class_names)}")
    return dataclasses.replace(
        options,
        split=data.split,
        input_size=options.input_size or spec.input_size,
        epochs=options.epochs or head.max_epochs,
        batch_size=options.batch_size or head.batch_size,
        learning_rate=options.learning_rate or head.learning_rate,
        patience=options.patience or head.patience,
        keras_backend=resolve_keras_backend(options.keras_backend),
        cache_dir=Path(options.cache_dir) if options.cache_dir else default_cache_dir(),
        positive_class=positive,
        feature_cache=options.feature_cache and not options.finetune,
    )


class Sweep:
    """One sweep's data, backbone and cached features, and the training of its cells."""

    def __init__(self, options: SweepOptions, data: PreparedData, pool: dict[str, list[ImageRef]]) -> None:
        self.options = options
        self.data = data
        self.pool = pool
        self.class_names = data.class_names
        self.n_classes = len(data.class_names)
        self.positive = data.class_names.index(options.positive_class)
        self.backbone_spec: BackboneSpec = backbone_spec(options.backbone)
        self.head_spec: HeadSpec = head_spec(options.head)
        self.weights: WeightsChoice = parse_weights(options.weights, self.backbone_spec)
        self.views = ViewParams(seed=options.aug_seed)
        self.input_size = int(options.input_size)
        self.backend = str(options.keras_backend)
        self.features: dict[tuple[str, int], np.ndarray] = {}
        self.features_computed = 0
        self.frozen_backbone: keras.Model | None = None
        self.reusable: tuple[keras.Model, keras.Model] | None = None  # (compiled model, its head)
        self.geometry = prepared_geometry(data.root)
        self.pipeline = InputPipeline(self.input_size, self.backbone_spec.preprocess(), self.views, self.geometry)

    # ---- identity ---------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes a cell's result besides its ratio and seed."""
        pool_digest = hashlib.sha256(
            json.dumps({name: [ref.sha256 for ref in refs] for name, refs in self.pool.items()}).encode()
        ).hexdigest()
        option_keys = ("split", "backbone", "head", "input_size", "epochs", "batch_size", "learning_rate",
                       "patience", "aug_views", "aug_seed", "finetune", "keras_backend", "positive_class")
        return {
            **{key: getattr(self.options, key) for key in option_keys},
            "weights": self.weights.cache_id,
            "manifest_sha256": sha256_file(self.data.root / "manifest.csv"),
            "pool_sha256": pool_digest,
            "class_names": list(self.class_names),
        }

    @property
    def title(self) -> str:
        return (f"{self.options.backbone} ({self.weights.label}) + {self.options.head} head, "
                f"{self.options.split} split{', fine-tuned' if self.options.finetune else ''}")

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(
            backbone=self.backbone_spec.name, weights_id=self.weights.cache_id, input_size=self.input_size,
            preprocessing=f"{self.geometry.id}+keras.applications.{self.backbone_spec.preprocess_module}"
                          ".preprocess_input",
            keras_backend=self.backend,
        )

    # ---- inputs -----------------------------------------------------------------------------

    def training_items(self, ratio: float, seed: int) -> tuple[list[LabelledImage], list[LabelledImage]]:
        """(real, synthetic) training images of a cell, each repeated for its augmented views."""
        counts = synthetic_counts(ratio, self.data.real_counts())
        synthetic = [LabelledImage(ref, label) for ref, label in
                     sample_synthetic(self.pool, counts, self.class_names, seed)]
        expand = range(self.options.aug_views + 1)
        real = [LabelledImage(dataclasses.replace(item.ref, view=view), item.label)
                for item in self.data.subsets["train"] for view in expand]
        synthetic = [LabelledImage(dataclasses.replace(item.ref, view=view), item.label)
                     for item in synthetic for view in expand]
        return real, synthetic

    def backbone(self) -> keras.Model:
        """The frozen backbone, built on first use (a fully cached sweep never needs it)."""
        if self.frozen_backbone is None:
            self.frozen_backbone = build_backbone(self.backbone_spec, self.weights, self.input_size)
        return self.frozen_backbone

    def precompute_features(self, cells: Sequence[tuple[float, int]]) -> None:
        """One backbone pass over every (image, view) any of `cells` needs that is not cached."""
        refs = [item.ref for subset in ("valid", "test") for item in self.data.subsets[subset]]
        for ratio, seed in cells:
            real, synthetic = self.training_items(ratio, seed)
            refs.extend(item.ref for item in real + synthetic)
        cache = FeatureCache(Path(self.options.cache_dir), self.feature_spec(), self.views)
        self.features, self.features_computed = cached_features(
            refs, lambda batch: self.backbone().predict_on_batch(batch), self.pipeline, cache, self.options.feature_batch_size,
            progress=self.options.progress,
        )

    def source(self, items: Sequence[LabelledImage]) -> BatchSource:
        if self.options.feature_cache:
            return ArraySource(np.stack([self.features[(item.ref.sha256, item.ref.view)] for item in items]))
        return ImageSource([item.ref for item in items], self.pipeline)

    def labels(self, items: Sequence[LabelledImage]) -> np.ndarray:
        return label_array([item.label for item in items], self.n_classes)

    # ---- one cell ---------------------------------------------------------------------------

    def model_for_cell(self, seed: int) -> keras.Model:
        """The model a cell trains, in its seeded initial state: the head alone on cached features,
        else backbone + head. With a frozen backbone the first cell's compiled model is reset and
        reused by the next cells (same result as a new one, without re-tracing it)."""
        keras = import_keras(self.backend)
        backbone: keras.Model | None = None
        if self.options.finetune:
            backbone = build_backbone(self.backbone_spec, self.weights, self.input_size, finetune=True)
        elif not self.options.feature_cache:
            backbone = self.backbone()
        if backbone is not None:
            feature_dim = int(backbone.output_shape[-1])
        else:
            feature_dim = len(next(iter(self.features.values())))
        learning_rate = float(self.options.learning_rate)
        keras.utils.set_random_seed(seed)
        head = build_head(self.options.head, feature_dim, self.n_classes)
        if self.reusable is not None:
            model, trained_head = self.reusable
            reset_model(model, trained_head, head, learning_rate)
            return model
        model = head if backbone is None else end_to_end_model(backbone, head)
        compile_classifier(model, self.n_classes, learning_rate)
        if not self.options.finetune:
            self.reusable = (model, head)
        return model

    def train_cell(self, ratio: float, seed: int, fingerprint: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        real, synthetic = self.training_items(ratio, seed)
        train, valid, test = real + synthetic, self.data.subsets["valid"], self.data.subsets["test"]
        model = self.model_for_cell(seed)
        settings = TrainSettings(
            learning_rate=float(self.options.learning_rate), batch_size=int(self.options.batch_size),
            max_epochs=int(self.options.epochs), patience=int(self.options.patience),
            lr_patience=self.head_spec.lr_patience, lr_factor=self.head_spec.lr_factor, seed=seed,
        )
        train_source = self.source(train)
        result = fit(model, train_source, self.labels(train), self.source(valid), self.labels(valid), settings)
        proba = predict_proba(model, self.source(test), self.n_classes)
        y_test = np.array([item.label for item in test])
        train_proba = predict_proba(model, train_source, self.n_classes)
        train_accuracy = float(np.mean(train_proba.argmax(axis=1) == np.array([item.label for item in train])))
        metrics = classification_metrics(y_test, proba, self.positive)
        reason = degenerate_reason(proba.argmax(axis=1), train_accuracy, metrics["balanced_accuracy"],
                                   self.n_classes)
        cell = {
            "ratio": ratio, "seed": seed, "fingerprint": fingerprint, "metrics": metrics,
            "n_real": len(self.data.subsets["train"]),
            "n_synthetic": len(synthetic) // (self.options.aug_views + 1),
            "n_train_inputs": len(train), "n_test": len(test),
            "epochs_trained": result.epochs_trained, "best_epoch": result.best_epoch,
            "train_accuracy": train_accuracy, "degenerate": bool(reason), "degenerate_reason": reason,
            "history": result.history,
            "confusion_matrix": confusion_matrix(y_test, proba.argmax(axis=1), self.n_classes).tolist(),
            "class_names": list(self.class_names), "positive_class": self.options.positive_class,
            "backbone": self.options.backbone, "weights": self.weights.label, "head": self.options.head,
            "split": self.options.split, "keras_backend": self.backend,
            "feature_cache": self.options.feature_cache,
            "synthetic_images": [str(item.ref.path.relative_to(self.options.pool or "/"))
                                 for item in synthetic if item.ref.view == 0],
            "test_predictions": [
                {"image": str(item.ref.path.relative_to(self.data.root)), "label": item.label,
                 "proba": [float(p) for p in row]}
                for item, row in zip(test, proba)
            ],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if self.options.save_models == "all" or (
            self.options.save_models == "first-seed" and seed == 0
        ):
            self.save_model(model, ratio, seed)
        return cell

    def save_model(self, model: keras.Model, ratio: float, seed: int) -> Path:
        info = ClassifierInfo(
            class_names=self.class_names, positive_class=str(self.options.positive_class),
            backbone=self.backbone_spec.name, weights=self.weights, input_size=self.input_size,
            image_pipeline=IMAGE_PIPELINE_ID, working_size=self.geometry.working_size, fit=self.geometry.fit,
            head=self.options.head,
            inputs="features" if self.options.feature_cache else "images",
            keras_backend=self.backend, ratio=ratio, seed=seed,
        )
        return save_classifier(Path(self.options.out) / "models" / cell_name(ratio, seed), model, info)


def _finished_cell(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The cell stored at `path`, None if absent; an error if it came from other options."""
    if not path.exists():
        return None
    cell = json.loads(path.read_text(encoding="utf-8"))
    if cell.get("fingerprint") != fingerprint:
        old = cell.get("fingerprint", {})
        changed = sorted(key for key in set(old) | set(fingerprint) if old.get(key) != fingerprint.get(key))
        raise SweepError(
            f"{path} was made with other options or data (differs in: {', '.join(changed)}); "
            f"write this sweep to another --out, or delete {path.parent} to start over"
        )
    return cell


def run_sweep(options: SweepOptions) -> SweepOutcome:
    """Train every missing cell of the ratios x seeds grid, then write the tables and figures."""
    check_output(options.out, {"--data": options.data, "--pool": options.pool})
    keras_backend = resolve_keras_backend(options.keras_backend)
    import_keras(keras_backend)
    data = read_prepared(options.data, options.split)
    options = resolve_options(options, data)
    pool = read_pool(options.pool) if options.pool is not None else {}
    if pool:
        check_pool(pool, data.real_counts(), options.ratios, pool_name=f"pool {options.pool}")
        kinds = image_kinds(ref.path for refs in pool.values() for ref in refs)
        warning = kinds_warning(f"pool {options.pool}", kinds, prepared_geometry(data.root).working_size)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    sweep = Sweep(options, data, pool)
    out = Path(options.out)
    fingerprint = sweep.fingerprint()
    grid = [(ratio, seed) for ratio in options.ratios for seed in range(options.seeds)]
    cells: dict[tuple[float, int], dict[str, Any]] = {}
    for ratio, seed in grid:
        cell = _finished_cell(out / "cells" / f"{cell_name(ratio, seed)}.json", fingerprint)
        if cell is not None:
            cells[(ratio, seed)] = cell
    write_options(out / "sweep_options.json", options)
    todo = [key for key in grid if key not in cells]
    started = time.perf_counter()
    if todo and options.feature_cache:
        sweep.precompute_features(todo)
    feature_seconds = time.perf_counter() - started
    for ratio, seed in todo:
        if options.progress:
            print(f"[sweep] {ratio:g}% synthetic, seed {seed}", file=sys.stderr)
        cell = sweep.train_cell(ratio, seed, fingerprint)
        atomic_write_json(out / "cells" / f"{cell_name(ratio, seed)}.json", cell)
        cells[(ratio, seed)] = cell
    written = report.write_report(out, [cells[key] for key in grid], sweep.title, options.paired_test)
    skipped = [key for key in grid if key not in todo]
    return SweepOutcome(out, todo, skipped, sweep.features_computed, feature_seconds, written)


@click.command("sweep")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Prepared folder (augstudy prepare --out).")
@click.option("--pool", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Synthetic pool: a folder of <class>/*.png (augstudy generate --out).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="RESULTS folder.")
@click.option("--ratios", default="0,25,50,75,100", show_default=True,
              help="Synthetic images to add, in % of each class's real train count.")
@click.option("--seeds", type=RangedNumber(SweepOptions, "seeds"),
              default=5, show_default=True, help="Number of seeds (0..N-1) per ratio.")
@click.option("--split", type=click.Choice(SPLITS), help="Prepared split to use  [default: prepare's own]")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), default="resnet50", show_default=True)
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet, none (random init: results labelled so) or a local weights file.")
@click.option("--head", type=click.Choice(list(HEADS)), default="compact", show_default=True)
@click.option("--input-size", type=RangedNumber(SweepOptions, "input_size"),
              help="Backbone input size in px  [default: the backbone's]")
@click.option("--epochs", type=RangedNumber(SweepOptions, "epochs"),
              help="Maximum epochs  [default: the head's]")
@click.option("--batch-size", type=RangedNumber(SweepOptions, "batch_size"),
              help="Training batch size  [default: the head's]")
@click.option("--learning-rate", type=RangedNumber(SweepOptions, "learning_rate"),
              help="Adam learning rate  [default: the head's]")
@click.option("--patience", type=RangedNumber(SweepOptions, "patience"),
              help="Early-stopping patience on validation loss  [default: the head's]")
@click.option("--aug-views", type=RangedNumber(SweepOptions, "aug_views"), default=0, show_default=True,
              help="Precomputed random flip/zoom/shear views per training image (each cached).")
@click.option("--aug-seed", type=RangedNumber(SweepOptions, "aug_seed"),
              default=0, show_default=True, help="Seed of the augmented views.")
@click.option("--finetune", is_flag=True, help="Unfreeze the backbone's last block (bypasses the cache).")
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="--no-feature-cache re-runs the frozen backbone every step (for benchmarks).")
@click.option("--keras-backend", type=click.Choice(KERAS_BACKENDS),
              help="Keras backend  [default: $KERAS_BACKEND, else tensorflow]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Feature cache folder  [default: $AUGSTUDY_CACHE_DIR or ~/.cache/augstudy, /classifier-features]")
@click.option("--feature-batch-size", type=RangedNumber(SweepOptions, "feature_batch_size"),
              default=32, show_default=True, help="Images per backbone pass.")
@click.option("--paired-test", type=click.Choice(list(PAIRED_TESTS)), default="t", show_default=True,
              help="Seed-paired test of each ratio against 0%: paired t-test or Wilcoxon signed-rank.")
@click.option("--positive-class", help="Class whose sensitivity/F1/AUC are reported  [default: 2nd sorted]")
@click.option("--save-models", type=click.Choice(SAVE_MODELS), default="first-seed", show_default=True,
              help="Trained classifiers to keep under RESULTS/models/ (first-seed: one per ratio).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def sweep_command(ratios: str, quiet: bool, dry_run: bool, **kwargs: Any) -> None:
    """Train a classifier for every synthetic ratio x seed; write results, summary and figures."""
    try:
        options = SweepOptions(ratios=parse_ratios(ratios), progress=not quiet, **kwargs)
        if dry_run:
            resolved = resolve_options(options, read_prepared(options.data, options.split))
            click.echo(json.dumps(options_to_dict(resolved), indent=2))
            return
        outcome = run_sweep(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"trained {len(outcome.trained)} cell(s), skipped {len(outcome.skipped)} finished; "
               f"{outcome.features_computed} backbone feature(s) computed")
    click.echo(f"results: {outcome.written['results']}\nsummary: {outcome.written['summary']}\n"
               f"figures: {outcome.written['figures']}")
