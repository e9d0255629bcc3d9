"""Memorisation check: planted copies of training images are flagged, other images are not."""

from __future__ import annotations

import numpy as np

from augstudy.metrics.memorisation import (
    MemorisationOptions,
    memorisation_check,
    nearest_neighbours,
    pixel_vectors,
)


def blob_images(
    seed: int, count: int, size: int = 48, widths: tuple[float, float] = (0.05, 0.2)
) -> list[np.ndarray]:
    """(H, W, 1) uint8 images of a few soft blobs, all different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        image = np.zeros((size, size))
        for _ in range(4):
            cy, cx = rng.uniform(0.1, 0.9, 2)
            width = rng.uniform(*widths)
            image += rng.uniform(0.4, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
        images.append(
            np.clip(image * 180 + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)[:, :, None]
        )
    return images


def test_an_exact_and_a_noised_copy_are_flagged_and_other_images_are_not() -> None:
    real = blob_images(0, 40)
    rng = np.random.default_rng(1)
    noised = np.clip(real[7].astype(np.float64) + rng.normal(0, 16, real[7].shape), 0, 255).astype(np.uint8)
    same_distribution = blob_images(2, 20)
    smaller_blobs = blob_images(3, 10, widths=(0.02, 0.06))  # darker, blander: close to the data, no copies
    noise = [rng.integers(0, 256, real[0].shape, dtype=np.uint8) for _ in range(5)]
    fake = [*same_distribution, real[3].copy(), *smaller_blobs, noised, *noise]
    real_names = [f"real{i}.png" for i in range(len(real))]
    fake_names = [f"fake{i}.png" for i in range(len(fake))]

    result = memorisation_check(
        real_names,
        fake_names,
        pixel_vectors(real, 32),
        pixel_vectors(fake, 32),
        options=MemorisationOptions(pixel_size=32),
    )

    assert [(entry["fake"], entry["real"]) for entry in result["flagged"]] == [
        ("fake20.png", "real3.png"),  # closest first
        ("fake31.png", "real7.png"),
    ]
    exact, noisy = result["flagged"]
    assert exact["pixel_distance"] == 0.0 and exact["flagged_by"] == ["pixel"]
    assert (
        result["pixel"]["absolute_threshold"] < noisy["pixel_distance"] < noisy["pixel_second_distance"] / 3
    )
    assert result["num_flagged"] == 2 and result["num_fake"] == 37
    assert result["pixel"]["fraction_flagged"] == 2 / 37
    # Some synthetic images come nearer the data than training images come to each other, yet only
    # the copies are flagged: a global distance threshold would flag the bland ones too.
    assert (
        result["pixel"]["fake_to_real_quantiles"]["0.25"] < result["pixel"]["real_to_real_quantiles"]["0.05"]
    )
    assert result["feature"] == {
        "skipped": "no Inception features (pass --inception PATH to add feature space)"
    }


def test_feature_space_flags_on_its_own_and_is_reported_beside_pixels() -> None:
    real = blob_images(2, 20)
    rng = np.random.default_rng(4)
    fake = [rng.integers(0, 256, (48, 48, 1), dtype=np.uint8) for _ in range(6)]
    real_features = rng.normal(size=(20, 8))
    fake_features = rng.normal(size=(6, 8)) * 3 + 10
    fake_features[2] = real_features[11] + 0.01  # a near-copy only the features see
    result = memorisation_check(
        [f"r{i}" for i in range(20)],
        [f"f{i}" for i in range(6)],
        pixel_vectors(real, 32),
        pixel_vectors(fake, 32),
        real_features,
        fake_features,
        MemorisationOptions(pixel_size=32),
    )
    assert [entry["fake"] for entry in result["flagged"]] == ["f2"]
    entry = result["flagged"][0]
    assert entry["flagged_by"] == ["feature"] and entry["real"] == "r11"
    assert 0 < entry["feature_distance"] < entry["feature_second_distance"] / 3
    assert entry["pixel_distance"] > 0.1
    assert result["feature"]["fraction_flagged"] == 1 / 6


def test_copies_of_duplicated_training_images_are_caught_with_or_without_the_floor() -> None:
    real = blob_images(5, 10)
    real.append(real[4].copy())  # without deduplication nearest and second-nearest would be equally close
    fake = [np.clip(real[4].astype(np.int16) + 1, 0, 255).astype(np.uint8)]
    names = [f"r{i}" for i in range(len(real))]
    pixels_real, pixels_fake = pixel_vectors(real, 32), pixel_vectors(fake, 32)
    without_floor = memorisation_check(
        names,
        ["f"],
        pixels_real,
        pixels_fake,
        options=MemorisationOptions(pixel_size=32, pixel_absolute_threshold=0.0),
    )
    with_floor = memorisation_check(
        names, ["f"], pixels_real, pixels_fake, options=MemorisationOptions(pixel_size=32)
    )
    assert without_floor["num_real_distinct"] == 10  # the exact copy counts once even with a 0 floor
    assert without_floor["num_flagged"] == 1 and without_floor["flagged"][0]["real"] == "r4"
    assert with_floor["num_flagged"] == 1 and with_floor["flagged"][0]["real"] == "r4"


def test_a_single_training_image_has_no_second_neighbour() -> None:
    real = blob_images(6, 1)
    result = memorisation_check(
        ["r0"],
        ["copy", "other"],
        pixel_vectors(real, 16),
        pixel_vectors([real[0], blob_images(7, 1)[0]], 16),
        options=MemorisationOptions(pixel_size=16),
    )
    assert [entry["fake"] for entry in result["flagged"]] == ["copy"]
    assert result["flagged"][0]["pixel_second_distance"] is None
    assert "real_to_real_quantiles" not in result["pixel"]


def test_nearest_neighbours_give_the_two_closest_and_can_exclude_each_row_itself() -> None:
    points = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 8.0]])
    indices, first, second = nearest_neighbours(points, points, exclude_self=True)
    assert indices.tolist() == [1, 0, 3, 2]
    assert first.tolist() == [1.0, 1.0, 3.0, 3.0]
    assert second[0] == np.hypot(5, 5) and second[3] == np.hypot(5, 7)


def test_pixel_vectors_are_grey_in_unit_range_whatever_the_channels() -> None:
    grey = np.full((20, 20, 1), 255, np.uint8)
    colour = np.zeros((40, 40, 3), np.uint8)
    colour[..., 1] = 255
    rows = pixel_vectors([grey, colour], 16)
    assert rows.shape == (2, 256)
    assert np.allclose(rows[0], 1.0)
    assert np.allclose(rows[1], 150 / 255, atol=1 / 255)  # ITU-R 601 luma of pure green


def test_a_noised_copy_of_a_duplicated_training_image_is_flagged() -> None:
    """The training set holds real[5] three times (twice exactly, once with a grey level of noise):
    without deduplication its copies are both the nearest and the second-nearest neighbour of a
    noised copy, d1 ~ d2, and the ratio rule could not fire."""
    real = blob_images(0, 30)
    rng = np.random.default_rng(4)
    near_copy = np.clip(real[5].astype(np.float64) + rng.normal(0, 1, real[5].shape), 0, 255).astype(np.uint8)
    training = [*real, real[5].copy(), near_copy]
    noised = np.clip(real[5].astype(np.float64) + rng.normal(0, 16, real[5].shape), 0, 255).astype(np.uint8)
    fake = [noised, *blob_images(2, 10)]
    real_names = [f"real{i}.png" for i in range(len(training))]
    result = memorisation_check(real_names, [f"fake{i}.png" for i in range(len(fake))],
                                pixel_vectors(training, 32), pixel_vectors(fake, 32),
                                options=MemorisationOptions(pixel_size=32))
    assert result["num_real"] == 32 and result["num_real_distinct"] == 30
    assert [(entry["fake"], entry["real"]) for entry in result["flagged"]] == [("fake0.png", "real5.png")]
    flagged = result["flagged"][0]
    assert flagged["pixel_distance"] > result["pixel"]["absolute_threshold"]  # only the ratio rule can flag it
    duplicated = pixel_vectors([real[5], real[5], noised], 32)
    _, first, second = nearest_neighbours(duplicated[2:], duplicated[:2])
    assert first[0] == second[0]  # what the rule would have seen without deduplication
