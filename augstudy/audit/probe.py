"""Cross-validated ROC AUC of simple classifiers, with folds that never split a duplicate group.

Copies of one image (prepare's duplicate groups) must sit in the same fold, or a classifier is
scored on images it trained on and every cue looks stronger than it is. Predictions are made out
of fold and pooled into one AUC per feature group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

MAX_FOLDS = 5
# Low-dimensional groups also get a shallow tree, which catches thresholds a linear model misses
# (e.g. "mid-sized images are normal"); high-dimensional ones only the linear model.
TREE_MAX_FEATURES = 32
TREE_DEPTH = 3


class ProbeError(ValueError):
    """Too few images (or groups) per class to cross-validate."""


@dataclass(frozen=True)
class ProbeResult:
    """Out-of-fold ROC AUC of the best simple classifier, and of each one tried.

    Attributes:
        auc: the highest of `aucs` (one-vs-rest macro average for more than two classes).
        classifier: which classifier reached it.
        aucs: classifier -> AUC.
        p_value: two-sided Mann-Whitney test of the best classifier's out-of-fold scores
            (two classes only; None otherwise): how surprising the AUC is if the features carry
            nothing about the label.
        folds: the number of grouped folds used.
    """

    auc: float
    classifier: str
    aucs: dict[str, float]
    p_value: float | None
    folds: int


def grouped_folds(labels: np.ndarray, groups: np.ndarray, seed: int) -> StratifiedGroupKFold:
    """Stratified folds over duplicate groups: as many as the rarest class has groups, at most 5."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ProbeError("the audit needs images of at least two classes")
    per_class = min(len(np.unique(groups[labels == value])) for value in classes)
    if per_class < 2:
        raise ProbeError(f"a class has {per_class} distinct image(s) (after grouping copies); "
                         "cross-validation needs at least 2 per class")
    return StratifiedGroupKFold(n_splits=min(MAX_FOLDS, per_class), shuffle=True, random_state=seed)


def cross_validated_auc(features: np.ndarray, labels: Sequence[int], groups: Sequence[str] | None = None,
                        seed: int = 0) -> ProbeResult:
    """How well `features` predict `labels` out of fold (ROC AUC; 0.5 = not at all, 1.0 = perfectly).

    Args:
        features: (n, d) array; columns are standardised inside each training fold.
        labels: class index per row.
        groups: duplicate-group id per row (rows sharing one never straddle folds); None = all distinct.
        seed: fold assignment and the tree's tie-breaking.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    g = np.asarray(groups if groups is not None else [str(index) for index in range(len(y))])
    if x.ndim != 2 or len(x) != len(y) or len(g) != len(y):
        raise ValueError(f"features {x.shape}, {len(y)} labels and {len(g)} groups do not match")
    folds = grouped_folds(y, g, seed)
    models = {"logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))}
    if x.shape[1] <= TREE_MAX_FEATURES:
        models[f"decision tree (depth {TREE_DEPTH})"] = DecisionTreeClassifier(max_depth=TREE_DEPTH,
                                                                               random_state=seed)
    scores: dict[str, np.ndarray] = {}
    aucs: dict[str, float] = {}
    binary = len(np.unique(y)) == 2
    for name, model in models.items():
        probabilities = cross_val_predict(model, x, y, cv=folds, groups=g, method="predict_proba")
        scores[name] = probabilities[:, 1] if binary else probabilities
        aucs[name] = float(roc_auc_score(y, scores[name]) if binary
                           else roc_auc_score(y, probabilities, multi_class="ovr"))
    best = max(aucs, key=aucs.__getitem__)
    p_value = None
    if binary:
        positive, negative = scores[best][y == np.unique(y)[1]], scores[best][y == np.unique(y)[0]]
        p_value = float(mannwhitneyu(positive, negative, alternative="two-sided").pvalue)
    return ProbeResult(aucs[best], best, aucs, p_value, folds.get_n_splits())


def real_vs_synthetic_auc(real: np.ndarray, synthetic: np.ndarray, real_groups: Sequence[str] | None = None,
                          seed: int = 0) -> ProbeResult:
    """A linear probe telling real (0) from synthetic (1) feature vectors, cross-validated.

    Near 0.5: the classifier's features cannot tell them apart; near 1.0: "synthetic" is itself a
    learnable cue, and a classifier trained on a mix may learn it instead of the pathology.
    """
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    groups = [f"real-{name}" for name in (real_groups if real_groups is not None else range(len(real)))]
    groups += [f"synthetic-{index}" for index in range(len(synthetic))]
    labels = np.r_[np.zeros(len(real), dtype=int), np.ones(len(synthetic), dtype=int)]
    features = np.concatenate([real, synthetic])
    folds = grouped_folds(labels, np.asarray(groups), seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_predict(model, features, labels, cv=folds, groups=np.asarray(groups),
                               method="predict_proba")[:, 1]
    auc = float(roc_auc_score(labels, scores))
    p_value = float(mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="two-sided").pvalue)
    return ProbeResult(auc, "logistic regression", {"logistic regression": auc}, p_value, folds.get_n_splits())
