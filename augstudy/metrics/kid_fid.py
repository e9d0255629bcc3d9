"""KID and FID as plain functions over two (N, D) feature arrays.

KID (Binkowski et al. 2018) is the figure to read for small sets: it is an unbiased estimate,
averaged over random subsets no larger than the smaller set. FID (Heusel et al. 2017) fits one
Gaussian per set; with fewer images than feature dimensions the covariances are rank-deficient,
FID is biased upwards by an amount that depends on the counts, and a naive matrix square root of
the (non-symmetric) covariance product can blow up (the original study logged FID 4.7e87 from 155
real images). Here the trace of that square root is taken from the eigenvalues of a symmetric
positive semi-definite matrix with the same spectrum, which stays real and finite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from augstudy.metrics.defaults import KID_MAX_SUBSET_SIZE, KID_NUM_SUBSETS, SEED


@dataclass(frozen=True)
class KidResult:
    """KID mean and standard deviation over `num_subsets` subsets of `subset_size` per set."""

    mean: float
    std: float
    subset_size: int
    num_subsets: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FidResult:
    """FID, and whether both sets have at least as many images as feature dimensions.

    `warning` explains an unreliable value in words; None when `reliable`.
    """

    value: float
    num_real: int
    num_fake: int
    feature_dim: int
    reliable: bool
    warning: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kernel_inception_distance(
    real: np.ndarray,
    fake: np.ndarray,
    num_subsets: int = KID_NUM_SUBSETS,
    max_subset_size: int = KID_MAX_SUBSET_SIZE,
    seed: int = SEED,
) -> KidResult:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / D + 1)^3, over seeded random subsets.

    Each subset draws min(max_subset_size, len(real), len(fake)) rows from each set without
    replacement; the result is the mean and (population) standard deviation over subsets.
    """
    real_features, fake_features = _check_pair(real, fake)
    subset_size = min(max_subset_size, len(real_features), len(fake_features))
    if subset_size < 2:
        raise ValueError(
            f"KID needs at least 2 images per set, got {len(real_features)} real "
            f"and {len(fake_features)} fake"
        )
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1, not {num_subsets}")
    dim = real_features.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for subset in range(num_subsets):
        x = real_features[rng.choice(len(real_features), subset_size, replace=False)]
        y = fake_features[rng.choice(len(fake_features), subset_size, replace=False)]
        k_xx = (x @ x.T / dim + 1.0) ** 3
        k_yy = (y @ y.T / dim + 1.0) ** 3
        k_xy = (x @ y.T / dim + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (
            subset_size * (subset_size - 1)
        )
        values[subset] = within - 2.0 * k_xy.mean()
    return KidResult(float(values.mean()), float(values.std()), subset_size, num_subsets)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) for PSD covariances.

    sigma1 sigma2 has the same eigenvalues as S = sigma1^(1/2) sigma2 sigma1^(1/2), which is
    symmetric PSD, so tr((sigma1 sigma2)^(1/2)) is the sum of the square roots of S's eigenvalues.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"mismatched shapes: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0).clip(min=0.0)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.sqrt(eigenvalues).sum())


def frechet_inception_distance(real: np.ndarray, fake: np.ndarray) -> FidResult:
    """FID between two feature sets, flagged unreliable when either has fewer rows than columns."""
    real_features, fake_features = _check_pair(real, fake)
    if min(len(real_features), len(fake_features)) < 2:
        raise ValueError(
            f"FID needs at least 2 images per set, got {len(real_features)} real "
            f"and {len(fake_features)} fake"
        )
    value = frechet_distance(
        real_features.mean(axis=0),
        np.cov(real_features, rowvar=False),
        fake_features.mean(axis=0),
        np.cov(fake_features, rowvar=False),
    )
    num_real, num_fake, dim = len(real_features), len(fake_features), real_features.shape[1]
    reliable = min(num_real, num_fake) >= dim
    warning = None
    if not reliable:
        warning = (
            f"FID from {num_real} real and {num_fake} synthetic images is biased and unreliable: with fewer "
            f"images than feature dimensions ({dim}) the covariances are rank-deficient and FID depends on "
            "the counts. Read KID instead (the original study logged FID 4.7e87 from 155 real images)."
        )
    return FidResult(value, num_real, num_fake, dim, reliable, warning)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(eigenvalues.clip(min=0.0))) @ eigenvectors.T


def _check_pair(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    real_features = np.asarray(real, dtype=np.float64)
    fake_features = np.asarray(fake, dtype=np.float64)
    if real_features.ndim != 2 or fake_features.ndim != 2:
        raise ValueError(
            f"features must be (N, D) arrays, got {real_features.shape} and {fake_features.shape}"
        )
    if real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {real_features.shape[1]} real vs {fake_features.shape[1]} fake"
        )
    return real_features, fake_features
