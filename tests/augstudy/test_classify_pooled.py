"""The provisional cv statistics' input: one out-of-fold replicate per (arm, level, repeat, GAN seed, seed),
paired with the reference's replicate of the same repeat and seed."""

from __future__ import annotations

import pytest

from augstudy.classify.pooled import pool_folds


def _cell(group: str, fold: int, seed: int, gan_seed: int | None, images: list[str], correct: bool) -> dict:
    rows = [{"image": image, "label": index % 2,
             "proba": [0.9, 0.1] if (index % 2 == 0) == correct else [0.1, 0.9]} for index, image in enumerate(images)]
    return {"group": group, "level": 0 if group == "baseline" else 100, "seed": seed, "repeat": 0, "fold": fold,
            "gan_seed": gan_seed, "test_predictions": rows, "class_names": ["normal", "tumour"],
            "positive_class": "tumour", "degenerate": False, "n_real": 10, "metrics": {}}


def test_folds_merge_into_one_replicate_per_repeat_gan_seed_and_seed() -> None:
    folds = [["a.png", "b.png"], ["c.png", "d.png"]]
    baseline = [_cell("baseline", fold, 0, None, images, True) for fold, images in enumerate(folds)]
    gan = [_cell("gan", fold, 0, g, images, g == 0) for fold, images in enumerate(folds) for g in (0, 1)]
    rows = [("gan", 0, 100, "b", cell) for cell in baseline] + [("gan", 100, 100, "g", cell) for cell in gan]
    merged, reference = pool_folds(rows, baseline, gan_seeds=2)
    by_level = {(arm, ratio, cell["seed"]): cell for arm, ratio, _, _, cell in merged}
    assert sorted(by_level) == [("gan", 0, 0), ("gan", 0, 1), ("gan", 100, 0), ("gan", 100, 1)]
    for cell in by_level.values():  # every image once, in one order for every replicate (the pairing)
        assert [row["image"] for row in cell["test_predictions"]] == ["a.png", "b.png", "c.png", "d.png"]
    assert by_level[("gan", 100, 0)]["metrics"]["accuracy"] == 1.0  # GAN seed 0: right on both folds
    assert by_level[("gan", 100, 1)]["metrics"]["accuracy"] == 0.0
    assert [cell["seed"] for cell in reference] == [0, 1]  # the reference repeated for each GAN seed
    assert all(cell["metrics"]["accuracy"] == pytest.approx(1.0) for cell in reference)
    assert sum(map(sum, by_level[("gan", 100, 1)]["confusion_matrix"])) == 4
