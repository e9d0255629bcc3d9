"""Classifier heads on top of backbone features, and how each is trained.

`paper` is the original study's head and schedule (DESIGN.md); `compact` is a small head that
fits ~150 images per class without a 100-million-parameter first layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    patience: int  # early stopping on validation loss (best weights restored)
    lr_patience: int  # ReduceLROnPlateau on validation loss
    lr_factor: float = 0.1


HEADS: dict[str, HeadSpec] = {
    "compact": HeadSpec("compact", learning_rate=1e-3, batch_size=32, max_epochs=30, patience=5, lr_patience=3),
    "paper": HeadSpec("paper", learning_rate=0.005, batch_size=20, max_epochs=5, patience=3, lr_patience=3),
}


def head_spec(name: str) -> HeadSpec:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")
    return HEADS[name]


def output_layer(n_classes: int) -> keras.layers.Layer:
    """One sigmoid unit for two classes (as the original study), softmax otherwise."""
    keras = import_keras()
    if n_classes == 2:
        return keras.layers.Dense(1, activation="sigmoid", name="probability")
    return keras.layers.Dense(n_classes, activation="softmax", name="probability")


def build_head(name: str, feature_dim: int, n_classes: int) -> keras.Model:
    """A head taking a feature vector. Call `keras.utils.set_random_seed` first for a seeded init."""
    keras = import_keras()
    layers = keras.layers
    regularizers = keras.regularizers
    features = keras.Input((feature_dim,), name="features")
    if name == "compact":
        # Momentum 0.9 rather than Keras's 0.99: with ~150 images a class, training lasts a few
        # dozen steps, too few for 0.99's moving statistics to leave their initial 0 / 1, and
        # inference would then normalise with the wrong mean and variance.
        x = layers.BatchNormalization(momentum=0.9, name="bn")(features)
        x = layers.Dense(256, name="dense")(x)
        x = layers.LeakyReLU(name="leaky_relu")(x)
        x = layers.Dropout(0.5, name="dropout")(x)
    elif name == "paper":
        # Dense(50176, leaky ReLU) with L2 0.016 on the kernel and L1 0.006 on bias and activity;
        # the activity penalty acts on the layer's output after the activation, as Keras does.
        x = layers.BatchNormalization(name="bn")(features)
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
    """Adam and cross-entropy (binary for two classes), with accuracy logged per epoch."""
    keras = import_keras()
    loss = "binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss,
        metrics=["accuracy"],
    )
