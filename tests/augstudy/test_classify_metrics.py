"""Per-cell test metrics and the degenerate flag."""

from __future__ import annotations

import numpy as np
import pytest

from augstudy.classify.metrics import (
    classification_metrics,
    confusion_matrix,
    degenerate_reason,
    positive_class,
    roc_auc,
)


def test_binary_metrics_on_a_hand_counted_example() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p_one = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7])
    proba = np.stack([1 - p_one, p_one], axis=1)
    metrics = classification_metrics(y_true, proba, positive=1)
    # predictions: 0 0 1 0 | 1 1 0 1 -> TP 3, FN 1, TN 3, FP 1
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["sensitivity"] == pytest.approx(3 / 4)
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    # AUC: of the 16 (positive, negative) pairs only (0.4 vs 0.6) is ranked wrong
    assert metrics["roc_auc"] == pytest.approx(15 / 16)
    expected_loss = -np.mean(np.log(np.where(y_true == 1, p_one, 1 - p_one)))
    assert metrics["test_loss"] == pytest.approx(expected_loss)
    swapped = classification_metrics(y_true, proba, positive=0)
    assert swapped["roc_auc"] == pytest.approx(15 / 16)


def test_balanced_accuracy_differs_from_accuracy_on_imbalanced_test() -> None:
    y_true = np.array([0] * 8 + [1] * 2)
    proba = np.tile([0.9, 0.1], (10, 1))
    metrics = classification_metrics(y_true, proba, positive=1)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)
    assert metrics["sensitivity"] == 0.0 and metrics["specificity"] == 1.0


def test_multiclass_metrics_are_macro_averages() -> None:
    y_true = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    metrics = classification_metrics(y_true, proba, positive=1, class_names=("adeno", "normal", "squamous"))
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["sensitivity"] == pytest.approx(metrics["balanced_accuracy"])
    assert (metrics["sensitivity_adeno"], metrics["sensitivity_normal"], metrics["sensitivity_squamous"]) == (
        1.0, 1.0, 0.5)
    # class 0 is predicted for one squamous image: specificity of adeno 2/3, the others 1
    assert metrics["specificity"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert confusion_matrix(y_true, proba.argmax(1), 3).tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_roc_auc_counts_ties_half_and_needs_both_classes() -> None:
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


def test_degenerate_reasons() -> None:
    assert degenerate_reason(np.array([1, 1, 1]), 0.8, 0.5, 2) == "predicts a single class"
    assert degenerate_reason(np.array([0, 1, 1]), 1.0, 0.52, 2) == "fits train perfectly, test at chance"
    assert degenerate_reason(np.array([0, 1, 1]), 1.0, 0.9, 2) == ""
    assert degenerate_reason(np.array([0, 1, 1]), 0.9, 0.5, 2) == ""


def test_positive_class_is_the_disease_when_a_class_is_called_normal() -> None:
    assert positive_class(("adenocarcinoma", "normal")) == "adenocarcinoma"  # the first sorted
    assert positive_class(("normal", "squamous")) == "squamous"
    assert positive_class(("benign", "malignant")) == "malignant"  # no "normal": the second sorted
    assert positive_class(("adenocarcinoma", "normal"), requested="normal") == "normal"
    assert positive_class(("adeno", "normal", "squamous")) == "normal"  # more classes: second sorted
