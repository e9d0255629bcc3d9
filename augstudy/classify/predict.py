"""`augstudy predict --model M IMAGE|DIR`: the class and its probability for raw images.

M is a folder written by `augstudy sweep` under RESULTS/models/; its model.json says how the
images were turned into the model's inputs, and the same backbone and weights are rebuilt here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from augstudy.classify.backbones import (
    WeightsChoice,
    WeightsUnavailableError,
    backbone_spec,
    build_backbone,
    parse_weights,
)
from augstudy.classify.backend import KERAS_BACKENDS, KerasBackendError, import_keras
from augstudy.classify.features import ImageRef, InputPipeline
from augstudy.classify.images import IMAGE_PIPELINE_ID, Geometry, ImageReadError, ViewParams
from augstudy.classify.saved import ClassifierInfo, load_model, read_info
from augstudy.classify.train import ArraySource, ImageSource, predict_proba
from augstudy.locks import full_disk_reported
from augstudy.options import (
    OptionError,
    RangedNumber,
    check_backbone_memory,
    check_ranges,
    ranged,
    write_options,
)
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import atomic_write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
OPTIONS_NAME = "predict_options.json"


class PredictError(RuntimeError):
    """The model folder or its weights do not allow a prediction (the message says why)."""


@dataclass(frozen=True)
class PredictOptions:
    model: Path
    inputs: tuple[Path, ...]
    out: Path | None = None  # CSV of every prediction; predict_options.json goes beside it
    keras_backend: str | None = None  # default: the one the model was trained with
    weights: str | None = None  # local backbone weights when the recorded file is not here
    batch_size: int = ranged(32, low=1, integer=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        check_backbone_memory(None, self.batch_size, "--batch-size", "batch_size")


def list_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files given directly or found (recursively, sorted) in given folders; in folders, hidden
    files and folders (macOS `._0001.png` resource forks among them) are skipped, as prepare skips them."""
    images: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            images.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                                 and not any(part.startswith(".") for part in p.relative_to(path).parts)))
        elif path.is_file():
            images.append(path)
        else:
            raise PredictError(f"{path}: no such image or folder")
    if not images:
        raise PredictError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return images


def _resolve_weights(info: ClassifierInfo, override: str | None) -> WeightsChoice:
    """The backbone weights the model was trained on, found locally; an error says what to pass."""
    spec = backbone_spec(info.backbone)
    recorded = info.weights
    if recorded.kind == "none":
        if override is not None:  # an option that would change nothing is refused, not ignored
            raise PredictError(f"--weights {override}: the model's backbone is random-init (weights none), so no "
                               "weights file is used; drop --weights")
        return recorded
    if override is not None:
        candidate = parse_weights(override, spec)
    elif recorded.path is not None and recorded.path.is_file():
        candidate = recorded
    elif recorded.kind == "imagenet":
        return parse_weights("imagenet", spec)
    else:
        raise PredictError(
            f"the model was trained on backbone weights {recorded.path} (sha256 {recorded.sha256}), "
            f"which is not here; pass a copy with --weights PATH"
        )
    if candidate.kind != recorded.kind or (recorded.kind == "file" and candidate.sha256 != recorded.sha256):
        raise PredictError(
            f"--weights {override}: these are not the weights the model was trained on ({recorded.label})"
        )
    return candidate


class Classifier:
    """A saved sweep classifier, ready to label image files."""

    def __init__(self, folder: Path, keras_backend: str | None = None, weights: str | None = None) -> None:
        self.info = read_info(folder)
        if self.info.image_pipeline != IMAGE_PIPELINE_ID:
            raise PredictError(
                f"{folder}: made with image pipeline {self.info.image_pipeline!r}, this augstudy has "
                f"{IMAGE_PIPELINE_ID!r}; retrain it with this version"
            )
        backend = keras_backend or self.info.keras_backend
        if self.info.weights.kind == "none" and backend != self.info.keras_backend:
            raise PredictError(
                f"{folder}: its random-init backbone was drawn by the {self.info.keras_backend} backend; "
                f"predict with --keras-backend {self.info.keras_backend}"
            )
        import_keras(backend)
        self.backend = backend
        spec = backbone_spec(self.info.backbone)
        self.model = load_model(folder, self.info)
        self.backbone = None
        if self.info.inputs == "features":
            self.backbone = build_backbone(spec, _resolve_weights(self.info, weights), self.info.input_size)
        elif weights is not None:
            raise PredictError(f"--weights {weights}: {folder} holds its whole model (backbone included), so "
                               "no backbone weights are loaded; drop --weights")
        self.pipeline = InputPipeline(self.info.input_size, spec.preprocess(), ViewParams(),
                                      Geometry(self.info.working_size, self.info.fit))

    def predict(self, images: Sequence[Path], batch_size: int = 32) -> pd.DataFrame:
        """One row per image: image, class, probability (of that class), p_<class> for each class."""
        # View 0 (the image itself) never reads the content hash, so none is computed here.
        source = ImageSource([ImageRef(Path(path), "") for path in images], self.pipeline)
        n_classes = len(self.info.class_names)
        if self.backbone is None:
            proba = predict_proba(self.model, source, n_classes, batch_size)
        else:
            features = []
            for start in range(0, len(source), batch_size):
                rows = np.arange(start, min(start + batch_size, len(source)))
                features.append(np.asarray(self.backbone.predict_on_batch(source.rows(rows)), dtype=np.float32))
            proba = predict_proba(self.model, ArraySource(np.concatenate(features)), n_classes, batch_size)
        table = pd.DataFrame({
            "image": [str(path) for path in images],
            "class": [self.info.class_names[index] for index in proba.argmax(axis=1)],
            "probability": proba.max(axis=1),
        })
        for index, name in enumerate(self.info.class_names):
            table[f"p_{name}"] = proba[:, index]
        return table


def run_predict(options: PredictOptions) -> pd.DataFrame:
    images = list_images(options.inputs)
    if options.weights is not None and options.weights not in ("imagenet", "none") \
            and not Path(options.weights).is_file():
        raise PredictError(f"--weights {options.weights}: no such file")
    if options.out is not None:  # before the model runs: the CSV may not land in an input folder
        check_output(options.out, [("--model", options.model), *(("IMAGE", path) for path in options.inputs)],
                     is_file=True, verb="predict", owned=(OPTIONS_NAME,))
    classifier = Classifier(options.model, options.keras_backend, options.weights)
    table = classifier.predict(images, options.batch_size)
    if options.out is not None:
        with full_disk_reported(Path(options.out).parent):
            atomic_write_text(options.out, table.to_csv(index=False))
            resolved = dataclasses.replace(options, keras_backend=classifier.backend)
            write_options(Path(options.out).with_name(OPTIONS_NAME), resolved)
    return table


@click.command("predict")
@click.option("--model", "model", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="A classifier folder written by `augstudy sweep` (RESULTS/models/...).")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=OutputPath(file=True), help="Also write a CSV here.")
@click.option("--keras-backend", type=click.Choice(KERAS_BACKENDS),
              help="Keras backend  [default: the one the model was trained with]")
@click.option("--weights", help="Local backbone weights file, when the one recorded is not on this machine.")
@click.option("--batch-size", type=RangedNumber(PredictOptions, "batch_size"), default=32, show_default=True)
def predict_command(inputs: tuple[Path, ...], **kwargs: Any) -> None:
    """Print the class and its probability for each IMAGE (or every image in DIR)."""
    try:
        table = run_predict(PredictOptions(inputs=inputs, **kwargs))
    except (PredictError, ImageReadError, WeightsUnavailableError, KerasBackendError, FileNotFoundError,
            OptionError, OutputError) as error:
        raise click.ClickException(str(error)) from error
    for image, name, probability in zip(table["image"], table["class"], table["probability"]):
        click.echo(f"{image}\t{name}\t{probability:.4f}")
