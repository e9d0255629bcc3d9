"""A denoising diffusion generator beside the GAN: `train-diffusion` and diffusion pools from `generate`.

Built on MONAI's generative components (DiffusionModelUNet and its DDPM/DDIM schedulers). Submodules
import torch and MONAI; import them directly (`augstudy.diffusion.train`, `augstudy.diffusion.sample`).
"""
