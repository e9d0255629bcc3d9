"""Provisional: the cv design's fold cells as out-of-fold replicates the split-design statistics can read.

Within one repeat every labelled image is tested exactly once, so the K fold cells of one
(arm, level, repeat, GAN seed, classifier seed) together predict the same image set as any other:
their concatenated test predictions form one replicate over a common test set, which is what
`augstudy.classify.stats` pairs across cells. Cells that draw no synthetic images (gan_seed None)
are repeated for every GAN seed, so each arm has one replicate per (repeat, GAN seed, seed), paired
with the reference's replicate of the same repeat and seed. This lets the report run on cv results
until the inference built for the cv design (fold, GAN-seed and image variance) replaces it; the
repeated reference replicates make its intervals too narrow, and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from augstudy.classify.metrics import classification_metrics, confusion_matrix

TableRow = tuple[str, float, float, str, dict[str, Any]]
CAVEAT = ("Provisional cv statistics: each replicate pools one repeat's out-of-fold predictions; the "
          "intervals treat repeats, GAN seeds and classifier seeds alike and understate fold and generator "
          "variance.")


def _merged(cells: Sequence[dict[str, Any]], replicate: int) -> dict[str, Any]:
    """One replicate: the folds' test predictions in image order, metrics recomputed over all of them."""
    first = cells[0]
    predictions = sorted((row for cell in cells for row in cell["test_predictions"]), key=lambda row: row["image"])
    y_true = np.array([row["label"] for row in predictions])
    proba = np.array([row["proba"] for row in predictions])
    positive = first["class_names"].index(first["positive_class"])
    return {
        **first, "seed": replicate, "test_predictions": predictions, "n_test": len(predictions),
        "metrics": classification_metrics(y_true, proba, positive, first["class_names"]),
        "confusion_matrix": confusion_matrix(y_true, proba.argmax(axis=1), len(first["class_names"])).tolist(),
        "degenerate": any(cell["degenerate"] for cell in cells),
        "n_real": float(np.mean([cell["n_real"] for cell in cells])),
    }


def pool_folds(rows: Sequence[TableRow], baseline: Sequence[dict[str, Any]],
               gan_seeds: int) -> tuple[list[TableRow], list[dict[str, Any]]]:
    """(rows, baseline cells) with one merged cell per (arm, level, repeat, GAN seed, seed)."""
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for arm, ratio, fraction, _, cell in rows:
        generators = [cell["gan_seed"]] if cell.get("gan_seed") is not None else range(gan_seeds)
        for gan_seed in generators:
            grouped.setdefault((arm, ratio, fraction, cell["repeat"], gan_seed, cell["seed"]), []).append(cell)
    seeds = 1 + max(cell["seed"] for _, _, _, _, cell in rows)
    merged = []
    for (arm, ratio, fraction, repeat, gan_seed, seed), cells in grouped.items():
        replicate = (repeat * gan_seeds + gan_seed) * seeds + seed
        cell = _merged(sorted(cells, key=lambda c: c["fold"]), replicate)
        name = f"r{repeat}_gan-{gan_seed}_{cell['group']}-{ratio:g}-{fraction:g}_seed-{seed:02d}"
        merged.append((arm, ratio, fraction, name, cell))
    reference: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for cell in baseline:
        for gan_seed in range(gan_seeds):
            reference.setdefault((cell["repeat"], gan_seed, cell["seed"]), []).append(cell)
    merged_baseline = [_merged(sorted(cells, key=lambda c: c["fold"]), (repeat * gan_seeds + gan_seed) * seeds + seed)
                       for (repeat, gan_seed, seed), cells in sorted(reference.items())]
    return merged, merged_baseline
