"""Run the GAN metrics over two image sources (`augstudy gan-metrics`) or over a generator.

Classes: when both sources have classes, every class they share is measured on its own (the real
side of a prepared folder is the class's GAN training set, which is what the per-class GAN saw);
otherwise all images of each side form one set. KID/FID need the Inception network; SWD and the
pixel-space memorisation check need nothing downloaded. With `metrics=None` every metric whose
needs are met runs, and a missing Inception network is a note rather than an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augstudy.locks import full_disk_reported
from augstudy.metrics.defaults import (
    BATCH_SIZE,
    INCEPTION_METRICS,
    KID_MAX_SUBSET_SIZE,
    KID_NUM_SUBSETS,
    MEMO_FEATURE_ABSOLUTE_THRESHOLD,
    MEMO_PIXEL_ABSOLUTE_THRESHOLD,
    MEMO_PIXEL_SIZE,
    MEMO_RATIO,
    METRICS,
    SEED,
    SNAPSHOT_NUM_IMAGES,
    SWD_NORMALIZATION,
)
from augstudy.metrics.features import FeatureExtractor, features_of_images, features_of_pixels, open_extractor
from augstudy.metrics.images import (
    UNCLASSED,
    ImageRef,
    ImageSource,
    fake_kinds_warning,
    iter_loaded,
    open_source,
    prepared_heldout_images,
    stack_nchw,
)
from augstudy.metrics.inception import InceptionUnavailableError
from augstudy.metrics.kid_fid import frechet_inception_distance, kernel_inception_distance
from augstudy.metrics.memorisation import MemorisationOptions, memorisation_check, pixel_vectors
from augstudy.metrics.swd import sliced_wasserstein_distance
from augstudy.options import (
    MAX_SIDE,
    check_backbone_memory,
    check_memory,
    check_ranges,
    ranged,
    write_options,
)
from augstudy.outputs import check_output, last_writer
from stylegan2ada.io import atomic_write_json

OPTIONS_FILENAME = "gan_metrics_options.json"
REPORT_FILENAME = "metrics.json"
# Memory held per generated image drawn from --network: its Inception features in float64 and a
# 256 px RGB image on its way there.
BYTES_PER_NETWORK_IMAGE = 2048 * 8 + 3 * 256 * 256
GENERATOR_METRICS: tuple[str, ...] = ("kid", "fid", "swd")


@dataclass(frozen=True)
class GanMetricsOptions:
    """Options of `augstudy gan-metrics`.

    Attributes:
        real: training images: a prepared folder, class folders, a folder of images or an NVlabs zip.
        fake: synthetic images: a pool (`<class>/*.png`), a folder or a zip (or give `network`).
        network: instead of `fake`, a generator to draw `num_images` images from: our snapshot or an
            official NVlabs .pkl (read without running its code). KID/FID/SWD only.
        metrics: a subset of ("kid", "fid", "swd", "memo"); None runs every metric whose needs are met.
        inception: the TorchScript Inception file; None looks in the user cache, then downloads.
        out: the JSON report; None means `<fake>/metrics.json` (a folder is required then).
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
        download: whether a missing Inception network may be downloaded.
        feature_cache: whether Inception features are cached per image hash.
    """

    real: Path
    fake: Path | None = None
    network: Path | None = None
    num_images: int = SNAPSHOT_NUM_IMAGES
    metrics: tuple[str, ...] | None = None
    inception: Path | None = None
    out: Path | None = None
    seed: int = ranged(SEED, low=0, integer=True)
    batch_size: int = ranged(BATCH_SIZE, low=1, integer=True, flag="--batch")
    device: str = "auto"
    download: bool = True
    feature_cache: bool = True
    kid_num_subsets: int = ranged(KID_NUM_SUBSETS, low=1, integer=True, flag="--kid-subsets")
    kid_max_subset_size: int = ranged(KID_MAX_SUBSET_SIZE, low=2, integer=True, flag="--kid-subset-size")
    swd_normalization: str = SWD_NORMALIZATION
    memo_pixel_size: int = ranged(MEMO_PIXEL_SIZE, low=1, high=MAX_SIDE, integer=True)
    memo_ratio: float = ranged(MEMO_RATIO, low=0, high=1)
    memo_pixel_threshold: float = ranged(MEMO_PIXEL_ABSOLUTE_THRESHOLD, low=0)
    memo_feature_threshold: float = ranged(MEMO_FEATURE_ABSOLUTE_THRESHOLD, low=0)

    def __post_init__(self) -> None:
        check_ranges(self)
        check_backbone_memory(299, self.batch_size, "--batch", "batch_size")  # Inception's input side
        if self.network is not None:
            check_memory("--num-images", "num_images", self.num_images, self.num_images * BYTES_PER_NETWORK_IMAGE,
                         "drawing this many images from --network")

    def memorisation_options(self) -> MemorisationOptions:
        return MemorisationOptions(
            pixel_size=self.memo_pixel_size,
            ratio=self.memo_ratio,
            pixel_absolute_threshold=self.memo_pixel_threshold,
            feature_absolute_threshold=self.memo_feature_threshold,
        )


def parse_metrics(text: str | None) -> tuple[str, ...] | None:
    """ "kid,fid" -> ("kid", "fid"); None or "auto" -> None (every metric whose needs are met)."""
    if text is None or text.strip().lower() == "auto":
        return None
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metrics {unknown or text!r}; choose from {', '.join(METRICS)} or 'auto'")
    return names


def output_path(options: GanMetricsOptions) -> Path:
    if options.out is not None:
        return Path(options.out)
    if options.fake is None:
        raise ValueError("--network needs --out FILE for the report (nothing is written beside the network)")
    if not Path(options.fake).is_dir():
        raise ValueError(
            f"--fake {options.fake} is not a folder, so there is no default report path; pass --out FILE"
        )
    return Path(options.fake) / REPORT_FILENAME


def is_pool(folder: Path) -> bool:
    """A folder `augstudy generate` wrote: its manifest, or its lock naming the verb."""
    return (folder / "manifest.csv").is_file() or last_writer(folder).get("verb") == "generate"


def pair_classes(
    real: ImageSource, fake: ImageSource
) -> tuple[list[tuple[str, tuple[ImageRef, ...], tuple[ImageRef, ...]]], list[str]]:
    """(class, real images, fake images) to compare, and notes on classes only one side has."""
    if not (real.classed and fake.classed):
        return [(UNCLASSED, real.all_images(), fake.all_images())], []
    shared = [name for name in fake.classes if name in real.classes]
    if not shared:
        raise ValueError(
            f"no class in common: {real.path} has {sorted(real.classes)}, "
            f"{fake.path} has {sorted(fake.classes)}"
        )
    notes = [
        f"class {name!r} is only in {side.path}; not measured"
        for side, other in ((real, fake), (fake, real))
        for name in side.classes
        if name not in other.classes
    ]
    return [(name, real.classes[name], fake.classes[name]) for name in shared], notes


def resolve_device(device: str) -> torch.device:
    """"auto", "cpu", "cuda" or "cuda:N" as a torch device; an unknown or absent device is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = device.partition(":")
    if device == "cpu" or (kind == "cuda" and (not index or index.isdigit())):
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
        if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                             f"numbered from 0")
        return torch.device(device)
    raise ValueError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")


def gan_metrics(options: GanMetricsOptions) -> dict[str, Any]:
    """Measure the fake source against the real one, write the report and the resolved options.

    Returns the report (also written to `output_path(options)`): per class the image counts and
    each metric, plus `warnings` (e.g. unreliable FID) and `notes` (e.g. skipped metrics).
    """
    if (options.fake is None) == (options.network is None):
        raise ValueError("give either --fake IMAGES or --network SNAPSHOT_OR_PKL, not both or neither")
    out = output_path(options)
    resolve_device(options.device)  # refused before any work, even when no metric would use it
    # The report may sit in a pool as POOL/metrics.json (its documented place, read by publish), never
    # anywhere else inside an input: not in a folder of real images given as --fake, not over a pool image.
    fake = Path(options.fake) if options.fake is not None else None
    in_its_place = fake is not None and is_pool(fake) and Path(out).resolve() == (fake / REPORT_FILENAME).resolve()
    fake_input = [("--fake", fake)] if fake is not None and not in_its_place else []
    if fake is not None and fake.is_dir() and not is_pool(fake) and options.out is None:
        raise ValueError(f"--fake {fake} is not a pool written by `augstudy generate` (no manifest.csv), so the "
                         "report is not written into it; pass --out FILE outside the inputs")
    network = [("--network", options.network)] if options.network is not None else []
    network += [("--inception", options.inception)] if options.inception is not None else []
    check_output(out, [("--real", options.real), *fake_input, *network], is_file=True, verb="gan-metrics",
                 owned=(OPTIONS_FILENAME,))
    check_output(out.parent / OPTIONS_FILENAME, [("--real", options.real), *fake_input, *network], is_file=True,
                 flag="its options file")
    with full_disk_reported(out.parent):
        return _measure(options, out)


def _measure(options: GanMetricsOptions, out: Path) -> dict[str, Any]:
    """gan_metrics' work once its output is checked."""
    if options.network is not None:
        return _network_report(options, out)
    real, fake = open_source(options.real), open_source(options.fake)
    pairs, notes = pair_classes(real, fake)
    warnings: list[str] = [warning for warning in [fake_kinds_warning(real, fake)] if warning]
    metrics = options.metrics or METRICS
    extractor = _extractor_for(options, metrics, notes)
    if extractor is None:
        metrics = tuple(name for name in metrics if name not in INCEPTION_METRICS)
    report: dict[str, Any] = {
        "real": str(real.path),
        "fake": str(fake.path),
        "real_layout": real.layout,
        "fake_layout": fake.layout,
        "metrics": list(metrics),
        "extractor": extractor.describe() if extractor is not None else None,
        "classes": {},
        "warnings": warnings,
        "notes": notes,
    }
    for class_name, real_refs, fake_refs in pairs:
        report["classes"][class_name] = _measure_class(
            class_name, real, fake, real_refs, fake_refs, metrics, extractor, options, warnings
        )
    atomic_write_json(out, report)
    write_options(out.parent / OPTIONS_FILENAME, options)
    return report


def generator_metrics(
    generator: torch.nn.Module,
    real_source: str | Path | ImageSource,
    metrics: Sequence[str] = ("swd",),
    num_images: int = SNAPSHOT_NUM_IMAGES,
    seed: int = SEED,
    inception_path: str | Path | None = None,
    device: str | torch.device | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, float]:
    """Metrics of `num_images` images of a generator against real images, for `stats.jsonl`.

    The generator follows the StyleGAN2-ADA contract: G(z, c, truncation_psi=1, noise_mode="const")
    returns NCHW in [-1, 1], with attributes z_dim, c_dim and img_channels. z comes from one
    generator seeded with `seed`, so the images do not depend on `batch_size`. A conditional G
    (c_dim > 0) needs a real source with c_dim classes, whose order gives the label indices (the
    label order of `gan/all.zip`); its labels are drawn with the real class frequencies and all
    images are compared as one set.

    Returns:
        {"swd": mean, "swd_<resolution>": per level, "kid": mean, "kid_std": std, "fid": value},
        the keys of the metrics asked for.
    """
    unknown = [name for name in metrics if name not in GENERATOR_METRICS]
    if unknown or not metrics:
        raise ValueError(f"generator metrics must be among {GENERATOR_METRICS}, not {list(metrics)}")
    source = real_source if isinstance(real_source, ImageSource) else open_source(real_source)
    torch_device = torch.device(device) if device is not None else _module_device(generator)
    real_images = [loaded.pixels for loaded in iter_loaded(source.all_images())]
    fake_images = _generate(generator, source, num_images, seed, torch_device, batch_size)
    results: dict[str, float] = {}
    if "swd" in metrics:
        swd = _swd(real_images, fake_images, seed, SWD_NORMALIZATION)
        results["swd"] = swd["mean"]
        results.update({f"swd_{level}": value for level, value in swd["per_level"].items()})
    if INCEPTION_METRICS & set(metrics):
        extractor = open_extractor(inception_path, torch_device, batch_size)
        real_features = features_of_images(extractor, source.all_images(), "real features")
        fake_features = features_of_pixels(extractor, fake_images)
        if "kid" in metrics:
            kid = kernel_inception_distance(real_features, fake_features, seed=seed)
            results["kid"], results["kid_std"] = kid.mean, kid.std
        if "fid" in metrics:
            results["fid"] = frechet_inception_distance(real_features, fake_features).value
    return results


def _network_report(options: GanMetricsOptions, out: Path) -> dict[str, Any]:
    """`generator_metrics` of the network's G_ema against the real images, as a one-set report."""
    from stylegan2ada.snapshot import load_generator

    metrics = options.metrics or (("swd", "kid", "fid") if options.inception is not None else ("swd",))
    if "memo" in metrics:
        raise ValueError("the memorisation check needs image files: generate a pool and pass it as --fake")
    device = resolve_device(options.device)
    generator = load_generator(options.network, device=device)  # SnapshotError names the file and why
    values = generator_metrics(generator, options.real, metrics=metrics, num_images=options.num_images,
                               seed=options.seed, inception_path=options.inception, device=device,
                               batch_size=options.batch_size)
    report: dict[str, Any] = {
        "real": str(options.real), "network": str(options.network), "num_images": options.num_images,
        "metrics": list(metrics), "values": values,
        "notes": [] if options.metrics else [f"metrics 'auto' with --network: {', '.join(metrics)}"],
        "warnings": [],
    }
    atomic_write_json(out, report)
    write_options(out.parent / OPTIONS_FILENAME, options)
    return report


def _extractor_for(
    options: GanMetricsOptions, metrics: Sequence[str], notes: list[str]
) -> FeatureExtractor | None:
    """The Inception extractor when a metric uses it; None (with a note) when it is optional and missing."""
    wants_features = bool(INCEPTION_METRICS & set(metrics)) or "memo" in metrics
    if not wants_features:
        return None
    required = options.metrics is not None and bool(INCEPTION_METRICS & set(options.metrics))
    try:
        return open_extractor(
            options.inception,
            resolve_device(options.device),
            options.batch_size,
            options.feature_cache,
            options.download,
        )
    except InceptionUnavailableError as error:
        if required:
            raise
        notes.append(f"KID, FID and the feature-space memorisation check were skipped: {error}")
        return None


def _measure_class(
    class_name: str,
    real: ImageSource,
    fake: ImageSource,
    real_refs: tuple[ImageRef, ...],
    fake_refs: tuple[ImageRef, ...],
    metrics: Sequence[str],
    extractor: FeatureExtractor | None,
    options: GanMetricsOptions,
    warnings: list[str],
) -> dict[str, Any]:
    result: dict[str, Any] = {"num_real": len(real_refs), "num_fake": len(fake_refs)}
    real_features = fake_features = None
    if extractor is not None:
        real_features = features_of_images(extractor, real_refs, f"{class_name}: real features")
        fake_features = features_of_images(extractor, fake_refs, f"{class_name}: fake features")
    if "kid" in metrics and real_features is not None and fake_features is not None:
        result["kid"] = kernel_inception_distance(
            real_features, fake_features, options.kid_num_subsets, options.kid_max_subset_size, options.seed
        ).to_dict()
    if "fid" in metrics and real_features is not None and fake_features is not None:
        fid = frechet_inception_distance(real_features, fake_features)
        result["fid"] = fid.to_dict()
        if fid.warning:
            warnings.append(f"{class_name}: {fid.warning}")
    if "swd" in metrics or "memo" in metrics:
        real_loaded = list(iter_loaded(real_refs))
        fake_loaded = list(iter_loaded(fake_refs))
        real_images = [loaded.pixels for loaded in real_loaded]
        fake_images = [loaded.pixels for loaded in fake_loaded]
        if "swd" in metrics:
            result["swd"] = _swd(real_images, fake_images, options.seed, options.swd_normalization)
        if "memo" in metrics:
            memo = options.memorisation_options()
            result["memorisation"] = memorisation_check(
                [_display_name(loaded.ref, real.path) for loaded in real_loaded],
                [_display_name(loaded.ref, fake.path) for loaded in fake_loaded],
                pixel_vectors(real_images, memo.pixel_size),
                pixel_vectors(fake_images, memo.pixel_size),
                real_features,
                fake_features,
                memo,
            )
            heldout = prepared_heldout_images(real.path, class_name) if real.layout == "prepared" else ()
            if heldout:
                # a synthetic near-copy of a validation or test image (a duplicate of a train image the
                # GAN saw) would carry that image into training
                held_loaded = list(iter_loaded(heldout))
                check = memorisation_check(
                    [_display_name(loaded.ref, real.path) for loaded in held_loaded],
                    [_display_name(loaded.ref, fake.path) for loaded in fake_loaded],
                    pixel_vectors([loaded.pixels for loaded in held_loaded], memo.pixel_size),
                    pixel_vectors(fake_images, memo.pixel_size),
                    options=memo,
                )
                result["memorisation_heldout"] = {
                    "compared_with": "validation and test images of the prepared folder (pixel space)",
                    "num_heldout": len(heldout), "num_flagged": check["num_flagged"], "flagged": check["flagged"]}
    return result


def _swd(
    real_images: list[np.ndarray], fake_images: list[np.ndarray], seed: int, normalization: str
) -> dict[str, Any]:
    """SWD at the smallest side found in either set, in colour when any image has colour."""
    size = min(min(pixels.shape[:2]) for pixels in [*real_images, *fake_images])
    channels = 3 if any(pixels.shape[2] == 3 for pixels in [*real_images, *fake_images]) else 1
    result = sliced_wasserstein_distance(
        stack_nchw(real_images, size, channels),
        stack_nchw(fake_images, size, channels),
        seed=seed,
        normalization=normalization,  # type: ignore[arg-type]
    )
    return result.to_dict()


def _generate(
    generator: torch.nn.Module,
    source: ImageSource,
    num_images: int,
    seed: int,
    device: torch.device,
    batch_size: int,
) -> list[np.ndarray]:
    rng = torch.Generator().manual_seed(seed)
    latents = torch.randn(num_images, int(generator.z_dim), generator=rng)
    c_dim = int(getattr(generator, "c_dim", 0))
    labels = torch.zeros(num_images, c_dim)
    if c_dim > 0:
        if not source.classed or len(source.classes) != c_dim:
            raise ValueError(
                f"a conditional generator with c_dim={c_dim} needs a real source with {c_dim} classes; "
                f"{source.path} has {len(source.classes) if source.classed else 'no'} classes"
            )
        counts = torch.tensor([len(refs) for refs in source.classes.values()], dtype=torch.float64)
        drawn = torch.multinomial(counts / counts.sum(), num_images, replacement=True, generator=rng)
        labels[torch.arange(num_images), drawn] = 1.0
    images: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, num_images, batch_size):
            z = latents[start : start + batch_size].to(device)
            c = labels[start : start + batch_size].to(device)
            output = generator(z, c, truncation_psi=1, noise_mode="const")
            pixels = (output * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            images.extend(np.ascontiguousarray(image) for image in pixels)
    return images


def _module_device(module: torch.nn.Module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    return torch.device("cpu")


def _display_name(ref: ImageRef, root: Path) -> str:
    if ref.member is not None:
        return f"{ref.path.name}:{ref.member}"
    try:
        return str(ref.path.relative_to(root))
    except ValueError:
        return str(ref.path)
