"""`augstudy train-gan`: StyleGAN2-ADA on prepared data, one network per class or one conditional.

The original study trained one unconditional network per class; `--conditional` trains a single
class-conditional network on all classes instead. Every run folder is resumable: running the same
command again continues each run from its newest snapshot and skips runs that reached `--kimg`.
The training loop itself is `stylegan2ada.training.train`; this module only maps the study's
folders and options onto it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from augstudy.gan.cli_options import comma_list
from augstudy.locks import writing
from augstudy.options import RangedNumber, check_ranges, ranged, write_options
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.configs import CONFIG_NAMES
from stylegan2ada.io import sha256_file

CONDITIONAL_RUN = "conditional"
TRANSFER_TABLE = "transfer.txt"
# Network sizes a --resume-from run takes from its source network; setting them as well is refused.
_SOURCE_SIZES = {"channel_base": "--cbase", "channel_max": "--cmax", "mapping_layers": "--map",
                 "mbstd_group": "--mbstd-group"}
ALL_CLASSES_ZIP = "all.zip"
# Upper ends of the sizes that fill memory: 4x the largest minibatch of the reference configs on 8 GPUs
# (--cbase and --cmax stop at 4x the largest reference config), and the images of a snapshot metric
# (50k is FID's usual count).
MAX_BATCH = 4 * 512
MAX_METRICS_IMAGES = 100_000
OPTIONS_FILE = "train_gan_options.json"
# Errors caused by the inputs or the disk: the CLI and `augstudy run` show their message, no traceback.
USER_ERRORS = (OutputError,)

# Fields of TrainGanOptions handed to stylegan2ada.training.TrainOptions under the same name when set;
# None leaves the library's default (the reference train.py's) in place, so defaults live in one place.
_PASSED_THROUGH = (
    "cfg",
    "kimg",
    "batch",
    "gamma",
    "aug",
    "p",
    "target",
    "augpipe",
    "ada_kimg",
    "mirror",
    "snap",
    "seed",
    "freezed",
    "fp32",
    "workers",
    "channel_base",
    "channel_max",
    "mapping_layers",
    "glr",
    "dlr",
    "mbstd_group",
    "device",
    "ops",
    "tick_kimg",
    "nonfinite_limit",
)


@dataclasses.dataclass(frozen=True)
class TrainGanOptions:
    """What `augstudy train-gan` does. Training options left at None take stylegan2ada's defaults.

    Args:
        data: output folder of `augstudy prepare` (reads `data/gan/<class>.zip` or `data/gan/all.zip`).
        out: folder of run folders: `out/<class>/` per class, or `out/conditional/`.
        classes: the classes to train (per-class mode); empty means every prepared class.
        conditional: one class-conditional network on `all.zip` instead of one network per class.
        resume: continue runs from their newest snapshot; False refuses to touch a run that has one.
        resume_from: our snapshot or an official NVlabs .pkl to start new runs from (transfer learning),
            adapted to the data's channels, resolution and classes; ignored by runs being resumed.
        gpus: number of GPUs; several need the job started under torchrun (one process per GPU).
        metrics: metrics computed at every snapshot by `augstudy.metrics` and written to stats.jsonl.
        metrics_images: number of generated images per snapshot metric (None: the metric's default).
        inception: local TorchScript Inception network for kid/fid.
        cpu_train: without a GPU, train anyway after printing the estimated time (False: estimate only).
        threads: torch CPU threads while training (None: torch's default). Small networks on a
            few shared cores train several times faster with 1 thread than with one per core.
    """

    data: Path
    out: Path
    classes: tuple[str, ...] = ()
    conditional: bool = False
    cfg: str | None = None
    kimg: float | None = ranged(None, low=0, low_open=True)
    batch: int | None = ranged(None, low=1, high=MAX_BATCH, integer=True)
    gamma: float | None = ranged(None, low=0)
    aug: str | None = None
    p: float | None = ranged(None, low=0, high=1)
    target: float | None = ranged(None, low=0, high=1, low_open=True, high_open=True)
    augpipe: str | None = None
    ada_kimg: float | None = ranged(None, low=0, low_open=True)
    mirror: bool | None = None
    snap: float | None = ranged(None, low=0, low_open=True)
    seed: int | None = ranged(None, low=0, integer=True)
    resume: bool = True
    resume_from: Path | None = None
    freezed: int | None = ranged(None, low=0, integer=True)
    fp32: bool | None = None
    gpus: int = ranged(1, low=1, integer=True)
    workers: int | None = ranged(None, low=0, integer=True)
    channel_base: int | None = ranged(None, low=1, high=4 * 32768, integer=True, flag="--cbase")
    channel_max: int | None = ranged(None, low=1, high=4 * 512, integer=True, flag="--cmax")
    mapping_layers: int | None = ranged(None, low=1, integer=True, flag="--map")
    glr: float | None = ranged(None, low=0, low_open=True)
    dlr: float | None = ranged(None, low=0, low_open=True)
    mbstd_group: int | None = ranged(None, low=1, integer=True)
    device: str | None = None
    ops: str | None = None
    tick_kimg: float | None = ranged(None, low=0, low_open=True, flag="--tick")
    nonfinite_limit: int | None = ranged(None, low=1, integer=True)
    metrics: tuple[str, ...] = ()
    metrics_images: int | None = ranged(None, low=1, high=MAX_METRICS_IMAGES, integer=True)
    inception: Path | None = None
    cpu_train: bool = True
    threads: int | None = ranged(None, low=1, integer=True)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclasses.dataclass(frozen=True)
class GanRun:
    """One network to train: its run folder, its prepared data zip and the metadata its snapshots carry."""

    name: str
    data: Path
    run_dir: Path
    extra_meta: dict[str, Any]


def plan_runs(options: TrainGanOptions) -> list[GanRun]:
    """The runs `options` asks for, checked against the prepared data before anything trains."""
    gan_dir = Path(options.data) / "gan"
    if not gan_dir.is_dir():
        raise click.UsageError(
            f"{gan_dir} does not exist: --data must be the output folder of "
            f"`augstudy prepare SOURCE --out DIR`."
        )
    out = Path(options.out)
    if options.conditional:
        if options.classes:
            raise click.UsageError(
                "--classes picks per-class runs; a --conditional run trains on all classes."
            )
        data = gan_dir / ALL_CLASSES_ZIP
        if not data.is_file():
            raise click.UsageError(
                f"{data} is missing: re-run `augstudy prepare` to write the all-classes zip."
            )
        extra = {"class_names": _class_names(data), "data": str(data.resolve()), "data_sha256": sha256_file(data)}
        return [GanRun(CONDITIONAL_RUN, data, out / CONDITIONAL_RUN, extra)]

    available = sorted(path.stem for path in gan_dir.glob("*.zip") if path.name != ALL_CLASSES_ZIP)
    if not available:
        raise click.UsageError(
            f"{gan_dir} holds no per-class zip (<class>.zip); run `augstudy prepare` first."
        )
    unknown = [name for name in options.classes if name not in available]
    if unknown:
        raise click.UsageError(
            f"--classes {', '.join(unknown)}: not prepared in {gan_dir}; available: {', '.join(available)}."
        )
    chosen = list(dict.fromkeys(options.classes)) if options.classes else available
    return [
        GanRun(
            name,
            gan_dir / f"{name}.zip",
            out / name,
            {"class_name": name, "data": str((gan_dir / f"{name}.zip").resolve()),
             "data_sha256": sha256_file(gan_dir / f"{name}.zip")},
        )
        for name in chosen
    ]


def _class_names(data: Path) -> list[str]:
    """Class names of a labelled prepared zip, in label order."""
    from stylegan2ada.dataset import ImageDataset

    dataset = ImageDataset(data, use_labels=True)
    if not dataset.label_dim or not dataset.class_names:
        raise click.UsageError(
            f'{data}: dataset.json has no labels or no "class_names"; a conditional '
            f"run needs both (re-run `augstudy prepare`)."
        )
    return list(dataset.class_names)


def train_options_for(options: TrainGanOptions, run: GanRun, *, resume: bool) -> Any:
    """The stylegan2ada TrainOptions of one run."""
    from stylegan2ada.training import TrainOptions

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if options.gpus != world_size:
        raise click.UsageError(
            f"--gpus {options.gpus}: stylegan2ada trains on several GPUs with one process per GPU; start "
            f"the same command as `torchrun --standalone --nproc_per_node={options.gpus} -m augstudy "
            f"train-gan ...`."
        )
    overrides = {
        name: getattr(options, name) for name in _PASSED_THROUGH if getattr(options, name) is not None
    }
    try:
        return TrainOptions(
            data=run.data,
            run_dir=run.run_dir,
            cond=options.conditional,
            resume=resume,
            resume_from=None if resume or options.resume_from is None else Path(options.resume_from),
            extra_meta=run.extra_meta,
            **overrides,
        )
    except ValueError as error:  # the library names each bad option and why
        raise click.UsageError(f"[{run.name}] {error}") from error


def describe_runs(options: TrainGanOptions) -> dict[str, dict[str, Any]]:
    """Per run, the resolved training options with G and D parameter counts (what --dry-run prints)."""
    return {run.name: _describe(run, train_options_for(options, run, resume=_newest_snapshot(run) is not None))
            for run in plan_runs(options)}


def _describe(run: GanRun, train_options: Any) -> dict[str, Any]:
    """The library's description of one run; building its networks refuses what training would refuse
    (e.g. --freezed beyond D's layers, a --resume-from network that cannot be adapted to this data)."""
    from stylegan2ada.training import describe

    try:
        return describe(train_options)
    except ValueError as error:
        raise click.UsageError(f"[{run.name}] {error}") from None


def _newest_snapshot(run: GanRun) -> Path | None:
    from stylegan2ada.snapshot import SnapshotError, latest_snapshot

    try:
        return latest_snapshot(run.run_dir) if run.run_dir.is_dir() else None
    except SnapshotError as error:  # a damaged or planted snapshot in the run folder: resume cannot trust it
        raise click.ClickException(
            f"[{run.name}] cannot resume: {error} Move that file out of {run.run_dir} to resume from the "
            f"others, or choose another --out."
        ) from None


def check_same_data(run: GanRun, snapshot: Path | None) -> None:
    """Refuse to resume a run whose snapshot was trained on other data than the prepared zip holds now.

    Snapshots record the sha256 of the zip they trained on; one from before that record is trusted.
    """
    from stylegan2ada.snapshot import snapshot_meta

    if snapshot is None:
        return
    trained_on = snapshot_meta(snapshot).get("extra_meta", {}).get("data_sha256")
    if trained_on is not None and trained_on != run.extra_meta["data_sha256"]:
        raise click.UsageError(
            f"[{run.name}] {snapshot} was trained on other data than {run.data} holds now (the prepared data "
            f"changed since); choose another --out to train on the new data, or re-prepare the data as before "
            f"to continue this run."
        )


def _done_nimg(snapshot: Path | None) -> int:
    from stylegan2ada.snapshot import snapshot_meta

    return 0 if snapshot is None else int(snapshot_meta(snapshot)["cur_nimg"])


def _trains_on_cpu(device: str) -> bool:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError(
            "--device cuda: no CUDA device is available (torch.cuda.is_available() is False)."
        )
    return device == "cpu" or not torch.cuda.is_available()


def check_resume_from(options: TrainGanOptions) -> None:
    """Refuse a --resume-from file that is not a network, or size options its network already sets."""
    if options.resume_from is None:
        return
    from stylegan2ada.snapshot import SnapshotError, snapshot_meta

    clashing = [flag for name, flag in _SOURCE_SIZES.items() if getattr(options, name) is not None]
    if clashing:
        raise click.UsageError(
            f"{', '.join(clashing)} cannot be combined with --resume-from: the network's size comes from "
            f"{options.resume_from}."
        )
    try:
        snapshot_meta(options.resume_from)
    except SnapshotError as error:
        raise click.BadParameter(str(error), param_hint="--resume-from") from None


def _report_transfer(options: TrainGanOptions, run: GanRun) -> None:
    """Print what --resume-from transfers, adapts or initialises, and keep it as RUN_DIR/transfer.txt."""
    from stylegan2ada.dataset import ImageDataset
    from stylegan2ada.io import atomic_write_text
    from stylegan2ada.transfer import format_table, transfer_table

    dataset = ImageDataset(run.data, use_labels=options.conditional)
    try:
        rows = transfer_table(options.resume_from, dataset.resolution, dataset.num_channels, dataset.label_dim,
                              freeze_layers=options.freezed or 0)
    except ValueError as error:  # unsupported channel change, too many frozen layers, ...
        raise click.UsageError(f"--resume-from {options.resume_from} for [{run.name}]: {error}") from None
    table = (f"Transfer from {Path(options.resume_from).resolve()} to {dataset.resolution} px, "
             f"{dataset.num_channels} channel(s), {dataset.label_dim} classes:\n{format_table(rows)}")
    click.echo(f"[{run.name}] {table}", nl=False)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.run_dir / TRANSFER_TABLE, table)


def _metrics_hook(
    options: TrainGanOptions, run: GanRun
) -> Callable[[Path, Any, float], dict[str, float]] | None:
    """A snapshot hook that adds `options.metrics` of G_ema against the run's training images."""
    if not options.metrics:
        return None
    from augstudy.metrics.evaluate import GENERATOR_METRICS, generator_metrics

    unknown = [name for name in options.metrics if name not in GENERATOR_METRICS]
    if unknown:
        raise click.UsageError(
            f"--metrics {','.join(unknown)}: unknown; choose from {','.join(GENERATOR_METRICS)}."
        )

    extra: dict[str, Any] = {"inception_path": options.inception}
    if options.metrics_images is not None:
        extra["num_images"] = options.metrics_images
    if options.seed is not None:
        extra["seed"] = options.seed

    def hook(snapshot_path: Path, generator: Any, kimg: float) -> dict[str, float]:
        return generator_metrics(generator, run.data, metrics=tuple(options.metrics), **extra)

    return hook


def readable_duration(seconds: float) -> str:
    """A duration in the unit a reader plans with: "42 seconds", "3.5 minutes" or "1.2 hours"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 60:.1f} minutes" if seconds >= 60 else f"{seconds:.0f} seconds"


def train_gans(options: TrainGanOptions) -> dict[str, Path | None]:
    """Train (or resume) every run; returns run name -> final snapshot (None for runs not trained).

    Without a GPU the expected time is measured from a short warm-up and printed first; with
    `cpu_train=False` nothing trains.
    """
    runs = plan_runs(options)
    check_resume_from(options)
    out = _checked_out(options)
    if options.ops is not None:  # fail before any work when the requested kernels cannot be used
        from stylegan2ada import ops

        try:
            ops.set_impl(options.ops)
        except RuntimeError as error:
            raise click.UsageError(f"--ops {options.ops}: {error}") from error

    pending: list[tuple[GanRun, Any, float]] = []
    finished: dict[str, Path | None] = {}
    for run in runs:
        newest = _newest_snapshot(run)
        if newest is not None and not options.resume:
            raise click.UsageError(
                f"{run.run_dir} already holds {newest.name}; drop --no-resume to continue "
                f"it, or choose another --out to start afresh."
            )
        check_same_data(run, newest)
        train_options = train_options_for(options, run, resume=newest is not None)
        done_nimg = _done_nimg(newest)
        progress = f"{done_nimg / 1000:g} of {train_options.kimg:g} kimg"
        if newest is not None and done_nimg >= round(train_options.kimg * 1000):
            print(f"[{run.name}] finished: {newest} reached {progress}; skipped.", flush=True)
            finished[run.name] = newest
        else:
            if newest is not None:
                print(f"[{run.name}] resuming from {newest.name} ({progress}).", flush=True)
            pending.append((run, train_options, done_nimg / 1000))
    for run, train_options, _ in pending:
        _describe(run, train_options)  # fails here, before any work, on what training would fail on
        if train_options.resume_from is not None:
            _report_transfer(options, run)
    hooks = {run.name: _metrics_hook(options, run) for run, _, _ in pending}
    from stylegan2ada.snapshot import SnapshotError

    # Under torchrun every rank runs this; rank 0 holds the lock for the job (the others would be refused).
    lock = writing(out, "train-gan") if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext(out)
    with lock, torch_threads(options.threads):
        write_options(out / OPTIONS_FILE, options)  # only once every option passed its checks
        try:
            trained = _train_pending(options, pending, hooks)
        except SnapshotError as error:  # a snapshot a run resumes from does not fit it (damaged or planted)
            raise click.ClickException(str(error)) from None
    if trained is None:
        return {**finished, **{run.name: None for run, _, _ in pending}}
    finished.update(trained)
    return {run.name: finished[run.name] for run in runs}


def _checked_out(options: TrainGanOptions) -> Path:
    """--out, checked as `check_output` does for every verb (the dry run checks it too)."""
    try:
        return check_output(options.out, {"--data": options.data, "--resume-from": options.resume_from,
                                          "--inception": options.inception}, verb="train-gan", owned=(OPTIONS_FILE,))
    except OutputError as error:
        raise click.UsageError(str(error)) from error


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Use `threads` torch CPU threads inside the block, and restore the previous number after it."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise click.UsageError(f"--threads {threads}: must be at least 1.")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train_pending(options: TrainGanOptions, pending: list[tuple[GanRun, Any, float]],
                   hooks: dict[str, Any]) -> dict[str, Path] | None:
    """Estimate (on CPU) then train the pending runs; None when told not to train on the CPU."""
    from stylegan2ada.training import NonFiniteLossError, measure_sec_per_kimg, train

    if pending and _trains_on_cpu(pending[0][1].device):
        sec_per_kimg = measure_sec_per_kimg(pending[0][1])
        remaining_kimg = sum(train_options.kimg - done for _, train_options, done in pending)
        print(
            f"No CUDA GPU: training runs on the CPU. A short warm-up measured {sec_per_kimg:.1f} s/kimg; "
            f"{len(pending)} run(s), {remaining_kimg:g} kimg left, expect about "
            f"{readable_duration(sec_per_kimg * remaining_kimg)}.",
            flush=True,
        )
        if not options.cpu_train:
            print(
                "Not training (--no-cpu-train). Run on a machine with an NVIDIA GPU, or drop --no-cpu-train.",
                flush=True,
            )
            return None
    trained = {}
    for run, train_options, _ in pending:
        print(f"[{run.name}] training on {run.data} -> {run.run_dir}", flush=True)
        try:
            trained[run.name] = train(train_options, snapshot_hook=hooks[run.name])
        except NonFiniteLossError as error:  # the library's message says what to do next
            raise click.ClickException(f"[{run.name}] {error}") from error
    return trained


@click.command("train-gan")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder of `augstudy prepare`.",
)
@click.option(
    "--out",
    type=OutputPath(),
    required=True,
    help="Folder of run folders (one per class, or `conditional`).",
)
@click.option("--classes", multiple=True, callback=comma_list, help="Classes to train (default: all).")
@click.option("--conditional", is_flag=True, help="One class-conditional network on all classes.")
@click.option("--cfg", type=click.Choice(CONFIG_NAMES), help="Base configuration [default: auto].")
@click.option("--kimg", type=RangedNumber(TrainGanOptions, "kimg"),
              help="Training length in thousands of real images shown to D.")
@click.option("--batch", type=RangedNumber(TrainGanOptions, "batch"),
              help="Minibatch size (overrides the config).")
@click.option("--gamma", type=RangedNumber(TrainGanOptions, "gamma"),
              help="R1 regularisation weight (overrides the config).")
@click.option("--aug", type=click.Choice(["ada", "fixed", "noaug"]), help="Augmentation mode [default: ada].")
@click.option("--p", type=RangedNumber(TrainGanOptions, "p"), help="Augment probability for --aug fixed.")
@click.option("--target", type=RangedNumber(TrainGanOptions, "target"),
              help="ADA target value of E[sign(D(real))].")
@click.option(
    "--augpipe",
    help="Augmentation pipeline: blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, "
    "bgcfn, bgcfnc [default: bgc].",
)
@click.option("--ada-kimg", type=RangedNumber(TrainGanOptions, "ada_kimg"),
              help="ADA adjustment speed (kimg for p to go 0 -> 1).")
@click.option("--mirror/--no-mirror", default=None, help="Add x-flipped copies of the training images.")
@click.option("--snap", type=RangedNumber(TrainGanOptions, "snap"), help="kimg between snapshots.")
@click.option("--tick", "tick_kimg", type=RangedNumber(TrainGanOptions, "tick_kimg"),
              help="kimg between progress lines.")
@click.option("--nonfinite-limit", type=RangedNumber(TrainGanOptions, "nonfinite_limit"),
              help="Stop after this many minibatches in a row with NaN/inf losses or gradients [default: 100].")
@click.option("--seed", type=RangedNumber(TrainGanOptions, "seed"), help="Random seed.")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue each run from its newest snapshot (--no-resume refuses runs that have one).",
)
@click.option(
    "--resume-from",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Snapshot or official NVlabs .pkl to start new runs from (transfer learning): adapted to the data's "
    "channels, resolution and classes; the table of what was transferred goes to RUN/transfer.txt.",
)
@click.option("--freezed", type=RangedNumber(TrainGanOptions, "freezed"),
              help="Freeze the first N layers of D (transfer learning).")
@click.option("--fp32/--fp16", default=None, help="Disable mixed precision (always FP32 on CPU).")
@click.option("--gpus", type=RangedNumber(TrainGanOptions, "gpus"),
              default=1, show_default=True, help="Number of GPUs.")
@click.option("--workers", type=RangedNumber(TrainGanOptions, "workers"),
              help="Data loader worker processes.")
@click.option("--threads", type=RangedNumber(TrainGanOptions, "threads"),
              help="Torch CPU threads while training [default: torch's].")
@click.option("--cbase", "channel_base", type=RangedNumber(TrainGanOptions, "channel_base"),
              help="Override channel_base (network width).")
@click.option("--cmax", "channel_max", type=RangedNumber(TrainGanOptions, "channel_max"),
              help="Override channel_max (maximum channels per layer).")
@click.option("--map", "mapping_layers", type=RangedNumber(TrainGanOptions, "mapping_layers"),
              help="Override the number of mapping layers.")
@click.option("--glr", type=RangedNumber(TrainGanOptions, "glr"), help="Override G's learning rate.")
@click.option("--dlr", type=RangedNumber(TrainGanOptions, "dlr"), help="Override D's learning rate.")
@click.option("--mbstd-group", type=RangedNumber(TrainGanOptions, "mbstd_group"),
              help="Override the minibatch-stddev group size.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train [default: auto].")
@click.option("--ops", type=click.Choice(["auto", "ref", "cuda"]),
              help="Custom ops: CUDA kernels when they build (auto), reference PyTorch (ref), or kernels or fail "
                   "(cuda) [default: $STYLEGAN2ADA_OPS, else auto].")
@click.option(
    "--metrics",
    multiple=True,
    callback=comma_list,
    help="Metrics at every snapshot, into stats.jsonl: swd (no download), kid, fid.",
)
@click.option("--metrics-images", type=RangedNumber(TrainGanOptions, "metrics_images"),
              help="Generated images per snapshot metric.")
@click.option(
    "--inception",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Local TorchScript Inception network for kid/fid.",
)
@click.option(
    "--cpu-train/--no-cpu-train",
    default=True,
    show_default=True,
    help="Without a GPU, train on the CPU after printing the expected time (--no-cpu-train: "
    "print the estimate only).",
)
@click.option("--dry-run", is_flag=True, help="Print each network's resolved options as JSON and exit.")
def train_gan_command(dry_run: bool, **kwargs: Any) -> None:
    """Train StyleGAN2-ADA on prepared data: one network per class, or one --conditional network."""
    options = TrainGanOptions(**kwargs)
    if dry_run:
        check_resume_from(options)
        _checked_out(options)
        click.echo(json.dumps(describe_runs(options), indent=2, sort_keys=True, default=str))
        return
    try:
        train_gans(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
