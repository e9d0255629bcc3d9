"""Backbone features for the audit, through the sweep's own feature cache.

The key is built exactly as the sweep builds it (same image pipeline, preprocessing and weights
id), so features the audit computes are reused by the sweep and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from augstudy.classify.backbones import backbone_spec, build_backbone, parse_weights
from augstudy.classify.backend import import_keras, resolve_keras_backend
from augstudy.classify.features import (
    FeatureCache,
    ImageRef,
    InputPipeline,
    backbone_feature_spec,
    cached_features,
    default_cache_dir,
)
from augstudy.classify.images import Geometry, ViewParams
from stylegan2ada.io import sha256_file


def backbone_features(paths: Sequence[Path], backbone: str, weights: str, input_size: int | None,
                      keras_backend: str | None, cache_dir: Path | None, geometry: Geometry,
                      batch_size: int = 32, progress: bool = True) -> tuple[np.ndarray, str, int]:
    """(n, d) features of the images at `paths`, the weights' label, and how many were computed.

    `geometry` is the prepared data's (`prepared_geometry`), so real and pool images take the sweep's
    own path to the backbone. The backbone is built only when some image is not cached yet.
    """
    spec = backbone_spec(backbone)
    choice = parse_weights(weights, spec)
    backend = resolve_keras_backend(keras_backend)
    if spec.framework == "keras":  # a torch backbone's audit never loads Keras
        import_keras(backend)
    size = spec.input_size if input_size is None else input_size
    views = ViewParams()
    key = backbone_feature_spec(spec, choice, size, geometry, backend)
    cache = FeatureCache(Path(cache_dir) if cache_dir else default_cache_dir(), key, views)
    refs = [ImageRef(Path(path), sha256_file(path)) for path in paths]
    built: list = []

    def predict(batch: np.ndarray) -> np.ndarray:
        if not built:
            built.append(build_backbone(spec, choice, size))
        return built[0].predict_on_batch(batch)

    found, computed = cached_features(refs, predict, InputPipeline(size, spec.preprocess(), views, geometry), cache,
                                      batch_size, progress=progress)
    return np.stack([found[(ref.sha256, 0)] for ref in refs]), choice.label, computed
