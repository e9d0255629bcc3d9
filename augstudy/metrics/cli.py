"""`augstudy gan-metrics`: a thin click command over `augstudy.metrics.evaluate.gan_metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from augstudy.metrics.defaults import (
    BATCH_SIZE,
    KID_MAX_SUBSET_SIZE,
    KID_NUM_SUBSETS,
    MEMO_PIXEL_ABSOLUTE_THRESHOLD,
    MEMO_RATIO,
    SEED,
    SNAPSHOT_NUM_IMAGES,
    SWD_NORMALIZATION,
)
from augstudy.metrics.evaluate import GanMetricsOptions, gan_metrics, output_path, parse_metrics
from augstudy.metrics.inception import InceptionUnavailableError
from augstudy.metrics.swd import NORMALIZATIONS
from augstudy.options import RangedNumber
from augstudy.outputs import OutputPath

# Errors caused by the inputs or options: the CLI and `augstudy run` show their message, no traceback.
USER_ERRORS = (InceptionUnavailableError, FileNotFoundError, ValueError)


@click.command("gan-metrics")
@click.option(
    "--real",
    "real",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Training images: a prepared folder, class folders, a folder of images or an NVlabs zip.",
)
@click.option(
    "--fake",
    "fake",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Synthetic images: a pool (<class>/*.png), a folder or a zip.",
)
@click.option(
    "--network",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Instead of --fake: a snapshot (.pt) or official NVlabs .pkl (no code run) to draw --num-images from.",
)
@click.option("--num-images", type=click.IntRange(min=1), default=SNAPSHOT_NUM_IMAGES, show_default=True,
              help="Images drawn from --network.")
@click.option(
    "--metrics",
    "metrics",
    default="auto",
    show_default=True,
    help="Comma list of kid,fid,swd,memo; 'auto' runs every metric whose needs are met.",
)
@click.option(
    "--inception",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TorchScript Inception file inception-2015-12-05.pt (default: user cache, else download).",
)
@click.option(
    "--out",
    type=OutputPath(file=True),
    default=None,
    help="Report JSON [default: FAKE/metrics.json].",
)
@click.option("--seed", type=RangedNumber(GanMetricsOptions, "seed"),
              default=SEED, show_default=True, help="Seed of KID subsets and SWD.")
@click.option("--batch", "batch_size", type=RangedNumber(GanMetricsOptions, "batch_size"),
              default=BATCH_SIZE, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option(
    "--download/--no-download",
    default=True,
    show_default=True,
    help="Whether a missing Inception network may be downloaded.",
)
@click.option(
    "--feature-cache/--no-feature-cache",
    default=True,
    show_default=True,
    help="Cache Inception features per image hash in the user cache.",
)
@click.option("--kid-subsets", type=RangedNumber(GanMetricsOptions, "kid_num_subsets"),
              default=KID_NUM_SUBSETS, show_default=True)
@click.option(
    "--kid-subset-size",
    type=RangedNumber(GanMetricsOptions, "kid_max_subset_size"),
    default=KID_MAX_SUBSET_SIZE,
    show_default=True,
    help="Largest KID subset; never more than the smaller set.",
)
@click.option(
    "--swd-normalization",
    type=click.Choice(NORMALIZATIONS),
    default=SWD_NORMALIZATION,
    show_default=True,
    help="joint: both sets by their union's statistics; separate: each by its own (reference code).",
)
@click.option(
    "--memo-ratio",
    type=RangedNumber(GanMetricsOptions, "memo_ratio"),
    default=MEMO_RATIO,
    show_default=True,
    help="Near-copy when the nearest training image is closer than this times the second nearest.",
)
@click.option(
    "--memo-pixel-threshold",
    type=RangedNumber(GanMetricsOptions, "memo_pixel_threshold"),
    default=MEMO_PIXEL_ABSOLUTE_THRESHOLD,
    show_default=True,
    help="Near-copy floor in pixel space (RMS difference on a 0..1 scale).",
)
def gan_metrics_command(**kwargs: Any) -> None:
    """KID, FID and multi-scale SWD of a synthetic pool (or of a --network's images) against the GAN's
    training images, and a memorisation check that flags synthetic near-copies of training images."""
    try:
        metrics = parse_metrics(kwargs.pop("metrics"))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--metrics") from error
    given = click.get_current_context().get_parameter_source("num_images") == click.core.ParameterSource.COMMANDLINE
    if given and kwargs["network"] is None:  # a pool has the images it has: the count would be ignored
        raise click.BadParameter("counts the images drawn from --network; a --fake pool is used whole",
                                 param_hint="--num-images")
    try:
        options = GanMetricsOptions(
            metrics=metrics,
            kid_num_subsets=kwargs.pop("kid_subsets"),
            kid_max_subset_size=kwargs.pop("kid_subset_size"),
            **kwargs,
        )
        report = gan_metrics(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    _print_summary(report, output_path(options))


def _print_summary(report: dict[str, Any], out: Path) -> None:
    """A line per class on stdout; warnings and notes on stderr."""
    if "network" in report:
        values = ", ".join(f"{name} {value:.5g}" for name, value in report["values"].items()
                           if not name.startswith("swd_"))
        click.echo(f"{report['network']}: {report['num_images']} generated images, {values}")
    for class_name, result in report.get("classes", {}).items():
        parts = [f"{class_name}: {result['num_real']} real, {result['num_fake']} fake"]
        if "kid" in result:
            parts.append(f"KID {result['kid']['mean']:.5f} +- {result['kid']['std']:.5f}")
        if "fid" in result:
            parts.append(
                f"FID {result['fid']['value']:.2f}{'' if result['fid']['reliable'] else ' (unreliable)'}"
            )
        if "swd" in result:
            parts.append(f"SWD x1e3 {result['swd']['mean']:.2f}")
        if "memorisation" in result:
            memo = result["memorisation"]
            parts.append(f"near-copies {memo['num_flagged']}/{memo['num_fake']}")
        click.echo(", ".join(parts))
    for message in report["warnings"]:
        click.echo(f"warning: {message}", err=True)
    for message in report["notes"]:
        click.echo(f"note: {message}", err=True)
    click.echo(f"wrote {out}")
