"""`augstudy generate`: a synthetic pool `POOL/<class>/seedNNNNN.png` from StyleGAN2-ADA or diffusion snapshots.

Image i comes from seed i whatever the batch size: z is drawn from one RNG per seed (the NVlabs
`np.random.RandomState(seed)` way) and so is the per-layer noise when noise_mode is "random".
Pixels can still differ by one grey level between batch sizes, because batched float32 kernels
(matmul, grouped convolution) round differently from single-image ones.
Every image is written atomically and recorded in `POOL/manifest.csv` with its hash and the
settings that made it, so a re-run regenerates only what is missing, altered or made differently.
Diffusion snapshots (`augstudy train-diffusion`) make the same pool format through
`augstudy.diffusion.sample` (image i from seed i there too); their sampler and step count take the
place of truncation and noise mode. `POOL/sampling.json` records the images/s of each class's last run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image, PngImagePlugin

from augstudy.gan.cli_options import comma_list
from augstudy.locks import writing
from augstudy.options import (
    MAX_SIDE,
    OptionError,
    RangedNumber,
    check_memory,
    check_ranges,
    ranged,
    write_options,
)
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import atomic_open, atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

MANIFEST_FIELDS = (
    "file",
    "class",
    "seed",
    "snapshot",
    "snapshot_sha256",
    "truncation",
    "noise_mode",
    "size",
    "sha256",
    "sampler",
)
# Columns a manifest written before diffusion pools existed lacks; read as empty (a GAN image).
_OPTIONAL_FIELDS = ("sampler",)
NOISE_MODES = ("const", "random", "none")
MANIFEST_EVERY_S = 30.0
PREVIEW_TILE = 128
MARKER_KEY = "augstudy-generate"
OUTPUT_MARKS = ("manifest.csv", "generate_options.json")  # a pool written before its lock existed
# Memory held per planned image (its seed, manifest row and bookkeeping), an upper estimate.
BYTES_PER_PLANNED_IMAGE = 1000


@dataclasses.dataclass(frozen=True)
class GenerateOptions:
    """What `augstudy generate` does.

    Args:
        networks: snapshots (`network-snapshot-NNNNNN.pt`); unconditional ones make one class each.
        out: the pool folder.
        per_class: images per class, seeds 0..N-1 (exclusive with `seeds`).
        seeds: explicit seeds, the same for every class.
        truncation: truncation psi (1.0 = none).
        noise_mode: per-pixel noise: "const" (the snapshot's fixed noise), "random" (per seed) or "none".
        batch: images per forward pass; results do not depend on it.
        size: output side in px, resized with Lanczos (None: the network's resolution).
        classes: conditional networks: the classes to make (default all); unconditional networks:
            one class name per snapshot, overriding the name stored in the snapshot.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        preview_per_class: images per class in `preview.png`.
        sampler: diffusion snapshots only: "ddim" (deterministic, few steps; the default) or "ddpm"
            (every training step).
        steps: diffusion snapshots only: sampler steps (default: 50 for DDIM, all training steps for DDPM).
    """

    networks: tuple[Path, ...]
    out: Path
    per_class: int | None = ranged(None, low=1, high=2**32, integer=True)  # seeds are 32-bit
    seeds: tuple[int, ...] = ()
    truncation: float = ranged(1.0, low=0, high=1, flag="--trunc")
    noise_mode: str = "const"
    batch: int = ranged(16, low=1, high=4096, integer=True)
    size: int | None = ranged(None, low=4, high=MAX_SIDE, integer=True)
    classes: tuple[str, ...] = ()
    device: str = "auto"
    preview_per_class: int = ranged(8, low=1, high=64, integer=True)
    sampler: str | None = None
    steps: int | None = ranged(None, low=1, integer=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.per_class is not None:
            check_memory("--per-class", "per_class", self.per_class, self.per_class * BYTES_PER_PLANNED_IMAGE,
                         "a pool of this many images per class")

    def resolved_seeds(self) -> tuple[int, ...]:
        if (self.per_class is None) == (not self.seeds):
            raise click.UsageError("Give exactly one of --per-class N and --seeds (e.g. 0-999).")
        if self.per_class is not None:
            return tuple(range(self.per_class))
        return self.seeds


@dataclasses.dataclass(frozen=True)
class ClassJob:
    """One class of the pool: the snapshot that makes it and, for conditional networks, its label index."""

    class_name: str
    snapshot: Path
    class_index: int | None


def parse_seeds(spec: str) -> tuple[int, ...]:
    """'0-3,7,10-11' -> (0, 1, 2, 3, 7, 10, 11); order kept, duplicates dropped."""
    seeds: list[int] = []
    for chunk in spec.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        try:
            if "-" in chunk:
                first, last = (int(part) for part in chunk.split("-", 1))
                if last < first:
                    raise ValueError
                try:  # before the range is expanded into memory
                    check_memory("--seeds", "seeds", spec, (len(seeds) + last - first + 1) * BYTES_PER_PLANNED_IMAGE,
                                 "a pool of this many images per class")
                except OptionError as error:
                    raise click.BadParameter(error.problem, param_hint="--seeds") from None
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(chunk))
        except ValueError:
            raise click.BadParameter(
                f"{chunk!r} is not a seed or a range like 0-999", param_hint="--seeds"
            ) from None
    if not seeds or min(seeds) < 0 or max(seeds) >= 2**32:
        raise click.BadParameter(f"{spec!r}: seeds must be integers in [0, 2**32)", param_hint="--seeds")
    return tuple(dict.fromkeys(seeds))


def seed_latents(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """z of each seed from its own RNG, the NVlabs way, so that image i never depends on its batch."""
    return np.stack([np.random.RandomState(seed).randn(z_dim) for seed in seeds]).astype(np.float32)


def _per_seed_noise_mode(seeds: Sequence[int]) -> Any:
    """A torch function mode that draws the synthesis noise of sample k from the RNG of seeds[k].

    The generator draws its per-pixel noise as one batched `torch.randn([N, ...])` per layer; inside this mode
    each such call is answered row by row from one torch.Generator per seed, in call order, so the
    noise of seed i is the same whatever the batch size (and the device: draws happen on the CPU).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    class PerSeedNoise(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
        ) -> Any:
            kwargs = dict(kwargs or {})
            if func is not torch.randn:
                return func(*args, **kwargs)
            sized = len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size))
            shape = tuple(args[0]) if sized else tuple(args)
            if not shape or shape[0] != len(generators):
                raise RuntimeError(
                    f"per-seed noise: the generator drew noise of shape {list(shape)} whose first "
                    f"dimension is not the batch size {len(generators)}"
                )
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            rows = [
                torch.randn(shape[1:], generator=generator, dtype=torch.float32) for generator in generators
            ]
            return torch.stack(rows).to(device=kwargs.get("device") or "cpu", dtype=dtype)

    return PerSeedNoise()


def synthesize(
    generator: Any,
    seeds: Sequence[int],
    *,
    class_index: int | None = None,
    truncation: float = 1.0,
    noise_mode: str = "const",
    device: Any = "cpu",
) -> np.ndarray:
    """uint8 images [N, H, W, C] of `seeds`, batched in one forward pass; image i depends on seeds[i] only."""
    import torch

    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode {noise_mode!r}: choose from {', '.join(NOISE_MODES)}")
    z = torch.from_numpy(seed_latents(seeds, generator.z_dim)).to(device)
    labels = torch.zeros([len(seeds), generator.c_dim], device=device)
    if generator.c_dim:
        if class_index is None or not 0 <= class_index < generator.c_dim:
            raise ValueError(f"a conditional generator needs a class index in [0, {generator.c_dim})")
        labels[:, class_index] = 1
    with torch.no_grad():
        if noise_mode == "random":
            with _per_seed_noise_mode(seeds):
                images = generator(z, labels, truncation_psi=truncation, noise_mode="random")
        else:
            images = generator(z, labels, truncation_psi=truncation, noise_mode=noise_mode)
    images = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def encode_png(image: np.ndarray, size: int | None = None, marker: str | None = None) -> bytes:
    """PNG bytes of one HWC uint8 image: mode L for 1 channel, RGB for 3; Lanczos-resized to `size`.

    `marker` is stored as a PNG text chunk (MARKER_KEY): the settings that made the image, so a re-run
    can trust a finished file even when the manifest never recorded it (see `_marked_made`).
    """
    channels = image.shape[2]
    if channels not in (1, 3):
        raise ValueError(
            f"cannot write a {channels}-channel image as PNG; networks must have 1 or 3 channels"
        )
    picture = Image.fromarray(image[:, :, 0] if channels == 1 else image)  # uint8: mode L or RGB
    if size is not None and picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.LANCZOS)
    info = None
    if marker is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(MARKER_KEY, marker)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def image_marker(identity: dict[str, str], seed: int) -> str:
    """The completion marker of one image: every setting that made it, as canonical JSON."""
    return json.dumps({**identity, "seed": str(seed)}, sort_keys=True)


def _marked_made(path: Path, marker: str) -> bool:
    """True when `path` is a finished PNG carrying exactly `marker`.

    Images are written atomically (temp file, then rename), so a file under its final name is
    whole; its text chunk says which settings made it. It is still decoded completely, so a file
    damaged since is made again.
    """
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.info.get(MARKER_KEY) != marker:
                return False
            image.load()
            return True
    except (OSError, ValueError):
        return False


def remove_stale_temporaries(pool: Path, class_names: Sequence[str]) -> int:
    """Delete the temp files (`.NAME.<random>.tmp`) a killed run left in the pool and its class folders."""
    removed = 0
    for folder in [pool, *(pool / name for name in class_names)]:
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            if path.is_file():
                path.unlink()
                removed += 1
    return removed


def plan_classes(
    options: GenerateOptions, metas: Sequence[dict[str, Any]], c_dims: Sequence[int]
) -> list[ClassJob]:
    """Which class each snapshot makes: unconditional ones from their extra_meta "class_name" (or
    --class, one per snapshot), conditional ones every class of their "class_names" (or the --class ones)."""
    networks = [Path(path) for path in options.networks]
    conditional = [c_dim > 0 for c_dim in c_dims]
    if options.classes and any(conditional) and not all(conditional):
        raise click.UsageError(
            "--class is ambiguous when conditional and unconditional snapshots are mixed; "
            "run generate once for each kind."
        )
    if options.classes and not any(conditional) and len(options.classes) != len(networks):
        raise click.UsageError(
            f"--class names the class of each unconditional snapshot in order: got "
            f"{len(options.classes)} names for {len(networks)} snapshots."
        )
    jobs: list[ClassJob] = []
    for position, (snapshot, meta, c_dim) in enumerate(zip(networks, metas, c_dims)):
        extra = meta.get("extra_meta") or {}
        if not c_dim:
            name = options.classes[position] if options.classes else extra.get("class_name")
            if not name:
                raise click.UsageError(
                    f"{snapshot}: unconditional snapshot without a class_name in its metadata; "
                    f"name its class with --class."
                )
            jobs.append(ClassJob(str(name), snapshot, None))
            continue
        names = [str(name) for name in extra.get("class_names") or range(c_dim)]
        if len(names) != c_dim:
            raise click.UsageError(
                f"{snapshot}: {len(names)} class_names for a generator with {c_dim} classes."
            )
        unknown = [name for name in options.classes if name not in names]
        if unknown:
            raise click.UsageError(
                f"--class {', '.join(unknown)}: not a class of {snapshot} (classes: {', '.join(names)})."
            )
        jobs.extend(ClassJob(name, snapshot, names.index(name)) for name in (options.classes or names))
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.class_name in seen:
            raise click.UsageError(
                f"class {job.class_name!r} would be made by both {seen[job.class_name]} and "
                f"{job.snapshot}; pass one snapshot per class."
            )
        seen[job.class_name] = job.snapshot
    return jobs


def read_manifest(path: Path) -> dict[str, dict[str, str]]:
    """Manifest rows by file; a missing manifest is an empty one."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [field for field in MANIFEST_FIELDS
                   if field not in (reader.fieldnames or ()) and field not in _OPTIONAL_FIELDS]
        if missing:
            raise click.ClickException(
                f"{path}: not a pool manifest (missing columns {', '.join(missing)}); "
                f"move it away or choose another --out."
            )
        return {row["file"]: {**dict.fromkeys(_OPTIONAL_FIELDS, ""), **row} for row in reader}


def write_manifest(path: Path, rows: dict[str, dict[str, str]]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        for file in sorted(rows):
            writer.writerow({field: rows[file].get(field, "") for field in MANIFEST_FIELDS})


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _load_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.copy()


def write_preview(pool: Path, rows: dict[str, dict[str, str]], per_class: int) -> Path:
    """A grid with one row per class of its first `per_class` images (by seed), tiles at most 128 px."""
    by_class: dict[str, list[dict[str, str]]] = {}
    for row in rows.values():
        by_class.setdefault(row["class"], []).append(row)
    tiles = [
        [
            _load_image(pool / row["file"])
            for row in sorted(found, key=lambda row: int(row["seed"]))[:per_class]
        ]
        for _, found in sorted(by_class.items())
    ]
    tile = min([PREVIEW_TILE] + [image.size[0] for line in tiles for image in line])
    grey = all(image.mode == "L" for line in tiles for image in line)
    columns = max((len(line) for line in tiles), default=1)
    grid = Image.new("L" if grey else "RGB", (columns * tile, max(len(tiles), 1) * tile))
    for row_index, line in enumerate(tiles):
        for column, image in enumerate(line):
            image = image.convert(grid.mode).resize((tile, tile), Image.Resampling.LANCZOS)
            grid.paste(image, (column * tile, row_index * tile))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    atomic_write_bytes(pool / "preview.png", buffer.getvalue())
    return pool / "preview.png"


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise click.UsageError(
            "--device cuda: no CUDA device is available (torch.cuda.is_available() is False)."
        )
    return torch.device(name)


def _check(options: GenerateOptions) -> None:
    if not options.networks:
        raise click.UsageError("Give at least one --network SNAPSHOT.")
    for snapshot in options.networks:
        if not Path(snapshot).is_file():
            raise click.UsageError(f"--network {snapshot}: no such snapshot file.")
    if options.noise_mode not in NOISE_MODES:
        raise click.UsageError(f"--noise-mode {options.noise_mode}: choose from {', '.join(NOISE_MODES)}.")


def _is_made(row: dict[str, str] | None, identity: dict[str, str]) -> bool:
    """True when a (verified) manifest row records an image made with exactly these settings."""
    return row is not None and all(row.get(key) == value for key, value in identity.items())


def image_file(class_name: str, seed: int) -> str:
    """Path of an image relative to the pool."""
    return f"{class_name}/seed{seed:05d}.png"


DIFFUSION = "diffusion"
TIMING_FILE = "sampling.json"


@dataclasses.dataclass(frozen=True)
class Network:
    """A snapshot to generate from: its kind ("gan" or "diffusion"), metadata and number of classes."""

    path: Path
    kind: str
    meta: dict[str, Any]
    c_dim: int

    @property
    def resolution(self) -> int:
        """The side in px of the images it makes."""
        if self.kind == DIFFUSION:
            return int(self.meta["resolution"])
        return int(self.meta["G_init_kwargs"].get("img_resolution", 256))

    def load(self, device: Any) -> Any:
        """G_ema for a GAN; (UNet, scheduler_kwargs) for a diffusion snapshot."""
        if self.kind == DIFFUSION:
            from augstudy.diffusion.snapshot import load_denoiser

            return load_denoiser(self.path, device=device)
        from stylegan2ada.snapshot import load_generator

        return load_generator(self.path, device=device)


def _read_network(path: Path) -> Network:
    """The snapshot's kind and metadata; SnapshotError for a file that is neither kind."""
    from augstudy.diffusion.snapshot import is_diffusion_snapshot
    from augstudy.diffusion.snapshot import snapshot_meta as diffusion_meta
    from stylegan2ada.snapshot import snapshot_meta

    if is_diffusion_snapshot(path):
        meta = diffusion_meta(path)
        classes = (meta.get("extra_meta") or {}).get("class_names") or []
        return Network(path, DIFFUSION, meta, len(classes) if meta["unet_kwargs"].get("num_class_embeds") else 0)
    meta = snapshot_meta(path)
    return Network(path, "gan", meta, int(meta["G_init_kwargs"]["c_dim"]))


def _check_kind_options(options: GenerateOptions, networks: dict[Path, Network]) -> tuple[str, int] | None:
    """Refuse options that do not apply to the snapshots' kind; the diffusion (sampler, steps) to use."""
    from augstudy.diffusion.sample import default_steps, sampler_problem

    kinds = {network.kind for network in networks.values()}
    if len(kinds) > 1:
        raise click.UsageError("--network: GAN and diffusion snapshots are mixed; a pool comes from one kind of "
                               "generator (run generate once per kind, into separate --out folders).")
    if DIFFUSION not in kinds:
        if options.sampler is not None or options.steps is not None:
            raise click.UsageError("--sampler/--steps apply to diffusion snapshots; these are StyleGAN2-ADA "
                                   "networks (use --trunc and --noise-mode).")
        return None
    if options.truncation != 1.0 or options.noise_mode != "const":
        raise click.UsageError("--trunc/--noise-mode apply to StyleGAN2-ADA networks; for diffusion snapshots "
                               "choose --sampler ddim|ddpm and --steps N.")
    sampler, chosen = options.sampler or "ddim", set()
    for network in networks.values():
        timesteps = int(network.meta["scheduler_kwargs"]["num_train_timesteps"])
        steps = options.steps if options.steps is not None else default_steps(sampler, timesteps)
        problem = sampler_problem(sampler, steps, timesteps)
        if problem:
            raise click.UsageError(f"{network.path}: {problem}.")
        chosen.add(steps)
    if len(chosen) > 1:
        raise click.UsageError(f"--steps: these snapshots default to different step counts {sorted(chosen)}; "
                               f"give --steps N for all of them.")
    return sampler, chosen.pop()


def _diffusion_images(loaded: Any, meta: dict[str, Any], seeds: Sequence[int], class_index: int | None,
                      sampler: tuple[str, int], device: Any) -> np.ndarray:
    from augstudy.diffusion.sample import sample_images

    model, scheduler_kwargs = loaded
    shape = (int(meta["channels"]), int(meta["resolution"]), int(meta["resolution"]))
    return sample_images(model, scheduler_kwargs, seeds, shape, class_index=class_index, sampler=sampler[0],
                         steps=sampler[1], device=device)


def _read_timing(pool: Path) -> dict[str, Any]:
    """Sampling speed per class from earlier runs (kept for classes this run does not regenerate)."""
    try:
        timing = json.loads((pool / TIMING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return timing if isinstance(timing, dict) else {}


def generate_pool(options: GenerateOptions) -> dict[str, int]:
    """Write the pool; returns {"generated": n, "skipped": m}.

    An image is skipped when the manifest records it with the same class, seed, snapshot hash,
    truncation, noise mode (diffusion: sampler and steps) and size and its file still has the recorded hash, or when its file
    carries the completion marker of exactly these settings (a killed run's finished images that
    the manifest, rewritten every MANIFEST_EVERY_S seconds, had not recorded yet). So a killed run
    redoes at most the images that were in flight; its stale temp files are deleted first.
    """
    from stylegan2ada.snapshot import SnapshotError

    _check(options)
    seeds = options.resolved_seeds()
    try:
        check_output(options.out, [("--network", network) for network in options.networks], verb="generate",
                     owned=OUTPUT_MARKS)
    except OutputError as error:
        raise click.UsageError(str(error)) from error
    device = _device(options.device)
    try:
        given = [_read_network(Path(snapshot)) for snapshot in options.networks]
    except SnapshotError as error:  # names the file and why it is not a snapshot
        raise click.ClickException(str(error)) from error
    networks = {network.path: network for network in given}
    sampler = _check_kind_options(options, networks)
    jobs = plan_classes(options, [network.meta for network in given], [network.c_dim for network in given])

    pool = Path(options.out)
    side = options.size or max(network.resolution for network in given)
    present = sum(len(list((pool / job.class_name).glob("seed*.png"))) for job in jobs)
    needed = max(0, len(seeds) * len(jobs) - present) * side**2 * 3 // 2  # PNGs: about half of raw RGB
    try:
        with writing(pool, "generate", needed=needed):
            return _write_pool(options, pool, jobs, seeds, device, networks, sampler)
    except OutputError as error:  # another writer, or a full disk
        raise click.ClickException(str(error)) from error


def _write_pool(options: GenerateOptions, pool: Path, jobs: list[ClassJob], seeds: tuple[int, ...],
                device: Any, networks: dict[Path, Network], sampler: tuple[str, int] | None) -> dict[str, int]:
    """generate_pool's work, under the writer lock of the pool."""
    from stylegan2ada.snapshot import SnapshotError

    remove_stale_temporaries(pool, [job.class_name for job in jobs])
    write_options(pool / "generate_options.json", options)
    manifest_path = pool / "manifest.csv"
    rows = {  # only rows whose file is intact count as made
        file: row
        for file, row in read_manifest(manifest_path).items()
        if (pool / file).is_file() and sha256_file(pool / file) == row["sha256"]
    }
    counts = {"generated": 0, "skipped": 0}
    last_manifest = time.monotonic()
    snapshot_hashes = {Path(snapshot): sha256_file(snapshot) for snapshot in options.networks}
    loaded: tuple[Path, Any] | None = None  # one generator in memory at a time
    timing = _read_timing(pool)
    for job in jobs:
        snapshot = Path(job.snapshot)
        network = networks[snapshot]
        settings = {
            "class": job.class_name,
            "snapshot": str(snapshot.resolve()),
            "snapshot_sha256": snapshot_hashes[snapshot],
            "truncation": repr(float(options.truncation)),
            "noise_mode": options.noise_mode,
            "size": "" if options.size is None else str(options.size),
        }
        if network.kind == DIFFUSION:  # the sampler takes the place of the GAN's truncation and noise
            settings.update(truncation="", noise_mode="", sampler=f"{sampler[0]}:{sampler[1]}")
        identity = {key: value for key, value in settings.items() if key != "snapshot"}  # path may move
        todo = []
        for seed in seeds:
            file = image_file(job.class_name, seed)
            if _is_made(rows.get(file), {**identity, "seed": str(seed)}):
                continue
            if _marked_made(pool / file, image_marker(identity, seed)):
                rows[file] = {**settings, "file": file, "seed": str(seed), "sha256": sha256_file(pool / file)}
                continue
            todo.append(seed)
        counts["skipped"] += len(seeds) - len(todo)
        if not todo:
            click.echo(f"[{job.class_name}] all {len(seeds)} images present; skipped.")
            continue
        if loaded is None or loaded[0] != snapshot:
            try:
                loaded = (snapshot, network.load(device))
            except SnapshotError as error:  # its meta read, but its networks are damaged
                raise click.ClickException(str(error)) from error
        click.echo(
            f"[{job.class_name}] generating {len(todo)} images from {snapshot} "
            f"({len(seeds) - len(todo)} already present)."
        )
        sampling_s = 0.0
        for batch_seeds in _batches(todo, options.batch):
            start = time.perf_counter()
            if network.kind == DIFFUSION:
                images = _diffusion_images(loaded[1], network.meta, batch_seeds, job.class_index, sampler, device)
            else:
                images = synthesize(
                    loaded[1],
                    batch_seeds,
                    class_index=job.class_index,
                    truncation=options.truncation,
                    noise_mode=options.noise_mode,
                    device=device,
                )
            sampling_s += time.perf_counter() - start
            for seed, image in zip(batch_seeds, images):
                file = image_file(job.class_name, seed)
                data = encode_png(image, options.size, image_marker(identity, seed))
                atomic_write_bytes(pool / file, data)
                rows[file] = {**settings, "file": file, "seed": str(seed), "sha256": sha256_bytes(data)}
            counts["generated"] += len(batch_seeds)
            if time.monotonic() - last_manifest > MANIFEST_EVERY_S:
                write_manifest(manifest_path, rows)
                last_manifest = time.monotonic()
        timing[job.class_name] = {
            "generator": network.kind, "snapshot": str(snapshot.resolve()), "images": len(todo),
            "seconds": sampling_s, "images_per_s": len(todo) / max(sampling_s, 1e-9), "batch": options.batch,
            "device": str(device), "sampler": settings.get("sampler", ""),
        }
        atomic_write_json(pool / TIMING_FILE, timing)
    write_manifest(manifest_path, rows)
    if rows:
        write_preview(pool, rows, options.preview_per_class)
    click.echo(f"{pool}: {counts['generated']} generated, {counts['skipped']} already present.")
    return counts


def _seeds_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    return () if value is None else parse_seeds(value)


@click.command("generate")
@click.option(
    "--network",
    "networks",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Snapshot (.pt: StyleGAN2-ADA or diffusion) or official NVlabs .pkl (read without running its code); "
    "repeat for one unconditional network per class.",
)
@click.option("--out", type=OutputPath(), required=True, help="Pool folder.")
@click.option("--per-class", type=RangedNumber(GenerateOptions, "per_class"),
              help="Images per class (seeds 0..N-1).")
@click.option("--seeds", callback=_seeds_option, help="Seeds, e.g. 0-999 or 0,5,10-19.")
@click.option("--trunc", "truncation", type=RangedNumber(GenerateOptions, "truncation"),
              default=1.0, show_default=True, help="Truncation psi.")
@click.option(
    "--noise-mode",
    type=click.Choice(NOISE_MODES),
    default="const",
    show_default=True,
    help="Per-pixel noise.",
)
@click.option("--batch", type=RangedNumber(GenerateOptions, "batch"),
              default=16, show_default=True, help="Images per forward pass.")
@click.option("--size", type=RangedNumber(GenerateOptions, "size"),
              help="Output side in px (Lanczos), e.g. 224 [default: network resolution].")
@click.option(
    "--class",
    "classes",
    multiple=True,
    callback=comma_list,
    help="Conditional: classes to make (default all). Unconditional: class name per --network.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run.",
)
@click.option(
    "--preview-per-class",
    type=RangedNumber(GenerateOptions, "preview_per_class"),
    default=8,
    show_default=True,
    help="Images per class in preview.png.",
)
@click.option("--sampler", type=click.Choice(["ddim", "ddpm"]),
              help="Diffusion snapshots: ddim (deterministic, few steps) or ddpm (every training step) "
                   "[default: ddim].")
@click.option("--steps", type=RangedNumber(GenerateOptions, "steps"),
              help="Diffusion snapshots: sampler steps [default: 50 for ddim, all training steps for ddpm].")
def generate_command(**kwargs: Any) -> None:
    """Generate a synthetic pool POOL/<class>/seedNNNNN.png (+ manifest.csv, preview.png) from snapshots."""
    try:
        options = GenerateOptions(**kwargs)
    except OptionError as error:  # a size beyond this machine's memory
        raise click.ClickException(str(error)) from error
    generate_pool(options)
