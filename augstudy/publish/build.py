"""Build the folder that becomes the Kaggle dataset: images per class, manifest, metadata, datasheet.

Everything is read and validated first (`prepare_release`, which writes nothing), then written into
a temp folder beside --out that replaces --out in one rename (`write_release`), so --out is never
half built. A rebuild that gives identical files leaves --out untouched.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from augstudy.data.decode import decode_image, fit_square, png_bytes
from augstudy.options import write_options
from augstudy.publish.datasheet import DatasheetInput, render_datasheet
from augstudy.publish.errors import MetadataError, PublishError
from augstudy.publish.metadata import (
    KAGGLE_LICENSES,
    METADATA_FILE,
    SUBTITLE_LENGTH,
    build_metadata,
    canonical_license,
    validate_metadata,
)
from augstudy.publish.pool import POOL_COLUMNS, PoolImage, read_pool, select_images
from augstudy.publish.provenance import (
    UNKNOWN,
    Provenance,
    SourceInfo,
    flagged_files,
    gather_provenance,
    read_metrics,
)
from stylegan2ada.io import sha256_bytes, sha256_file

MANIFEST_FILE = "manifest.csv"
README_FILE = "README.md"
DEFAULT_KEYWORDS = ("computer vision", "image", "deep learning")
IMAGE_MODES = ("L", "RGB")


@dataclass(frozen=True)
class PublishOptions:
    """Options of `augstudy publish`; None means "derive it from the pool's provenance"."""

    pool: Path
    out: Path
    owner: str
    slug: str
    per_class: int = 501
    size: int = 224
    classes: tuple[str, ...] = ()
    title: str | None = None
    subtitle: str | None = None
    license: str | None = None
    source_dataset: str | None = None
    source_license: str | None = None
    citation: str | None = None
    keywords: tuple[str, ...] = ()
    prepared: Path | None = None
    exclude_flagged: bool = False
    upload: bool = False
    public: bool = False
    dry_run: bool = False
    version_notes: str = "Built with augstudy publish."


@dataclass(frozen=True)
class PlannedImage:
    """One pool image and where it goes in the published folder."""

    source: Path
    target: str
    image: PoolImage
    resize: bool
    mode: str  # "L" or "RGB"


@dataclass(frozen=True)
class Release:
    """A fully validated release, still only in memory."""

    options: PublishOptions
    images: tuple[PlannedImage, ...]
    metadata: dict[str, Any]
    readme: str
    provenance: Provenance
    flagged_published: tuple[str, ...]


@dataclass(frozen=True)
class BuildResult:
    folder: Path
    changed: bool
    image_count: int
    total_bytes: int


def options_path(out: Path) -> Path:
    """Where the resolved options go: beside the folder, because everything inside it is uploaded."""
    return out.parent / f"{out.name}.publish_options.json"


def resolve_license(requested: str | None, source: SourceInfo) -> str:
    """--license when given, else the source data's license; never a guess."""
    if requested:
        name = canonical_license(requested)
        if name is None:
            raise MetadataError(
                [
                    (
                        "licenses",
                        (
                            f"--license {requested!r} is not a license name Kaggle accepts; "
                            f"use one of: {', '.join(KAGGLE_LICENSES)}"
                        ),
                    )
                ]
            )
        return name
    name = canonical_license(source.license) if source.license != UNKNOWN else None
    if name is None:
        raise MetadataError(
            [
                (
                    "licenses",
                    (
                        f"no --license given and the source data's license is "
                        f"{source.license!r} (source: {source.dataset}); pass --license NAME "
                        "matching the source's terms, or --source-license, with NAME one of: "
                        f"{', '.join(KAGGLE_LICENSES)}"
                    ),
                )
            ]
        )
    return name


def default_title(source: SourceInfo) -> str:
    subject = f" {source.subject}" if source.subject else ""
    return f"Synthetic{subject} images (StyleGAN2-ADA)"


def default_subtitle(classes: list[str], per_class: int, size: int) -> str:
    subtitle = f"{per_class} GAN-made {size}x{size} images per class: {', '.join(classes)}"
    if len(subtitle) > SUBTITLE_LENGTH[1]:
        subtitle = f"{per_class} GAN-made {size}x{size} images for each of {len(classes)} classes"
    return subtitle


def _resources() -> list[dict[str, Any]]:
    fields = [{"name": name, "type": "integer" if name == "seed" else "string"} for name in POOL_COLUMNS]
    return [
        {
            "path": MANIFEST_FILE,
            "description": "One row per image: class, latent seed, generator snapshot "
            "and its sha256, truncation, noise mode, sha256 of the file.",
            "schema": {"fields": fields},
        },
        {"path": README_FILE, "description": "Datasheet: provenance, quality, intended uses, limitations."},
    ]


def _inspect(pool: Path, image: PoolImage) -> tuple[Path, int, str]:
    """Check a pool image against its manifest row; return its path, side and mode."""
    path = pool / image.file
    if not path.is_file():
        raise PublishError(f"{path} is listed in {pool / 'manifest.csv'} but does not exist")
    if sha256_file(path) != image.sha256:
        raise PublishError(
            f"{path} does not match the sha256 in {pool / 'manifest.csv'}: the file changed "
            "after generation; re-run `augstudy generate` to restore it"
        )
    with Image.open(path) as opened:
        width, height, mode, image_format = opened.width, opened.height, opened.mode, opened.format
    if image_format != "PNG":
        raise PublishError(f"{path} is a {image_format} file; pool images are PNG")
    if width != height:
        raise PublishError(f"{path} is {width}x{height}; pool images must be square")
    if mode not in IMAGE_MODES:
        raise PublishError(f"{path} has image mode {mode}; pool images are grey (L) or RGB")
    return path, width, mode


def prepare_release(options: PublishOptions) -> Release:
    """Read the pool and its provenance, and validate the metadata; nothing is written."""
    pool_images = read_pool(options.pool)
    metrics = read_metrics(options.pool)
    if options.exclude_flagged and not _has_memorisation(metrics):
        raise PublishError(
            f"--exclude-flagged: {options.pool / 'metrics.json'} holds no memorisation check, so nothing could be "
            f"left out; run `augstudy gan-metrics --real PREPARED --fake {options.pool} --metrics memo` first"
        )
    flagged = flagged_files(metrics) & {image.file for image in pool_images}
    selection = select_images(
        pool_images,
        options.per_class,
        options.classes,
        frozenset(flagged) if options.exclude_flagged else frozenset(),
    )
    flagged_published = tuple(
        sorted(image.file for images in selection.values() for image in images if image.file in flagged)
    )
    planned: list[PlannedImage] = []
    source_sizes: dict[str, tuple[str, ...]] = {}
    image_modes: dict[str, tuple[str, ...]] = {}
    for class_name, images in selection.items():
        sizes: set[int] = set()
        modes: set[str] = set()
        for image in images:
            path, side, mode = _inspect(options.pool, image)
            sizes.add(side)
            modes.add(mode)
            planned.append(
                PlannedImage(path, f"{class_name}/seed{image.seed:05d}.png", image, side != options.size, mode)
            )
        source_sizes[class_name] = tuple(f"{side}x{side}" for side in sorted(sizes))
        image_modes[class_name] = tuple(sorted(modes))

    provenance = gather_provenance(
        options.pool,
        selection,
        metrics=metrics,
        prepared=options.prepared,
        source_dataset=options.source_dataset,
        source_license=options.source_license,
    )
    license_name = resolve_license(options.license, provenance.source)
    title = options.title or default_title(provenance.source)
    subtitle = options.subtitle or default_subtitle(list(selection), options.per_class, options.size)
    dataset_id = f"{options.owner}/{options.slug}"
    readme = render_datasheet(
        DatasheetInput(
            title=title,
            subtitle=subtitle,
            dataset_id=dataset_id,
            license_name=license_name,
            size=options.size,
            selection=selection,
            source_sizes=source_sizes,
            image_modes=image_modes,
            provenance=provenance,
            citation=options.citation,
            flagged_published=flagged_published,
            flagged_excluded=tuple(
                sorted(
                    image.file
                    for image in pool_images
                    if image.file in flagged and image.class_name in selection
                )
            )
            if options.exclude_flagged
            else (),
        )
    )
    keywords = list(options.keywords or provenance.source.keywords or DEFAULT_KEYWORDS)
    metadata = build_metadata(
        title=title,
        subtitle=subtitle,
        owner=options.owner,
        slug=options.slug,
        license_name=license_name,
        description=readme,
        keywords=keywords,
        resources=_resources(),
    )
    validate_metadata(metadata)
    resolved = dataclasses.replace(
        options, title=title, subtitle=subtitle, license=license_name, keywords=tuple(keywords)
    )
    return Release(resolved, tuple(planned), metadata, readme, provenance, flagged_published)


def _has_memorisation(metrics: Any) -> bool:
    """Whether a gan-metrics report holds the memorisation check of at least one class."""
    classes = metrics.get("classes", {}) if isinstance(metrics, dict) else {}
    return any(isinstance(result, dict) and "memorisation" in result for result in classes.values())


def _write_image(planned: PlannedImage, target: Path, size: int) -> str:
    """Copy the pool file as is, or resize it with Lanczos; return the sha256 of what was written."""
    if not planned.resize:
        shutil.copyfile(planned.source, target)
        return planned.image.sha256
    decoded = decode_image(planned.source.read_bytes(), channels=1 if planned.mode == "L" else 3)
    data = png_bytes(fit_square(decoded.image, size, "stretch"))  # pool images are square: Lanczos only
    target.write_bytes(data)
    return sha256_bytes(data)


def _tree(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _write_contents(release: Release, folder: Path) -> int:
    """Write every file of the release into `folder`; return the total size in bytes."""
    rows: list[dict[str, Any]] = []
    for planned in release.images:
        target = folder / planned.target
        target.parent.mkdir(exist_ok=True)
        image = planned.image
        rows.append(
            {
                "file": planned.target,
                "class": image.class_name,
                "seed": image.seed,
                "snapshot": Path(image.snapshot).name,
                "snapshot_sha256": image.snapshot_sha256,
                "truncation": image.truncation,
                "noise_mode": image.noise_mode,
                "sha256": _write_image(planned, target, release.options.size),
            }
        )
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=POOL_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    # Plain writes: the staging folder as a whole is what becomes visible, in one rename.
    (folder / MANIFEST_FILE).write_text(table.getvalue(), encoding="utf-8")
    (folder / README_FILE).write_text(release.readme, encoding="utf-8")
    (folder / METADATA_FILE).write_text(
        json.dumps(release.metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    validate_metadata(release.metadata, folder)
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def write_release(release: Release) -> BuildResult:
    """Write the release to --out through a temp folder and one rename; keep --out if nothing changed."""
    out = release.options.out
    if out.exists() and not out.is_dir():
        raise PublishError(f"--out {out} is a file; it must be a folder")
    if out.exists() and not (out / METADATA_FILE).is_file() and any(out.iterdir()):
        raise PublishError(
            f"{out} exists and is not a folder `augstudy publish` built (no {METADATA_FILE}); "
            "choose another --out or empty it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.building-*"), *out.parent.glob(f".{out.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    staging = out.parent / f".{out.name}.building-{os.getpid()}"
    staging.mkdir()
    try:
        total_bytes = _write_contents(release, staging)
        changed = not (out / METADATA_FILE).is_file() or _tree(out) != _tree(staging)
        if changed:
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            if out.exists():
                os.rename(out, old)
            os.rename(staging, out)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_options(options_path(out), release.options)
    return BuildResult(out, changed, len(release.images), total_bytes)
