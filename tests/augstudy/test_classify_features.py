"""The feature cache: keys, atomic entries, batching, augmented views, and a head trained on cached
features predicting exactly like the same head trained end to end on the frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from augstudy.classify.features import (
    FeatureCache,
    FeatureSpec,
    ImageRef,
    InputPipeline,
    cached_features,
    library_versions,
)
from augstudy.classify.images import ViewParams, augmented_view, load_view
from augstudy.classify.sweep import SweepOptions, run_sweep
from augstudy.classify.toydata import toy_image, write_toy_study
from stylegan2ada.io import sha256_file

SPEC = FeatureSpec("resnet50", "none-seed0", 16, "test-pipeline", "tensorflow")


class CountingBackbone:
    """Stands in for a Keras model: per-channel means, and a record of every batch it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        return batch.mean(axis=(1, 2))


def _images(folder: Path, count: int) -> list[ImageRef]:
    refs = []
    for index in range(count):
        path = folder / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(toy_image(index % 2, index, 16), mode="L").save(path)
        refs.append(ImageRef(path, sha256_file(path)))
    return refs


def test_cache_computes_each_key_once_in_batches(tmp_path: Path) -> None:
    views = ViewParams()
    refs = _images(tmp_path / "img", 5)
    pipeline = InputPipeline(16, lambda x: x / 255.0, views)
    cache = FeatureCache(tmp_path / "cache", SPEC, views)
    backbone = CountingBackbone()
    wanted = refs + refs[:2] + [ImageRef(refs[0].path, refs[0].sha256, view=1)]
    features, computed = cached_features(wanted, backbone.predict_on_batch, pipeline, cache, batch_size=4,
                                         progress=False)
    assert computed == 6 and backbone.batches == [4, 2]
    assert set(features) == {(ref.sha256, 0) for ref in refs} | {(refs[0].sha256, 1)}
    expected = np.asarray(Image.open(refs[3].path).convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(features[(refs[3].sha256, 0)], expected, rtol=1e-6)
    assert not np.allclose(features[(refs[0].sha256, 1)], features[(refs[0].sha256, 0)])
    # a second run reads everything back: no backbone call, identical vectors
    again, computed = cached_features(wanted, CountingBackbone().predict_on_batch, pipeline, cache, progress=False)
    assert computed == 0
    assert all(np.array_equal(again[key], features[key]) for key in features)
    assert json.loads((cache.folder / "spec.json").read_text())["backbone"] == "resnet50"
    assert not list(cache.folder.rglob("*.tmp"))


def test_cache_keys_separate_everything_that_changes_features(tmp_path: Path) -> None:
    views = ViewParams()
    ref = _images(tmp_path / "img", 1)[0]
    folders = {
        FeatureCache(tmp_path, spec, views).folder
        for spec in (SPEC, FeatureSpec("resnet152", *list(vars(SPEC).values())[1:]),
                     FeatureSpec("resnet50", "imagenet", 16, "test-pipeline", "tensorflow"),
                     FeatureSpec("resnet50", "none-seed0", 32, "test-pipeline", "tensorflow"),
                     FeatureSpec("resnet50", "none-seed0", 16, "other", "tensorflow"),
                     FeatureSpec("resnet50", "none-seed0", 16, "test-pipeline", "torch"),
                     FeatureSpec("resnet50", "none-seed0", 16, "test-pipeline", "tensorflow", "keras-9+tensorflow-9"))
    }
    assert len(folders) == 7
    cache = FeatureCache(tmp_path, SPEC, views)
    paths = {cache.path(ImageRef(ref.path, ref.sha256, view)) for view in range(3)}
    paths.add(FeatureCache(tmp_path, SPEC, ViewParams(seed=1)).path(ImageRef(ref.path, ref.sha256, 1)))
    assert len(paths) == 4


def test_the_sweeps_cache_key_names_the_keras_and_backend_versions() -> None:
    import keras
    import tensorflow

    assert library_versions("tensorflow") == f"keras-{keras.__version__}+tensorflow-{tensorflow.__version__}"


def test_unreadable_cache_entry_is_recomputed(tmp_path: Path) -> None:
    views = ViewParams()
    ref = _images(tmp_path / "img", 1)[0]
    cache = FeatureCache(tmp_path / "cache", SPEC, views)
    cache.path(ref).parent.mkdir(parents=True)
    cache.path(ref).write_bytes(b"not a npy file")
    _, computed = cached_features([ref], CountingBackbone().predict_on_batch, InputPipeline(16, lambda x: x, views), cache,
                                  progress=False)
    assert computed == 1 and np.load(cache.path(ref)).shape == (3,)


def test_augmented_views_are_seeded_per_image_and_view(tmp_path: Path) -> None:
    ref = _images(tmp_path, 1)[0]
    params = ViewParams()
    original = load_view(ref.path, ref.sha256, 0, 16, params)
    first = load_view(ref.path, ref.sha256, 1, 16, params)
    assert np.array_equal(original, np.asarray(Image.open(ref.path).convert("RGB"), dtype=np.float32))
    assert np.array_equal(first, load_view(ref.path, ref.sha256, 1, 16, params))
    assert not np.array_equal(first, original)
    assert not np.array_equal(first, load_view(ref.path, ref.sha256, 2, 16, params))
    assert not np.array_equal(first, load_view(ref.path, ref.sha256, 1, 16, ViewParams(seed=3)))
    flip_only = ViewParams(flip_probability=1.0, zoom_range=0.0, shear_degrees=0.0)
    image = Image.open(ref.path).convert("RGB")
    flipped = np.asarray(augmented_view(image, ref.sha256, 1, flip_only), dtype=np.float32)
    np.testing.assert_allclose(flipped[:, 1:-1], original[:, ::-1][:, 1:-1], atol=1.0)


@pytest.mark.slow
def test_cached_head_predicts_like_the_same_head_trained_end_to_end(tmp_path: Path) -> None:
    """ResNet50 (random init) at 224 px: one backbone pass per image versus the backbone run on
    every image of every batch of every epoch, same seed."""
    study = write_toy_study(tmp_path / "toy", train=3, valid=2, test=2, pool=0, size=64, duplicates=0)
    common = {"data": study.data, "ratios": (0,), "seeds": 1, "weights": "none", "input_size": 224, "epochs": 3,
              "batch_size": 4, "cache_dir": tmp_path / "cache", "save_models": "none", "progress": False}
    cached = run_sweep(SweepOptions(out=tmp_path / "cached", **common))
    naive = run_sweep(SweepOptions(out=tmp_path / "naive", feature_cache=False, **common))
    assert cached.features_computed == 2 * (3 + 2 + 2) and naive.features_computed == 0
    cells = [json.loads((run.out / "cells" / "ratio-000_seed-00.json").read_text()) for run in (cached, naive)]
    assert [cell["feature_cache"] for cell in cells] == [True, False]
    first, second = (np.array([row["proba"] for row in cell["test_predictions"]]) for cell in cells)
    assert np.array_equal(first.argmax(1), second.argmax(1))
    np.testing.assert_allclose(first, second, atol=1e-4)
    np.testing.assert_allclose(cells[0]["history"]["loss"], cells[1]["history"]["loss"], rtol=1e-4)
    assert cells[0]["epochs_trained"] == cells[1]["epochs_trained"]
