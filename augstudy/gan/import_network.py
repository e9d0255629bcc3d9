"""`augstudy import-network`: an official NVlabs StyleGAN2-ADA `.pkl` as our snapshot, no code run.

Every verb already reads official pickles directly (through the same safe import); converting once
saves the import on each use and records class names, so `generate` needs no `--class`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from augstudy.gan.cli_options import comma_list
from augstudy.locks import DiskFullError, full_disk_reported
from augstudy.outputs import OutputError, OutputPath, check_output


def import_network(pkl: Path, out: Path, classes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Convert `pkl` to the snapshot `out`; returns what was imported (for the summary line)."""
    from stylegan2ada.io import sha256_file
    from stylegan2ada.nvlabs_import import import_network_pickle, imported_snapshot
    from stylegan2ada.nvlabs_pickle import NetworkPickleError
    from stylegan2ada.snapshot import save_snapshot

    if out.exists():
        raise click.UsageError(f"--out {out}: already exists; remove it or choose another path.")
    try:
        check_output(out, {"PKL": pkl}, is_file=True)
    except OutputError as error:
        raise click.UsageError(str(error)) from None
    try:
        imported = import_network_pickle(pkl)
    except NetworkPickleError as error:
        raise click.ClickException(
            f"{error} import-network expects an official StyleGAN2-ADA network pickle (a training snapshot "
            f"network-snapshot-*.pkl or a published pretrained .pkl); its embedded code is never run."
        ) from None
    c_dim = int(imported.G.c_dim)
    snapshot = imported_snapshot(imported, sha256_file(pkl))
    extra = snapshot["meta"]["extra_meta"]
    if classes:
        if len(classes) != max(c_dim, 1):
            wanted = f"{c_dim} names (one per class)" if c_dim else "one name (the class it makes)"
            raise click.UsageError(
                f"--class: this network has c_dim={c_dim}, so give {wanted}, not {len(classes)}."
            )
        extra.update({"class_names": list(classes)} if c_dim else {"class_name": classes[0]})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with full_disk_reported(out.parent):
            save_snapshot(out, snapshot)
    except DiskFullError as error:
        raise click.ClickException(f"--out {out}: {error}") from None
    except OSError as error:
        raise click.ClickException(
            f"--out {out}: cannot write the snapshot ({error.strerror or error})."
        ) from None
    return {
        "resolution": imported.G.img_resolution,
        "channels": imported.G.img_channels,
        "c_dim": c_dim,
        "G_params": sum(p.numel() for p in imported.G.parameters()),
        "D_params": sum(p.numel() for p in imported.D.parameters()),
        "augment_p": imported.augment_p,
    }


@click.command("import-network")
@click.argument("pkl", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out",
    type=OutputPath(file=True),
    required=True,
    help="Snapshot to write (.pt), readable by generate, gan-metrics and train-gan --resume-from.",
)
@click.option(
    "--class",
    "classes",
    multiple=True,
    callback=comma_list,
    help="Class name(s) to record: one for an unconditional network, one per class for a conditional one.",
)
def import_network_command(pkl: Path, out: Path, classes: tuple[str, ...]) -> None:
    """Convert an official NVlabs StyleGAN2-ADA network pickle PKL to a snapshot, without running its code."""
    summary = import_network(pkl, out, classes)
    click.echo(
        f"{pkl} -> {out}: {summary['resolution']} px, {summary['channels']} channel(s), c_dim {summary['c_dim']}, "
        f"G {summary['G_params']:,} / D {summary['D_params']:,} parameters, augment p "
        f"{'not recorded' if summary['augment_p'] is None else format(summary['augment_p'], '.4g')}."
    )
