"""Every default of the GAN metrics in one place, so a figure can be traced to its settings."""

from __future__ import annotations

METRICS: tuple[str, ...] = ("kid", "fid", "swd", "memo")
# Metrics that need the Inception network; the rest need no downloaded weights.
INCEPTION_METRICS: frozenset[str] = frozenset({"kid", "fid"})

SEED = 0
BATCH_SIZE = 32

# Inception: the network sees 3-channel 299 x 299 images, resized beforehand (see features.py).
INCEPTION_RESOLUTION = 299

# KID (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel, averaged over subsets.
KID_NUM_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000

# FID is flagged unreliable when either set has fewer images than feature dimensions (2048 for
# Inception): the covariances are then rank-deficient (see kid_fid.py).

# SWD (Karras et al. 2018, appendix D): Laplacian pyramid down to 16 px, 7 x 7 neighbourhoods,
# 128 per image per level, 4 repeats of 128 random directions; reported x 1e3.
SWD_MIN_RESOLUTION = 16
SWD_PATCH_SIZE = 7
SWD_DESCRIPTORS_PER_IMAGE = 128
SWD_PROJECTION_REPEATS = 4
SWD_PROJECTIONS_PER_REPEAT = 128
SWD_SCALE = 1e3
SWD_NORMALIZATION = "joint"

# Memorisation: nearest training image per synthetic image. A synthetic image is a near-copy when
# its nearest training image is at most MEMO_RATIO times as far as the second nearest (the rule of
# Yoon et al. 2023 and Gu et al. 2023 for diffusion models), or no farther than the absolute
# threshold. Pixel distances are RMS differences of grey images at MEMO_PIXEL_SIZE px on a 0..1
# scale; 0.02 is about 5 grey levels of 255.
MEMO_PIXEL_SIZE = 64
MEMO_RATIO = 1.0 / 3.0
MEMO_PIXEL_ABSOLUTE_THRESHOLD = 0.02
MEMO_FEATURE_ABSOLUTE_THRESHOLD = 0.0
MEMO_REPORT_QUANTILES: tuple[float, ...] = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

# Snapshot-time metrics during GAN training.
SNAPSHOT_NUM_IMAGES = 1000

