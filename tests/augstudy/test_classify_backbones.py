"""The backbone registry, `--weights` and the offline story for ImageNet weights."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from augstudy.classify.backbones import (
    BACKBONES,
    RANDOM_INIT_LABEL,
    WeightsUnavailableError,
    backbone_spec,
    build_backbone,
    fetch_imagenet_weights,
    parse_weights,
)
from augstudy.classify.backend import import_keras


def test_weights_choices_and_their_labels(tmp_path: Path) -> None:
    spec = backbone_spec("resnet50")
    assert parse_weights("none", spec).label == RANDOM_INIT_LABEL == "random-init backbone"
    assert parse_weights("imagenet", spec).cache_id == "imagenet"
    local = tmp_path / "my.weights.h5"
    local.write_bytes(b"some weights")
    choice = parse_weights(str(local), spec)
    assert choice.kind == "file" and choice.cache_id == f"file-{hashlib.sha256(b'some weights').hexdigest()}"
    assert "my.weights.h5" in choice.label
    with pytest.raises(WeightsUnavailableError, match="no such file"):
        parse_weights(str(tmp_path / "missing.h5"), spec)


def test_a_local_copy_of_the_imagenet_file_counts_as_imagenet(tmp_path: Path) -> None:
    content = b"pretend imagenet weights"
    spec = dataclasses.replace(backbone_spec("resnet50"), weights_md5=hashlib.md5(content).hexdigest())
    copy = tmp_path / spec.weights_file
    copy.write_bytes(content)
    choice = parse_weights(str(copy), spec)
    assert choice.kind == "imagenet" and choice.cache_id == "imagenet" and choice.path == copy


def test_imagenet_weights_are_fetched_through_keras_get_file(tmp_path: Path) -> None:
    """The real download code, pointed at a local file:// URL."""
    served = tmp_path / "served.h5"
    served.write_bytes(b"weights bytes")
    spec = dataclasses.replace(
        backbone_spec("resnet50"), weights_url=served.as_uri(), weights_md5=hashlib.md5(b"weights bytes").hexdigest()
    )
    path = fetch_imagenet_weights(spec, cache_dir=tmp_path / "keras")
    assert path == tmp_path / "keras" / "models" / spec.weights_file
    assert path.read_bytes() == b"weights bytes"
    served.unlink()
    assert fetch_imagenet_weights(spec, cache_dir=tmp_path / "keras") == path  # cached: no fetch


def test_offline_imagenet_error_says_how_to_pass_a_local_file(tmp_path: Path) -> None:
    spec = dataclasses.replace(backbone_spec("densenet121"), weights_url=(tmp_path / "absent.h5").as_uri())
    with pytest.raises(WeightsUnavailableError) as error:
        fetch_imagenet_weights(spec, cache_dir=tmp_path / "keras")
    message = str(error.value)
    assert spec.weights_url in message and "--weights PATH" in message
    assert str(tmp_path / "keras" / "models" / spec.weights_file) in message


def test_weights_file_is_loaded_into_the_backbone(tmp_path: Path) -> None:
    keras = import_keras()
    spec = backbone_spec("vgg19")
    keras.utils.set_random_seed(123)
    donor = keras.applications.VGG19(include_top=False, weights=None, pooling="avg", input_shape=(32, 32, 3))
    path = tmp_path / "donor.weights.h5"
    donor.save_weights(path)
    images = np.random.default_rng(0).uniform(-50, 50, (2, 32, 32, 3)).astype(np.float32)
    loaded = build_backbone(spec, parse_weights(str(path), spec), 32)
    random_init = build_backbone(spec, parse_weights("none", spec), 32)
    np.testing.assert_allclose(loaded.predict_on_batch(images), donor.predict_on_batch(images), rtol=1e-5)
    assert not np.allclose(random_init.predict_on_batch(images), donor.predict_on_batch(images))
    again = build_backbone(spec, parse_weights("none", spec), 32)
    np.testing.assert_array_equal(again.predict_on_batch(images), random_init.predict_on_batch(images))


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, spec in BACKBONES.items() if spec.framework == "keras"])
def test_every_backbone_builds_frozen_and_finetunes_only_its_last_block(name: str) -> None:
    keras = import_keras()
    spec = backbone_spec(name)
    none = parse_weights("none", spec)
    frozen = build_backbone(spec, none, 32)
    assert frozen.output_shape[-1] > 0 and not frozen.trainable_weights
    tuned = build_backbone(spec, none, 32, finetune=True)
    trainable = [layer for layer in tuned.layers if layer.trainable_weights]
    assert trainable, f"{name}: --finetune unfroze nothing"
    for layer in trainable:
        assert layer.name.startswith(spec.last_block_prefixes), layer.name
        assert not isinstance(layer, keras.layers.BatchNormalization)
    assert len(tuned.trainable_weights) < len(tuned.weights) / 3
    assert callable(spec.preprocess())
