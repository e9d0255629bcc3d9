"""The heads: `paper` exactly as the original study (DESIGN.md), `compact`, and their outputs."""

from __future__ import annotations

import numpy as np
import pytest

from augstudy.classify.backend import import_keras
from augstudy.classify.heads import HEADS, build_head, compile_classifier


def _dense(model, name):
    return model.get_layer(name)


def test_paper_head_is_the_original_study_head() -> None:
    keras = import_keras()
    model = build_head("paper", feature_dim=8, n_classes=2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "BatchNormalization", "Dense", "LeakyReLU", "ActivityRegularization",
                     "Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense"]
    big = _dense(model, "dense_50176")
    assert big.units == 50176
    assert isinstance(big.kernel_regularizer, keras.regularizers.L2)
    assert float(big.kernel_regularizer.l2) == pytest.approx(0.016)
    assert isinstance(big.bias_regularizer, keras.regularizers.L1)
    assert float(big.bias_regularizer.l1) == pytest.approx(0.006)
    activity = model.get_layer("activity_l1")
    assert float(activity.l1) == pytest.approx(0.006) and float(activity.l2) == 0
    assert [_dense(model, f"dense_{units}").units for units in (500, 200, 50)] == [500, 200, 50]
    output = model.get_layer("probability")
    assert output.units == 1 and output.activation.__name__ == "sigmoid"
    spec = HEADS["paper"]
    assert (spec.learning_rate, spec.batch_size, spec.max_epochs, spec.patience, spec.lr_patience) == (
        0.005, 20, 5, 3, 3)
    compile_classifier(model, 2, spec.learning_rate)
    assert model.loss == "binary_crossentropy"
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)


def test_paper_head_adds_its_activity_penalty_to_the_loss() -> None:
    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = build_head("paper", feature_dim=4, n_classes=2)
    features = np.ones((2, 4), dtype=np.float32)
    model(features, training=False)
    assert len(model.losses) == 3  # kernel L2, bias L1, activity L1


def test_compact_head_and_softmax_for_more_than_two_classes() -> None:
    keras = import_keras()
    model = build_head("compact", feature_dim=16, n_classes=3)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer", "BatchNormalization", "Dense", "LeakyReLU", "Dropout", "Dense"]
    assert model.get_layer("dense").units == 256 and model.get_layer("dropout").rate == 0.5
    output = model.get_layer("probability")
    assert output.units == 3 and output.activation.__name__ == "softmax"
    compile_classifier(model, 3, 1e-3)
    assert model.loss == "sparse_categorical_crossentropy"
    probabilities = np.asarray(model.predict_on_batch(np.random.default_rng(0).normal(size=(4, 16))))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    keras.utils.set_random_seed(5)
    first = build_head("compact", 16, 2).get_weights()
    keras.utils.set_random_seed(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, build_head("compact", 16, 2).get_weights()))
    with pytest.raises(ValueError, match="unknown head"):
        build_head("huge", 16, 2)
