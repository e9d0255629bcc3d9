"""Head training on feature arrays: it learns a learnable set and not permuted labels, the
schedules do what they say, the monitor is the plain validation cross-entropy (or the chosen
metric), the standardisation is exact and fixed, and balanced class weights."""

from __future__ import annotations

import numpy as np
import pytest

from augstudy.classify.backend import import_keras
from augstudy.classify.heads import STANDARDISE_EPSILON, FeatureStats, build_head, compile_classifier
from augstudy.classify.metrics import classification_metrics
from augstudy.classify.train import (
    ArraySource,
    TrainSettings,
    balanced_class_weight,
    fit,
    label_array,
    predict_proba,
)


def toy_features(seed: int, per_class: int, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of Gaussian features, offset and scaled like backbone features (large mean,
    small spread), apart by 2 standard deviations along 4 of the dimensions (Bayes balanced accuracy 0.98)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], per_class)
    features = rng.normal(0, 1, (2 * per_class, dim))
    features[:, :4] += 2.0 * labels[:, None]
    return (features * 0.05 + 3.0).astype(np.float32), labels


def train(features, labels, valid, valid_labels, seed=0, head="compact", **overrides):
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = build_head(head, features.shape[1], 2, FeatureStats.of(features))
    compile_classifier(model, 2, 1e-3)
    settings = TrainSettings(**{"learning_rate": 1e-3, "batch_size": 16, "max_epochs": 30, "patience": 5,
                                "lr_patience": 3, "lr_factor": 0.1, "seed": seed, **overrides})
    result = fit(model, ArraySource(features), label_array(labels, 2), ArraySource(valid),
                 label_array(valid_labels, 2), settings)
    return model, result


def test_the_classifier_learns_a_learnable_set_and_not_permuted_labels() -> None:
    train_x, train_y = toy_features(0, 60)
    valid_x, valid_y = toy_features(1, 20)
    test_x, test_y = toy_features(2, 200)
    model, _ = train(train_x, train_y, valid_x, valid_y, max_epochs=10)
    learned = classification_metrics(test_y, predict_proba(model, ArraySource(test_x), 2), 1)
    assert learned["balanced_accuracy"] >= 0.9
    permuted = np.random.default_rng(5).permutation(train_y)
    model, _ = train(train_x, permuted, valid_x, np.random.default_rng(6).permutation(valid_y), max_epochs=10)
    chance = classification_metrics(test_y, predict_proba(model, ArraySource(test_x), 2), 1)
    assert abs(chance["balanced_accuracy"] - 0.5) <= 0.1


def test_fixed_schedule_trains_exactly_the_epochs_and_keeps_the_last_weights() -> None:
    train_x, train_y = toy_features(0, 20)
    valid_x, valid_y = toy_features(1, 10)
    # permuted validation labels: the validation loss rises, which would stop a plateau schedule early
    valid_y = valid_y[::-1].copy()
    model, fixed = train(train_x, train_y, valid_x, valid_y, schedule="fixed", max_epochs=12, patience=1)
    assert fixed.epochs_trained == 12 and fixed.best_epoch == 12 and fixed.monitor == ""
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)  # no plateau reduction
    _, plateau = train(train_x, train_y, valid_x, valid_y, max_epochs=12, patience=1)
    assert plateau.epochs_trained < 12


def test_plateau_follows_the_plain_validation_cross_entropy_not_the_penalised_loss() -> None:
    train_x, train_y = toy_features(0, 10, dim=8)
    valid_x, valid_y = toy_features(1, 5, dim=8)
    _, result = train(train_x, train_y, valid_x, valid_y, head="paper", max_epochs=4, patience=2, batch_size=20)
    history = result.history
    assert result.monitor == "val_cross_entropy"
    # the paper head's penalties dwarf the cross-entropy in Keras's val_loss
    penalties = np.array(history["val_loss"]) - np.array(history["val_cross_entropy"])
    assert (penalties > 1.0).all()
    assert result.best_epoch == int(np.argmin(history["val_cross_entropy"])) + 1


def test_a_metric_can_be_monitored_instead() -> None:
    train_x, train_y = toy_features(0, 20)
    valid_x, valid_y = toy_features(1, 10)
    _, result = train(train_x, train_y, valid_x, valid_y, monitor="balanced_accuracy", max_epochs=8)
    assert result.monitor == "val_balanced_accuracy" and len(result.history["val_balanced_accuracy"]) == 8
    assert result.best_epoch == int(np.argmax(result.history["val_balanced_accuracy"])) + 1


def test_standardisation_is_exact_fixed_and_the_same_in_training_and_inference() -> None:
    keras = import_keras()
    features, labels = toy_features(0, 20)
    stats = FeatureStats.of(features)
    model, _ = train(features, labels, *toy_features(1, 10), max_epochs=3)
    layer = model.get_layer("standardise")
    expected = (features - features.mean(0)) / np.sqrt(features.var(0) + STANDARDISE_EPSILON)
    for training in (True, False):
        np.testing.assert_allclose(np.asarray(layer(features, training=training)), expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), stats.mean, rtol=1e-6)  # training did not move it
    assert not layer.trainable and keras.ops.all(layer.gamma == 1)


def test_balanced_class_weight_equalises_the_classes() -> None:
    weights = balanced_class_weight([0] * 30 + [1] * 10, 2)
    assert weights == pytest.approx({0: 40 / (2 * 30), 1: 40 / (2 * 10)})
    assert 30 * weights[0] == pytest.approx(10 * weights[1])


def test_balanced_class_weight_lifts_the_minority_class() -> None:
    """90 vs 10 train images with a weak signal: unweighted training mostly predicts the large
    class; balanced weights recover much of the small class's sensitivity."""
    rng = np.random.default_rng(0)

    def draw(per_class: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat([0, 1], per_class)
        features = rng.normal(0, 1, (len(labels), 16))
        features[:, :4] += 0.8 * labels[:, None]
        return features.astype(np.float32), labels

    train_x, train_y = draw((90, 10))
    valid_x, valid_y = draw((45, 5))
    test_x, test_y = draw((200, 200))
    sensitivity = {}
    for name, weights in (("none", None), ("balanced", balanced_class_weight(train_y, 2))):
        model, _ = train(train_x, train_y, valid_x, valid_y, schedule="fixed", max_epochs=15, class_weight=weights)
        sensitivity[name] = classification_metrics(test_y, predict_proba(model, ArraySource(test_x), 2), 1)["sensitivity"]
    assert sensitivity["balanced"] > sensitivity["none"] + 0.2


def test_a_feature_constant_on_the_training_set_is_centred_not_amplified() -> None:
    features = np.array([[1.0, 0.0], [5.0, 0.0]], dtype=np.float32)
    stats = FeatureStats.of(features)
    assert stats.mean.tolist() == [3.0, 0.0] and stats.variance.tolist() == [4.0, 1.0]
    model = build_head("compact", 2, 2, stats)
    out = np.asarray(model.get_layer("standardise")(np.array([[5.0, 0.5]], dtype=np.float32)))
    np.testing.assert_allclose(out, [[1.0, 0.5]], atol=1e-5)
