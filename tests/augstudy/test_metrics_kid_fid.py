"""KID and FID over feature arrays: unbiasedness, seeding, a stable square root and the small-set warning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from augstudy.metrics.kid_fid import frechet_distance, frechet_inception_distance, kernel_inception_distance


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 16))
    same = rng.normal(size=(200, 16))
    shifted = rng.normal(size=(200, 16)) + 0.5
    kid_same = kernel_inception_distance(real, same, num_subsets=20)
    kid_shifted = kernel_inception_distance(real, shifted, num_subsets=20)
    assert kid_same.subset_size == 200
    assert abs(kid_same.mean) < 3 * kid_same.std + 1e-3
    assert kid_shifted.mean > 20 * abs(kid_same.mean)
    assert kid_shifted.mean > 5 * kid_shifted.std


def test_kid_matches_the_unbiased_mmd_written_out_for_one_full_subset() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.3

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return (a @ b / 5 + 1) ** 3

    m = 7
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    # A subset of the whole set is the set itself (in another order), so every subset gives one value.
    kid = kernel_inception_distance(x, y, num_subsets=3)
    assert kid.mean == pytest.approx(xx + yy - 2 * xy)
    assert kid.std == pytest.approx(0.0, abs=1e-9)


def test_kid_subsets_are_seeded_and_capped_by_the_smaller_set() -> None:
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(50, 8)), rng.normal(size=(30, 8)) + 0.2
    first = kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=4)
    assert first == kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=4)
    assert first != kernel_inception_distance(real, fake, num_subsets=10, max_subset_size=20, seed=5)
    assert kernel_inception_distance(real, fake, num_subsets=2).subset_size == 30
    with pytest.raises(ValueError, match="at least 2 images"):
        kernel_inception_distance(real, fake[:1])
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_inception_distance(real, fake[:, :4])


def test_frechet_distance_has_the_closed_form_for_diagonal_covariances() -> None:
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_agrees_with_scipy_sqrtm_on_well_conditioned_covariances() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    reference = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a.mean(0), s1, b.mean(0), s2) == pytest.approx(reference, rel=1e-6)


def test_fid_stays_finite_and_warns_when_sets_are_smaller_than_the_feature_dimension() -> None:
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(155, 256)), rng.normal(size=(120, 256))
    result = frechet_inception_distance(real, fake)
    assert np.isfinite(result.value) and 0 < result.value < 1e4
    assert not result.reliable
    assert "155 real" in result.warning and "(256)" in result.warning
    real_big = rng.normal(size=(300, 32))
    big = frechet_inception_distance(real_big, rng.normal(size=(300, 32)))
    shifted = frechet_inception_distance(real_big, rng.normal(size=(300, 32)) + 1.0)
    assert big.reliable and big.warning is None
    assert 0 <= big.value < 0.25 * shifted.value
    assert shifted.value == pytest.approx(32 + big.value, rel=0.2)
