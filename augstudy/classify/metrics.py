"""Per-cell test metrics (scikit-learn), the positive-class rule and the `degenerate` flag.

For two classes, sensitivity/specificity/F1/ROC AUC are those of the positive class (see
`positive_class`). For more classes they are macro averages over one-vs-rest, and each class's
own sensitivity is reported as `sensitivity_<class>`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "f1", "test_loss")
# Metrics bounded to [0, 1]; test_loss is not.
BOUNDED = frozenset(METRICS) - {"test_loss"}
# Higher is better for every metric but the loss.
LOWER_IS_BETTER = frozenset({"test_loss"})

# "At chance": balanced accuracy no more than this above 1 / n_classes.
CHANCE_MARGIN = 0.05
# Probabilities are clipped like Keras's cross-entropy, so test_loss matches the training loss.
EPSILON = 1e-7
# The class that is the negative one when present: the other class of a pair is the positive.
NEGATIVE_CLASS_NAME = "normal"


def positive_class(class_names: Sequence[str], requested: str | None = None) -> str:
    """The class whose sensitivity, F1 and ROC AUC are reported for two classes: `requested` when
    given; else, with a class named `normal`, the other class of a pair (a disease is what one
    detects); else the second class in sorted order."""
    if requested is not None:
        return requested
    names = list(class_names)
    if len(names) == 2 and NEGATIVE_CLASS_NAME in names:
        return names[1 - names.index(NEGATIVE_CLASS_NAME)]
    return names[1]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    from sklearn import metrics as skm  # lazily: `augstudy sweep --help` must not load it
    return skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when the labels hold one class only."""
    from sklearn import metrics as skm  # lazily: `augstudy sweep --help` must not load it
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return float("nan")
    return float(skm.roc_auc_score(is_positive, score))


def _specificity(y_true: np.ndarray, y_pred: np.ndarray, index: int) -> float:
    negative = y_true != index
    return float(np.mean(y_pred[negative] != index)) if negative.any() else float("nan")


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, positive: int, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Every metric of `METRICS` for labels `y_true` and class probabilities `proba` (n, k); for
    more than two classes also `sensitivity_<class>` per class (when `class_names` is given)."""
    from sklearn import metrics as skm  # lazily: `augstudy sweep --help` must not load it
    y_true = np.asarray(y_true, dtype=np.int64)
    n_classes = proba.shape[1]
    labels = list(range(n_classes))
    y_pred = proba.argmax(axis=1)
    recalls = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    present = np.isin(labels, y_true)
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], EPSILON, 1 - EPSILON)
    metrics = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # sklearn's balanced_accuracy_score is the mean recall over the classes present in y_true.
        "balanced_accuracy": float(np.mean(recalls[present])),
        "test_loss": float(-np.mean(np.log(p_true))),
    }
    if n_classes == 2:
        metrics |= {
            "sensitivity": float(recalls[positive]),
            "specificity": _specificity(y_true, y_pred, positive),
            "f1": float(skm.f1_score(y_true, y_pred, pos_label=positive, zero_division=0.0)),
            "roc_auc": roc_auc(y_true == positive, proba[:, positive]),
        }
    else:
        metrics |= {
            "sensitivity": float(np.mean(recalls[present])),
            "specificity": float(np.nanmean([_specificity(y_true, y_pred, k) for k in labels])),
            "f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0.0)),
            "roc_auc": float(np.nanmean([roc_auc(y_true == k, proba[:, k]) for k in labels])),
        }
    result = {name: metrics[name] for name in METRICS}
    if n_classes > 2 and class_names is not None:
        result |= {f"sensitivity_{name}": float(recall) for name, recall in zip(class_names, recalls)}
    return result


def degenerate_reason(
    test_predictions: np.ndarray, train_accuracy: float, test_balanced_accuracy: float, n_classes: int
) -> str:
    """Why a run looks degenerate ("" when it does not): it predicts one class for every test
    image, or it fits the training set perfectly while the test set is at chance. Such runs are
    kept and flagged, never dropped."""
    if len(np.unique(test_predictions)) <= 1:
        return "predicts a single class"
    if train_accuracy >= 1.0 and test_balanced_accuracy <= 1.0 / n_classes + CHANCE_MARGIN:
        return "fits train perfectly, test at chance"
    return ""
