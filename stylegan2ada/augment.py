"""Adaptive discriminator augmentation (ADA): the augmentation pipeline D sees and its p controller.

Every image shown to D, real or generated, goes through one differentiable `AugmentPipe`. Each op
fires per image with probability ``p * multiplier``. Reals and fakes get the same distribution of
augmentations, and while p stays below about 0.8 the augmentations do not leak into what G learns
(paper, section 2). Geometric ops are folded into one 3x3 matrix and
executed in a single resampling pass (reflect padding, 2x upsampling with the Symlet-6 wavelet,
bilinear sampling, 2x downsampling), colour ops into one 4x4 matrix, as in the paper's appendix B.
An image for which no op fired (or whose combined transform is the identity) is returned
untouched, so p = 0 is exactly the identity.

`AdaController` moves p from the sign of D's output on reals: p rises when D is overconfident
(E[sign(D(real))] above the target) and falls otherwise. Randomness comes from torch's global RNG
on the images' device, which the training loop seeds.

No host-device synchronisation per call, except one: constants are made once per device and dtype
(`_constant`), matrices are built on the device from tensors, unfired images are kept with
``torch.where`` rather than gathered by index, and the pipe keeps a host copy of p that it reads
back only after p changed. The one read left is the padding of the geometric resampling (its size
depends on the drawn transforms), which the reference reads back too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from stylegan2ada.ops.grid_sample import grid_sample
from stylegan2ada.ops.upfirdn2d import downsample2d, setup_filter, upsample2d

__all__ = ["PIPELINES", "AdaController", "AugmentPipe", "AugmentSpec", "make_augment_pipe"]

# Decomposition low-pass filters of the Symlet wavelets (PyWavelets' ``dec_lo``): orthonormal, so
# upsampling and then downsampling with them reconstructs a signal exactly.
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

_BLIT = {"xflip": 1.0, "rotate90": 1.0, "xint": 1.0}
_GEOM = {"scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0}
_COLOR = {"brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0}
_FILTER = {"imgfilter": 1.0}
_NOISE = {"noise": 1.0}
_CUTOUT = {"cutout": 1.0}

PIPELINES: dict[str, dict[str, float]] = {
    "blit": dict(_BLIT),
    "geom": dict(_GEOM),
    "color": dict(_COLOR),
    "filter": dict(_FILTER),
    "noise": dict(_NOISE),
    "cutout": dict(_CUTOUT),
    "bg": {**_BLIT, **_GEOM},
    "bgc": {**_BLIT, **_GEOM, **_COLOR},
    "bgcf": {**_BLIT, **_GEOM, **_COLOR, **_FILTER},
    "bgcfn": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE},
    "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT},
}

OP_NAMES = (
    "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
    "brightness", "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout",
)  # fmt: skip


@dataclass(frozen=True)
class AugmentSpec:
    """Op multipliers (probability = p * multiplier; 0 disables the op) and op strengths."""

    xflip: float = 0.0
    rotate90: float = 0.0
    xint: float = 0.0
    scale: float = 0.0
    rotate: float = 0.0
    aniso: float = 0.0
    xfrac: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    lumaflip: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    imgfilter: float = 0.0
    noise: float = 0.0
    cutout: float = 0.0
    xint_max: float = 0.125  # integer translation range, as a fraction of the image size
    scale_std: float = 0.2  # log2 standard deviation of isotropic scaling
    rotate_max: float = 1.0  # rotation range, as a fraction of 180 degrees
    aniso_std: float = 0.2  # log2 standard deviation of anisotropic scaling
    xfrac_std: float = 0.125  # fractional translation, as a fraction of the image size
    brightness_std: float = 0.2
    contrast_std: float = 0.5  # log2 standard deviation
    hue_max: float = 1.0  # hue rotation range, as a fraction of 180 degrees
    saturation_std: float = 1.0  # log2 standard deviation
    imgfilter_bands: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # per-band multipliers
    imgfilter_std: float = 1.0  # log2 standard deviation of each band's amplification
    noise_std: float = 0.1
    cutout_size: float = 0.5  # side of the cut-out square, as a fraction of the image size

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
            if any(not math.isfinite(float(v)) or float(v) < 0 for v in values):
                raise ValueError(f"AugmentPipe: {field.name} must be finite and >= 0, not {value!r}")
        if len(self.imgfilter_bands) != 4:
            raise ValueError(
                f"AugmentPipe: imgfilter_bands needs one multiplier per band (4), not {self.imgfilter_bands!r}"
            )
        object.__setattr__(self, "imgfilter_bands", tuple(float(v) for v in self.imgfilter_bands))


def _imgfilter_bank() -> np.ndarray:
    """Four band-pass filters (low to high frequency, one per row) that sum to a unit impulse.

    Built by iterating the Symlet-2 half-band pair: each level splits the current low band in two,
    so amplifying the bands with gains g_i filters an image with ``sum_i g_i * row_i``.
    """
    lo = np.asarray(SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.ones([1, 1])
    for band in range(1, 4):
        upsampled = np.zeros([band, bank.shape[1] * 2 - 1])
        upsampled[:, ::2] = bank
        rows = [np.convolve(row, lo2) for row in upsampled]
        start = (rows[0].size - hi2.size) // 2
        new_band = np.zeros_like(rows[0])
        new_band[start : start + hi2.size] = hi2
        bank = np.stack([*rows, new_band])
    return bank


_CONSTANTS: dict[tuple[object, torch.dtype, torch.device], torch.Tensor] = {}


def _constant(value: float | tuple[object, ...], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of Python numbers, copied to `device` once and then reused (never modify it in place)."""
    key = (value, dtype, torch.device(device))
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        tensor = _CONSTANTS[key] = torch.as_tensor(value, dtype=dtype, device=device)
    return tensor


def _matrices(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """Stack per-image matrix entries (tensors [N] or scalars) into [N, k, k] float32 matrices."""
    entries = [
        (v if isinstance(v, torch.Tensor) else _constant(float(v), like.device)).expand(like.shape)
        for row in rows
        for v in row
    ]
    return torch.stack(entries, dim=-1).reshape(*like.shape, len(rows), len(rows[0]))


def _translate2d(tx: torch.Tensor | float, ty: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _scale2d(sx: torch.Tensor | float, sy: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate2d(theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrices([[c, -s, 0], [s, c, 0], [0, 0, 1]], like)


def _translate3d(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return _matrices([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], like)


def _scale3d(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return _matrices([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], like)


def _rotate3d(axis: torch.Tensor, theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Rotation by `theta` about the unit `axis` (Rodrigues), as homogeneous 4x4 matrices."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    d = 1 - c
    return _matrices(
        [
            [x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
            [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
            [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
            [0, 0, 0, 1],
        ],
        like,
    )


def _reflect_pad(x: torch.Tensor, pad_x: int, pad_y: int) -> torch.Tensor:
    """Reflect padding of any width (repeated reflections where it exceeds the image)."""

    def indices(size: int, pad: int) -> torch.Tensor:
        positions = torch.arange(-pad, size + pad, device=x.device)
        if size == 1:
            return torch.zeros_like(positions)
        period = 2 * (size - 1)
        positions = positions.remainder(period)
        return torch.where(positions >= size, period - positions, positions)

    x = x.index_select(3, indices(x.shape[3], pad_x))
    return x.index_select(2, indices(x.shape[2], pad_y))


def _fires(probability: torch.Tensor, shape: list[int], device: torch.device) -> torch.Tensor:
    """Per-image (or per-element) Bernoulli draws: True where the op is applied."""
    return torch.rand(shape, device=device) < probability


class AugmentPipe(torch.nn.Module):
    """The ADA pipeline: ``pipe(images) -> images`` for NCHW float images with 1 or 3 channels.

    Args: the fields of `AugmentSpec` (op multipliers and strengths). The probability scale is the
    scalar buffer ``p`` (0 at construction), set by `AdaController` or once for a fixed-p run
    (`set_p`, or in place on the buffer: the pipe notices through the buffer's version counter).
    """

    p: torch.Tensor

    def __init__(self, **op_strengths: float | tuple[float, ...]) -> None:
        super().__init__()
        self.spec = AugmentSpec(**op_strengths)
        self.init_kwargs = asdict(self.spec)
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("geom_filter", setup_filter(SYM6), persistent=False)
        self.register_buffer(
            "imgfilter_bank", torch.as_tensor(_imgfilter_bank(), dtype=torch.float32), persistent=False
        )
        self._p_seen: tuple[torch.Tensor, int, float] | None = None  # (buffer, its version, its value)

    def p_value(self) -> float:
        """p as a Python float; reads the device only when the buffer changed since the last read."""
        seen = self._p_seen
        if seen is None or seen[0] is not self.p or seen[1] != self.p._version:
            seen = self._p_seen = (self.p, self.p._version, float(self.p))
        return seen[2]

    def set_p(self, value: float) -> None:
        """Set p (rounded to float32, like the buffer) without a read back from the device."""
        with torch.no_grad():
            self.p.fill_(value)
        self._p_seen = (self.p, self.p._version, float(np.float32(value)))

    def extra_repr(self) -> str:
        active = [f"{name}={getattr(self.spec, name)}" for name in OP_NAMES if getattr(self.spec, name) > 0]
        return ", ".join(active) or "no ops"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                "AugmentPipe: expected images [N, C, H, W] with C = 1 or 3, got "
                f"{tuple(getattr(images, 'shape', ()))}"
            )
        if not images.is_floating_point():
            raise ValueError(f"AugmentPipe: expected floating-point images, got {images.dtype}")
        if self.p_value() <= 0 or not any(getattr(self.spec, name) > 0 for name in OP_NAMES):
            return images
        p = self.p.to(device=images.device, dtype=torch.float32)
        images = self._geometric(images, p)
        images = self._color(images, p)
        images = self._imgfilter(images, p)
        images = self._noise(images, p)
        return self._cutout(images, p)

    def _geometric(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Accumulate output->input pixel maps (centred pixel units) and resample once."""
        spec = self.spec
        batch, _, height, width = images.shape
        device = images.device
        ref = torch.zeros([batch], device=device)
        identity = torch.eye(3, device=device)
        inverse = identity.repeat(batch, 1, 1)

        if spec.xflip > 0:
            flip = torch.floor(torch.rand([batch], device=device) * 2)
            flip = torch.where(_fires(spec.xflip * p, [batch], device), flip, 0)
            inverse = inverse @ _scale2d(1 - 2 * flip, 1, ref)
        if spec.rotate90 > 0:
            quarter = torch.floor(torch.rand([batch], device=device) * 4)
            quarter = torch.where(_fires(spec.rotate90 * p, [batch], device), quarter, 0)
            inverse = inverse @ _rotate2d(quarter * (math.pi / 2), ref)
        if spec.xint > 0:
            shift = (torch.rand([batch, 2], device=device) * 2 - 1) * spec.xint_max
            shift = torch.where(_fires(spec.xint * p, [batch, 1], device), shift, 0)
            inverse = inverse @ _translate2d(
                -torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height), ref
            )
        if spec.scale > 0:
            factor = torch.exp2(torch.randn([batch], device=device) * spec.scale_std)
            factor = torch.where(_fires(spec.scale * p, [batch], device), factor, 1)
            inverse = inverse @ _scale2d(1 / factor, 1 / factor, ref)
        # Rotation is applied before and after the anisotropic scaling (so that the stretch has a
        # random orientation); each gets the probability that makes "either fires" = rotate * p.
        p_rotate = 1 - torch.sqrt(torch.clamp(1 - spec.rotate * p, min=0))
        if spec.rotate > 0:
            theta = (torch.rand([batch], device=device) * 2 - 1) * math.pi * spec.rotate_max
            theta = torch.where(_fires(p_rotate, [batch], device), theta, 0)
            inverse = inverse @ _rotate2d(theta, ref)
        if spec.aniso > 0:
            factor = torch.exp2(torch.randn([batch], device=device) * spec.aniso_std)
            factor = torch.where(_fires(spec.aniso * p, [batch], device), factor, 1)
            inverse = inverse @ _scale2d(1 / factor, factor, ref)
        if spec.rotate > 0:
            theta = (torch.rand([batch], device=device) * 2 - 1) * math.pi * spec.rotate_max
            theta = torch.where(_fires(p_rotate, [batch], device), theta, 0)
            inverse = inverse @ _rotate2d(theta, ref)
        if spec.xfrac > 0:
            shift = torch.randn([batch, 2], device=device) * spec.xfrac_std
            shift = torch.where(_fires(spec.xfrac * p, [batch, 1], device), shift, 0)
            inverse = inverse @ _translate2d(-shift[:, 0] * width, -shift[:, 1] * height, ref)

        # Every image is resampled (as in the reference) and the unchanged ones are kept bit-exact.
        changed = (inverse != identity).flatten(1).any(dim=1)
        return torch.where(changed[:, None, None, None], self._resample(images, inverse), images)

    def _resample(self, images: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        """Warp by the output->input maps `inverse`: reflect-pad, upsample 2x, sample, downsample 2x."""
        batch, channels, height, width = images.shape
        device = images.device
        ref = torch.zeros([batch], device=device)
        filter_pad = self.geom_filter.shape[0] // 4

        # Pad just enough (plus the filter's support) to cover where the output corners come from.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = _constant(((-cx, cx, cx, -cx), (-cy, -cy, cy, cy), (1.0, 1.0, 1.0, 1.0)), device)
        sources = (inverse @ corners)[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, batch * corner]
        margin = torch.cat([-sources, sources]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + _constant((filter_pad * 2 - cx, filter_pad * 2 - cy) * 2, device)
        limit = _constant((width - 1.0, height - 1.0) * 2, device)
        margin = torch.minimum(margin.clamp(min=0), limit).ceil()
        # The padding's size depends on the drawn transforms: the pipe's one read back per call.
        mx0, my0, mx1, my1 = (int(v) for v in margin.tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        inverse = _translate2d((margin[0] - margin[2]) / 2, (margin[1] - margin[3]) / 2, ref) @ inverse

        # Work at twice the resolution. Symlet-6 is only nearly linear-phase; the -0.5 re-centres the
        # warp on the filter pair's sampling phase, so flips and quarter turns are exact up to a small
        # error at the highest frequencies.
        images = upsample2d(images, self.geom_filter.to(images.dtype), up=2)
        inverse = _scale2d(2, 2, ref) @ inverse @ _scale2d(0.5, 0.5, ref)
        inverse = _translate2d(-0.5, -0.5, ref) @ inverse @ _translate2d(0.5, 0.5, ref)

        # affine_grid works in [-1, 1] coordinates of the input and output frames. The input's size
        # (twice the padded one) is taken from the margin tensor: a per-call constant would be copied.
        out_height, out_width = (height + filter_pad * 2) * 2, (width + filter_pad * 2) * 2
        padded_size = margin[:2] + margin[2:] + _constant((float(width), float(height)), device)
        theta = (
            _scale2d(1 / padded_size[0], 1 / padded_size[1], ref)
            @ inverse
            @ _scale2d(out_width / 2, out_height / 2, ref)
        )
        grid = F.affine_grid(
            theta[:, :2, :].to(images.dtype), [batch, channels, out_height, out_width], align_corners=False
        )
        images = grid_sample(images, grid)
        return downsample2d(
            images, self.geom_filter.to(images.dtype), down=2, padding=-filter_pad * 2, flip_filter=True
        )

    def _color(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Accumulate a 4x4 matrix on (r, g, b, 1); 1-channel images use its action on grey."""
        spec = self.spec
        batch, channels, height, width = images.shape
        device = images.device
        ref = torch.zeros([batch], device=device)
        identity = torch.eye(4, device=device)
        matrix = identity.repeat(batch, 1, 1)
        luma = _constant((1 / math.sqrt(3),) * 3 + (0.0,), device)
        luma_projection = torch.outer(luma, luma)

        if spec.brightness > 0:
            offset = torch.randn([batch], device=device) * spec.brightness_std
            offset = torch.where(_fires(spec.brightness * p, [batch], device), offset, 0)
            matrix = _translate3d(offset, ref) @ matrix
        if spec.contrast > 0:
            factor = torch.exp2(torch.randn([batch], device=device) * spec.contrast_std)
            factor = torch.where(_fires(spec.contrast * p, [batch], device), factor, 1)
            matrix = _scale3d(factor, ref) @ matrix
        if spec.lumaflip > 0:
            flip = torch.floor(torch.rand([batch], device=device) * 2)
            flip = torch.where(_fires(spec.lumaflip * p, [batch], device), flip, 0)
            matrix = (identity - 2 * luma_projection * flip[:, None, None]) @ matrix
        # Hue rotation and saturation act orthogonally to the grey axis: nothing to do for 1 channel.
        if spec.hue > 0 and channels == 3:
            theta = (torch.rand([batch], device=device) * 2 - 1) * math.pi * spec.hue_max
            theta = torch.where(_fires(spec.hue * p, [batch], device), theta, 0)
            matrix = _rotate3d(luma, theta, ref) @ matrix
        if spec.saturation > 0 and channels == 3:
            factor = torch.exp2(torch.randn([batch], device=device) * spec.saturation_std)
            factor = torch.where(_fires(spec.saturation * p, [batch], device), factor, 1)
            matrix = (luma_projection + (identity - luma_projection) * factor[:, None, None]) @ matrix

        changed = (matrix != identity).flatten(1).any(dim=1)
        matrix = matrix.to(images.dtype)
        pixels = images.reshape(batch, channels, height * width)
        if channels == 3:
            pixels = matrix[:, :3, :3] @ pixels + matrix[:, :3, 3:]
        else:
            gain = matrix[:, :3, :3].sum(dim=(1, 2)) / 3
            offset = matrix[:, :3, 3].mean(dim=1)
            pixels = pixels * gain[:, None, None] + offset[:, None, None]
        recoloured = pixels.reshape(batch, channels, height, width)
        # Identity rows are exact on CPU but not under TF32 matmuls; keep unchanged images bit-exact.
        return torch.where(changed[:, None, None, None], recoloured, images)

    def _imgfilter(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Amplify frequency bands by random gains, keeping the expected (1/f) power unchanged."""
        spec = self.spec
        if spec.imgfilter <= 0:
            return images
        batch, channels, height, width = images.shape
        device = images.device
        num_bands = self.imgfilter_bank.shape[0]
        expected_power = _constant((10 / 13, 1 / 13, 1 / 13, 1 / 13), device)
        gains = torch.ones([batch, num_bands], device=device)
        changed = torch.zeros([batch], dtype=torch.bool, device=device)
        for band, band_strength in enumerate(spec.imgfilter_bands):
            band_gain = torch.exp2(torch.randn([batch], device=device) * spec.imgfilter_std)
            fires = _fires(spec.imgfilter * p * band_strength, [batch], device)
            changed = changed | fires
            step = torch.where(
                _constant(tuple(float(b == band) for b in range(num_bands)), device, torch.bool) & fires[:, None],
                band_gain[:, None],
                1,
            )
            step = step / (expected_power * step.square()).sum(dim=-1, keepdim=True).sqrt()
            gains = gains * step
        kernels = (gains @ self.imgfilter_bank.to(device)).to(images.dtype)  # [batch, taps]
        taps = kernels.repeat_interleave(channels, dim=0)  # [batch * channels, taps]
        pad = taps.shape[1] // 2
        x = _reflect_pad(images, pad, pad).reshape(1, batch * channels, height + 2 * pad, width + 2 * pad)
        x = F.conv2d(x, taps[:, None, None, :], groups=batch * channels)
        x = F.conv2d(x, taps[:, None, :, None], groups=batch * channels)
        filtered = x.reshape(batch, channels, height, width)
        return torch.where(changed[:, None, None, None], filtered, images)

    def _noise(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec.noise <= 0:
            return images
        batch = images.shape[0]
        device = images.device
        sigma = torch.randn([batch, 1, 1, 1], device=device).abs() * spec.noise_std
        sigma = torch.where(_fires(spec.noise * p, [batch, 1, 1, 1], device), sigma, 0)
        return images + torch.randn(images.shape, device=device, dtype=images.dtype) * sigma.to(images.dtype)

    def _cutout(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        if spec.cutout <= 0:
            return images
        batch, _, height, width = images.shape
        device = images.device
        size = torch.where(_fires(spec.cutout * p, [batch, 1, 1], device), spec.cutout_size, 0.0)
        centre = torch.rand([batch, 2, 1, 1], device=device)
        xs = (torch.arange(width, device=device).reshape(1, 1, width) + 0.5) / width
        ys = (torch.arange(height, device=device).reshape(1, height, 1) + 0.5) / height
        outside_x = (xs - centre[:, 0]).abs() >= size / 2
        outside_y = (ys - centre[:, 1]).abs() >= size / 2
        keep = (outside_x | outside_y).to(images.dtype)
        return images * keep[:, None]


def make_augment_pipe(name: str, p: float = 0.0) -> AugmentPipe:
    """The named pipeline (see `PIPELINES`) with default strengths and probability scale `p`."""
    if name not in PIPELINES:
        raise ValueError(f"unknown augmentation pipeline {name!r}; choose one of {', '.join(PIPELINES)}")
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"augmentation probability p must be finite and >= 0, not {p!r}")
    pipe = AugmentPipe(**PIPELINES[name])
    pipe.set_p(p)
    return pipe


class AdaController:
    """Adjusts an `AugmentPipe`'s p from the sign of D's logits on (augmented) reals.

    Call `observe` with D's real logits every step, and when `should_update(step_index)` is true
    (every `interval` steps) call `update`, which moves p by
    ``sign(E[sign(D(real))] - target) * batch_size * interval / (ada_kimg * 1000)`` and clamps it
    at 0, so p can cross 0 -> 1 in `ada_kimg` thousand images.
    """

    def __init__(self, target: float = 0.6, interval: int = 4, ada_kimg: float = 500) -> None:
        if not -1 <= target <= 1:
            raise ValueError(
                f"AdaController: target is a mean of signs, so it must lie in [-1, 1], not {target}"
            )
        if interval < 1:
            raise ValueError(f"AdaController: interval must be >= 1 step, not {interval}")
        if not ada_kimg > 0:
            raise ValueError(f"AdaController: ada_kimg must be > 0, not {ada_kimg}")
        self.target = float(target)
        self.interval = int(interval)
        self.ada_kimg = float(ada_kimg)
        self._stats = torch.zeros([2])  # [sum of signs, number of logits] since the last update

    def observe(self, real_logits: torch.Tensor) -> None:
        """Accumulate sign(D(real)) on the logits' device (no host synchronisation)."""
        logits = real_logits.detach()
        signs = logits.sign().sum().float()
        self._stats = self._stats.to(logits.device) + torch.stack([signs, torch.ones_like(signs) * logits.numel()])

    def should_update(self, step_index: int) -> bool:
        """True after every `interval`-th step; `step_index` counts completed steps from 1."""
        return step_index > 0 and step_index % self.interval == 0

    def update(
        self, pipe: AugmentPipe, batch_size: int, all_reduce: Callable[[torch.Tensor], object] | None = None
    ) -> float:
        """Move ``pipe.p`` and return it; `batch_size` is the global batch (all ranks).

        `all_reduce` (e.g. ``torch.distributed.all_reduce``) sums the statistics in place across
        ranks, so every rank sets the same p. Without observations since the last update p stays.
        Reads the statistics back once (once per `interval` steps, as the reference does).
        """
        if batch_size < 1:
            raise ValueError(f"AdaController.update: batch_size must be >= 1, not {batch_size}")
        stats = self._stats.clone()
        if all_reduce is not None:
            all_reduce(stats)
        self._stats = torch.zeros_like(self._stats)
        signs_sum, count = stats.tolist()
        if count == 0:
            return pipe.p_value()
        direction = float(np.sign(signs_sum / count - self.target))
        adjustment = direction * batch_size * self.interval / (self.ada_kimg * 1000)
        pipe.set_p(max(pipe.p_value() + adjustment, 0.0))
        return pipe.p_value()

    def state_dict(self) -> dict[str, float]:
        """The statistics gathered since the last update (p itself lives in the pipe's buffers)."""
        signs_sum, count = self._stats.tolist()
        return {"signs_sum": signs_sum, "signs_count": count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        missing = {"signs_sum", "signs_count"} - set(state)
        if missing:
            raise ValueError(f"AdaController.load_state_dict: missing keys {sorted(missing)}")
        self._stats = torch.tensor([float(state["signs_sum"]), float(state["signs_count"])])
