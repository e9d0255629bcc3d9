"""A trained classifier on disk: the Keras model plus `model.json`, which holds everything needed
to turn raw images into its inputs again (class names, backbone, weights, input size, views).

A head trained on cached features is saved alone (`head.keras`, a few MB) and `predict` rebuilds
the frozen backbone from the metadata; a fine-tuned or end-to-end model is saved whole
(`model.keras`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augstudy.classify.backbones import WeightsChoice
from augstudy.classify.backend import import_keras
from stylegan2ada.io import atomic_write_json

if TYPE_CHECKING:
    import keras

BUNDLE_FORMAT = "augstudy-classifier-v1"


@dataclass(frozen=True)
class ClassifierInfo:
    class_names: tuple[str, ...]
    positive_class: str
    backbone: str
    weights: WeightsChoice
    input_size: int
    image_pipeline: str
    head: str
    inputs: str  # "features": head.keras takes backbone features; "images": model.keras takes images
    keras_backend: str
    ratio: float
    seed: int
    working_size: int | None = None  # the prepared size images pass through (augstudy.classify.images)
    fit: str = "pad"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["weights"] = self.weights.to_dict()
        data["weights_label"] = self.weights.label
        data["format"] = BUNDLE_FORMAT
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierInfo:
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        fields["class_names"] = tuple(data["class_names"])
        fields["weights"] = WeightsChoice.from_dict(data["weights"])
        return cls(**fields)

    @property
    def model_file(self) -> str:
        return "head.keras" if self.inputs == "features" else "model.keras"


def save_classifier(folder: Path, model: keras.Model, info: ClassifierInfo) -> Path:
    """Write the model then its metadata (the metadata last, so its presence means complete).

    An uncompiled copy is saved (`clone_model` would keep the optimizer): `.keras` files otherwise
    carry the optimizer's state, which for the paper head (128 M parameters) triples a 0.5 GB file."""
    folder.mkdir(parents=True, exist_ok=True)
    inference_copy = type(model).from_config(model.get_config())
    inference_copy.set_weights(model.get_weights())
    tmp = folder / f".tmp-{info.model_file}"
    try:
        inference_copy.save(tmp)
        tmp.replace(folder / info.model_file)
    finally:  # a failed save (a full disk) leaves no partial file behind
        tmp.unlink(missing_ok=True)
    atomic_write_json(folder / "model.json", info.to_dict())
    return folder


def read_info(folder: Path) -> ClassifierInfo:
    meta = Path(folder) / "model.json"
    if not meta.is_file():
        raise FileNotFoundError(
            f"{meta}: not found; --model takes a folder written by `augstudy sweep` under "
            f"RESULTS/models/ (see its --save-models option)"
        )
    data = json.loads(meta.read_text(encoding="utf-8"))
    if data.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{meta}: format {data.get('format')!r} is not {BUNDLE_FORMAT!r}")
    return ClassifierInfo.from_dict(data)


def load_model(folder: Path, info: ClassifierInfo) -> keras.Model:
    """The saved model, in whichever Keras backend is active (the format is backend-neutral)."""
    keras = import_keras()
    return keras.models.load_model(Path(folder) / info.model_file, compile=False)
