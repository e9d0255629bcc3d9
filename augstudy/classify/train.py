"""Training a classifier with a seeded batch order, the same whether its inputs are cached
features or images run through the backbone every step (the naive and `--finetune` paths).

The batch order of each epoch comes from `numpy.random.default_rng([seed, epoch])`, and Keras's
own RNGs from `keras.utils.set_random_seed(seed)` called just before the head is built, so the
two paths see identical batches and initial weights and the same seed gives the same model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from augstudy.classify.backend import import_keras
from augstudy.classify.features import ImageRef, InputPipeline

if TYPE_CHECKING:
    import keras


class BatchSource(Protocol):
    """Rows of model input, fetched by index."""

    def __len__(self) -> int: ...

    def rows(self, indices: np.ndarray) -> np.ndarray: ...


class ArraySource:
    """Inputs already in memory (cached features)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return self.array[indices]


class ImageSource:
    """Images loaded and preprocessed from disk for every batch, as Keras generators do."""

    def __init__(self, refs: Sequence[ImageRef], pipeline: InputPipeline) -> None:
        self.refs = list(refs)
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.refs)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return self.pipeline.batch([self.refs[i] for i in indices])


SCHEDULES = {
    "plateau": "early stopping and learning-rate reduction on the monitored validation quantity, "
               "best epoch's weights restored",
    "fixed": "exactly --epochs epochs at a constant learning rate, final weights kept",
}
# Monitored validation quantity -> (Keras log key, "min" or "max").
MONITORS = {
    "cross_entropy": ("val_cross_entropy", "min"),
    "balanced_accuracy": ("val_balanced_accuracy", "max"),
    "roc_auc": ("val_roc_auc", "max"),
}


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    batch_size: int
    max_epochs: int
    patience: int
    lr_patience: int
    lr_factor: float
    seed: int
    schedule: str = "plateau"
    monitor: str = "cross_entropy"
    class_weight: dict[int, float] | None = None


@dataclass
class TrainResult:
    history: dict[str, list[float]]  # per epoch: loss, cross_entropy, accuracy, their val_*, monitor, lr
    epochs_trained: int
    best_epoch: int  # 1-based epoch whose weights were kept
    monitor: str  # the history key the schedule followed ("" for the fixed schedule)


def balanced_class_weight(labels: Sequence[int], n_classes: int) -> dict[int, float]:
    """n / (k x n_c) per class c, scikit-learn's "balanced" rule: each class weighs the same in total."""
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(n_classes)
    weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels, dtype=np.int64))
    return {int(k): float(w) for k, w in zip(classes, weights)}


@functools.cache
def _dataset_classes() -> tuple[type, type, type]:
    """The PyDataset and callback classes, defined once Keras (and its backend) is loaded."""
    keras = import_keras()

    class SeededBatches(keras.utils.PyDataset):
        """Batches in a fresh seeded order each epoch (or in file order when not shuffled)."""

        def __init__(self, source: BatchSource, labels: np.ndarray, batch_size: int, seed: int, shuffle: bool):
            super().__init__()
            self.source, self.labels = source, labels
            self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
            self.epoch = 0

        def __len__(self) -> int:
            return math.ceil(len(self.source) / self.batch_size)

        def order(self) -> np.ndarray:
            if not self.shuffle:
                return np.arange(len(self.source))
            return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.source))

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            rows = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
            return self.source.rows(rows), self.labels[rows]

    class EpochSetter(keras.callbacks.Callback):
        """Tells the dataset which epoch starts, before Keras fetches its first batch."""

        def __init__(self, dataset: SeededBatches):
            super().__init__()
            self.dataset = dataset

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.dataset.epoch = epoch

    class ValidationScore(keras.callbacks.Callback):
        """Adds `val_balanced_accuracy` and `val_roc_auc` (scikit-learn) to the epoch's logs, before
        the callbacks after it in the list read them."""

        def __init__(self, source: BatchSource, labels: np.ndarray, n_classes: int):
            super().__init__()
            self.source, self.labels, self.n_classes = source, np.asarray(labels).reshape(-1).astype(np.int64), n_classes

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            from augstudy.classify.metrics import classification_metrics

            proba = predict_proba(self.model, self.source, self.n_classes)
            scores = classification_metrics(self.labels, proba, positive=1 if self.n_classes == 2 else 0)
            if logs is not None:
                logs["val_balanced_accuracy"] = scores["balanced_accuracy"]
                logs["val_roc_auc"] = scores["roc_auc"]

    return SeededBatches, EpochSetter, ValidationScore


def label_array(labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Targets in the shape the loss and the cross-entropy metric expect: a float 0/1 column for
    sigmoid, int for softmax."""
    if n_classes == 2:
        return np.asarray(labels, dtype=np.float32).reshape(-1, 1)
    return np.asarray(labels, dtype=np.int64)


def fit(
    model: keras.Model,
    train: BatchSource,
    train_labels: np.ndarray,
    valid: BatchSource,
    valid_labels: np.ndarray,
    settings: TrainSettings,
) -> TrainResult:
    """Fit a compiled `model` (see `compile_classifier`) under `settings.schedule`.

    `plateau`: early stopping and ReduceLROnPlateau follow `settings.monitor` on the validation
    set -- by default the plain cross-entropy, not Keras's `val_loss`, which adds the heads'
    regularisation penalties -- and the best epoch's weights are restored. `fixed`: exactly
    `max_epochs` epochs, no callback changes anything, the last epoch's weights are kept."""
    keras = import_keras()
    if settings.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {settings.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if settings.monitor not in MONITORS:
        raise ValueError(f"unknown monitor {settings.monitor!r}; choose one of {', '.join(MONITORS)}")
    if settings.max_epochs < 1:
        raise ValueError(f"max_epochs {settings.max_epochs}: train at least 1 epoch")
    seeded_batches, epoch_setter, validation_score = _dataset_classes()
    train_batches = seeded_batches(train, train_labels, settings.batch_size, settings.seed, shuffle=True)
    valid_batches = seeded_batches(valid, valid_labels, settings.batch_size, settings.seed, shuffle=False)
    callbacks: list[Any] = [epoch_setter(train_batches)]
    key, mode = MONITORS[settings.monitor]
    if key not in ("val_cross_entropy",):
        callbacks.append(validation_score(valid, valid_labels, max(2, int(model.output_shape[-1]))))
    stopper = None
    if settings.schedule == "plateau":
        stopper = keras.callbacks.EarlyStopping(monitor=key, mode=mode, patience=settings.patience,
                                                restore_best_weights=True)
        callbacks += [stopper, keras.callbacks.ReduceLROnPlateau(
            monitor=key, mode=mode, patience=settings.lr_patience, factor=settings.lr_factor)]
    history = model.fit(
        train_batches, validation_data=valid_batches, epochs=settings.max_epochs,
        callbacks=callbacks, shuffle=False, verbose=0, class_weight=settings.class_weight,
    ).history
    curves = {key: [float(value) for value in values] for key, values in history.items()}
    epochs = len(curves["loss"])
    if stopper is None:
        return TrainResult(curves, epochs, epochs, "")
    return TrainResult(curves, epochs, stopper.best_epoch + 1, key)


def predict_proba(model: keras.Model, source: BatchSource, n_classes: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities, shape (n, n_classes), in source order (a sigmoid p becomes [1-p, p])."""
    chunks = []
    for start in range(0, len(source), batch_size):
        rows = np.arange(start, min(start + batch_size, len(source)))
        chunks.append(np.asarray(model.predict_on_batch(source.rows(rows)), dtype=np.float64))
    proba = np.concatenate(chunks) if chunks else np.zeros((0, 1 if n_classes == 2 else n_classes))
    if n_classes == 2:
        proba = proba.reshape(-1, 1)
        return np.hstack([1.0 - proba, proba])
    return proba


def reset_model(model: keras.Model, head: keras.Model, fresh_head: keras.Model, learning_rate: float) -> None:
    """Put a compiled `model` (whose trainable part is `head`) back into the state a freshly built
    and compiled one would have: `fresh_head`'s initial weights, BatchNorm statistics and dropout
    RNG state, and a zeroed optimizer at `learning_rate`. A sweep then traces its training
    functions once instead of once per cell, which costs seconds per cell on a CPU."""
    for target, source in zip(head.variables, fresh_head.variables, strict=True):
        target.assign(source.value)
    for variable in model.optimizer.variables:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    model.optimizer.learning_rate.assign(learning_rate)


def end_to_end_model(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """The backbone (in inference mode, so its BatchNorm keeps its statistics) followed by the head."""
    keras = import_keras()
    images = keras.Input(backbone.input_shape[1:], name="images")
    return keras.Model(images, head(backbone(images, training=False)), name="end_to_end")
