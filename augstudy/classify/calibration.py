"""Error rates of the sweep's inference (`augstudy.classify.inference`), shown by simulation.

Each simulated study draws per-image correctness for a GAN arm and its real-only reference, writes
them as sweep cells (the format the sweep writes, with repeat / fold / gan_seed / seed) and runs
the project's own `inference.estimate` on them. Correctness is Bernoulli with
logit P(correct) = a + u_i + t_arm,i + v_cell + w_gan (+ shift for the GAN arm), where u_i is the
image's difficulty (shared by the arms), t_arm,i the arm-by-image interaction (what makes a test
set favour one arm by luck), v the classifier seed's effect, w the generator's (per fold and GAN
seed). A regime sets their spreads. The true difference is the population difference of
P(correct), computed by Gauss-Hermite quadrature, and the shift is solved so that it is exactly 0
(null) or +0.03 (power). With one generator in the split design the generator is part of the
question ("does this generator's pool help?"): its truth is conditional on the drawn w, as the
answer sentence says. Everything else is unconditional.

Caveat: training-set overlap between CV folds is not simulated (only the shared images across
repeats); the Nadeau-Bengio correction is conservative here for that reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from augstudy.classify.inference import CellCache, estimate

# Logit-scale spreads: (seed, GAN, arm-by-image interaction); image difficulty and base level fixed.
REGIMES: dict[str, tuple[float, float, float]] = {
    "seed-dominated": (0.8, 0.1, 0.2),
    "GAN-dominated": (0.2, 0.8, 0.2),
    "image-dominated": (0.2, 0.1, 1.5),
}
# Most images are always right or always wrong whatever the seed, as with a frozen backbone.
DIFFICULTY_SD = 3.5
BASE_LOGIT = 3.0
EFFECT = 0.03
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(60)


@dataclass(frozen=True)
class Setting:
    """One simulated design: `design` "split" (one test set of `test_per_class` images per class) or
    "cv" (`labelled_per_class` images per class in `folds` folds, `repeats` times)."""

    design: str
    regime: str
    seeds: int
    gan_seeds: int = 1
    test_per_class: tuple[int, int] = (20, 50)
    labelled_per_class: tuple[int, int] = (40, 110)
    folds: int = 5
    repeats: int = 2


def _mean_correct(offset: float, variance: float) -> float:
    """E[expit(BASE_LOGIT + offset + Z)], Z ~ N(0, variance)."""
    return float(np.sum(_WEIGHTS * expit(BASE_LOGIT + offset + math.sqrt(variance) * _NODES)) / np.sum(_WEIGHTS))


def _shift(target: float, offset: float, variance: float) -> float:
    return float(brentq(lambda s: _mean_correct(offset + s, variance) - target, -10, 10, xtol=1e-10))


def _cells(rng: np.random.Generator, setting: Setting, effect: float) -> tuple[list[dict], list[dict]]:
    """(GAN arm cells, reference cells) of one simulated study."""
    seed_sd, gan_sd, inter_sd = REGIMES[setting.regime]
    conditional = setting.design == "split" and setting.gan_seeds == 1
    per_class = setting.test_per_class if setting.design == "split" else setting.labelled_per_class
    labels = np.repeat(np.arange(2), per_class)
    n = len(labels)
    difficulty = rng.normal(0, DIFFICULTY_SD, n)
    inter = {arm: rng.normal(0, inter_sd, n) for arm in ("gan", "ref")}
    reference_mean = _mean_correct(0.0, DIFFICULTY_SD**2 + inter_sd**2 + seed_sd**2)
    blocks = []
    for repeat in range(setting.repeats if setting.design == "cv" else 1):
        if setting.design == "split":
            blocks.append((repeat, 0, np.arange(n)))
            continue
        fold_of = np.empty(n, dtype=int)
        for label in (0, 1):
            members = rng.permutation(np.flatnonzero(labels == label))
            fold_of[members] = np.arange(len(members)) % setting.folds
        blocks.extend((repeat, fold, np.flatnonzero(fold_of == fold)) for fold in range(setting.folds))
    unconditional_var = DIFFICULTY_SD**2 + inter_sd**2 + seed_sd**2 + gan_sd**2
    shift = None if conditional else _shift(reference_mean + effect, 0.0, unconditional_var)
    gan_cells, ref_cells = [], []
    for repeat, fold, members in blocks:
        base = BASE_LOGIT + difficulty[members]
        images = [f"img{i}" for i in members]
        for arm, cells in (("gan", gan_cells), ("ref", ref_cells)):
            gan_seeds = range(setting.gan_seeds) if arm == "gan" else [None]
            for gan_seed in gan_seeds:
                gan_effect = rng.normal(0, gan_sd) if arm == "gan" else 0.0
                arm_shift = 0.0
                if arm == "gan":
                    arm_shift = shift if shift is not None else _shift(
                        reference_mean + effect, gan_effect, DIFFICULTY_SD**2 + inter_sd**2 + seed_sd**2)
                for seed in range(setting.seeds):
                    logit = base + inter[arm][members] + rng.normal(0, seed_sd) + gan_effect + arm_shift
                    correct = rng.random(len(members)) < expit(logit)
                    predicted = np.where(correct, labels[members], 1 - labels[members])
                    cells.append({
                        "seed": seed, "repeat": repeat, "fold": fold, "gan_seed": gan_seed,
                        "test_predictions": [{"image": name, "label": int(label), "proba": [0.2, 0.8] if p else [0.8, 0.2]}
                                             for name, label, p in zip(images, labels[members], predicted)],
                    })
    return gan_cells, ref_cells


@dataclass(frozen=True)
class Record:
    design: str
    regime: str
    seeds: int
    gan_seeds: int
    blocks: int
    estimand: str
    simulations: int
    type1_error: float
    coverage: float
    coverage_null: float
    mc_error: float
    power: float
    mean_ci_width: float


def simulate(setting: Setting, simulations: int, seed: int = 0, metric: str = "balanced_accuracy") -> Record:
    """Type-I error and coverage under the null, power and coverage at +EFFECT, over `simulations` studies each."""
    outcomes: dict[float, list[tuple[bool, bool, float]]] = {0.0: [], EFFECT: []}
    for effect, found in outcomes.items():
        rng = np.random.default_rng([seed, int(effect * 1000), simulations])
        for _ in range(simulations):
            gan, ref = _cells(rng, setting, effect)
            result = estimate(gan, ref, metric, CellCache(1, (metric,)))
            low, high = result.ci
            found.append((result.p_value < 0.05, low <= effect <= high, high - low))
    null, alternative = (np.array(outcomes[key], dtype=float) for key in (0.0, EFFECT))
    type1 = float(null[:, 0].mean())
    coverage = float(alternative[:, 1].mean())
    worst = max(abs(type1 - 0.05), 0.0) + 0.05
    return Record(
        setting.design, setting.regime, setting.seeds, setting.gan_seeds,
        1 if setting.design == "split" else setting.folds * setting.repeats,
        "conditional on the one generator" if setting.design == "split" and setting.gan_seeds == 1
        else "over generators", simulations, type1, coverage, float(null[:, 1].mean()),
        float(math.sqrt(worst * (1 - worst) / simulations)), float(alternative[:, 0].mean()),
        float(null[:, 2].mean()),
    )


def default_settings(seeds: tuple[int, ...] = (5, 20)) -> list[Setting]:
    """The grid of the bench: both designs x every regime x `seeds`; the split design with one
    generator (its usual form) and with three (so the generator's variance is in the interval)."""
    settings = []
    for regime in REGIMES:
        for n_seeds in seeds:
            settings.append(Setting("split", regime, n_seeds, gan_seeds=1))
            settings.append(Setting("split", regime, n_seeds, gan_seeds=3))
            settings.append(Setting("cv", regime, n_seeds, gan_seeds=1))
    return settings


def as_dict(record: Record) -> dict[str, Any]:
    return asdict(record)


def markdown_table(records: list[Record]) -> str:
    header = ("| design | regime | seeds | GAN seeds | blocks | estimand | type-I error | coverage (+0.03) | "
              "coverage (null) | MC error | power (+0.03) | mean CI width |")
    lines = [header, "|" + "---|" * 12]
    for r in records:
        lines.append(f"| {r.design} | {r.regime} | {r.seeds} | {r.gan_seeds} | {r.blocks} | {r.estimand} | "
                     f"{r.type1_error:.3f} | {r.coverage:.3f} | {r.coverage_null:.3f} | {r.mc_error:.3f} | "
                     f"{r.power:.3f} | {r.mean_ci_width:.3f} |")
    return "\n".join(lines) + "\n"
