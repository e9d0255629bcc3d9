"""The GAN driver of the study: `train-gan` (one StyleGAN2-ADA per class, or one conditional) and
`generate` (synthetic pools from snapshots). The networks themselves live in `stylegan2ada`.

Submodules import torch; import them directly (`augstudy.gan.train`, `augstudy.gan.generate`).
"""
