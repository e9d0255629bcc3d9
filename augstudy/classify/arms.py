"""The sweep's arms, in one place for the sweep, its report and its figures (no heavy imports).

Arms that add images at each of `--ratios` (`ADDED_ARMS`) share the real-only 0 % classifier and are
compared with each other at equal added counts; the arms that draw synthetic images read the pool of
the generator `POOL_ARMS` names.
"""

from __future__ import annotations

ARMS = ("gan", "diffusion", "classic", "real", "synthetic-only", "diffusion-only")
GENERATORS = ("gan", "diffusion")
GENERATOR_NAMES = {"gan": "GAN", "diffusion": "diffusion"}  # as the answer and the figures name them
POOL_ARMS = {"gan": "gan", "diffusion": "diffusion", "synthetic-only": "gan", "diffusion-only": "diffusion"}
ADDED_ARMS = ("gan", "diffusion", "classic")
# The synthetic-only arms, by what their classifiers train on.
SYNTHETIC_ONLY = {"synthetic-only": "GAN images", "diffusion-only": "diffusion images"}
