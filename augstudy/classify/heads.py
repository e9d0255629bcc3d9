"""Classifier heads on top of backbone features, and how each is trained.

`paper` is the original study's head and schedule (DESIGN.md); `compact` is a small head that
fits ~150 images per class without a 100-million-parameter first layer.

Feature normalisation. Both heads start by standardising each feature with the mean and variance
of the cell's own training features, computed exactly once before training (`FeatureStats`) and
held fixed: a BatchNormalization layer that is frozen (so it always runs in inference mode) with
its moving statistics set to those values, gamma 1 and beta 0. Training, validation, test and
`predict` therefore apply the identical affine map, and it travels inside the saved model. The
original study's BatchNormalization learned batch statistics instead; with a handful of steps per
epoch its moving averages stay far from the data's when an early epoch's weights are restored,
which shifts the decision threshold (perfect ranking, poor accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from augstudy.classify.backend import import_keras

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class HeadSpec:
    """A head's training schedule; `sweep` options may override each value."""

    name: str
    learning_rate: float
    batch_size: int
    max_epochs: int
    patience: int  # early stopping on the monitored validation quantity (best weights restored)
    lr_patience: int  # ReduceLROnPlateau on the same quantity
    lr_factor: float = 0.1


HEADS: dict[str, HeadSpec] = {
    "compact": HeadSpec("compact", learning_rate=1e-3, batch_size=32, max_epochs=30, patience=5, lr_patience=3),
    "paper": HeadSpec("paper", learning_rate=0.005, batch_size=20, max_epochs=5, patience=3, lr_patience=3),
}


def head_spec(name: str) -> HeadSpec:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    return HEADS[name]


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and variance of a cell's training features. A feature that is constant on
    the training set (a dead ReLU unit, say) gets variance 1: it is only centred, so a test image on
    which it happens to be non-zero is not blown up by 1 / sqrt(epsilon)."""

    mean: np.ndarray
    variance: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        features = np.asarray(features, dtype=np.float64)
        variance = features.var(axis=0)
        variance = np.where(variance > CONSTANT_VARIANCE, variance, 1.0)
        return cls(features.mean(axis=0).astype(np.float32), variance.astype(np.float32))


# Added to the variance before the square root; small, so standardisation is (nearly) exact.
STANDARDISE_EPSILON = 1e-6
# At or below this training variance a feature counts as constant.
CONSTANT_VARIANCE = 1e-12


def output_layer(n_classes: int) -> keras.layers.Layer:
    """One sigmoid unit for two classes (as the original study), softmax otherwise."""
    keras = import_keras()
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="probability")
    return keras.layers.Dense(n_classes, activation="softmax", name="probability")


def build_head(name: str, feature_dim: int, n_classes: int, stats: FeatureStats | None = None) -> keras.Model:
    """A head taking a feature vector, standardised with `stats` (identity when None: mean 0,
    variance 1). Call `keras.utils.set_random_seed` first for a seeded init."""
    keras = import_keras()
    layers = keras.layers
    regularizers = keras.regularizers
    features = keras.Input((feature_dim,), name="features")
    standardise = layers.BatchNormalization(epsilon=STANDARDISE_EPSILON, name="standardise")
    x = standardise(features)
    standardise.trainable = False
    if stats is not None:
        standardise.moving_mean.assign(stats.mean)
        standardise.moving_variance.assign(stats.variance)
    if name == "compact":
        x = layers.Dense(256, name="dense")(x)
        x = layers.LeakyReLU(name="leaky_relu")(x)
        x = layers.Dropout(0.5, name="dropout")(x)
    elif name == "paper":
        # Dense(50176, leaky ReLU) with L2 0.016 on the kernel and L1 0.006 on bias and activity;
        # the activity penalty acts on the layer's output after the activation, as Keras does.
        x = layers.Dense(
            50176,
            kernel_regularizer=regularizers.L2(0.016),
            bias_regularizer=regularizers.L1(0.006),
            name="dense_50176",
        )(x)
        x = layers.LeakyReLU(name="leaky_relu_50176")(x)
        x = layers.ActivityRegularization(l1=0.006, name="activity_l1")(x)
        for units in (500, 200, 50):
            x = layers.Dense(units, name=f"dense_{units}")(x)
            x = layers.LeakyReLU(name=f"leaky_relu_{units}")(x)
    else:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    return keras.Model(features, output_layer(n_classes)(x), name=f"{name}_head")


def compile_classifier(model: keras.Model, n_classes: int, learning_rate: float) -> None:
    """Adam and cross-entropy (binary for two classes). Accuracy and the plain cross-entropy are
    logged per epoch: Keras's `loss`/`val_loss` include the regularisation penalties (for the
    paper head they dwarf the cross-entropy), `cross_entropy`/`val_cross_entropy` do not."""
    keras = import_keras()
    if n_classes == 2:
        loss, cross_entropy = "binary_crossentropy", keras.metrics.BinaryCrossentropy(name="cross_entropy")
    else:
        loss = "sparse_categorical_crossentropy"
        cross_entropy = keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy", cross_entropy],
    )
