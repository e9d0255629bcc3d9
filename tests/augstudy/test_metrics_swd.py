"""Multi-scale sliced Wasserstein distance: separates distributions, is seeded, handles 1/3 channels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import torch

from augstudy.metrics.swd import (
    _pyr_down,
    _pyr_up,
    _sliced_distance,
    laplacian_pyramid,
    pyramid_resolutions,
    sliced_wasserstein_distance,
)


def blob_images(seed: int, count: int, size: int, channels: int = 1, widths=(0.08, 0.2)) -> np.ndarray:
    """(N, C, H, W) uint8: a few soft Gaussian blobs on black with mild noise; `widths` sets their size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.zeros((count, channels, size, size))
    for index in range(count):
        for _ in range(4):
            cy, cx = rng.uniform(0.15, 0.85, 2)
            width = rng.uniform(*widths)
            amplitude = rng.uniform(0.4, 1.0, channels)[:, None, None]
            images[index] += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    noisy = images * 180 + rng.normal(0, 4, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_same_distribution_is_far_closer_than_noise_or_a_shifted_distribution(channels: int) -> None:
    sample = blob_images(1, 48, 32, channels)
    another_sample = blob_images(2, 48, 32, channels)
    noise = np.random.default_rng(3).integers(0, 256, sample.shape, dtype=np.uint8)
    shifted = blob_images(4, 48, 32, channels, widths=(0.02, 0.05))

    same = sliced_wasserstein_distance(sample, another_sample, seed=0)
    to_noise = sliced_wasserstein_distance(sample, noise, seed=0)
    to_shifted = sliced_wasserstein_distance(sample, shifted, seed=0)

    assert list(same.per_level) == [32, 16]
    assert same.channels == channels
    assert to_noise.mean > 5 * same.mean
    assert to_shifted.mean > 3 * same.mean
    for level in same.per_level:
        assert to_noise.per_level[level] > same.per_level[level]


def test_same_seed_gives_the_same_number_and_another_seed_a_close_one() -> None:
    a, b = blob_images(5, 24, 32), blob_images(6, 30, 32)
    first = sliced_wasserstein_distance(a, b, seed=11)
    second = sliced_wasserstein_distance(a, b, seed=11)
    other = sliced_wasserstein_distance(a, b, seed=12)
    assert first == second
    assert other.mean != first.mean
    assert abs(other.mean - first.mean) < 0.5 * first.mean


def test_any_resolution_from_16_px_and_an_error_below() -> None:
    assert pyramid_resolutions(256) == [256, 128, 64, 32, 16]
    assert pyramid_resolutions(224) == [224, 112, 56, 28]
    assert pyramid_resolutions(16) == [16]
    a, b = blob_images(7, 8, 20), blob_images(8, 8, 20)
    assert list(sliced_wasserstein_distance(a, b).per_level) == [20]
    with pytest.raises(ValueError, match="at least 16 px"):
        sliced_wasserstein_distance(a[:, :, :15, :15], b[:, :, :15, :15])
    with pytest.raises(ValueError, match="shapes differ"):
        sliced_wasserstein_distance(a, b[:, :, :18, :18])


def test_laplacian_levels_rebuild_the_image() -> None:
    images = torch.from_numpy(blob_images(9, 2, 37, 3)).float()
    levels = laplacian_pyramid(images, 3)
    assert [tuple(level.shape[-2:]) for level in levels] == [(37, 37), (19, 19), (10, 10)]
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + _pyr_up(rebuilt, band.shape[-2:])
    torch.testing.assert_close(rebuilt, images, rtol=0, atol=1e-3)


def test_pyramid_filters_match_the_reference_mirror_convolutions() -> None:
    image = np.random.default_rng(2).normal(size=(1, 1, 21, 26))
    binomial = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = np.outer(binomial, binomial)[None, None]
    expected_down = scipy.ndimage.convolve(image, kernel, mode="mirror")[:, :, ::2, ::2]
    down = _pyr_down(torch.from_numpy(image))
    np.testing.assert_allclose(down.numpy(), expected_down, atol=1e-10)
    zeros = np.zeros((1, 1, 22, 26))
    zeros[:, :, ::2, ::2] = expected_down
    expected_up = scipy.ndimage.convolve(zeros, kernel * 4, mode="mirror")[:, :, :21, :26]
    np.testing.assert_allclose(_pyr_up(down, torch.Size([21, 26])).numpy(), expected_up, atol=1e-10)


def test_one_dimensional_distance_is_the_exact_wasserstein_distance_for_unequal_sizes() -> None:
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(0, 1, (70, 3)).astype(np.float32))
    b = torch.from_numpy(rng.normal(0.5, 2, (45, 3)).astype(np.float32))
    directions = torch.eye(3)
    expected = np.mean([scipy.stats.wasserstein_distance(a[:, k].numpy(), b[:, k].numpy()) for k in range(3)])
    assert _sliced_distance(a, b, directions) == pytest.approx(expected, rel=1e-5)
    same_size = _sliced_distance(a[:45], b, directions)
    expected_same = np.mean(
        [scipy.stats.wasserstein_distance(a[:45, k].numpy(), b[:, k].numpy()) for k in range(3)]
    )
    assert same_size == pytest.approx(expected_same, rel=1e-5)


def test_joint_normalisation_sees_a_brightness_change_that_the_reference_normalisation_ignores() -> None:
    a, b = blob_images(10, 32, 32), blob_images(11, 32, 32)
    dimmer = b.astype(np.float32) * 0.5
    joint_same = sliced_wasserstein_distance(a, b, normalization="joint").mean
    joint_dim = sliced_wasserstein_distance(a, dimmer, normalization="joint").mean
    separate_same = sliced_wasserstein_distance(a, b, normalization="separate").mean
    separate_dim = sliced_wasserstein_distance(a, dimmer, normalization="separate").mean
    assert joint_dim > 2 * joint_same
    assert separate_dim < 1.5 * separate_same
