"""`augstudy train-diffusion`: a denoising diffusion model per class, or one class-conditional, on the
prepared GAN data (the same zips as `train-gan`), so the two generators see exactly the same images.

Run folders mirror train-gan's: `OUT/<class>/` or `OUT/conditional/` with `training_options.json`,
`log.txt`, `stats.jsonl` and `diffusion-snapshot-*.pt` (see `augstudy.diffusion.snapshot`). Running
the same command again resumes each run from its newest snapshot, exactly, and skips finished runs.
The whole training step is `_train_step`: draw noise and timesteps from the run's own generator, add
noise with MONAI's scheduler, regress the noise, Adam, EMA.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import click

from augstudy.gan.cli_options import comma_list
from augstudy.gan.train import GanRun, plan_runs, readable_duration, torch_threads
from augstudy.options import RangedNumber, check_ranges, options_to_dict, ranged, write_options
from augstudy.outputs import OutputError, check_output

OPTIONS_FILE = "train_diffusion_options.json"
EMA_RAMPUP = 0.05  # as StyleGAN2-ADA's G_ema: the half-life is at most 5 % of the images seen so far
MEASURE_STEPS = 3
# Options that change what a run learns; resuming with a different value would silently mix two runs.
_FIXED_ON_RESUME = ("cfg", "batch", "lr", "ema_kimg", "channels", "attention", "res_blocks", "norm_groups",
                    "timesteps", "schedule", "mirror", "seed", "conditional")


def _bool_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[bool, ...]:
    if value is None:
        return ()
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in words]
    if unknown or not items:
        raise click.BadParameter(f"{value!r}: give one 0/1 per UNet level, e.g. 0,0,1", param=param)
    return tuple(words[item] for item in items)


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    try:
        items = tuple(int(item) for item in value.split(",") if item.strip())
    except ValueError:
        items = ()
    if not items or min(items) < 1:
        raise click.BadParameter(f"{value!r}: give positive integers per UNet level, e.g. 32,64,64", param=param)
    return items


@dataclasses.dataclass(frozen=True)
class TrainDiffusionOptions:
    """What `augstudy train-diffusion` does. Network and training options left at None/() take `cfg`'s.

    Args:
        data: output folder of `augstudy prepare` (reads `data/gan/<class>.zip` or `data/gan/all.zip`).
        out: folder of run folders: `out/<class>/` per class, or `out/conditional/`.
        classes: the classes to train (per-class mode); empty means every prepared class.
        conditional: one class-conditional model (MONAI's class embedding) on `all.zip`.
        cfg: named size and defaults (`model.CONFIGS`): "cpu" (small, 32-64 px on a CPU) or "base" (GPU).
        kimg: training length in thousands of images seen.
        batch, lr: minibatch and Adam learning rate.
        ema_kimg: half-life of the EMA weights in kimg (0: the EMA weights are the trained weights).
        channels, attention, res_blocks, norm_groups: the UNet (see `model.NetworkConfig`).
        timesteps, schedule: the training noise schedule (MONAI's names).
        mirror: add x-flipped copies of the training images.
        snap, tick_kimg: kimg between snapshots and between progress lines.
        seed: seeds the data order, the noise, the timesteps and the initial weights.
        resume: continue runs from their newest snapshot; False refuses to touch a run that has one.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        threads: torch CPU threads while training (None: torch's default).
    """

    data: Path
    out: Path
    classes: tuple[str, ...] = ()
    conditional: bool = False
    cfg: str = "cpu"
    kimg: float = ranged(200.0, low=0, low_open=True)
    batch: int | None = ranged(None, low=1, integer=True)
    lr: float | None = ranged(None, low=0, low_open=True)
    ema_kimg: float | None = ranged(None, low=0)
    channels: tuple[int, ...] = ()
    attention: tuple[bool, ...] = ()
    res_blocks: int | None = ranged(None, low=1, integer=True)
    norm_groups: int | None = ranged(None, low=1, integer=True)
    timesteps: int = ranged(1000, low=2, high=10000, integer=True)
    schedule: str = "linear_beta"
    mirror: bool = False
    snap: float = ranged(10.0, low=0, low_open=True)
    tick_kimg: float = ranged(1.0, low=0, low_open=True, flag="--tick")
    seed: int = ranged(0, low=0, high=2**63 - 1, integer=True)
    resume: bool = True
    device: str = "auto"
    threads: int | None = ranged(None, low=1, integer=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        from augstudy.diffusion.model import CONFIGS, SCHEDULES

        if self.cfg not in CONFIGS:
            raise click.BadParameter(f"{self.cfg!r}: choose from {', '.join(CONFIGS)}", param_hint="--cfg")
        if self.schedule not in SCHEDULES:
            raise click.BadParameter(f"{self.schedule!r}: choose from {', '.join(SCHEDULES)}",
                                     param_hint="--schedule")
        if self.device not in ("auto", "cpu", "cuda"):
            raise click.BadParameter(f"{self.device!r}: choose auto, cpu or cuda", param_hint="--device")
        if any(width < 1 for width in self.channels):
            raise click.BadParameter(f"{list(self.channels)}: widths must be >= 1", param_hint="--channels")

    def resolved(self) -> dict[str, Any]:
        """Every option with the config's defaults filled in (what the run records and resume compares)."""
        from augstudy.diffusion.model import CONFIGS

        config = CONFIGS[self.cfg]
        values = options_to_dict(self)
        for name in ("batch", "lr", "ema_kimg", "res_blocks", "norm_groups"):
            if values[name] is None:
                values[name] = getattr(config, name)
        values["channels"] = list(self.channels or config.channels)
        values["attention"] = list(self.attention or config.attention)
        return values


@dataclasses.dataclass
class DiffusionRun:
    """One model in training: networks, optimizer, the run's generator and where it stands."""

    model: Any
    ema: Any
    optimizer: Any
    scheduler: Any
    generator: Any
    images: Any  # all training images, float [-1, 1], [N, C, H, W] on the CPU
    labels: Any  # class indices [N] or None
    settings: dict[str, Any]
    device: Any
    step: int = 0
    cur_nimg: int = 0
    train_s: float = 0.0


def _device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False).")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def _open_dataset(run: GanRun, conditional: bool, mirror: bool) -> Any:
    from stylegan2ada.dataset import DatasetError, ImageDataset

    try:
        return ImageDataset(run.data, use_labels=conditional, xflip=mirror)
    except DatasetError as error:
        raise click.UsageError(str(error)) from None


def _load_images(run: GanRun, conditional: bool, mirror: bool) -> tuple[Any, Any, dict[str, Any]]:
    """The whole prepared zip as one float tensor in [-1, 1] (the sets are small), and class indices."""
    import numpy as np
    import torch

    dataset = _open_dataset(run, conditional, mirror)
    pixels = np.stack([dataset[index][0] for index in range(len(dataset))])
    images = torch.from_numpy(pixels).float() / 127.5 - 1
    labels = torch.from_numpy(dataset.labels.argmax(axis=1)).long() if conditional else None
    return images, labels, dataset.describe()


def _network(settings: dict[str, Any], data: dict[str, Any], classes: int) -> dict[str, Any]:
    from augstudy.diffusion.model import check_unet_kwargs, unet_kwargs

    kwargs = unet_kwargs(tuple(settings["channels"]), tuple(settings["attention"]), settings["res_blocks"],
                         settings["norm_groups"], data["num_channels"], classes)
    problem = check_unet_kwargs(kwargs, data["resolution"])
    if problem:
        raise click.UsageError(f"--channels/--attention/--norm-groups: {problem}.")
    return kwargs


def _resume_settings(settings: dict[str, Any], stored: dict[str, Any], snapshot: Path) -> None:
    changed = [f"{name} {settings[name]!r} (snapshot: {stored[name]!r})" for name in _FIXED_ON_RESUME
               if settings[name] != stored.get(name)]
    if changed:
        raise click.UsageError(
            f"{snapshot} was trained with other settings: {'; '.join(changed)}. Resume with the snapshot's "
            f"settings (only --kimg, --snap, --tick, --device and --threads may change), or use another --out."
        )


def build_run(options: TrainDiffusionOptions, run: GanRun, snapshot: Path | None) -> DiffusionRun:
    """A fresh run, or the state stored in `snapshot`, ready for the next training step."""
    import torch

    from augstudy.diffusion.model import build_scheduler, build_unet, scheduler_kwargs
    from augstudy.diffusion.snapshot import load_snapshot
    from stylegan2ada.snapshot import set_rng_state

    settings = options.resolved()
    images, labels, data = _load_images(run, options.conditional, options.mirror)
    classes = len(run.extra_meta.get("class_names") or []) if options.conditional else 0
    kwargs = _network(settings, data, classes)
    settings.update({"unet_kwargs": kwargs, "scheduler_kwargs": scheduler_kwargs(options.timesteps, options.schedule),
                     "dataset": data, "extra_meta": run.extra_meta})
    device = _device(options.device)
    torch.manual_seed(options.seed)
    model = build_unet(kwargs).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    state = DiffusionRun(model, copy.deepcopy(model).requires_grad_(False), optimizer,
                         build_scheduler(settings["scheduler_kwargs"]),
                         torch.Generator().manual_seed(options.seed), images, labels, settings, device)
    if snapshot is not None:
        stored = load_snapshot(snapshot)
        _resume_settings(settings, stored["options"], snapshot)
        state.model.load_state_dict(stored["model"])
        state.ema.load_state_dict(stored["ema"])
        state.optimizer.load_state_dict(stored["state"]["optimizer"])
        state.generator.set_state(stored["state"]["generator"])
        set_rng_state(stored["state"]["rng"])
        meta = stored["meta"]
        state.step, state.cur_nimg, state.train_s = int(meta["step"]), int(meta["cur_nimg"]), float(meta["train_s"])
    return state


def _batch_indices(run: DiffusionRun) -> Any:
    """Image indices of minibatch `run.step`: a pure function of the seed and the step (exact resume)."""
    from stylegan2ada.dataset import InfiniteSampler

    batch = run.settings["batch"]
    sampler = iter(InfiniteSampler(len(run.images), batch, seed=run.settings["seed"], start_step=run.step))
    return [next(sampler) for _ in range(batch)]


def _train_step(run: DiffusionRun) -> float:
    """One minibatch: noise the images at random timesteps, regress the noise, Adam, EMA; returns the loss."""
    import torch

    from augstudy.diffusion.model import denoising_loss

    indices = _batch_indices(run)
    images = run.images[indices]
    noise = torch.randn(images.shape, generator=run.generator)
    timesteps = torch.randint(0, run.scheduler.num_train_timesteps, (len(indices),), generator=run.generator)
    labels = None if run.labels is None else run.labels[indices].to(run.device)
    loss = denoising_loss(run.model, run.scheduler, images.to(run.device), noise.to(run.device),
                          timesteps.to(run.device), labels)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.step += 1
    run.cur_nimg += len(indices)
    _update_ema(run)
    return float(loss.detach())


def _update_ema(run: DiffusionRun) -> None:
    """ema <- model with half-life ema_kimg, ramped up over the first images (as StyleGAN2-ADA's G_ema)."""
    import torch

    ema_nimg = min(run.settings["ema_kimg"] * 1000, run.cur_nimg * EMA_RAMPUP)
    beta = 0.5 ** (run.settings["batch"] / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(run.ema.parameters(), run.model.parameters()):
            p_ema.copy_(p.lerp(p_ema, beta))
        for b_ema, b in zip(run.ema.buffers(), run.model.buffers()):
            b_ema.copy_(b)


def _snapshot(run: DiffusionRun, record: dict[str, Any]) -> dict[str, Any]:
    import monai
    import torch

    from stylegan2ada.snapshot import rng_state

    settings = run.settings
    return {
        "kind": "diffusion",
        "model": run.model.state_dict(), "ema": run.ema.state_dict(),
        "unet_kwargs": settings["unet_kwargs"], "scheduler_kwargs": settings["scheduler_kwargs"],
        "options": {key: value for key, value in settings.items() if key not in ("unet_kwargs", "scheduler_kwargs")},
        "meta": {"kimg": run.cur_nimg / 1000, "cur_nimg": run.cur_nimg, "step": run.step, "train_s": run.train_s,
                 "resolution": settings["dataset"]["resolution"], "channels": settings["dataset"]["num_channels"],
                 "extra_meta": settings["extra_meta"], "stats": record, "torch_version": str(torch.__version__),
                 "monai_version": str(monai.__version__)},
        "state": {"optimizer": run.optimizer.state_dict(), "generator": run.generator.get_state(),
                  "rng": rng_state()},
    }


def measure(run: DiffusionRun, steps: int = MEASURE_STEPS) -> dict[str, float]:
    """Seconds per kimg of training and per image of one sampler step, timed on a throwaway copy.

    The run itself is untouched: the copy has its own optimizer state and generator.
    """
    import torch

    from stylegan2ada.snapshot import preserved_rng

    trial = dataclasses.replace(run, model=copy.deepcopy(run.model), ema=copy.deepcopy(run.ema),
                                generator=torch.Generator().manual_seed(0))
    trial.optimizer = torch.optim.Adam(trial.model.parameters(), lr=run.settings["lr"])
    with preserved_rng():
        _train_step(trial)  # warm-up: first-call allocations
        start = time.perf_counter()
        for _ in range(steps):
            _train_step(trial)
        sec_per_kimg = (time.perf_counter() - start) / (steps * run.settings["batch"]) * 1000
        batch = run.images[: run.settings["batch"]].to(run.device)
        labels = None if run.labels is None else run.labels[: len(batch)].to(run.device)
        timesteps = torch.full((len(batch),), 1, dtype=torch.long, device=run.device)
        with torch.no_grad():
            start = time.perf_counter()
            trial.ema(x=batch, timesteps=timesteps, class_labels=labels)
            sec_per_image_step = (time.perf_counter() - start) / len(batch)
    return {"sec_per_kimg": sec_per_kimg, "sec_per_image_step": sec_per_image_step}


def _progress_line(record: dict[str, Any], eta_s: float) -> str:
    return (f"tick {record['tick']:<4d} kimg {record['kimg']:<8.3f} time {readable_duration(record['total_s']):<12s} "
            f"sec/kimg {record['sec_per_kimg']:<7.2f} loss {record['loss']:.4f}  ETA {readable_duration(eta_s)}")


def train_run(options: TrainDiffusionOptions, run: GanRun) -> Path:
    """Train (or resume) one run to `options.kimg`; returns its final snapshot."""
    from augstudy.diffusion.model import parameter_count
    from augstudy.diffusion.snapshot import latest_snapshot, save_snapshot, snapshot_meta, snapshot_name
    from stylegan2ada.io import atomic_write_json
    from stylegan2ada.training import RunFiles

    newest = latest_snapshot(run.run_dir)
    state = build_run(options, run, newest)
    files = RunFiles(run.run_dir, True)  # also deletes the temp files of a write a kill interrupted
    total_nimg = round(options.kimg * 1000)
    snap_nimg, tick_nimg = max(round(options.snap * 1000), 1), max(round(options.tick_kimg * 1000), 1)
    atomic_write_json(run.run_dir / "training_options.json",
                      {**state.settings, "parameters": parameter_count(state.model)})
    tick = 0
    if newest is not None:
        tick = int(snapshot_meta(newest)["stats"]["tick"]) + 1
        files.truncate_stats(state.cur_nimg)
        files.log(f"Resuming {newest.name} at kimg {state.cur_nimg / 1000:.3f}.")
    else:
        files.truncate_stats(0)
        files.log(f"Training {run.data} ({len(state.images)} images, {state.settings['dataset']['resolution']} px) "
                  f"on {state.device}; UNet {parameter_count(state.model):,} parameters -> {run.run_dir}")
    snapshot_path = newest
    tick_start_nimg, tick_start, losses = state.cur_nimg, time.perf_counter(), []
    while state.cur_nimg < total_nimg:
        step_start = time.perf_counter()
        loss = _train_step(state)
        state.train_s += time.perf_counter() - step_start
        if not math.isfinite(loss):
            message = (f"[{run.name}] non-finite loss at kimg {state.cur_nimg / 1000:.3f}; training stopped without "
                       f"a snapshot of this state. The last good snapshot is {snapshot_path or 'none'}; resume "
                       f"with a lower --lr into a new --out.")
            files.log(message)
            raise click.ClickException(message)
        losses.append(loss)
        batch = state.settings["batch"]
        snapshot_due = state.cur_nimg >= total_nimg or state.cur_nimg // snap_nimg > (state.cur_nimg - batch) // snap_nimg
        if not (snapshot_due or state.cur_nimg >= tick_start_nimg + tick_nimg):
            continue
        now = time.perf_counter()
        sec_per_kimg = (now - tick_start) / ((state.cur_nimg - tick_start_nimg) / 1000)
        record: dict[str, Any] = {"tick": tick, "kimg": state.cur_nimg / 1000, "cur_nimg": state.cur_nimg,
                                  "step": state.step, "timestamp": time.time(), "total_s": state.train_s,
                                  "sec_per_kimg": sec_per_kimg, "loss": sum(losses) / len(losses)}
        files.log(_progress_line(record, (total_nimg - state.cur_nimg) / 1000 * sec_per_kimg))
        if snapshot_due:
            snapshot_path = run.run_dir / snapshot_name(state.cur_nimg)
            record["snapshot"] = snapshot_path.name
            save_snapshot(snapshot_path, _snapshot(state, record))
        files.stats(record)
        tick += 1
        tick_start_nimg, tick_start, losses = state.cur_nimg, time.perf_counter(), []
    files.log(f"Done: {snapshot_path} (training wall time {readable_duration(state.train_s)}).")
    return snapshot_path


def _plan(options: TrainDiffusionOptions) -> list[tuple[GanRun, Path | None, int]]:
    """Each run with its newest snapshot and the images it has already seen."""
    from augstudy.diffusion.snapshot import latest_snapshot, snapshot_meta
    from stylegan2ada.snapshot import SnapshotError

    planned = []
    for run in plan_runs(options):  # type: ignore[arg-type]  # reads data/out/classes/conditional only
        try:
            newest = latest_snapshot(run.run_dir)
            meta = None if newest is None else snapshot_meta(newest)
        except SnapshotError as error:
            raise click.ClickException(str(error)) from None
        done = 0 if meta is None else int(meta["cur_nimg"])
        if meta is not None and options.resume:  # refused before the options file is rewritten
            _resume_settings(options.resolved(), meta["options"], newest)
        dataset = _open_dataset(run, options.conditional, False)  # checks the network fits before any work
        _network(options.resolved(), dataset.describe(), dataset.label_dim)
        if newest is not None and not options.resume:
            raise click.UsageError(f"{run.run_dir} already holds {newest.name}; drop --no-resume to continue it, "
                                   f"or choose another --out to start afresh.")
        planned.append((run, newest, done))
    return planned


def describe_runs(options: TrainDiffusionOptions) -> dict[str, dict[str, Any]]:
    """Per run: resolved options, UNet parameter count and a time estimate measured on this machine."""
    from augstudy.diffusion.model import parameter_count
    from augstudy.diffusion.sample import default_steps

    described = {}
    with torch_threads(options.threads):
        for run, newest, done in _plan(options):
            state = build_run(options, run, newest)
            timing = measure(state)
            remaining_kimg = max(options.kimg - done / 1000, 0)
            steps = default_steps("ddim", options.timesteps)
            described[run.name] = {
                **state.settings, "parameters": parameter_count(state.model), "done_kimg": done / 1000,
                "measured_sec_per_kimg": timing["sec_per_kimg"],
                "estimated_train_s": timing["sec_per_kimg"] * remaining_kimg,
                "estimated_sec_per_image_ddim": timing["sec_per_image_step"] * steps, "ddim_steps": steps,
            }
    return described


def train_diffusions(options: TrainDiffusionOptions) -> dict[str, Path]:
    """Train (or resume) every run; returns run name -> final snapshot. Prints a measured estimate first."""
    planned = _plan(options)
    try:
        out = check_output(options.out, {"--data": options.data})
    except OutputError as error:
        raise click.UsageError(str(error)) from error
    write_options(out / OPTIONS_FILE, options)
    finished: dict[str, Path] = {}
    with torch_threads(options.threads):
        for run, newest, done in planned:
            if newest is not None and done >= round(options.kimg * 1000):
                print(f"[{run.name}] finished: {newest} reached {done / 1000:g} of {options.kimg:g} kimg; skipped.",
                      flush=True)
                finished[run.name] = newest
                continue
            timing = measure(build_run(options, run, newest))
            left = options.kimg - done / 1000
            print(f"[{run.name}] a short warm-up measured {timing['sec_per_kimg']:.1f} s/kimg; {left:g} kimg left, "
                  f"expect about {readable_duration(timing['sec_per_kimg'] * left)}.", flush=True)
            finished[run.name] = train_run(options, run)
    return finished


@click.command("train-diffusion")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder of `augstudy prepare`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of run folders (one per class, or `conditional`).")
@click.option("--classes", multiple=True, callback=comma_list, help="Classes to train (default: all).")
@click.option("--conditional", is_flag=True, help="One class-conditional model on all classes.")
@click.option("--cfg", type=click.Choice(["cpu", "base"]), default="cpu", show_default=True,
              help="UNet size and training defaults: cpu (~1.1 M parameters) or base (GPU).")
@click.option("--kimg", type=RangedNumber(TrainDiffusionOptions, "kimg"), default=200.0, show_default=True,
              help="Training length in thousands of images seen.")
@click.option("--batch", type=RangedNumber(TrainDiffusionOptions, "batch"), help="Minibatch [default: cfg's].")
@click.option("--lr", type=RangedNumber(TrainDiffusionOptions, "lr"), help="Adam learning rate [default: cfg's].")
@click.option("--ema-kimg", type=RangedNumber(TrainDiffusionOptions, "ema_kimg"),
              help="EMA half-life in kimg [default: cfg's].")
@click.option("--channels", callback=_int_list, help="UNet widths per level, e.g. 32,64,64 [default: cfg's].")
@click.option("--attention", callback=_bool_list, help="Self-attention per level, e.g. 0,0,1 [default: cfg's].")
@click.option("--res-blocks", type=RangedNumber(TrainDiffusionOptions, "res_blocks"),
              help="Residual blocks per level [default: cfg's].")
@click.option("--norm-groups", type=RangedNumber(TrainDiffusionOptions, "norm_groups"),
              help="GroupNorm groups (divides every width) [default: cfg's].")
@click.option("--timesteps", type=RangedNumber(TrainDiffusionOptions, "timesteps"), default=1000,
              show_default=True, help="Diffusion steps of the training noise schedule.")
@click.option("--schedule", type=click.Choice(["linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"]),
              default="linear_beta", show_default=True, help="MONAI noise schedule.")
@click.option("--mirror/--no-mirror", default=False, show_default=True, help="Add x-flipped copies of the images.")
@click.option("--snap", type=RangedNumber(TrainDiffusionOptions, "snap"), default=10.0, show_default=True,
              help="kimg between snapshots.")
@click.option("--tick", "tick_kimg", type=RangedNumber(TrainDiffusionOptions, "tick_kimg"), default=1.0,
              show_default=True, help="kimg between progress lines.")
@click.option("--seed", type=RangedNumber(TrainDiffusionOptions, "seed"), default=0, show_default=True,
              help="Random seed.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue each run from its newest snapshot (--no-resume refuses runs that have one).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train.")
@click.option("--threads", type=RangedNumber(TrainDiffusionOptions, "threads"),
              help="Torch CPU threads while training [default: torch's].")
@click.option("--dry-run", is_flag=True,
              help="Print each run's resolved options, parameter count and measured time estimate as JSON; exit.")
def train_diffusion_command(dry_run: bool, **kwargs: Any) -> None:
    """Train a denoising diffusion model (MONAI UNet) on prepared data: per class, or one --conditional."""
    options = TrainDiffusionOptions(**kwargs)
    if dry_run:
        click.echo(json.dumps(describe_runs(options), indent=2, sort_keys=True, default=str))
        return
    train_diffusions(options)
