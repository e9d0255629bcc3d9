"""StyleGAN2-ADA training as a library call: `train(TrainOptions(data=..., run_dir=...))`.

The run folder receives `training_options.json` (resolved), `log.txt`, `stats.jsonl` (one record
per tick: kimg, sec/kimg, losses, augment p, non-finite minibatches, memory, snapshot-hook
metrics), `reals.png`, `fakes_init.png`, `fakes-NNNNNN.png` and `network-snapshot-NNNNNN.pt` every
`snap` kimg and at the end (NNNNNN.FFF where the kimg is not whole, see `stylegan2ada.snapshot.progress_label`). Each
snapshot holds the whole training state, so `resume=True` continues a killed run exactly
(on CPU with a fixed seed: bit-identical weights). The same entry point runs under
``torchrun --nproc_per_node=N``; see `stylegan2ada.distributed`.

The whole minibatch step is `training_step` below. It never waits for the device: losses and
statistics are summed on the device (`TickStats`) and read once per tick. The reads left are the
reference's: the ADA statistic once per adjustment interval, and the augmentation's padding size.
Non-finite values are handled as the reference does (gradients cleaned, the step goes on); such
minibatches are counted, and only `nonfinite_limit` of them in a row stop the run.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import random
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from stylegan2ada import distributed, ops, transfer
from stylegan2ada.augment import PIPELINES, AdaController, AugmentPipe, make_augment_pipe
from stylegan2ada.configs import CONFIG_NAMES, NetworkConfig, resolve_config
from stylegan2ada.dataset import ImageDataset, InfiniteSampler
from stylegan2ada.distributed import DistContext
from stylegan2ada.io import append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text
from stylegan2ada.loss import StyleGAN2Loss
from stylegan2ada.networks import build_module, build_networks
from stylegan2ada.snapshot import (
    SnapshotError,
    latest_snapshot,
    load_snapshot,
    preserved_rng,
    progress_label,
    rng_state,
    save_snapshot,
    set_rng_state,
    snapshot_meta,
    snapshot_name,
)

SnapshotHook = Callable[[Path, torch.nn.Module, float], dict[str, float]]

G_REG_INTERVAL = 4  # path-length regularisation every 4 minibatches
D_REG_INTERVAL = 16  # R1 every 16 minibatches
ADA_INTERVAL = 4
ADAM_BETAS = (0.0, 0.99)
ADAM_EPS = 1e-8
AUG_MODES = ("ada", "fixed", "noaug")

# Options that define what a run computes: resuming takes them from the snapshot, and refuses a
# resume that sets one of them explicitly to something else.
RUN_DEFINING = (
    "cfg", "batch", "gamma", "aug", "p", "target", "augpipe", "ada_kimg", "mirror", "cond", "seed", "freezed",
    "fp32", "channel_base", "channel_max", "mapping_layers", "glr", "dlr", "mbstd_group",
)


class NonFiniteLossError(RuntimeError):
    """Losses or gradients stayed NaN or infinite for `nonfinite_limit` minibatches in a row; training
    stopped before writing a snapshot of that state."""


@dataclasses.dataclass
class TrainOptions:
    """What `train` does. None means: the config's value (see `stylegan2ada.configs`).

    Args:
        data: dataset folder or zip (NVlabs format, see `stylegan2ada.dataset`).
        run_dir: folder for snapshots, logs and image grids.
        cfg: base configuration (auto, paper256, paper512, paper1024, stylegan2, cifar).
        kimg: training length in thousands of real images shown to D.
        batch: total minibatch over all processes.
        gamma: R1 weight.
        aug: "ada" (adaptive p), "fixed" (constant `p`) or "noaug".
        p: augmentation probability for aug="fixed" (required there, not allowed otherwise).
        target: ADA target for E[sign(D(real))].
        augpipe: augmentation pipeline name (see `stylegan2ada.augment.PIPELINES`).
        ada_kimg: kimg for p to move by 1; None: 500, or 100 when starting from `resume_from`.
        mirror: add x-flipped copies of the training images.
        cond: class-conditional training with the labels in dataset.json.
        snap: kimg between snapshots (one is always written at the end).
        seed: seed of every random choice (rank r of a multi-process job uses seed*world+r).
        resume: continue from the newest snapshot in `run_dir`; without one, start afresh.
        resume_from: transfer learning: start G/D/G_ema at kimg 0 from this snapshot or official .pkl,
            adapted to the data's channels, resolution and labels (stylegan2ada.transfer).
        freezed: freeze the first N discriminator layers (transfer learning).
        fp32: disable FP16 on CUDA (FP16 is never used on the CPU).
        workers: data-loader worker processes.
        channel_base, channel_max, mapping_layers, glr, dlr, mbstd_group: config overrides.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        ops: custom-op implementation, "auto" (CUDA kernels when they build, else the reference),
            "ref" or "cuda" (fail if the kernels cannot be used); None keeps $STYLEGAN2ADA_OPS.
        tick_kimg: kimg between progress lines and stats.jsonl records.
        nonfinite_limit: stop after this many consecutive minibatches with a NaN or infinite loss or
            gradient (checked once per tick); fewer are cleaned, counted and trained through.
        image_snapshots: write fakes_init.png and fakes-NNNNNN.png at every snapshot (reals.png always).
        extra_meta: JSON-able dict stored in every snapshot (e.g. {"class_name": "normal"}).
    """

    data: str
    run_dir: str
    cfg: str = "auto"
    kimg: float = 25000
    batch: int | None = None
    gamma: float | None = None
    aug: str = "ada"
    p: float | None = None
    target: float = 0.6
    augpipe: str = "bgc"
    ada_kimg: float | None = None
    mirror: bool = False
    cond: bool = False
    snap: float = 50
    seed: int = 0
    resume: bool = False
    resume_from: str | None = None
    freezed: int = 0
    fp32: bool = False
    workers: int = 2
    channel_base: int | None = None
    channel_max: int | None = None
    mapping_layers: int | None = None
    glr: float | None = None
    dlr: float | None = None
    mbstd_group: int | None = None
    device: str = "auto"
    ops: str | None = None
    tick_kimg: float = 4
    nonfinite_limit: int = 100
    image_snapshots: bool = True
    extra_meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data, self.run_dir = str(self.data), str(self.run_dir)
        self.resume_from = None if self.resume_from is None else str(self.resume_from)
        problems = []
        if self.cfg not in CONFIG_NAMES:
            problems.append(f"cfg {self.cfg!r} is not one of {', '.join(CONFIG_NAMES)}")
        if self.aug not in AUG_MODES:
            problems.append(f"aug {self.aug!r} is not one of {', '.join(AUG_MODES)}")
        if self.aug == "fixed" and (self.p is None or not 0 <= self.p <= 1):
            problems.append(f"aug 'fixed' needs p in [0, 1], got p={self.p!r}")
        if self.aug != "fixed" and self.p is not None:
            problems.append(f"p={self.p} is only used with aug 'fixed' (ADA starts at p=0 and adapts it)")
        if self.augpipe not in PIPELINES:
            problems.append(f"augpipe {self.augpipe!r} is not one of {', '.join(PIPELINES)}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device {self.device!r} is not one of auto, cpu, cuda")
        if self.ops is not None and self.ops not in ops.IMPL_CHOICES:
            problems.append(f"ops {self.ops!r} is not one of {', '.join(ops.IMPL_CHOICES)}")
        for name in ("kimg", "snap", "tick_kimg", "ada_kimg"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, not {value!r}")
        if isinstance(self.nonfinite_limit, bool) or not isinstance(self.nonfinite_limit, int) or self.nonfinite_limit < 1:
            problems.append(f"nonfinite_limit must be a whole number >= 1, not {self.nonfinite_limit!r}")
        if self.freezed < 0 or self.workers < 0:
            problems.append("freezed and workers must be >= 0")
        if not -1 <= self.target <= 1:
            problems.append(f"target {self.target} must lie in [-1, 1] (it is a mean of signs)")
        try:
            json.dumps(self.extra_meta)
        except TypeError as error:
            problems.append(f"extra_meta must be JSON-able ({error})")
        if problems:
            raise ValueError("invalid TrainOptions: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Phase:
    """One optimiser step of the loss: `params` (a network's trainable ones) every `interval` minibatches."""

    name: str
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    interval: int


@dataclasses.dataclass
class TrainingRun:
    """Everything a training step touches. `snapshot_state`/`restore_state` are its resumable part."""

    options: TrainOptions  # resolved: no None left in batch, gamma, glr, dlr, ada_kimg, sizes
    config: NetworkConfig
    ctx: DistContext
    dataset: ImageDataset
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    augment_pipe: AugmentPipe | None
    ada: AdaController | None
    loss: StyleGAN2Loss
    phases: list[Phase]
    optimizers: dict[str, torch.optim.Optimizer]  # "G", "D"
    gen_labels: torch.Tensor  # dataset labels on device, sampled for fakes
    ema_rampup: float | None
    cur_nimg: int = 0
    batch_idx: int = 0

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def batch_per_rank(self) -> int:
        return self.options.batch // self.ctx.world_size


# ------------------------------------------------------------------------------------ the step
def sample_latents(run: TrainingRun, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z ~ N(0, I) and c drawn from the dataset's label distribution."""
    z = torch.randn([n, run.G.z_dim], device=run.device)
    c = run.gen_labels[torch.randint(len(run.gen_labels), [n], device=run.device)]
    return z, c


def run_phase(run: TrainingRun, phase: Phase, real_img: torch.Tensor,
              real_c: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Accumulate one phase's gradients, average them over ranks, clean them, and step its optimiser.

    Returns the phase's scalars and whether its averaged gradients were all finite (before cleaning).
    """
    gen_z, gen_c = sample_latents(run, real_img.shape[0])
    phase.opt.zero_grad(set_to_none=True)
    for param in phase.params:
        param.requires_grad_(True)
    stats = run.loss.accumulate_gradients(phase.name, real_img, real_c, gen_z, gen_c, gain=phase.interval)
    for param in phase.params:
        param.requires_grad_(False)
    params = [param for param in phase.params if param.grad is not None]
    finite = torch.ones([], dtype=torch.bool, device=run.device)
    if params:
        flat = torch.cat([param.grad.flatten() for param in params])
        distributed.all_reduce_mean_(flat, run.ctx)
        finite = torch.isfinite(flat).all()
        torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for param, grad in zip(params, flat.split([param.numel() for param in params])):
            param.grad = grad.view_as(param)
    phase.opt.step()
    return stats, finite


@torch.no_grad()
def update_ema(run: TrainingRun) -> None:
    """G_ema <- G with half-life ema_kimg, ramped up over the first ema_rampup of training."""
    ema_nimg = run.config.ema_kimg * 1000
    if run.ema_rampup is not None:
        ema_nimg = min(ema_nimg, run.cur_nimg * run.ema_rampup)
    beta = 0.5 ** (run.options.batch / max(ema_nimg, 1e-8))
    for p_ema, p in zip(run.G_ema.parameters(), run.G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(run.G_ema.buffers(), run.G.buffers()):
        b_ema.copy_(b)


def training_step(run: TrainingRun, real_img: torch.Tensor,
                  real_c: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One minibatch: G, G path length (every 4th), D, D R1 (every 16th); then EMA and ADA p.

    Returns this rank's scalars and a device bool: every loss and gradient finite on every rank.
    """
    stats: dict[str, torch.Tensor] = {}
    finite = torch.ones([], dtype=torch.bool, device=run.device)
    for phase in run.phases:  # Gmain, Greg, Dmain, Dreg
        if run.batch_idx % phase.interval == 0:
            phase_stats, grads_finite = run_phase(run, phase, real_img, real_c)
            stats.update(phase_stats)
            finite = finite & grads_finite
    for value in stats.values():
        finite = finite & torch.isfinite(value).all()
    bad = distributed.all_reduce_sum_((~finite).float(), run.ctx)  # one rank's NaN loss counts for all
    distributed.all_reduce_buffers_(run.G, run.ctx)  # w_avg: one average over the whole batch
    update_ema(run)
    run.cur_nimg += run.options.batch
    run.batch_idx += 1
    if run.ada is not None and run.ada.should_update(run.batch_idx):
        run.ada.update(run.augment_pipe, run.options.batch,
                       all_reduce=lambda tensor: distributed.all_reduce_sum_(tensor, run.ctx))
    return stats, bad == 0


class TickStats:
    """The step scalars of one tick, summed on the device and read back once, at the tick's end.

    Non-finite values are left out of the means; a minibatch with any non-finite loss or gradient
    counts in ``nonfinite_steps``. The run of such minibatches in a row carries across ticks, and
    `read` reports the first minibatch at which it reached `limit`.
    """

    def __init__(self, device: torch.device, limit: int) -> None:
        self.limit = limit
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.nonfinite = torch.zeros([], device=device)
        self.streak = torch.zeros([], device=device)
        self.tripped_at = torch.full([], -1.0, device=device)

    def add(self, stats: dict[str, torch.Tensor], finite: torch.Tensor, batch_idx: int) -> None:
        for name, value in stats.items():
            value = value.detach().float()
            ok = torch.isfinite(value)
            self.sums[name] = self.sums.get(name, 0) + torch.where(ok, value, 0)
            self.counts[name] = self.counts.get(name, 0) + ok.float()
        bad = (~finite).float()
        self.nonfinite = self.nonfinite + bad
        self.streak = (self.streak + 1) * bad
        reached = (self.tripped_at < 0) & (self.streak >= self.limit)
        self.tripped_at = torch.where(reached, batch_idx, self.tripped_at)

    def read(self, ctx: DistContext) -> tuple[dict[str, float | None], int, int | None]:
        """Means over ranks and steps (None: no finite value), non-finite minibatches, and the
        minibatch where `limit` in a row was reached (None: not reached); then starts a new tick."""
        names = sorted(self.sums)
        parts = [self.sums[name] for name in names] + [self.counts[name] for name in names]
        sums = distributed.all_reduce_sum_(torch.stack(parts) if parts else self.nonfinite.new_zeros([0]), ctx)
        values = torch.cat([sums, torch.stack([self.nonfinite, self.tripped_at])]).tolist()
        means = {name: values[i] / values[len(names) + i] if values[len(names) + i] else None
                 for i, name in enumerate(names)}
        nonfinite, tripped = int(values[-2]), int(values[-1])
        self.sums, self.counts = {}, {}
        self.nonfinite = torch.zeros_like(self.nonfinite)
        return means, nonfinite, None if tripped < 0 else tripped


# ------------------------------------------------------------------------------- building a run
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_options(options: TrainOptions, dataset: ImageDataset, world_size: int = 1) -> tuple[TrainOptions, NetworkConfig]:
    """Fill every None from the config for this dataset's resolution and the number of processes."""
    config = resolve_config(
        options.cfg, dataset.resolution, world_size, channel_base=options.channel_base,
        channel_max=options.channel_max, mapping_layers=options.mapping_layers, batch=options.batch,
        gamma=options.gamma, glr=options.glr, dlr=options.dlr, mbstd_group=options.mbstd_group,
    )
    ada_kimg = options.ada_kimg if options.ada_kimg is not None else (100 if options.resume_from else 500)
    resolved = dataclasses.replace(
        options, data=str(Path(options.data).resolve()), run_dir=str(Path(options.run_dir).resolve()),
        batch=config.batch, gamma=config.gamma, glr=config.glr, dlr=config.dlr, ada_kimg=ada_kimg,
        channel_base=config.channel_base, channel_max=config.channel_max,
        mapping_layers=config.mapping_layers, mbstd_group=config.mbstd_group,
        resume_from=None if options.resume_from is None else str(Path(options.resume_from).resolve()),
    )
    return resolved, config


def open_dataset(options: TrainOptions) -> ImageDataset:
    dataset = ImageDataset(options.data, use_labels=options.cond, xflip=options.mirror)
    if options.cond and dataset.label_dim == 0:
        raise ValueError(f"{options.data}: cond=True needs labels in dataset.json, but it has none.")
    return dataset


def _build_networks(options: TrainOptions, dataset: ImageDataset, ctx: DistContext,
                    init_kwargs: tuple[dict[str, Any], dict[str, Any]] | None) -> tuple[torch.nn.Module, ...]:
    if init_kwargs is not None:  # resuming: exactly the networks the snapshot was trained with
        expected = (init_kwargs[0]["img_resolution"], init_kwargs[0]["img_channels"], init_kwargs[0]["c_dim"])
        found = (dataset.resolution, dataset.num_channels, dataset.label_dim)
        if found != expected:
            raise ValueError(
                f"resume: {options.data} has (resolution, channels, labels) {found}, but the run in "
                f"{options.run_dir} was trained on {expected}; resume it with its own dataset."
            )
        G, D = build_module("Generator", init_kwargs[0]), build_module("Discriminator", init_kwargs[1])
    elif options.resume_from:  # transfer learning: the source's architecture at this dataset's shape
        fp16 = ctx.device.type == "cuda" and not options.fp32
        G, D = transfer.build_target(
            snapshot_meta(options.resume_from), dataset.resolution, dataset.num_channels, dataset.label_dim,
            num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None, freeze_layers=options.freezed,
        )
    else:
        fp16 = ctx.device.type == "cuda" and not options.fp32
        G, D = build_networks(
            options.cfg, dataset.resolution, dataset.num_channels, dataset.label_dim, ctx.world_size,
            channel_base=options.channel_base, channel_max=options.channel_max,
            mapping_layers=options.mapping_layers, mbstd_group=options.mbstd_group,
            num_fp16_res=4 if fp16 else 0, conv_clamp=256 if fp16 else None,
        )
        D.freeze_first(options.freezed)
    return G, D


def build_run(options: TrainOptions, ctx: DistContext, dataset: ImageDataset | None = None,
              init_kwargs: tuple[dict[str, Any], dict[str, Any]] | None = None) -> TrainingRun:
    """Networks, optimisers, augmentation and loss for `options` (seeded; nothing written to disk)."""
    dataset = dataset if dataset is not None else open_dataset(options)
    options, config = resolve_options(options, dataset, ctx.world_size)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # as the reference: TF32 costs accuracy here
        torch.backends.cudnn.allow_tf32 = False
    _seed_everything(options.seed)  # same networks on every rank
    G, D = _build_networks(options, dataset, ctx, init_kwargs)
    G, D = G.train().to(ctx.device), D.train().to(ctx.device)
    trainable = {module: [p for p in module.parameters() if p.requires_grad] for module in (G, D)}
    G.requires_grad_(False)
    D.requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    ema_rampup = None if options.resume_from else config.ema_rampup
    if options.resume_from and init_kwargs is None:  # transfer learning (a resumed run has its own weights)
        _load_transfer_weights(options.resume_from, G, D, G_ema)
    distributed.broadcast_module_([G, D, G_ema], ctx)

    augment_pipe, ada = None, None
    if options.aug != "noaug":
        augment_pipe = make_augment_pipe(options.augpipe, options.p or 0.0).train().requires_grad_(False)
        augment_pipe = augment_pipe.to(ctx.device)
        if options.aug == "ada":
            ada = AdaController(target=options.target, interval=ADA_INTERVAL, ada_kimg=options.ada_kimg)
    loss = StyleGAN2Loss(G, D, augment_pipe=augment_pipe, ada=ada, r1_gamma=options.gamma,
                         style_mixing_prob=config.style_mixing_prob, pl_weight=config.pl_weight)
    phases, optimizers = [], {}
    for name, module, lr, reg_interval in (("G", G, options.glr, G_REG_INTERVAL), ("D", D, options.dlr, D_REG_INTERVAL)):
        mb_ratio = reg_interval / (reg_interval + 1)  # lazy regularisation: Adam sees fewer, larger steps
        opt = torch.optim.Adam(trainable[module], lr=lr * mb_ratio, betas=tuple(b**mb_ratio for b in ADAM_BETAS),
                               eps=ADAM_EPS)
        phases += [Phase(f"{name}main", trainable[module], opt, 1),
                   Phase(f"{name}reg", trainable[module], opt, reg_interval)]
        optimizers[name] = opt
    _seed_everything(options.seed * ctx.world_size + ctx.rank)  # distinct noise and latents per rank
    labels = dataset.labels if dataset.label_dim else np.zeros([len(dataset), 0], np.float32)
    return TrainingRun(options=options, config=config, ctx=ctx, dataset=dataset, G=G, D=D, G_ema=G_ema,
                       augment_pipe=augment_pipe, ada=ada, loss=loss, phases=phases, optimizers=optimizers,
                       gen_labels=torch.as_tensor(labels, device=ctx.device), ema_rampup=ema_rampup)


def _load_transfer_weights(path: str, G: torch.nn.Module, D: torch.nn.Module, G_ema: torch.nn.Module) -> None:
    """Transfer, adapt or initialise each block (see stylegan2ada.transfer; its table is transfer_table)."""
    transfer.transfer_weights(load_snapshot(path), G, D, G_ema)


# ------------------------------------------------------------------------ snapshot state <-> run
def snapshot_state(run: TrainingRun, resolved_dict: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The snapshot dict of this moment, with its stats.jsonl `record` (collective under torchrun)."""
    rngs = distributed.all_gather_objects(rng_state(), run.ctx)
    return {
        "G": run.G.state_dict(), "D": run.D.state_dict(), "G_ema": run.G_ema.state_dict(),
        "G_init_kwargs": run.G.init_kwargs, "D_init_kwargs": run.D.init_kwargs,
        "options": resolved_dict,
        "meta": {"kimg": run.cur_nimg / 1000, "cur_nimg": run.cur_nimg, "batch_idx": run.batch_idx,
                 "world_size": run.ctx.world_size, "extra_meta": run.options.extra_meta,
                 "torch_version": str(torch.__version__), "device": str(run.device), "stats": record},
        "state": {
            "G_opt": run.optimizers["G"].state_dict(), "D_opt": run.optimizers["D"].state_dict(),
            "augment_pipe": None if run.augment_pipe is None else run.augment_pipe.state_dict(),
            "ada": None if run.ada is None else run.ada.state_dict(),
            "loss": run.loss.state_dict(), "rng": rngs,
        },
    }


def restore_state(run: TrainingRun, snapshot: dict[str, Any]) -> bool:
    """Load the full training state; True when this rank's RNG streams were restored exactly."""
    for name in ("G", "D", "G_ema"):
        getattr(run, name).load_state_dict(snapshot[name])
    state = snapshot["state"]
    run.optimizers["G"].load_state_dict(state["G_opt"])
    run.optimizers["D"].load_state_dict(state["D_opt"])
    if run.augment_pipe is not None:
        run.augment_pipe.load_state_dict(state["augment_pipe"])
    if run.ada is not None:
        run.ada.load_state_dict(state["ada"])
    run.loss.load_state_dict(state["loss"])
    run.cur_nimg, run.batch_idx = int(snapshot["meta"]["cur_nimg"]), int(snapshot["meta"]["batch_idx"])
    rngs = state["rng"]
    if len(rngs) == run.ctx.world_size:
        set_rng_state(rngs[run.ctx.rank])
        return True
    # Another world size: the saved streams do not map onto these ranks; seed fresh ones from the position.
    _seed_everything((run.options.seed * run.ctx.world_size + run.ctx.rank) * 1_000_003 + run.batch_idx)
    return False


def _merge_resume_options(options: TrainOptions, stored: dict[str, Any], source: Path) -> TrainOptions:
    """A resumed run computes what it computed before: run-defining options come from the snapshot."""
    missing = [name for name in RUN_DEFINING if name not in stored]
    if missing:
        raise SnapshotError(f"{source}: its recorded options lack {', '.join(missing)}; the snapshot is damaged.")
    defaults = TrainOptions(data=options.data, run_dir=options.run_dir)
    conflicts = [
        f"{name}={getattr(options, name)!r} (snapshot: {stored[name]!r})"
        for name in RUN_DEFINING
        if getattr(options, name) != getattr(defaults, name) and getattr(options, name) != stored[name]
    ]
    if conflicts:
        raise ValueError(
            f"resume: {source} was trained with other settings: {', '.join(conflicts)}. Resume with the run's "
            f"own settings, or start a new run_dir (resume_from={source} for transfer learning)."
        )
    merged = {name: stored[name] for name in RUN_DEFINING}
    merged["extra_meta"] = options.extra_meta or stored.get("extra_meta", {})
    merged["resume_from"] = stored.get("resume_from")
    return dataclasses.replace(options, **merged)


def _prepare(options: TrainOptions) -> tuple[TrainOptions, Path | None]:
    """The options a call actually runs with, and the snapshot it resumes from (if any)."""
    if options.ops is not None:
        ops.set_impl(options.ops)
    newest = latest_snapshot(options.run_dir)
    if newest is None:
        return options, None
    if not options.resume:
        raise FileExistsError(
            f"{options.run_dir} already holds {newest.name}: pass resume=True to continue that run, or choose "
            f"a new run_dir."
        )
    return _merge_resume_options(options, snapshot_meta(newest)["options"], newest), newest


# ------------------------------------------------------------------------------- public helpers
def _parameter_count(module: torch.nn.Module) -> int:
    return sum(param.numel() for param in module.parameters())


def describe(options: TrainOptions) -> dict[str, Any]:
    """Resolved options, network sizes and parameter counts, without training (for --dry-run)."""
    options, resume_path = _prepare(options)
    dataset = open_dataset(options)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved, config = resolve_options(options, dataset, world_size)
    device = distributed.resolve_device(options.device)
    ctx = DistContext(0, world_size, 0, torch.device("cpu"), False)
    init_kwargs = None
    if resume_path is not None:
        meta = snapshot_meta(resume_path)
        init_kwargs = (meta["G_init_kwargs"], meta["D_init_kwargs"])
    with preserved_rng():
        G, D = _build_networks(resolved, dataset, dataclasses.replace(ctx, device=device), init_kwargs)
    return _run_description(resolved, config, dataset, ctx, G, D, device, resume_path)


def _run_description(options: TrainOptions, config: NetworkConfig, dataset: ImageDataset, ctx: DistContext,
                     G: torch.nn.Module, D: torch.nn.Module, device: torch.device,
                     resume_path: Path | None) -> dict[str, Any]:
    return {
        **options.to_dict(),
        "network": dataclasses.asdict(config),
        "ema_rampup": None if options.resume_from else config.ema_rampup,
        "dataset": dataset.describe(),
        "G_params": _parameter_count(G), "D_params": _parameter_count(D),
        "G_init_kwargs": G.init_kwargs, "D_init_kwargs": D.init_kwargs,
        "resolved_device": str(device), "fp16": G.init_kwargs["synthesis_kwargs"]["num_fp16_res"] > 0,
        "world_size": ctx.world_size, "batch_per_rank": options.batch // ctx.world_size,
        "resume_snapshot": None if resume_path is None else str(resume_path),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training_step(run: TrainingRun, real_img: torch.Tensor, real_c: torch.Tensor,
                       repeats: int = 3) -> dict[str, Any]:
    """Median seconds of each phase and of the EMA, and the full step with lazy phases amortised."""
    medians: dict[str, float] = {}
    for phase in run.phases:
        run_phase(run, phase, real_img, real_c)  # warm-up: allocations, cudnn autotuning
        times = []
        for _ in range(repeats):
            _sync(run.device)
            start = time.perf_counter()
            run_phase(run, phase, real_img, real_c)
            _sync(run.device)
            times.append(time.perf_counter() - start)
        medians[phase.name] = statistics.median(times)
    update_ema(run)
    ema_times = []
    for _ in range(repeats):
        _sync(run.device)
        start = time.perf_counter()
        update_ema(run)
        _sync(run.device)
        ema_times.append(time.perf_counter() - start)
    medians["ema"] = statistics.median(ema_times)
    step = medians["ema"] + sum(medians[phase.name] / phase.interval for phase in run.phases)
    return {"phase_s": medians, "step_s": step, "sec_per_kimg": step / run.options.batch * 1000}


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    real_img = images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1
    return real_img, labels.to(device, non_blocking=True).to(torch.float32)


def real_batches(run: TrainingRun) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's real minibatches from the run's current position on, as float [-1, 1] on device."""
    sampler = InfiniteSampler(len(run.dataset), run.options.batch, seed=run.options.seed, rank=run.ctx.rank,
                              world_size=run.ctx.world_size, start_step=run.batch_idx)
    loader = torch.utils.data.DataLoader(
        run.dataset, batch_size=run.batch_per_rank, sampler=sampler, num_workers=run.options.workers,
        pin_memory=run.device.type == "cuda", generator=torch.Generator().manual_seed(run.options.seed),
    )
    for images, labels in loader:
        yield _to_device(images, labels, run.device)


def measure_sec_per_kimg(options: TrainOptions, steps: int = 3) -> float:
    """Expected sec/kimg of this run on this machine, from a short warm-up (nothing is written)."""
    options, _ = _prepare(options)
    ctx = DistContext(0, 1, 0, distributed.resolve_device(options.device), False)
    with preserved_rng():
        run = build_run(dataclasses.replace(options, workers=0), ctx)
        real_img, real_c = next(real_batches(run))
        return float(time_training_step(run, real_img, real_c, repeats=steps)["sec_per_kimg"])


# ------------------------------------------------------------------------------------ run files
@dataclasses.dataclass(frozen=True)
class ImageGrid:
    """The reals.png / fakes-NNNNNN.png layout: fixed images, labels and latents for the whole run."""

    columns: int
    rows: int
    reals: np.ndarray  # uint8 NCHW
    labels: np.ndarray  # [N, label_dim]
    seed: int

    @classmethod
    def for_dataset(cls, dataset: ImageDataset, seed: int) -> ImageGrid:
        """One class per row when labelled, else random images; small, since on a CPU each fake costs."""
        columns = int(np.clip(1280 // dataset.resolution, 4, 8))
        rows = int(np.clip(720 // dataset.resolution, 4, 6))
        rng = np.random.default_rng(seed)
        if dataset.label_dim:
            classes = dataset.labels.argmax(1)
            present = np.unique(classes)
            indices = np.concatenate([
                rng.choice(np.flatnonzero(classes == present[row % present.size]), columns) for row in range(rows)
            ])
        else:
            indices = rng.choice(len(dataset), rows * columns, replace=len(dataset) < rows * columns)
        images, labels = zip(*(dataset[int(index)] for index in indices))
        return cls(columns, rows, np.stack(images), np.stack(labels), seed)

    @torch.no_grad()
    def fakes(self, run: TrainingRun) -> np.ndarray:
        """G_ema's images for the grid's fixed latents (own generator) and labels, constant noise."""
        z = torch.randn([len(self.labels), run.G_ema.z_dim], generator=torch.Generator().manual_seed(self.seed))
        c = torch.as_tensor(self.labels, dtype=torch.float32)
        batch = run.batch_per_rank
        images = [run.G_ema(z_part.to(run.device), c_part.to(run.device), noise_mode="const").cpu()
                  for z_part, c_part in zip(z.split(batch), c.split(batch))]
        return (torch.cat(images) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()

    def png(self, images: np.ndarray) -> bytes:
        """uint8 NCHW images as one PNG; 1-channel images give a grayscale PNG."""
        _, channels, height, width = images.shape
        canvas = images.reshape(self.rows, self.columns, channels, height, width).transpose(0, 3, 1, 4, 2)
        canvas = canvas.reshape(self.rows * height, self.columns * width, channels)
        buffer = io.BytesIO()
        PIL.Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas).save(buffer, format="png")
        return buffer.getvalue()


class RunFiles:
    """log.txt, stats.jsonl and image grids of a run folder; silent on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir, self.enabled = run_dir, enabled
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in run_dir.glob(".*.tmp"):  # temp files of an atomic write a kill interrupted
                stale.unlink()

    def log(self, line: str) -> None:
        if self.enabled:
            print(line, flush=True)
            with open(self.run_dir / "log.txt", "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def stats(self, record: dict[str, Any]) -> None:
        if self.enabled:
            append_jsonl(self.run_dir / "stats.jsonl", record)

    def truncate_stats(self, cur_nimg: int) -> int | None:
        """Drop records a killed run wrote after the snapshot it resumes from; the last kept cur_nimg."""
        path = self.run_dir / "stats.jsonl"
        if not self.enabled or not path.exists():
            return None
        kept, last = [], None
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if record.get("cur_nimg", 0) <= cur_nimg:
                kept.append(line + "\n")
                last = record.get("cur_nimg")
        atomic_write_text(path, "".join(kept))
        return last

    def image(self, name: str, data: bytes) -> None:
        if self.enabled:
            atomic_write_bytes(self.run_dir / name, data)


def _format_seconds(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m {sec:02d}s"


def _peak_memory(device: torch.device) -> dict[str, float]:
    peak = {"peak_ram_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if device.type == "cuda":
        peak["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return peak


# ---------------------------------------------------------------------------------- the loop
def train(options: TrainOptions, snapshot_hook: SnapshotHook | None = None) -> Path:
    """Train (or resume) a run; returns the final snapshot. Works alone or under torchrun.

    `snapshot_hook(snapshot_path, G_ema, kimg) -> {name: value}` runs on rank 0 after each
    snapshot; its values are added to that tick's stats.jsonl record. It does not disturb the
    training RNG, so hooks never change the weights a run reaches.
    """
    ctx = distributed.init_from_env(options.device)
    try:
        return _train(options, snapshot_hook, ctx)
    finally:
        distributed.shutdown(ctx)


def _train(options: TrainOptions, snapshot_hook: SnapshotHook | None, ctx: DistContext) -> Path:
    options, resume_path = _prepare(options)
    files = RunFiles(Path(options.run_dir), ctx.is_main)
    dataset = open_dataset(options)
    resumed = load_snapshot(resume_path, ctx.device) if resume_path is not None else None
    init_kwargs = (resumed["G_init_kwargs"], resumed["D_init_kwargs"]) if resumed is not None else None
    run = build_run(options, ctx, dataset, init_kwargs)
    description = _run_description(run.options, run.config, dataset, ctx, run.G, run.D, ctx.device, resume_path)
    if ctx.is_main:
        atomic_write_json(Path(options.run_dir) / "training_options.json", description)
    total_nimg = round(run.options.kimg * 1000)
    snap_nimg = max(round(run.options.snap * 1000), 1)
    tick_nimg = max(round(run.options.tick_kimg * 1000), 1)
    grid = ImageGrid.for_dataset(dataset, run.options.seed)
    tick, prior_s = 0, 0.0
    if resumed is not None:  # continue the tick count and the training clock
        try:  # the snapshot was read as data; what it holds may still not fit (damaged or planted)
            tick, prior_s = resumed["meta"]["stats"]["tick"] + 1, resumed["meta"]["stats"]["total_s"]
            exact = restore_state(run, resumed)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            raise SnapshotError(f"{resume_path}: its training state does not fit this run ({detail}); the "
                                f"snapshot is damaged.") from None
        files.log(f"Resuming {resume_path.name} at kimg {run.cur_nimg / 1000:.3f}, augment p "
                  f"{_augment_p(run):.4f}" + ("" if exact else "; world size changed, RNG streams reseeded"))
        if ctx.is_main and files.truncate_stats(run.cur_nimg) != run.cur_nimg:  # killed before the record
            record = {**resumed["meta"]["stats"], **_snapshot_extras(run, resume_path, snapshot_hook, files, grid)}
            files.stats(record)
        del resumed
        if run.cur_nimg >= total_nimg:
            files.log(f"Nothing to do: the run already reached {run.cur_nimg / 1000:g} of {run.options.kimg:g} kimg.")
            return resume_path
    else:
        files.truncate_stats(0)
        files.log(f"Training {dataset.path} ({len(dataset)} images, {dataset.resolution} px, "
                  f"{dataset.num_channels} ch) on {ctx.device} x{ctx.world_size}; G {description['G_params']:,} "
                  f"/ D {description['D_params']:,} parameters -> {options.run_dir}")
        files.image("reals.png", grid.png(grid.reals))
        if ctx.is_main and run.options.image_snapshots:
            files.image("fakes_init.png", grid.png(grid.fakes(run)))

    batches = real_batches(run)
    tick_stats = TickStats(run.device, run.options.nonfinite_limit)
    tick_start_nimg, tick_start = run.cur_nimg, time.perf_counter()
    start, maintenance = tick_start - prior_s, 0.0
    snapshot_path = resume_path
    while run.cur_nimg < total_nimg:
        real_img, real_c = next(batches)
        tick_stats.add(*training_step(run, real_img, real_c), run.batch_idx - 1)
        snapshot_due = run.cur_nimg >= total_nimg or run.cur_nimg // snap_nimg > (run.cur_nimg - run.options.batch) // snap_nimg
        if not (snapshot_due or run.cur_nimg >= tick_start_nimg + tick_nimg):
            continue

        means, nonfinite_steps, tripped_at = tick_stats.read(ctx)
        tick_end = time.perf_counter()
        sec_per_kimg = (tick_end - tick_start) / ((run.cur_nimg - tick_start_nimg) / 1000)
        record: dict[str, Any] = {
            "tick": tick, "kimg": run.cur_nimg / 1000, "cur_nimg": run.cur_nimg, "batch_idx": run.batch_idx,
            "timestamp": time.time(), "total_s": tick_end - start, "sec_per_tick": tick_end - tick_start,
            "sec_per_kimg": sec_per_kimg, "maintenance_s": maintenance, "augment_p": _augment_p(run),
            "nonfinite_steps": nonfinite_steps, **means, **_peak_memory(ctx.device),
        }
        files.log(_progress_line(record, (total_nimg - run.cur_nimg) / 1000 * sec_per_kimg))
        if tripped_at is not None:
            files.stats(record)
            _stop_non_finite(run, tripped_at, files)
        maintenance_start = time.perf_counter()
        if snapshot_due:
            snapshot_path = Path(options.run_dir) / snapshot_name(run.cur_nimg)
            record["snapshot"] = snapshot_path.name
            snapshot = snapshot_state(run, description, record)
            if ctx.is_main:
                save_snapshot(snapshot_path, snapshot)
                record.update(_snapshot_extras(run, snapshot_path, snapshot_hook, files, grid))
            del snapshot
            distributed.barrier(ctx)
        files.stats(record)
        tick += 1
        tick_start_nimg, tick_start = run.cur_nimg, time.perf_counter()
        maintenance = tick_start - maintenance_start
    files.log(f"Done: {snapshot_path}")
    return snapshot_path


def _progress_line(record: dict[str, Any], eta_s: float) -> str:
    losses = " ".join(f"{name} {record[name]:.3f}" for name in ("loss_G", "loss_D", "loss_G_pl", "loss_D_r1")
                      if record.get(name) is not None)
    nonfinite = f" non-finite minibatches {record['nonfinite_steps']}" if record["nonfinite_steps"] else ""
    return (f"tick {record['tick']:<4d} kimg {record['kimg']:<8.3f} time {_format_seconds(record['total_s']):<12s} "
            f"sec/kimg {record['sec_per_kimg']:<7.2f} augment p {record['augment_p']:<6.3f} {losses}{nonfinite}  "
            f"ETA {_format_seconds(eta_s)}")


def _stop_non_finite(run: TrainingRun, tripped_at: int, files: RunFiles) -> None:
    """Log and raise: `nonfinite_limit` minibatches in a row ended at minibatch `tripped_at`."""
    limit = run.options.nonfinite_limit
    last = latest_snapshot(run.options.run_dir)
    message = (
        f"non-finite losses or gradients in {limit} consecutive minibatch{'es' if limit > 1 else ''}, up to "
        f"minibatch {tripped_at} (kimg {(tripped_at + 1) * run.options.batch / 1000:.3f}); training "
        f"stopped without a snapshot of this state. The last good snapshot is "
        f"{last if last else 'none (no snapshot yet)'}; resume from it with a lower learning rate or gamma, or "
        f"check the data (nonfinite_limit sets how many non-finite minibatches in a row are trained through)."
    )
    files.log(message)
    raise NonFiniteLossError(message)


def _snapshot_extras(run: TrainingRun, path: Path, hook: SnapshotHook | None, files: RunFiles,
                     grid: ImageGrid) -> dict[str, float]:
    """The snapshot's fake-image grid and hook metrics (rank 0), leaving the training RNG untouched."""
    with preserved_rng():
        if run.options.image_snapshots:
            files.image(f"fakes-{progress_label(run.cur_nimg)}.png", grid.png(grid.fakes(run)))
        if hook is None:
            return {}
        metrics = dict(hook(path, run.G_ema, run.cur_nimg / 1000))
    files.log("metrics " + " ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
    return metrics


def _augment_p(run: TrainingRun) -> float:
    return 0.0 if run.augment_pipe is None else run.augment_pipe.p_value()
