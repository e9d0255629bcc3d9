"""The feature cache: a frozen backbone's output is a pure function of the image, so compute it
once per (image content, backbone, weights, input size, preprocessing, view) and keep it on disk.

Layout: `CACHE/<backbone>-<size>px-<spec digest>/spec.json` describes the key shared by every
entry of the folder; `.../<sha[:2]>/<sha256>.<view>.npy` holds one float32 vector. Entries are
written atomically, so a killed run leaves only whole files and the next run reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from augstudy.cache import cache_root
from augstudy.classify.backbones import Backbone, WeightsChoice
from augstudy.classify.images import Geometry, ViewParams, load_view
from stylegan2ada.io import atomic_open, atomic_write_json

CACHE_FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """Backbone features live beside augstudy's other caches (see `augstudy.cache.cache_root`)."""
    return cache_root() / "classifier-features"


@dataclass(frozen=True)
class ImageRef:
    """One view of one image file, identified by its content hash."""

    path: Path
    sha256: str
    view: int = 0


def library_versions(keras_backend: str) -> str:
    """Keras's and its backend's versions: a feature (and a random-init backbone drawn from a seed)
    is only reproducible within them, so they are part of the cache key."""
    import importlib

    keras = importlib.import_module("keras")
    backend = importlib.import_module({"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}[keras_backend])
    return f"keras-{keras.__version__}+{keras_backend}-{backend.__version__}"


@dataclass(frozen=True)
class FeatureSpec:
    """Everything besides the image that determines a feature vector."""

    backbone: str
    weights_id: str
    input_size: int
    preprocessing: str
    keras_backend: str
    library_versions: str = ""  # see `library_versions`
    format_version: int = CACHE_FORMAT_VERSION

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def backbone_feature_spec(spec: Backbone, weights: WeightsChoice, input_size: int, geometry: Geometry,
                          keras_backend: str) -> FeatureSpec:
    """The cache key of a frozen backbone's features: one builder, so `sweep` and `audit` share features
    exactly when the image path, weights, backbone and library versions are all the same. A torch
    backbone's features do not depend on Keras, so its key names torch's version instead."""
    if spec.framework == "torch":
        import torch

        keras_backend, versions = "none", f"torch-{torch.__version__}"
    else:
        versions = library_versions(keras_backend)
    return FeatureSpec(
        backbone=spec.name, weights_id=spec.weights_id(weights), input_size=input_size,
        preprocessing=f"{geometry.id}+{spec.preprocessing_id}", keras_backend=keras_backend,
        library_versions=versions,
    )


class InputPipeline:
    """Image files -> the preprocessed float32 batch a backbone takes; shared by every path."""

    def __init__(
        self, input_size: int, preprocess: Callable[[np.ndarray], np.ndarray], views: ViewParams,
        geometry: Geometry | None = None,
    ) -> None:
        self.input_size = input_size
        self.preprocess = preprocess
        self.views = views
        self.geometry = geometry or Geometry()  # None: straight to the input size

    def batch(self, refs: Sequence[ImageRef]) -> np.ndarray:
        images = np.stack(
            [load_view(ref.path, ref.sha256, ref.view, self.input_size, self.views, self.geometry) for ref in refs]
        )
        return np.asarray(self.preprocess(images), dtype=np.float32)


class FeatureCache:
    """One folder of cached vectors for one `FeatureSpec`."""

    def __init__(self, root: Path, spec: FeatureSpec, views: ViewParams) -> None:
        self.spec = spec
        self.views = views
        self.folder = Path(root) / f"{spec.backbone}-{spec.input_size}px-{spec.digest()}"
        spec_file = self.folder / "spec.json"
        if not spec_file.exists():
            atomic_write_json(spec_file, asdict(spec))

    def path(self, ref: ImageRef) -> Path:
        return self.folder / ref.sha256[:2] / f"{ref.sha256}.{self.views.view_id(ref.view)}.npy"

    def load(self, ref: ImageRef) -> np.ndarray | None:
        """The cached vector, or None when absent or unreadable (it is then recomputed)."""
        path = self.path(ref)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None

    def save(self, ref: ImageRef, vector: np.ndarray) -> None:
        with atomic_open(self.path(ref), "wb") as handle:
            np.save(handle, np.asarray(vector, dtype=np.float32), allow_pickle=False)


def _chunks(items: Sequence[ImageRef], size: int) -> Iterator[Sequence[ImageRef]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def cached_features(
    refs: Sequence[ImageRef],
    predict: Callable[[np.ndarray], np.ndarray],
    pipeline: InputPipeline,
    cache: FeatureCache,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[dict[tuple[str, int], np.ndarray], int]:
    """Features of every (image hash, view) in `refs`, reading the cache and computing the rest in
    batches with `predict` (a backbone's `predict_on_batch`; it is not called when everything is
    cached, so it may build the backbone lazily). Returns the vectors by (sha256, view) and how many
    were computed."""
    found: dict[tuple[str, int], np.ndarray] = {}
    missing: dict[tuple[str, int], ImageRef] = {}
    for ref in refs:
        key = (ref.sha256, ref.view)
        if key in found or key in missing:
            continue
        vector = cache.load(ref)
        if vector is None:
            missing[key] = ref
        else:
            found[key] = vector
    todo = list(missing.values())
    with tqdm(total=len(todo), desc="backbone features", unit="img", disable=not progress or not todo) as bar:
        for chunk in _chunks(todo, batch_size):
            vectors = np.asarray(predict(pipeline.batch(chunk)), dtype=np.float32)
            for ref, vector in zip(chunk, vectors):
                cache.save(ref, vector)
                found[(ref.sha256, ref.view)] = vector
            bar.update(len(chunk))
    return found, len(todo)
