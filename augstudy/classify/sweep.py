"""`augstudy sweep`: a classifier trained for every (arm, level, seed) cell.

Arms (`--arms`, default `gan`), every one with the same seeds and real validation and test sets:
- `gan`: the real train set plus r % synthetic images per class (`--ratios`) from the GAN pool
  (`--pool DIR` or `--pool gan=DIR`);
- `diffusion`: the same with the diffusion model's pool (`--pool diffusion=DIR`), so the two
  generators compare at equal added counts with the same seeds and test draws;
- `classic`: the real train set plus r % classically augmented copies of real train images of
  the same class (`augstudy.classify.classic`), so GAN and classic augmentation compare at equal
  added counts;
- `real`: a learning curve on real data only, `--real-fractions` % of each class's real train
  images, nested per seed (the 50 % images are among the 75 % ones);
- `synthetic-only`: as many GAN images per class as the real train set has and no real ones,
  tested on real images (the generator's classification accuracy score); `diffusion-only` the same
  with the diffusion pool.
The 0 % cell of `gan`, `diffusion` and `classic` and the 100 % cell of `real` are the same classifier (the
real train set alone); it is trained once, as `ratio-000_seed-NN`, and is every arm's reference.

`--design cv` trains that grid in every (repeat, fold) of a repeated, stratified, grouped K-fold
plan over all labelled images (augstudy.data.folds): each fold's cells train, stop early and test on
that fold's own images, draw synthetic images from that fold's pools (one per GAN seed, checked
against the plan by the pool's fold.json; a diffusion pool is laid out the same way, with
diffusion-<G> folders) and classic copies of that fold's training images only.

Backbone features of every image (and augmented view) are computed once through the feature
cache; each cell then trains only the head. Each finished cell is written atomically to
RESULTS/cells/ and skipped when the sweep runs again; results.csv, summary.csv, answer.json and
the figures are rebuilt from the cells of the requested grid at the end of every run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from augstudy.classify.arms import ADDED_ARMS, ARMS, GENERATORS, POOL_ARMS
from augstudy.classify.backbones import (
    BACKBONES,
    Backbone,
    WeightsChoice,
    WeightsUnavailableError,
    backbone_spec,
    build_backbone,
    parse_weights,
)
from augstudy.classify.backend import KERAS_BACKENDS, KerasBackendError, import_keras, resolve_keras_backend
from augstudy.classify.checks import data_warnings
from augstudy.classify.classic import ClassicRecipe, classic_pool, copies_per_image
from augstudy.classify.data import (
    SPLITS,
    DataError,
    LabelledImage,
    PreparedData,
    check_fold_pool,
    cv_pool_dir,
    fold_data,
    read_pool,
    read_prepared,
    with_distinct_counts,
)
from augstudy.classify.features import (
    FeatureCache,
    FeatureSpec,
    ImageRef,
    InputPipeline,
    backbone_feature_spec,
    cached_features,
    default_cache_dir,
)
from augstudy.classify.heads import HEADS, FeatureStats, HeadSpec, build_head, compile_classifier, head_spec
from augstudy.classify.images import IMAGE_PIPELINE_ID, ImageReadError, ViewParams, prepared_geometry
from augstudy.classify.metrics import (
    METRICS,
    classification_metrics,
    confusion_matrix,
    degenerate_reason,
    positive_class,
)
from augstudy.classify.mixing import (
    PoolTooSmallError,
    check_pool,
    sample_synthetic,
    synthetic_count,
    synthetic_counts,
)
from augstudy.classify.saved import ClassifierInfo, save_classifier
from augstudy.classify.train import (
    MONITORS,
    SCHEDULES,
    ArraySource,
    BatchSource,
    ImageSource,
    TrainSettings,
    balanced_class_weight,
    end_to_end_model,
    fit,
    label_array,
    predict_proba,
    reset_model,
)
from augstudy.data.decode import image_kinds, kinds_warning
from augstudy.data.folds import GROUP_BY_HELP, FoldError, FoldOptions, FoldPlan, fold_name, plan_folds
from augstudy.locks import writing
from augstudy.options import (
    MAX_SIDE,
    OptionError,
    RangedNumber,
    check_backbone_memory,
    check_percentages,
    check_ranges,
    options_to_dict,
    ranged,
    write_options,
)
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import keras

SAVE_MODELS = ("none", "first-seed", "all")
DESIGNS = ("split", "cv")
# The cv design's defaults: 5 folds keep 80 % of the images for training and about 8 distinct normal
# slices in each test fold of the dedup chest CT; 2 repeats show how much the answer depends on how
# the images were dealt; 2 GAN seeds are the fewest that show a generator's own variance.
CV_DEFAULTS = {"folds": 5, "repeats": 2, "gan_seeds": 2, "cv_seed": 0, "val_fraction": 0.2}
CV_FLAGS = {"folds": "--folds", "repeats": "--repeats", "gan_seeds": "--gan-seeds", "cv_seed": "--cv-seed",
            "group_by": "--group-by", "val_fraction": "--val-fraction"}
CLASS_WEIGHTS = ("none", "balanced")
# Fewer replicates than this give percentile intervals too coarse to read.
MIN_BOOTSTRAP = 100
# More replicates than this do not change a percentile interval's printed digits; they only fill memory.
MAX_BOOTSTRAP = 100_000
OUTPUT_MARKS = ("sweep_options.json", "cells")  # a sweep folder written before its lock existed


class SweepError(RuntimeError):
    """The sweep cannot run as asked (the message says what to change)."""


# Errors caused by the input or options: the CLI shows their message without a traceback.
USER_ERRORS = (SweepError, DataError, FoldError, PoolTooSmallError, ImageReadError, WeightsUnavailableError,
               KerasBackendError, OptionError, OutputError)


@dataclass(frozen=True)
class SweepOptions:
    """Options of `augstudy sweep`; None means "resolve from the data, backbone or head"."""

    data: Path
    out: Path
    pool: Path | None = None  # the GAN's pool
    diffusion_pool: Path | None = None  # the diffusion model's pool (augstudy generate on a diffusion snapshot)
    design: str = "split"  # split: prepare's train/valid/test; cv: repeated grouped K-fold (augstudy.data.folds)
    folds: int | None = ranged(None, low=1, integer=True)  # the cv options; None: CV_DEFAULTS (split: 1)
    repeats: int | None = ranged(None, low=1, integer=True)
    gan_seeds: int | None = ranged(None, low=1, integer=True)
    cv_seed: int | None = ranged(None, low=0, integer=True)
    group_by: str | None = None
    val_fraction: float | None = ranged(None, low=0, high=1, low_open=True, high_open=True)
    ratios: tuple[float, ...] = (0, 25, 50, 75, 100)
    seeds: int = ranged(5, low=1, integer=True)
    arms: tuple[str, ...] = ("gan",)
    real_fractions: tuple[float, ...] = (25, 50, 75, 100)
    split: str | None = None  # default: prepare's own --split
    backbone: str = "resnet50"
    weights: str = "imagenet"  # imagenet | none | PATH
    head: str = "compact"
    input_size: int | None = ranged(None, low=32, high=MAX_SIDE, integer=True)  # default: the backbone's
    schedule: str = "plateau"
    monitor: str = "cross_entropy"
    epochs: int | None = ranged(None, low=1, integer=True)  # defaults: the head's schedule
    batch_size: int | None = ranged(None, low=1, integer=True)
    learning_rate: float | None = ranged(None, low=0, low_open=True)
    patience: int | None = ranged(None, low=1, integer=True)  # no early stopping: --schedule fixed
    class_weight: str = "none"
    aug_views: int = ranged(0, low=0, integer=True)
    aug_seed: int = ranged(0, low=0, integer=True)
    classic_seed: int = ranged(0, low=0, integer=True)
    finetune: bool = False
    feature_cache: bool = True  # False: re-run the frozen backbone every step (benchmarks only)
    keras_backend: str | None = None  # default: $KERAS_BACKEND, else tensorflow
    cache_dir: Path | None = None  # default: <augstudy cache>/classifier-features
    feature_batch_size: int = ranged(32, low=1, integer=True)
    primary: str = "balanced_accuracy"
    primary_ratio: float | None = None  # the one pre-declared confirmatory GAN ratio; None: Holm over all
    audit: Path | None = None  # audit.json whose verdict the answer states first (when the file exists)
    bootstrap: int = ranged(2000, low=MIN_BOOTSTRAP, high=MAX_BOOTSTRAP, integer=True)
    bootstrap_seed: int = ranged(0, low=0, integer=True)
    positive_class: str | None = None  # default: see metrics.positive_class
    save_models: str = "first-seed"
    progress: bool = True

    def __post_init__(self) -> None:
        check_ranges(self)
        check_percentages("--ratios", "ratios", self.ratios)
        check_percentages("--real-fractions", "real_fractions", self.real_fractions)
        check_backbone_memory(self.input_size, self.feature_batch_size)


@dataclass(frozen=True)
class CellKey:
    """One trained classifier: `group` is "baseline" (the real train set alone) or an arm; `level`
    the added % (gan, diffusion, classic), the real fraction % (real) or 100 (synthetic-only,
    diffusion-only)."""

    group: str
    level: float
    seed: int
    repeat: int = 0
    fold: int = 0
    gan_seed: int | None = None  # the generator seed whose pool the cell draws from; None: no synthetic images
    cv: bool = False

    @property
    def name(self) -> str:
        from augstudy.classify.report import ratio_label  # lazily: the report loads scipy and matplotlib

        level, seed = ratio_label(self.level), f"seed-{self.seed:02d}"
        name = {
            "baseline": f"ratio-000_{seed}", "gan": f"ratio-{level}_{seed}",
            "diffusion": f"diffusion_ratio-{level}_{seed}",
            "classic": f"classic_ratio-{level}_{seed}", "real": f"real_fraction-{level}_{seed}",
            "synthetic-only": f"synthetic-only_{seed}", "diffusion-only": f"diffusion-only_{seed}",
        }[self.group]
        if not self.cv:  # the split design keeps the names of older results
            return name
        generator = "" if self.gan_seed is None else f"{POOL_ARMS[self.group]}-{self.gan_seed}_"
        return f"{fold_name(self.repeat, self.fold)}_{generator}{name}"


def cell_key(arm: str, level: float, seed: int, unit: FoldUnit | None = None, gan_seed: int = 0) -> CellKey:
    """The cell an (arm, level) row reads: the real-only classifier is shared by every arm."""
    where = {} if unit is None else {"repeat": unit.repeat, "fold": unit.fold, "cv": unit.cv}
    if (arm in ADDED_ARMS and level == 0) or (arm == "real" and level == 100):
        return CellKey("baseline", 0, seed, **where)
    return CellKey(arm, level, seed, gan_seed=gan_seed if arm in POOL_ARMS else None, **where)


@dataclass(frozen=True)
class FoldUnit:
    """What one (repeat, fold) trains on: its real images and its pools by (generator, seed). The
    split design is one unit (repeat 0, fold 0) with one pool per generator (seed 0)."""

    repeat: int
    fold: int
    data: PreparedData
    pools: dict[tuple[str, int], dict[str, list[ImageRef]]]
    digest: str | None = None  # the cv fold's Fold.digest(): which images are train, valid and test
    cv: bool = False


def cells_per_fold(options: SweepOptions, gan_seeds: int) -> int:
    """Distinct cells one cv fold trains (the shared real-only cell counted once), for plans and estimates."""
    unit = FoldUnit(0, 0, PreparedData(Path("."), "", (), {}), {}, cv=True)
    resolved = dataclasses.replace(options, real_fractions=tuple(sorted({*options.real_fractions, 100})),
                                   gan_seeds=gan_seeds)
    keys = {row.key for row in grid_rows(resolved, unit)} | {cell_key("gan", 0, seed, unit)
                                                            for seed in range(options.seeds)}
    return len(keys)


def cell_name(ratio: float, seed: int) -> str:
    return cell_key("gan", ratio, seed).name


@dataclass(frozen=True)
class Row:
    """One row of results.csv: an arm's level, read from a (possibly shared) cell."""

    arm: str
    ratio: float  # synthetic or classic images added, % of the real train count per class
    real_fraction: float  # % of each class's real train images used
    key: CellKey


def grid_rows(options: SweepOptions, unit: FoldUnit | None = None) -> list[Row]:
    """The rows of one unit (the split design's only one when None): a row per arm, level and seed,
    and per GAN seed where the cell draws synthetic images."""
    rows = []
    generators = range(int(options.gan_seeds or 1)) if unit is not None and unit.cv else range(1)
    for arm in options.arms:
        for seed in range(options.seeds):
            if arm in ADDED_ARMS:
                for ratio in options.ratios:
                    seeds = generators if arm in POOL_ARMS and ratio > 0 else range(1)
                    rows += [Row(arm, ratio, 100, cell_key(arm, ratio, seed, unit, g)) for g in seeds]
            elif arm == "real":
                rows += [Row(arm, 0, fraction, cell_key(arm, fraction, seed, unit))
                         for fraction in options.real_fractions]
            else:
                rows += [Row(arm, 100, 0, cell_key(arm, 100, seed, unit, g)) for g in generators]
    return rows


@dataclass(frozen=True)
class SweepOutcome:
    out: Path
    trained: list[CellKey]
    skipped: list[CellKey]
    features_computed: int
    feature_seconds: float  # the backbone pass of the feature cache (0 when everything was cached)
    written: dict[str, Path]
    sentence: str
    warnings: list[str]


def parse_ratios(text: str, option: str = "--ratios") -> tuple[float, ...]:
    """"0,25,50" -> (0, 25, 50): percentages >= 0, no repeats; whole numbers stay ints."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: give comma-separated percentages such as 0,25,50,75,100",
                                 param_hint=option) from error
    if not values or not all(math.isfinite(value) and value >= 0 for value in values) \
            or len(set(values)) != len(values):
        raise click.BadParameter(f"{text!r}: give distinct percentages >= 0, such as 0,25,50,75,100",
                                 param_hint=option)
    return tuple(int(value) if value.is_integer() else value for value in values)


def parse_pools(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, Path]:
    """`--pool DIR`, `--pool gan=DIR`, `--pool diffusion=DIR` -> generator -> existing folder; a
    generator named twice or unknown is refused."""
    pools: dict[str, Path] = {}
    for value in values:
        name, separator, folder = value.partition("=")
        generator, folder = (name, folder) if separator and name in GENERATORS else ("gan", value)
        if separator and name not in GENERATORS and not Path(value).is_dir():
            raise click.BadParameter(f"{value!r}: name a generator out of {', '.join(GENERATORS)} "
                                     "(e.g. --pool diffusion=DIR), or give a folder", param_hint="--pool")
        if generator in pools:
            raise click.BadParameter(f"{generator} is given twice ({pools[generator]} and {folder}); give one "
                                     "pool per generator", param_hint="--pool")
        if not Path(folder).is_dir():
            raise click.BadParameter(f"{folder}: no such folder", param_hint="--pool")
        pools[generator] = Path(folder)
    return pools


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SweepError(message)


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    _require(value in choices, f"{option} {value!r}: choose one of {', '.join(choices)}")


def resolve_options(options: SweepOptions, data: PreparedData) -> SweepOptions:
    """Reject what makes no sense and fill every None default (with `is None`, so an explicit 0 is
    never replaced), so sweep_options.json records what actually ran."""
    spec, head = backbone_spec(options.backbone), head_spec(options.head)
    arms = tuple(options.arms)
    ratios = tuple(options.ratios)
    _check_choice("--save-models", options.save_models, SAVE_MODELS)
    _check_choice("--schedule", options.schedule, tuple(SCHEDULES))
    _check_choice("--monitor", options.monitor, tuple(MONITORS))
    _check_choice("--primary", options.primary, METRICS)
    _check_choice("--class-weight", options.class_weight, CLASS_WEIGHTS)
    if spec.framework == "torch":  # a frozen feature extractor outside Keras: the cached-features path only
        _require(not options.finetune, f"--finetune: {spec.name} is a frozen torch feature extractor; "
                                       "fine-tune a Keras backbone (e.g. --backbone resnet50) instead")
        _require(options.feature_cache, f"--no-feature-cache: {spec.name} runs in torch, outside the Keras "
                                        "model, so its features always go through the cache")
    _check_choice("--design", options.design, DESIGNS)
    given = {name: getattr(options, name) for name in CV_FLAGS if getattr(options, name) is not None}
    if options.design == "split":  # the cv options would be ignored: refuse them
        _require(not given, f"{', '.join(CV_FLAGS[name] for name in given)}: only for --design cv; add "
                            "--design cv or drop them")
        design = {"folds": 1, "repeats": 1, "gan_seeds": 1}
    else:
        design = {**CV_DEFAULTS, **({"gan_seeds": 1} if not needed_generators(options) else {}), **given}
        _require(design["folds"] >= 2, f"--folds {design['folds']}: cross-validation needs at least 2 folds")
    if options.schedule == "fixed":  # nothing is monitored and nothing stops early: such options would be ignored
        _require(options.patience is None, f"--patience {options.patience}: --schedule fixed has no early stopping; "
                                           "drop --patience or use --schedule plateau")
        _require(options.monitor == "cross_entropy", f"--monitor {options.monitor}: --schedule fixed monitors "
                                                     "nothing; drop --monitor or use --schedule plateau")
    _require(bool(arms) and len(set(arms)) == len(arms) and all(arm in ARMS for arm in arms),
             f"--arms {','.join(arms)}: give distinct arms out of {', '.join(ARMS)}")
    if any(arm in ADDED_ARMS for arm in arms):
        _require(0 in ratios, f"--ratios {','.join(map(str, ratios))}: include 0, the real-only reference "
                              "every ratio is compared with")
    _require(options.primary_ratio is None or ("gan" in arms and options.primary_ratio in ratios
                                               and options.primary_ratio > 0),
             f"--primary-ratio {options.primary_ratio}: name one of the gan arm's --ratios above 0")
    fractions = tuple(options.real_fractions)
    _require(bool(fractions) and all(0 < f <= 100 for f in fractions) and len(set(fractions)) == len(fractions),
             f"--real-fractions {','.join(map(str, fractions))}: give distinct percentages in (0, 100]")
    if 100 not in fractions:
        fractions = (*fractions, 100)  # the full real train set: the curve's end and the reference
    fractions = tuple(sorted(fractions))
    needed = needed_generators(dataclasses.replace(options, arms=arms, ratios=ratios))
    _require("gan" not in needed or options.pool is not None,
             "the gan arm above 0 % and the synthetic-only arm need --pool (a folder of <class>/*.png "
             "synthetic images)")
    _require("diffusion" not in needed or options.diffusion_pool is not None,
             "the diffusion arm above 0 % and the diffusion-only arm need --pool diffusion=DIR (a folder of "
             "<class>/*.png images from `augstudy generate --network <diffusion snapshot>`)")
    _require(options.diffusion_pool is None or "diffusion" in needed,
             f"--pool diffusion={options.diffusion_pool}: no arm reads it; add diffusion (with a ratio above 0) "
             "or diffusion-only to --arms, or drop it")
    positive = positive_class(data.class_names, options.positive_class)
    _require(positive in data.class_names,
             f"--positive-class {positive!r} is not one of {', '.join(data.class_names)}")
    return dataclasses.replace(
        options,
        arms=arms, ratios=ratios, real_fractions=fractions,
        split=data.split, **design,
        input_size=spec.input_size if options.input_size is None else options.input_size,
        epochs=head.max_epochs if options.epochs is None else options.epochs,
        batch_size=head.batch_size if options.batch_size is None else options.batch_size,
        learning_rate=head.learning_rate if options.learning_rate is None else options.learning_rate,
        patience=head.patience if options.patience is None else options.patience,
        keras_backend=resolve_keras_backend(options.keras_backend),
        cache_dir=default_cache_dir() if options.cache_dir is None else Path(options.cache_dir),
        positive_class=positive,
        feature_cache=options.feature_cache and not options.finetune,
    )


def nested_real_subset(train: Sequence[LabelledImage], n_classes: int, fraction: float, seed: int) -> list[LabelledImage]:
    """`fraction` % of each class's real train images (at least 1), in file order: a seeded
    permutation per (seed, class) of which the first round(fraction % x n) are kept, so for one
    seed smaller fractions are subsets of larger ones."""
    kept: set[int] = set()
    for label in range(n_classes):
        members = [index for index, item in enumerate(train) if item.label == label]
        order = np.random.default_rng([seed, label, 0x5EA1]).permutation(len(members))
        count = max(1, synthetic_count(fraction, len(members)))
        kept.update(members[i] for i in order[:count])
    return [item for index, item in enumerate(train) if index in kept]


class Sweep:
    """One sweep's data, backbone and cached features, and the training of its cells."""

    def __init__(self, options: SweepOptions, unit: FoldUnit) -> None:
        self.options = options
        self.unit = unit
        self.data = unit.data
        self.pools = unit.pools
        data = unit.data
        self.class_names = data.class_names
        self.n_classes = len(data.class_names)
        self.positive = data.class_names.index(str(options.positive_class))
        self.backbone_spec: Backbone = backbone_spec(options.backbone)
        self.head_spec: HeadSpec = head_spec(options.head)
        self.weights: WeightsChoice = parse_weights(options.weights, self.backbone_spec)
        self.views = ViewParams(seed=options.aug_seed)
        self.recipe = ClassicRecipe(seed=options.classic_seed)
        self.classic: dict[str, list[ImageRef]] = {}
        self.input_size = int(options.input_size)  # type: ignore[arg-type]
        self.backend = str(options.keras_backend)
        self.features: dict[tuple[str, int], np.ndarray] = {}
        self.features_computed = 0
        self.frozen_backbone: keras.Model | None = None
        self.reusable: tuple[keras.Model, keras.Model] | None = None  # (compiled model, its head)
        self.geometry = prepared_geometry(data.root)
        self.pipeline = InputPipeline(self.input_size, self.backbone_spec.preprocess(), self.views, self.geometry)

    def for_unit(self, unit: FoldUnit) -> Sweep:
        """This sweep on another fold: the backbone and the compiled head are shared, the data, pools,
        classic copies and features are the fold's own."""
        other = copy.copy(self)
        other.unit, other.data, other.pools = unit, unit.data, unit.pools
        other.classic, other.features, other.features_computed = {}, {}, 0
        return other

    # ---- identity ---------------------------------------------------------------------------

    def fingerprint(self, key: CellKey) -> dict[str, Any]:
        """Everything that changes a cell besides its level and seed: in the cv design also the
        fold's images, so a changed fold plan or pool never reuses a cell."""
        group = key.group
        option_keys = ("split", "backbone", "head", "input_size", "schedule", "monitor", "epochs", "batch_size",
                       "learning_rate", "patience", "class_weight", "aug_views", "aug_seed", "finetune",
                       "keras_backend")
        common = {
            **{key: getattr(self.options, key) for key in option_keys},
            "weights": self.weights.cache_id,
            "manifest_sha256": sha256_file(self.data.root / "manifest.csv"),
            # the images themselves: re-preparing at another size or fit keeps the manifest, not the pixels
            "data_sha256": hashlib.sha256(json.dumps(
                {subset: [[item.ref.sha256, item.label] for item in items]
                 for subset, items in sorted(self.data.subsets.items())}).encode()).hexdigest(),
            "class_names": list(self.class_names),
            "image_pipeline": IMAGE_PIPELINE_ID,
        }
        if self.unit.cv:
            common["design"] = "cv"
            common["fold_digest"] = self.unit.digest
        if group in POOL_ARMS:
            pool = self.pool(key)
            common["pool_sha256"] = hashlib.sha256(
                json.dumps({name: [ref.sha256 for ref in refs] for name, refs in pool.items()}).encode()
            ).hexdigest()
        if group == "classic":
            common["classic_recipe"] = self.recipe.recipe_id()
        return common

    @property
    def title(self) -> str:
        options = self.options
        design = f"{options.split} split" if options.design == "split" else (
            f"{options.folds}-fold grouped CV x {options.repeats} repeat(s) on {options.split} images, "
            f"{options.gan_seeds} GAN seed(s) per fold")
        return (f"{options.backbone} ({self.weights.label}) + {options.head} head, "
                f"{design}{', fine-tuned' if options.finetune else ''}")

    def feature_spec(self) -> FeatureSpec:
        return backbone_feature_spec(self.backbone_spec, self.weights, self.input_size, self.geometry, self.backend)

    # ---- inputs -----------------------------------------------------------------------------

    def prepare_classic(self) -> None:
        """The classic arm's augmented copies, written once under RESULTS/classic/."""
        if "classic" in self.options.arms and max(self.options.ratios) > 0:
            digest = hashlib.sha256(self.recipe.recipe_id().encode()).hexdigest()[:8]
            self.classic = classic_pool(self.data.subsets["train"], self.class_names,
                                        Path(self.options.out) / "classic" / digest,
                                        copies_per_image(max(self.options.ratios)), self.recipe)

    def pool(self, key: CellKey) -> dict[str, list[ImageRef]]:
        """The pool a synthetic-drawing cell reads: its arm's generator, its generator seed."""
        return self.pools[(POOL_ARMS[key.group], int(key.gan_seed or 0))]

    def training_items(self, key: CellKey) -> tuple[list[LabelledImage], list[LabelledImage]]:
        """(real, added) training images of a cell, each repeated for its augmented views."""
        train = self.data.subsets["train"]
        real, added = list(train), []
        if key.group == "real":
            real = nested_real_subset(train, self.n_classes, key.level, key.seed)
        elif key.group in ADDED_ARMS:
            source = self.classic if key.group == "classic" else self.pool(key)
            counts = synthetic_counts(key.level, self.data.real_counts())
            added = [LabelledImage(ref, label) for ref, label in
                     sample_synthetic(source, counts, self.class_names, key.seed)]
        elif key.group in POOL_ARMS:  # synthetic-only, diffusion-only
            real = []
            added = [LabelledImage(ref, label) for ref, label in
                     sample_synthetic(self.pool(key), self.data.real_counts(),
                                      self.class_names, key.seed)]
        expand = range(self.options.aug_views + 1)
        return ([LabelledImage(dataclasses.replace(item.ref, view=view), item.label) for item in real for view in expand],
                [LabelledImage(dataclasses.replace(item.ref, view=view), item.label) for item in added for view in expand])

    def backbone(self) -> keras.Model:
        """The frozen backbone, built on first use (a fully cached sweep never needs it)."""
        if self.frozen_backbone is None:
            self.frozen_backbone = build_backbone(self.backbone_spec, self.weights, self.input_size)
        return self.frozen_backbone

    def precompute_features(self, keys: Sequence[CellKey]) -> None:
        """One backbone pass over every (image, view) any of `keys` needs that is not cached. The
        features also give each cell's standardisation, so this runs on every path."""
        refs = [item.ref for subset in ("valid", "test") for item in self.data.subsets[subset]]
        for key in keys:
            real, added = self.training_items(key)
            refs.extend(item.ref for item in real + added)
        cache = FeatureCache(Path(self.options.cache_dir), self.feature_spec(), self.views)  # type: ignore[arg-type]
        self.features, self.features_computed = cached_features(
            refs, lambda batch: self.backbone().predict_on_batch(batch), self.pipeline, cache,
            self.options.feature_batch_size, progress=self.options.progress,
        )

    def feature_rows(self, items: Sequence[LabelledImage]) -> np.ndarray:
        return np.stack([self.features[(item.ref.sha256, item.ref.view)] for item in items])

    def source(self, items: Sequence[LabelledImage]) -> BatchSource:
        if self.options.feature_cache:
            return ArraySource(self.feature_rows(items))
        return ImageSource([item.ref for item in items], self.pipeline)

    def labels(self, items: Sequence[LabelledImage]) -> np.ndarray:
        return label_array([item.label for item in items], self.n_classes)

    # ---- one cell ---------------------------------------------------------------------------

    def model_for_cell(self, seed: int, stats: FeatureStats) -> keras.Model:
        """The model a cell trains, in its seeded initial state: the head alone on cached features,
        else backbone + head. With a frozen backbone the first cell's compiled model is reset and
        reused by the next cells (same result as a new one, without re-tracing it)."""
        keras = import_keras(self.backend)
        backbone: keras.Model | None = None
        if self.options.finetune:
            backbone = build_backbone(self.backbone_spec, self.weights, self.input_size, finetune=True)
        elif not self.options.feature_cache:
            backbone = self.backbone()
        feature_dim = len(stats.mean)
        learning_rate = float(self.options.learning_rate)  # type: ignore[arg-type]
        keras.utils.set_random_seed(seed)
        head = build_head(self.options.head, feature_dim, self.n_classes, stats)
        if self.reusable is not None:
            model, trained_head = self.reusable
            reset_model(model, trained_head, head, learning_rate)
            return model
        model = head if backbone is None else end_to_end_model(backbone, head)
        compile_classifier(model, self.n_classes, learning_rate)
        if not self.options.finetune:
            self.reusable = (model, head)
        return model

    def train_cell(self, key: CellKey, fingerprint: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        real, added = self.training_items(key)
        train, valid, test = real + added, self.data.subsets["valid"], self.data.subsets["test"]
        stats = FeatureStats.of(self.feature_rows(train))
        model = self.model_for_cell(key.seed, stats)
        train_labels = [item.label for item in train]
        settings = TrainSettings(
            learning_rate=float(self.options.learning_rate), batch_size=int(self.options.batch_size),  # type: ignore[arg-type]
            max_epochs=int(self.options.epochs), patience=int(self.options.patience),  # type: ignore[arg-type]
            lr_patience=self.head_spec.lr_patience, lr_factor=self.head_spec.lr_factor, seed=key.seed,
            schedule=self.options.schedule, monitor=self.options.monitor,
            class_weight=balanced_class_weight(train_labels, self.n_classes)
            if self.options.class_weight == "balanced" else None,
        )
        train_source = self.source(train)
        result = fit(model, train_source, self.labels(train), self.source(valid), self.labels(valid), settings)
        proba = predict_proba(model, self.source(test), self.n_classes)
        y_test = np.array([item.label for item in test])
        train_proba = predict_proba(model, train_source, self.n_classes)
        train_accuracy = float(np.mean(train_proba.argmax(axis=1) == np.array(train_labels)))
        metrics = classification_metrics(y_test, proba, self.positive, self.class_names)
        reason = degenerate_reason(proba.argmax(axis=1), train_accuracy, metrics["balanced_accuracy"],
                                   self.n_classes)
        views = self.options.aug_views + 1
        added_root = (Path(pool_root(self.options, POOL_ARMS[key.group]) or "/") if key.group in POOL_ARMS
                      else Path(self.options.out))
        batches_per_epoch = math.ceil(len(train) / int(self.options.batch_size))  # type: ignore[arg-type]
        cell = {
            "group": key.group, "level": key.level, "seed": key.seed, "fingerprint": fingerprint,
            "design": self.options.design, "repeat": key.repeat, "fold": key.fold,
            "gan_seed": key.gan_seed if key.group in POOL_ARMS else None,
            "generator": POOL_ARMS.get(key.group),
            "steps_kept": result.best_epoch * batches_per_epoch, "batches_per_epoch": batches_per_epoch,
            "metrics": metrics,
            "n_real": len(real) // views, "n_added": len(added) // views,
            "unique_train_images": self.data.distinct_counts(real),
            "n_train_inputs": len(train), "n_valid": len(valid), "n_test": len(test),
            "valid_images": [str(item.ref.path.relative_to(self.data.root)) for item in valid],
            "epochs_trained": result.epochs_trained, "best_epoch": result.best_epoch,
            "monitor": result.monitor,
            "train_accuracy": train_accuracy, "degenerate": bool(reason), "degenerate_reason": reason,
            "history": result.history,
            "confusion_matrix": confusion_matrix(y_test, proba.argmax(axis=1), self.n_classes).tolist(),
            "class_names": list(self.class_names), "positive_class": self.options.positive_class,
            "backbone": self.options.backbone, "weights": self.weights.label, "head": self.options.head,
            "split": self.options.split, "keras_backend": self.backend,
            "feature_cache": self.options.feature_cache,
            "added_images": [str(Path(item.ref.path).relative_to(added_root)) for item in added if item.ref.view == 0],
            "test_predictions": [
                {"image": str(item.ref.path.relative_to(self.data.root)), "label": item.label,
                 "proba": [float(p) for p in row]}
                for item, row in zip(test, proba)
            ],
            "seconds": round(time.perf_counter() - started, 3),
        }
        first = key.seed == 0 and key.repeat == 0 and key.fold == 0 and not key.gan_seed
        if self.options.save_models == "all" or (self.options.save_models == "first-seed" and first):
            self.save_model(model, key)
        return cell

    def save_model(self, model: keras.Model, key: CellKey) -> Path:
        info = ClassifierInfo(
            class_names=self.class_names, positive_class=str(self.options.positive_class),
            backbone=self.backbone_spec.name, weights=self.weights, input_size=self.input_size,
            image_pipeline=IMAGE_PIPELINE_ID, working_size=self.geometry.working_size, fit=self.geometry.fit,
            head=self.options.head,
            inputs="features" if self.options.feature_cache else "images",
            keras_backend=self.backend, ratio=key.level, seed=key.seed,
        )
        return save_classifier(Path(self.options.out) / "models" / key.name, model, info)


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


def fold_plan(options: SweepOptions, data: PreparedData) -> FoldPlan:
    """The cv design's folds over `data`'s images, from the resolved options."""
    fold_options = FoldOptions(folds=int(options.folds), repeats=int(options.repeats),  # type: ignore[arg-type]
                               seed=int(options.cv_seed), group_by=options.group_by,  # type: ignore[arg-type]
                               val_fraction=float(options.val_fraction))  # type: ignore[arg-type]
    return plan_folds(data.root, data.split, data.class_names, fold_options)


def needed_generators(options: SweepOptions) -> list[str]:
    """The generators whose pools the arms draw from: an added-images arm above 0 %, or a synthetic-only one."""
    adds = any(ratio > 0 for ratio in options.ratios)
    return [generator for generator in GENERATORS
            if any(POOL_ARMS[arm] == generator and (arm not in ADDED_ARMS or adds)
                   for arm in options.arms if arm in POOL_ARMS)]


def pool_root(options: SweepOptions, generator: str) -> Path | None:
    """The pool folder of `generator` (the cv design's root, holding a folder per fold)."""
    return {"gan": options.pool, "diffusion": options.diffusion_pool}[generator]


def pool_ratios(options: SweepOptions, generator: str) -> list[float]:
    """The largest shares a generator's pools must cover: its added arm's ratios, 100 for its synthetic-only arm."""
    return [ratio for arm in options.arms if POOL_ARMS.get(arm) == generator
            for ratio in (options.ratios if arm in ADDED_ARMS else [100])]


def fold_units(options: SweepOptions, data: PreparedData) -> tuple[list[FoldUnit], FoldPlan | None]:
    """The units the sweep trains: the split design's one, or one per (repeat, fold) of the cv plan,
    each with its pools checked against what its cells will draw."""
    if options.design == "split":
        pools = {(generator, 0): read_pool(root) for generator in GENERATORS
                 if (root := pool_root(options, generator)) is not None}
        return [FoldUnit(0, 0, data, pools)], None
    plan = fold_plan(options, data)
    units = []
    for fold in plan.folds:
        pools = {}
        for generator in needed_generators(options):
            root = Path(pool_root(options, generator))  # type: ignore[arg-type]
            check_fold_pool(root, fold.name, fold.digest())
            pools.update({(generator, g): read_pool(cv_pool_dir(root, fold.name, g, generator))
                          for g in range(int(options.gan_seeds))})  # type: ignore[arg-type]
        units.append(FoldUnit(fold.repeat, fold.fold, fold_data(data, fold.train, fold.valid, fold.test), pools,
                              fold.digest(), cv=True))
    return units, plan


def _check_pools(options: SweepOptions, units: Sequence[FoldUnit], geometry_size: int) -> None:
    for generator in GENERATORS:
        root, ratios = pool_root(options, generator), pool_ratios(options, generator)
        for unit in units:
            for (owner, seed), pool in unit.pools.items():
                if owner != generator or not ratios:
                    continue
                name = (f"pool {root}" if not unit.cv
                        else f"pool {cv_pool_dir(root, fold_name(unit.repeat, unit.fold), seed, generator)}")  # type: ignore[arg-type]
                check_pool(pool, unit.data.real_counts(), ratios, pool_name=name)
        first = next((pool for unit in units for (owner, _), pool in unit.pools.items() if owner == generator), None)
        if first:
            kinds = image_kinds(ref.path for refs in first.values() for ref in refs)
            warning = kinds_warning(f"pool {root}", kinds, geometry_size)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)


def sweep_inputs(options: SweepOptions) -> dict[str, Path | str | None]:
    """What the sweep reads, which its --out may neither lie in nor hold."""
    weights = None if options.weights in ("imagenet", "none", "auto") else options.weights
    return {"--data": options.data, "--pool": options.pool, "--pool diffusion": options.diffusion_pool,
            "--weights": weights}


def run_sweep(options: SweepOptions) -> SweepOutcome:
    """Train every missing cell of the (repeats x folds x GAN seeds x) arms x levels x seeds grid, then
    write tables and figures."""
    check_output(options.out, sweep_inputs(options), verb="sweep", owned=OUTPUT_MARKS)
    with writing(options.out, "sweep"):
        return _run_sweep(options)


def _run_sweep(options: SweepOptions) -> SweepOutcome:
    """run_sweep's work, under the writer lock of --out."""
    keras_backend = resolve_keras_backend(options.keras_backend)
    import_keras(keras_backend)
    data = read_prepared(options.data, options.split)
    options = resolve_options(options, data)
    units, plan = fold_units(options, data)
    _check_pools(options, units, prepared_geometry(data.root).working_size)
    first = units[0]  # cv: the first fold stands for the others (their counts differ by an image or two)
    warnings = data_warnings(first.data, options.class_weight,
                             fold_name(first.repeat, first.fold) if first.cv else None)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = Path(options.out)
    write_options(out / "sweep_options.json", options)
    if plan is not None:
        atomic_write_json(out / "folds.json", plan.to_dict())
    base = Sweep(options, units[0])
    rows: list[Row] = []
    baseline_keys: list[CellKey] = []
    cells: dict[CellKey, dict[str, Any]] = {}
    trained: list[CellKey] = []
    skipped: list[CellKey] = []
    features_computed, feature_seconds = 0, 0.0
    for unit in units:
        sweep = base.for_unit(unit)
        unit_rows = grid_rows(options, unit if unit.cv else None)
        unit_baseline = [cell_key("gan", 0, seed, unit if unit.cv else None) for seed in range(options.seeds)]
        keys = list(dict.fromkeys([row.key for row in unit_rows] + unit_baseline))  # every arm's reference
        fingerprints = {key: sweep.fingerprint(key) for key in keys}
        for key in keys:
            cell = _finished_cell(out / "cells" / f"{key.name}.json", fingerprints[key])
            if cell is not None:
                cells[key] = with_distinct_counts(cell, unit.data, lambda k=key, s=sweep: s.training_items(k)[0])
        todo = [key for key in keys if key not in cells]
        started = time.perf_counter()
        if todo:
            sweep.prepare_classic()
            sweep.precompute_features(todo)
        feature_seconds += time.perf_counter() - started
        features_computed += sweep.features_computed
        for key in todo:
            if options.progress:
                print(f"[sweep] {key.name}", file=sys.stderr)
            cell = sweep.train_cell(key, fingerprints[key])
            atomic_write_json(out / "cells" / f"{key.name}.json", cell)
            cells[key] = cell
        base.reusable = sweep.reusable if base.reusable is None else base.reusable
        base.frozen_backbone = sweep.frozen_backbone if base.frozen_backbone is None else base.frozen_backbone
        rows += unit_rows
        baseline_keys += unit_baseline
        trained += todo
        skipped += [key for key in keys if key not in todo]
    table_rows = [(row.arm, row.ratio, row.real_fraction, row.key.name, cells[row.key]) for row in rows]
    from augstudy.classify.report import write_report  # lazily: see CellKey.name

    written, answer = write_report(out, table_rows, base.title, options, warnings,
                                   [cells[key] for key in baseline_keys])
    return SweepOutcome(out, trained, skipped, features_computed, feature_seconds, written,
                        answer["sentence"], warnings)


@click.command("sweep")
@click.option("--data", "data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Prepared folder (augstudy prepare --out).")
@click.option("--pool", "pools", multiple=True, callback=parse_pools, metavar="[GENERATOR=]DIR",
              help="Synthetic pool: a folder of <class>/*.png (augstudy generate --out); DIR or gan=DIR for the "
                   "GAN's, diffusion=DIR for the diffusion model's (repeat --pool for both).")
@click.option("--out", type=OutputPath(), required=True, help="RESULTS folder.")
@click.option("--design", type=click.Choice(DESIGNS), default="split", show_default=True,
              help="split: prepare's train/valid/test; cv: repeated, stratified, grouped K-fold over all of them, "
                   "--pool then holding POOL/r<R>-f<F>/gan-<G>/<class>/*.png (docs/formats.md).")
@click.option("--folds", type=RangedNumber(SweepOptions, "folds"), help=f"cv: folds K  [default: {CV_DEFAULTS['folds']}]")
@click.option("--repeats", type=RangedNumber(SweepOptions, "repeats"),
              help=f"cv: reshuffled repeats of the K folds  [default: {CV_DEFAULTS['repeats']}]")
@click.option("--gan-seeds", type=RangedNumber(SweepOptions, "gan_seeds"),
              help=f"cv: generators (pools gan-0..) per fold  [default: {CV_DEFAULTS['gan_seeds']}, 1 without a pool]")
@click.option("--cv-seed", type=RangedNumber(SweepOptions, "cv_seed"),
              help="cv: seed of the fold shuffles  [default: 0]")
@click.option("--group-by", help=f"cv: images sharing an id stay in one fold, as duplicates do: {GROUP_BY_HELP}.")
@click.option("--val-fraction", type=RangedNumber(SweepOptions, "val_fraction"),
              help=f"cv: share of each fold's training part held out for validation  "
                   f"[default: {CV_DEFAULTS['val_fraction']}]")
@click.option("--arms", default="gan", show_default=True,
              help=f"Comma-separated arms out of {', '.join(ARMS)}.")
@click.option("--ratios", default="0,25,50,75,100", show_default=True,
              help="Images to add (gan, classic arms), in % of each class's real train count; include 0.")
@click.option("--real-fractions", default="25,50,75,100", show_default=True,
              help="The real arm's learning curve: % of each class's real train images (100 always added).")
@click.option("--seeds", type=RangedNumber(SweepOptions, "seeds"),
              default=5, show_default=True, help="Number of seeds (0..N-1) per cell.")
@click.option("--split", type=click.Choice(SPLITS), help="Prepared split to use  [default: prepare's own]")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), default="resnet50", show_default=True)
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet, none (random init: results labelled so) or a local weights file.")
@click.option("--head", type=click.Choice(list(HEADS)), default="compact", show_default=True)
@click.option("--input-size", type=RangedNumber(SweepOptions, "input_size"),
              help="Backbone input size in px  [default: the backbone's]")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="plateau", show_default=True,
              help="plateau: early stopping + LR reduction on --monitor, best epoch kept; "
                   "fixed: exactly --epochs epochs.")
@click.option("--monitor", type=click.Choice(list(MONITORS)), default="cross_entropy", show_default=True,
              help="Validation quantity the plateau schedule follows (cross-entropy without the penalties).")
@click.option("--epochs", type=RangedNumber(SweepOptions, "epochs"),
              help="Maximum epochs (fixed schedule: exactly)  [default: the head's]")
@click.option("--batch-size", type=RangedNumber(SweepOptions, "batch_size"),
              help="Training batch size  [default: the head's]")
@click.option("--learning-rate", type=RangedNumber(SweepOptions, "learning_rate"),
              help="Adam learning rate  [default: the head's]")
@click.option("--patience", type=RangedNumber(SweepOptions, "patience"),
              help="Epochs without improvement before early stopping (no early stopping: --schedule fixed) "
                   "[default: the head's]")
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default="none", show_default=True,
              help="balanced: weigh each class's loss by n / (k x n_class).")
@click.option("--aug-views", type=RangedNumber(SweepOptions, "aug_views"), default=0, show_default=True,
              help="Precomputed random flip/zoom/shear views per training image (each cached).")
@click.option("--aug-seed", type=RangedNumber(SweepOptions, "aug_seed"),
              default=0, show_default=True, help="Seed of the augmented views.")
@click.option("--classic-seed", type=RangedNumber(SweepOptions, "classic_seed"), default=0, show_default=True,
              help="Seed of the classic arm's augmented copies.")
@click.option("--finetune", is_flag=True, help="Unfreeze the backbone's last block (bypasses the cache).")
@click.option("--feature-cache/--no-feature-cache", default=True, show_default=True,
              help="--no-feature-cache re-runs the frozen backbone every step (for benchmarks).")
@click.option("--keras-backend", type=click.Choice(KERAS_BACKENDS),
              help="Keras backend  [default: $KERAS_BACKEND, else tensorflow]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Feature cache folder  [default: $AUGSTUDY_CACHE_DIR or ~/.cache/augstudy, /classifier-features]")
@click.option("--feature-batch-size", type=RangedNumber(SweepOptions, "feature_batch_size"),
              default=32, show_default=True, help="Images per backbone pass.")
@click.option("--primary", type=click.Choice(list(METRICS)), default="balanced_accuracy", show_default=True,
              help="The primary metric: its confirmatory tests are Holm-corrected; the others are secondary, uncorrected.")
@click.option("--audit", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="audit.json of `augstudy audit`: the answer starts with what its flags mean for the accuracy.")
@click.option("--primary-ratio", type=float,
              help="Pre-declare one GAN ratio (%) as the single confirmatory test against 0 %  "
                   "[default: every ratio and GAN - classic contrast, Holm-corrected together]")
@click.option("--bootstrap", type=RangedNumber(SweepOptions, "bootstrap"), default=2000, show_default=True,
              help="Bootstrap replicates over test images and seeds (real-image equivalents' intervals).")
@click.option("--bootstrap-seed", type=RangedNumber(SweepOptions, "bootstrap_seed"), default=0,
              show_default=True, help="Seed of the bootstrap draws.")
@click.option("--positive-class",
              help="Class whose sensitivity/F1/AUC are reported  [default: the other class than 'normal', "
                   "else the 2nd sorted]")
@click.option("--save-models", type=click.Choice(SAVE_MODELS), default="first-seed", show_default=True,
              help="Trained classifiers to keep under RESULTS/models/ (first-seed: one per cell; cv: of the "
                   "first fold).")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def sweep_command(ratios: str, arms: str, real_fractions: str, quiet: bool, dry_run: bool,
                  pools: dict[str, Path], **kwargs: Any) -> None:
    """Train a classifier for every arm x level x seed; write results, summary, answer and figures."""
    try:
        options = SweepOptions(ratios=parse_ratios(ratios), progress=not quiet,
                               pool=pools.get("gan"), diffusion_pool=pools.get("diffusion"),
                               arms=tuple(part.strip() for part in arms.split(",") if part.strip()),
                               real_fractions=parse_ratios(real_fractions, "--real-fractions"), **kwargs)
        if dry_run:  # checks what the run checks, writes nothing
            check_output(options.out, sweep_inputs(options), verb="sweep", owned=OUTPUT_MARKS)
            resolved = resolve_options(options, read_prepared(options.data, options.split))
            click.echo(json.dumps(options_to_dict(resolved), indent=2))
            return
        outcome = run_sweep(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"trained {len(outcome.trained)} cell(s), skipped {len(outcome.skipped)} finished; "
               f"{outcome.features_computed} backbone feature(s) computed")
    click.echo(f"results: {outcome.written['results']}\nsummary: {outcome.written['summary']}\n"
               f"answer: {outcome.written['answer']}\nfigures: {outcome.written['figures']}")
    click.echo(outcome.sentence)
