"""Per-cell test metrics and the `degenerate` flag.

For two classes, sensitivity/specificity/F1/ROC AUC are those of the positive class (by default
the second class in sorted order). For more classes they are macro averages over one-vs-rest.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "f1", "test_loss")

# "At chance": balanced accuracy no more than this above 1 / n_classes.
CHANCE_MARGIN = 0.05
# Probabilities are clipped like Keras's cross-entropy, so test_loss matches the training loss.
EPSILON = 1e-7


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half); NaN when the
    labels hold one class only."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def _one_vs_rest(matrix: np.ndarray, index: int) -> tuple[float, float, float]:
    """(recall, specificity, F1) of class `index` against the rest."""
    true_pos = matrix[index, index]
    false_neg = matrix[index].sum() - true_pos
    false_pos = matrix[:, index].sum() - true_pos
    true_neg = matrix.sum() - true_pos - false_neg - false_pos
    recall = _safe_ratio(true_pos, true_pos + false_neg)
    specificity = _safe_ratio(true_neg, true_neg + false_pos)
    f1 = _safe_ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg)
    return recall, specificity, f1


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, positive: int) -> dict[str, float]:
    """Every metric of `METRICS` for labels `y_true` and class probabilities `proba` (n, k)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n_classes = proba.shape[1]
    y_pred = proba.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    per_class = [_one_vs_rest(matrix, index) for index in range(n_classes)]
    recalls = np.array([recall for recall, _, _ in per_class])
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], EPSILON, 1 - EPSILON)
    metrics = {
        "accuracy": float(np.mean(y_pred == y_true)),
        "balanced_accuracy": float(np.nanmean(recalls)),
        "test_loss": float(-np.mean(np.log(p_true))),
    }
    if n_classes == 2:
        recall, specificity, f1 = per_class[positive]
        metrics |= {
            "sensitivity": recall, "specificity": specificity, "f1": f1,
            "roc_auc": roc_auc(y_true == positive, proba[:, positive]),
        }
    else:
        metrics |= {
            "sensitivity": float(np.nanmean(recalls)),
            "specificity": float(np.nanmean([spec for _, spec, _ in per_class])),
            "f1": float(np.nanmean([f1 for _, _, f1 in per_class])),
            "roc_auc": float(np.nanmean([roc_auc(y_true == k, proba[:, k]) for k in range(n_classes)])),
        }
    return {name: metrics[name] for name in METRICS}


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
