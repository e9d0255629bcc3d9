"""StyleGAN2-ADA generator and discriminator (Karras et al., NeurIPS 2020), layer for layer.

Structure, initialisation and parameter counts match NVlabs' stylegan2-ada-pytorch: a mapping
network with learning-rate multiplier 0.01 and a tracked average w for truncation; a synthesis
network with a learned 4x4 constant, modulated/demodulated 3x3 convolutions, per-pixel noise and
skip ToRGB outputs; a residual discriminator with minibatch standard deviation and projection
conditioning. Every weight uses the equalised learning rate (stored N(0, 1), scaled at run time).

Every `Generator` and `Discriminator` carries ``init_kwargs``, a JSON-able dict from which
`build_module` rebuilds it, so snapshots hold only tensors and plain data (no pickled code).
FP16 is used only on CUDA; on CPU every block runs in FP32 whatever ``num_fp16_res`` says.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from stylegan2ada.configs import _resolve
from stylegan2ada.network_limits import check_network_arguments
from stylegan2ada.ops.bias_act import ACTIVATIONS, bias_act
from stylegan2ada.ops.conv2d_resample import conv2d_resample
from stylegan2ada.ops.modulated_conv2d import modulated_conv2d
from stylegan2ada.ops.upfirdn2d import downsample2d, setup_filter, upsample2d

NOISE_MODES = ("random", "const", "none")
D_ARCHITECTURES = ("orig", "skip", "resnet")
FIR_FILTER = [1, 3, 3, 1]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector to unit mean square, as the mapping network does with z and labels."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _block_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """FP16 only where asked for and on CUDA: FP16 convolutions on CPU are slow or unsupported."""
    return torch.float16 if use_fp16 and not force_fp32 and device.type == "cuda" else torch.float32


def _check_shape(name: str, tensor: torch.Tensor, expected: list[int | None]) -> None:
    """Raise a readable error when `tensor` does not have the expected shape (None: any size)."""
    if tensor.ndim != len(expected) or any(e is not None and s != e for s, e in zip(tensor.shape, expected)):
        shown = ", ".join("N" if e is None else str(e) for e in expected)
        raise ValueError(f"{name} must have shape [{shown}], got {list(tensor.shape)}")


def _json_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `kwargs`, refused unless JSON can store it (snapshots carry it as data)."""
    try:
        return json.loads(json.dumps(kwargs))
    except TypeError as error:
        raise TypeError(f"network arguments must be JSON-able: {error}") from error


def _as_dict(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    return dict(kwargs) if kwargs else {}


# ---------------------------------------------------------------------------------------- layers


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate and an optional learning-rate multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional FIR up/down-sampling, bias + activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: list[float] | None = None,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter or FIR_FILTER))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(
            x,
            w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=self.up == 1,  # correlation is slightly faster; both are equivalent
        )
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


# ------------------------------------------------------------------------------- mapping network


class MappingNetwork(nn.Module):
    """z (and the embedded label) -> w, broadcast to `num_ws` copies; tracks the average w."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Map to w: [N, num_ws, w_dim] (or [N, w_dim] when `num_ws` is None).

        ``update_emas=True`` moves `w_avg` towards this batch's mean w (decay `w_avg_beta`); the
        training loop asks for it, inference never does. Truncation pulls the first
        `truncation_cutoff` ws (all when None) towards `w_avg` by ``1 - truncation_psi``.
        """
        parts = []
        if self.z_dim > 0:
            if z is None:
                raise ValueError(f"mapping: z of shape [N, {self.z_dim}] is required")
            _check_shape("z", z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"mapping: this network is conditional; c of shape [N, {self.c_dim}] is required"
                )
            _check_shape("c", c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)

        if update_emas and self.num_ws is not None and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None:
                raise ValueError("truncation needs the tracked average w, which this mapping network lacks")
            cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            truncated = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
            x = torch.cat([truncated, x[:, cutoff:]], dim=1)
        return x


# ----------------------------------------------------------------------------- synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling), noise, bias and leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: list[float] | None = None,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter or FIR_FILTER))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "random",
        fused_modconv: bool = True,
        gain: float = 1,
    ) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            size = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(size, device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=self.up == 1,
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const or upsampling conv), conv, ToRGB skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        resample_filter: list[float] | None = None,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter or FIR_FILTER))
        layer_kwargs = {"resample_filter": resample_filter, "conv_clamp": conv_clamp}
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_iter = iter(ws.unbind(dim=1))
        dtype = _block_dtype(self.use_fp16, force_fp32, ws.device)
        # One grouped convolution per layer is fastest for inference; training prefers shared weights.
        fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image: blocks from 4x4 up to `img_resolution`, images summed through skip ToRGBs."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        resample_filter: list[float] | None = None,
    ) -> None:
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim,
                res,
                img_channels,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                use_fp16=res >= fp16_resolution,
            )
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        force_fp32: bool = False,
        update_emas: bool = False,
    ) -> torch.Tensor:
        """Render [N, img_channels, R, R] from ws [N, num_ws, w_dim].

        Each block reads its convolutions' ws plus the next one for its ToRGB, as in NVlabs.
        `update_emas` is accepted so callers can pass it uniformly; synthesis keeps no averages.
        """
        del update_emas
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}")
        _check_shape("ws", ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32)
        return img


class Generator(nn.Module):
    """z, c -> image; `mapping` and `synthesis` can be called separately (style mixing, PPL)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        synthesis_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        mapping_kwargs = _as_dict(mapping_kwargs)
        synthesis_kwargs = _as_dict(synthesis_kwargs)
        self.init_kwargs = _json_kwargs(
            {
                "z_dim": z_dim,
                "c_dim": c_dim,
                "w_dim": w_dim,
                "img_resolution": img_resolution,
                "img_channels": img_channels,
                "mapping_kwargs": mapping_kwargs,
                "synthesis_kwargs": synthesis_kwargs,
            }
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
        force_fp32: bool = False,
    ) -> torch.Tensor:
        """Generate images [N, img_channels, R, R] in about [-1, 1] from z [N, z_dim], c [N, c_dim]."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)


# --------------------------------------------------------------------------------- discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of D: (FromRGB), conv, downsampling conv, and a scaled residual skip."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: list[float] | None = None,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter or FIR_FILTER))
        layer_kwargs = {"activation": activation, "conv_clamp": conv_clamp}
        # Layers in creation order; `Discriminator.freeze_first` counts along this list.
        self.layer_names: list[str] = []
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, **layer_kwargs)
            self.layer_names.append("fromrgb")
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, **layer_kwargs)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter, **layer_kwargs
        )
        self.layer_names += ["conv0", "conv1"]
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
            )
            self.layer_names.append("skip")

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = (x if x is not None else img).device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class MinibatchStdLayer(nn.Module):
    """Append the feature standard deviation over groups of samples, so D can see low variety."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size is not None else n
        if n % group:
            raise ValueError(
                f"minibatch stddev: batch of {n} is not divisible by the group size {group}; "
                "use a batch that is a multiple of mbstd_group (or at most that size)"
            )
        features = self.num_channels
        y = x.reshape(group, -1, features, c // features, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, features, 1, 1)
        y = y.repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch stddev, conv, two dense layers, projection onto the label map."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.cmap_dim = cmap_dim
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels,
            in_channels,
            kernel_size=3,
            activation=activation,
            conv_clamp=conv_clamp,
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """image, c -> logit [N, 1]. Blocks run from full resolution down to the 4x4 epilogue.

    `freeze_layers` (transfer learning, "freezed" in NVlabs) stops gradients to the first N conv
    layers counted from the input, in the order `freezable_layers()` lists them.
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        mapping_kwargs: dict[str, Any] | None = None,
        epilogue_kwargs: dict[str, Any] | None = None,
        freeze_layers: int = 0,
    ) -> None:
        super().__init__()
        mapping_kwargs = _as_dict(mapping_kwargs)
        epilogue_kwargs = _as_dict(epilogue_kwargs)
        self.init_kwargs = _json_kwargs(
            {
                "c_dim": c_dim,
                "img_resolution": img_resolution,
                "img_channels": img_channels,
                "architecture": architecture,
                "channel_base": channel_base,
                "channel_max": channel_max,
                "num_fp16_res": num_fp16_res,
                "conv_clamp": conv_clamp,
                "cmap_dim": cmap_dim,
                "mapping_kwargs": mapping_kwargs,
                "epilogue_kwargs": epilogue_kwargs,
                "freeze_layers": freeze_layers,
            }
        )
        if architecture not in D_ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(D_ARCHITECTURES)}, not {architecture!r}"
            )
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in [*self.block_resolutions, 4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = {"img_channels": img_channels, "architecture": architecture, "conv_clamp": conv_clamp}
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                res,
                use_fp16=res >= fp16_resolution,
                **common,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common
        )
        self.freeze_first(freeze_layers)

    def freezable_layers(self) -> list[tuple[str, nn.Module]]:
        """The conv layers of the blocks from the input inwards (fromrgb, conv0, conv1, skip, ...)."""
        layers = []
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            layers += [(f"b{res}.{name}", getattr(block, name)) for name in block.layer_names]
        return layers

    def freeze_first(self, n: int) -> None:
        """Stop gradients to the first `n` layers of `freezable_layers()`; unfreeze the rest.

        The mapping network and the 4x4 epilogue are never frozen. The count is stored in
        ``init_kwargs`` so a rebuilt discriminator is frozen the same way.
        """
        layers = self.freezable_layers()
        if not isinstance(n, int) or not 0 <= n <= len(layers):
            raise ValueError(f"can freeze 0 to {len(layers)} discriminator layers, not {n!r}")
        for idx, (_, layer) in enumerate(layers):
            layer.requires_grad_(idx >= n)
        self.freeze_layers = n
        self.init_kwargs["freeze_layers"] = n

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False) -> torch.Tensor:
        """Logits [N, 1] for images [N, img_channels, R, R]; `update_emas` is accepted for
        symmetry with G (D keeps no averages)."""
        del update_emas
        _check_shape("img", img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(
                    f"this discriminator is conditional; c of shape [N, {self.c_dim}] is required"
                )
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)


# ------------------------------------------------------------------------------------- factories

_MODULE_CLASSES: dict[str, type[nn.Module]] = {"Generator": Generator, "Discriminator": Discriminator}


def build_module(class_name: str, init_kwargs: dict[str, Any]) -> nn.Module:
    """Rebuild a `Generator` or `Discriminator` from its ``init_kwargs`` (e.g. from a snapshot).

    Only these two class names are accepted, so a snapshot can never name arbitrary code to run, and
    the arguments are range-checked (network_limits) before anything is allocated.
    """
    if class_name not in _MODULE_CLASSES:
        raise ValueError(f"cannot build {class_name!r}: only {', '.join(_MODULE_CLASSES)} are allowed")
    if not isinstance(init_kwargs, dict):
        raise TypeError(f"init_kwargs of {class_name} must be a dict, not {type(init_kwargs).__name__}")
    check_network_arguments(class_name, init_kwargs)
    return _MODULE_CLASSES[class_name](**copy.deepcopy(init_kwargs))


def build_networks(
    cfg: str,
    resolution: int,
    channels: int,
    c_dim: int = 0,
    gpus: int = 1,
    *,
    channel_base: int | None = None,
    channel_max: int | None = None,
    mapping_layers: int | None = None,
    mbstd_group: int | None = None,
    num_fp16_res: int = 0,
    conv_clamp: float | None = None,
    seed: int | None = None,
) -> tuple[Generator, Discriminator]:
    """G and D of a named config (see `stylegan2ada.configs`) with optional size overrides.

    Args:
        cfg: auto, paper256, paper512, paper1024, stylegan2 or cifar.
        resolution: image size, a power of two >= 4.
        channels: image channels (1 or 3).
        c_dim: number of classes for a conditional pair; 0 for unconditional.
        gpus: GPU count (only `auto` depends on it).
        channel_base, channel_max, mapping_layers, mbstd_group: replace the config's values.
        num_fp16_res: FP16 on the highest this-many resolutions (NVlabs uses 4 with conv_clamp
            256); effective on CUDA only.
        conv_clamp: clamp conv outputs to +-this value; None does not clamp.
        seed: initialise the weights from this seed without touching the global RNG; None uses
            (and advances) the global RNG.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, not {channels}")
    if c_dim < 0:
        raise ValueError(f"c_dim must be >= 0, not {c_dim}")
    config = _resolve(
        cfg,
        resolution,
        gpus,
        channel_base=channel_base,
        channel_max=channel_max,
        mapping_layers=mapping_layers,
        mbstd_group=mbstd_group,
    )
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        G = Generator(
            z_dim=512,
            c_dim=c_dim,
            w_dim=512,
            img_resolution=resolution,
            img_channels=channels,
            mapping_kwargs={"num_layers": config.mapping_layers},
            synthesis_kwargs={
                "channel_base": config.channel_base,
                "channel_max": config.channel_max,
                "num_fp16_res": num_fp16_res,
                "conv_clamp": conv_clamp,
            },
        )
        D = Discriminator(
            c_dim=c_dim,
            img_resolution=resolution,
            img_channels=channels,
            architecture=config.d_architecture,
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
            epilogue_kwargs={"mbstd_group_size": config.mbstd_group},
        )
    return G, D
