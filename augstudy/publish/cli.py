"""`augstudy publish`: a synthetic pool as a Kaggle dataset with a datasheet, optionally uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from augstudy.locks import writing
from augstudy.optional import MissingDependencyError
from augstudy.options import MAX_SIDE, class_list
from augstudy.outputs import OutputError, OutputPath, check_output
from augstudy.publish.build import BuildResult, PublishOptions, options_path, prepare_release, write_release
from augstudy.publish.datasheet import plural
from augstudy.publish.errors import PublishError
from augstudy.publish.metadata import METADATA_FILE
from augstudy.publish.upload import (
    UploadPlan,
    UploadResult,
    connect_kaggle,
    describe_plan,
    plan_upload,
    upload_dataset,
)


@dataclass(frozen=True)
class PublishResult:
    build: BuildResult
    plan: UploadPlan
    upload: UploadResult | None
    flagged_published: tuple[str, ...]


def build_lock(out: Path) -> Path:
    """The writer lock of a release folder: beside it, with the build's temp folders, as the build
    replaces the folder itself by a rename."""
    return out.resolve().parent / f".{out.name}.publish-lock"


def publish(options: PublishOptions, api: Any = None) -> PublishResult:
    """Validate, build --out, and with --upload send it to Kaggle (through `api` when given).

    Order matters: the metadata is validated and the credentials are checked before anything is
    written, and nothing remote happens on --dry-run.
    """
    out = Path(options.out)
    check_output(out, {"--pool": options.pool, "--prepared": options.prepared}, verb="publish",
                 owned=(METADATA_FILE,))
    with writing(out, "publish", lock_file=build_lock(out)):
        release = prepare_release(options)
        if options.upload and not options.dry_run and api is None:
            api = connect_kaggle()
        build = write_release(release)
    plan = plan_upload(build.folder, options.public, options.version_notes)
    uploaded = upload_dataset(plan, api) if options.upload and not options.dry_run else None
    return PublishResult(build, plan, uploaded, release.flagged_published)


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


@click.command("publish")
@click.option(
    "--pool",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Pool folder written by `augstudy generate` (needs its manifest.csv).",
)
@click.option(
    "--out",
    type=OutputPath(),
    required=True,
    help="Dataset folder to build; it is what gets uploaded.",
)
@click.option("--owner", required=True, help="Kaggle user or organisation that owns the dataset.")
@click.option(
    "--slug",
    required=True,
    help="Dataset URL name: lowercase letters, digits, hyphens; 6-50 to create (3 suffice for versions).",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=1),
    default=501,
    show_default=True,
    help="Images per class, lowest seeds first.",
)
@click.option(
    "--size",
    type=click.IntRange(min=8, max=MAX_SIDE),
    default=224,
    show_default=True,
    help="Published side length in px (Lanczos resampling when the pool differs).",
)
@click.option("--classes", default=None, help="Comma-separated classes to publish (default: all in the pool).")
@click.option("--title", default=None, help="Dataset title, 6-50 characters.")
@click.option("--subtitle", default=None, help="Dataset subtitle, 20-80 characters.")
@click.option(
    "--license",
    "license_name",
    default=None,
    help="Kaggle license name (default: the source data's license, e.g. CC0-1.0).",
)
@click.option("--source-dataset", default=None, help="Source data set (a Kaggle id or a description).")
@click.option("--source-license", default=None, help="License of the source data set.")
@click.option("--citation", default=None, help="Citation text for the datasheet's 'How to cite'.")
@click.option("--keywords", default="", help="Comma-separated Kaggle tags (default: from the source).")
@click.option(
    "--prepared",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The `augstudy prepare` folder the GAN trained on (default: found from the snapshot).",
)
@click.option(
    "--exclude-flagged",
    is_flag=True,
    help="Leave out images the memorisation check (POOL/metrics.json) flagged as near-copies.",
)
@click.option(
    "--version-notes",
    default=PublishOptions.version_notes,
    show_default=True,
    help="Notes of a new version when the dataset already exists.",
)
@click.option("--upload", is_flag=True, help="Publish through the Kaggle API (create or new version).")
@click.option("--public", is_flag=True, help="Make a newly created dataset public (default: private).")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Build the folder and print exactly what --upload would send; contact nobody.",
)
def publish_command(
    pool: Path,
    out: Path,
    owner: str,
    slug: str,
    per_class: int,
    size: int,
    classes: str | None,
    title: str | None,
    subtitle: str | None,
    license_name: str | None,
    source_dataset: str | None,
    source_license: str | None,
    citation: str | None,
    keywords: str,
    prepared: Path | None,
    exclude_flagged: bool,
    version_notes: str,
    upload: bool,
    public: bool,
    dry_run: bool,
) -> None:
    """Package a synthetic pool as a Kaggle dataset with a datasheet."""
    options = PublishOptions(
        pool=pool,
        out=out,
        owner=owner,
        slug=slug,
        per_class=per_class,
        size=size,
        classes=class_list(classes),
        title=title,
        subtitle=subtitle,
        license=license_name,
        source_dataset=source_dataset,
        source_license=source_license,
        citation=citation,
        keywords=_split(keywords),
        prepared=prepared,
        exclude_flagged=exclude_flagged,
        upload=upload,
        public=public,
        dry_run=dry_run,
        version_notes=version_notes,
    )
    try:
        result = publish(options)
    except (PublishError, MissingDependencyError, OutputError) as error:
        raise click.ClickException(str(error)) from error
    if result.flagged_published:
        click.echo(
            f"Warning: {plural(len(result.flagged_published), 'published image')} flagged by the "
            "memorisation check as near-copies of training images (see README.md); --exclude-flagged "
            "leaves them out.",
            err=True,
        )
    build = result.build
    state = "built" if build.changed else "unchanged (identical to the last build)"
    click.echo(
        f"{build.folder}: {state}; {build.image_count} images, {build.total_bytes:,} bytes. "
        f"Options: {options_path(build.folder)}"
    )
    if dry_run:
        click.echo(describe_plan(result.plan))
    elif result.upload is not None:
        click.echo(f"Kaggle: {result.upload.action} {result.upload.dataset_id} -> {result.upload.url}")
    else:
        click.echo(
            "Not uploaded: add --upload to publish (private unless --public); --dry-run shows what "
            "would be sent."
        )
