"""`augstudy prepare SOURCE --out DIR`: a raw labelled image collection to clean, traceable inputs.

Every file is decoded (any format Pillow reads), brought to one square size so size cannot leak
the label, hashed three ways (bytes, pixels, perception) and grouped with its copies. The output
holds both the official split and the dedup split (no copy of a train image in valid or test);
`--split` picks which one the GAN zips, the report counts and the sweep's default follow. The
format is in docs/formats.md.

Re-runs are cheap: each decoded file is recorded in `DIR/.prepare_cache.jsonl` as it is done, so
an interrupted run resumes where it stopped, and a run whose inputs and options match the last
complete one (the fingerprint in report.json) does nothing at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from augstudy.data.decode import (
    FITS,
    UnreadableImage,
    decode_image,
    fit_square,
    pixel_digest_input,
    png_bytes,
)
from augstudy.data.dedup import (
    PHASH_BITS,
    PHASH_THRESHOLD,
    DedupDecision,
    HashedFile,
    dedup_decisions,
    find_groups,
    leakage_counts,
    phash,
)
from augstudy.data.nvlabs_zip import write_dataset_zip
from augstudy.data.prepared import (
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    OPTIONS_NAME,
    REPORT_NAME,
    SPLIT_MODES,
    PreparedDataError,
)
from augstudy.data.sources import (
    DEFAULT_TEST_FRAC,
    DEFAULT_VAL_FRAC,
    KAGGLE_PREFIX,
    SPLITS,
    Discovery,
    SourceError,
    SourceFile,
    discover,
    parse_class_map,
    resolve_source,
)
from augstudy.locks import writing
from augstudy.optional import MissingDependencyError
from augstudy.options import (
    MAX_SIDE,
    OptionError,
    RangedNumber,
    check_memory,
    check_ranges,
    class_list,
    options_to_dict,
    ranged,
    write_options,
)
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_bytes,
    sha256_file,
)

# Bumped whenever the meaning of an output changes, so older caches and outputs are redone.
FORMAT_VERSION = 1
CACHE_NAME = ".prepare_cache.jsonl"
OUTPUT_MARKS = (MANIFEST_NAME, CACHE_NAME)  # a prepared folder written before its lock existed


class PrepareError(ValueError):
    """prepare cannot go on (bad options, or unreadable files under --strict)."""


# Errors caused by the input or options: the CLI and `augstudy run` show their message, no traceback.
USER_ERRORS = (PrepareError, SourceError, PreparedDataError, MissingDependencyError, OutputError, OptionError)


@dataclass(frozen=True)
class PrepareOptions:
    """Options of `augstudy prepare`.

    Attributes:
        source: a folder, or `kaggle:OWNER/SLUG`.
        out: the prepared folder to write.
        resolution: side of the square output images; a power of two, as the GAN needs.
        fit: "pad" (to a square, black), "crop" (centre square) or "stretch", before resampling.
        channels: 1 (grey, CT's own) or 3 (RGB).
        split: "dedup" or "official": what the GAN zips, the report counts and the sweep default use.
        classes: canonical classes to keep; empty keeps all found (resolved to the list found).
        class_map: folder glob -> class, before the built-in rules; an empty class ignores a folder.
        val_frac, test_frac: for a folder of class folders only (default 0.1 and 0.2 there).
        seed: for that split.
        phash_threshold: bits (of 256) within which two images count as near-duplicates.
        strict: stop with an error when any file is unreadable, instead of skipping it.
    """

    source: str
    out: Path
    resolution: int = ranged(256, low=4, high=MAX_SIDE, integer=True)
    fit: str = "pad"
    channels: int = 1
    split: str = "dedup"
    classes: tuple[str, ...] = ()
    class_map: dict[str, str] = field(default_factory=dict)
    val_frac: float | None = ranged(None, low=0, high=1, high_open=True)
    test_frac: float | None = ranged(None, low=0, high=1, high_open=True)
    seed: int = ranged(0, low=0, integer=True)
    phash_threshold: int = ranged(PHASH_THRESHOLD, low=0, high=PHASH_BITS, high_open=True, integer=True)
    strict: bool = False

    def __post_init__(self) -> None:
        check_ranges(self)
        # decoding, fitting and resampling hold a few float32 copies of one image at a time
        check_memory("--resolution", "resolution", self.resolution, 16 * self.channels * self.resolution**2,
                     "resampling one image to this side")


@dataclass(frozen=True)
class PrepareResult:
    """What prepare wrote: the folder, its report (as in report.json) and whether it was already done."""

    out: Path
    report: dict[str, Any]
    up_to_date: bool

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return self.report["counts"]


@dataclass(frozen=True)
class FileRecord:
    """What decoding one source file found; `error` is set (and the hashes empty) when unreadable."""

    image: str
    sha256: str
    image_sha256: str = ""
    pixel_sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    colour: bool = False
    error: str = ""


def prepare(options: PrepareOptions) -> PrepareResult:
    """Decode, normalise, dedupe and write a prepared folder; see the module docstring."""
    _check_options(options)
    local = None if options.source.startswith(KAGGLE_PREFIX) else options.source
    check_output(options.out, {"SOURCE": local}, verb="prepare", owned=OUTPUT_MARKS)  # before a download
    root = resolve_source(options.source)
    out = check_output(options.out, {"SOURCE": root}, verb="prepare", owned=OUTPUT_MARKS)
    if (out / "images").exists() and not any((out / name).exists() for name in (MANIFEST_NAME, CACHE_NAME)):
        raise PrepareError(f"--out {out} already holds an images/ folder that prepare did not write (no "
                           f"{MANIFEST_NAME}); prepare replaces images/, so choose an empty or new --out")
    discovery = discover(root, options.class_map, options.classes, options.val_frac, options.test_frac,
                         options.seed)
    options = _resolve(options, discovery, out)
    fingerprint = _fingerprint(options, discovery)
    done = _finished_report(out, fingerprint)
    if done is not None:
        return PrepareResult(out, done, up_to_date=True)
    if options.strict:  # before anything is written, so a refusal leaves --out as it was
        _check_readable(discovery.files, options, root)
    # a PNG per file and its copy in the GAN zips: about the raw size of the resampled images
    needed = len(discovery.files) * options.channels * options.resolution**2
    with writing(out, "prepare", needed=needed):
        return _write_prepared(options, discovery, root, out, fingerprint)


def _write_prepared(options: PrepareOptions, discovery: Discovery, root: Path, out: Path,
                    fingerprint: str) -> PrepareResult:
    """prepare's work, under the writer lock of --out."""
    started = time.monotonic()
    images = _image_names(discovery.files)
    records = _decode_all(discovery.files, images, options, out)
    unreadable = [{"path": file.relative_path, "reason": record.error}
                  for file, record in zip(discovery.files, records) if record.error]
    _check_every_class_readable(discovery, records, root)

    readable = [(file, record) for file, record in zip(discovery.files, records) if not record.error]
    hashed = [HashedFile(file.split, file.class_name, file.relative_path, record.sha256, record.pixel_sha256,
                         record.phash) for file, record in readable]
    groups = find_groups(hashed, options.phash_threshold)
    decisions = dict(zip((file.relative_path for file, _ in readable), dedup_decisions(hashed, groups)))
    rows = [_manifest_row(file, record, decisions.get(file.relative_path), options.split)
            for file, record in zip(discovery.files, records)]

    _remove_stale_images(out, {row["image"] for row in rows if row["image"]})
    _write_gan_zips(out, rows, options)
    _write_manifest(out / MANIFEST_NAME, rows)
    write_options(out / OPTIONS_NAME, options)
    report = _report(options, discovery, rows, hashed, groups, unreadable, fingerprint)
    report["seconds"] = round(time.monotonic() - started, 2)
    atomic_write_json(out / REPORT_NAME, report)  # last: its fingerprint marks the folder complete
    return PrepareResult(out, report, up_to_date=False)


def format_summary(result: PrepareResult) -> str:
    """A short human summary of a prepare run for the terminal."""
    report = result.report
    classes = report["classes"]
    lines = [
        f"prepare: {report['files']} files from {report['source_dir']} ({report['layout']} layout) -> {result.out}"
        + ("  [up to date, nothing to do]" if result.up_to_date else f"  [{report['seconds']} s]"),
        (f"  {report['resolution']} px, {report['channels']} channel(s), fit {report['fit']}; "
         f"split {report['split']}; kept (official) per split and class:"),
    ]
    width = max(len(name) for name in classes) + 2
    lines.append(" " * (width + 2) + "".join(f"{split:>14}" for split in SPLITS))
    for name in classes:
        cells = "".join(f"{report['counts'][split][name]:>6} ({report['counts_official'][split][name]:>4})"
                        for split in SPLITS)
        lines.append(f"  {name:<{width}}{cells}")
    for label, key in (("exact copies of a train image", "duplicates_across_splits"),
                       ("near copies of a train image", "near_duplicates_across_splits"),
                       ("removed by dedup", "removed_by_dedup")):
        lines.append(f"  {label}: {_nonzero(report[key])}")
    lines.append(f"  duplicate groups: {report['duplicate_groups']} (pHash {report['phash']['bits']} bits, "
                 f"threshold {report['phash']['threshold']}); label conflicts: {report['label_conflicts']}")
    if report["colour"]["total"]:
        lines.append(f"  images with colour among grey ones: {_nonzero(report['colour']['images'])}"
                     + (" (converted to grey)" if report["channels"] == 1 else ""))
    lines += [f"  warning: {warning}" for warning in report.get("warnings", [])]
    lines.append(f"  unreadable: {len(report['unreadable'])}"
                 + "".join(f"\n    {item['path']}: {item['reason']}" for item in report["unreadable"][:10]))
    return "\n".join(lines)


@click.command("prepare")
@click.argument("source")
@click.option("--out", required=True, type=OutputPath(),
              help="Prepared folder to write.")
@click.option("--resolution", type=RangedNumber(PrepareOptions, "resolution"),
              default=256, show_default=True, help="Square side; a power of two.")
@click.option("--fit", type=click.Choice(FITS), default="pad", show_default=True,
              help="How a non-square image becomes square before resampling.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="1 = grey (CT), 3 = RGB.")
@click.option("--split", type=click.Choice(SPLIT_MODES), default="dedup", show_default=True,
              help="dedup drops copies of train images from valid/test; official keeps the splits as given.")
@click.option("--classes", default=None, help="Comma-separated classes to keep, e.g. normal,squamous. [default: all]")
@click.option("--class-map", multiple=True, metavar="FOLDER=CLASS",
              help="Map class folders (globs) to a class; 'FOLDER=' ignores one. Repeatable.")
@click.option("--val-frac", type=RangedNumber(PrepareOptions, "val_frac"),
              default=None, help="Folder of class folders only. [default: 0.1]")
@click.option("--test-frac", type=RangedNumber(PrepareOptions, "test_frac"),
              default=None, help="Folder of class folders only. [default: 0.2]")
@click.option("--seed", type=RangedNumber(PrepareOptions, "seed"),
              default=0, show_default=True, help="Seed of that split.")
@click.option("--phash-threshold", type=RangedNumber(PrepareOptions, "phash_threshold"),
              default=PHASH_THRESHOLD, show_default=True,
              help=f"Near-duplicate threshold in bits of the {PHASH_BITS}-bit perceptual hash.")
@click.option("--strict", is_flag=True, help="Fail on any unreadable file instead of skipping it.")
def prepare_command(source: str, out: Path, resolution: int, fit: str, channels: str, split: str,
                    classes: str | None,
                    class_map: tuple[str, ...], val_frac: float | None, test_frac: float | None, seed: int,
                    phash_threshold: int, strict: bool) -> None:
    """Clean, dedupe and resize the labelled images in SOURCE (a folder or kaggle:OWNER/SLUG) into --out."""
    try:
        options = PrepareOptions(
            source=source, out=out, resolution=resolution, fit=fit, channels=int(channels), split=split,
            classes=class_list(classes),
            class_map=parse_class_map(class_map), val_frac=val_frac, test_frac=test_frac, seed=seed,
            phash_threshold=phash_threshold, strict=strict)
        result = prepare(options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_summary(result))


def _check_options(options: PrepareOptions) -> None:
    problems = []
    if options.resolution < 4 or options.resolution & (options.resolution - 1):
        problems.append(f"--resolution {options.resolution} must be a power of two >= 4 (the GAN needs one)")
    if options.fit not in FITS:
        problems.append(f"--fit {options.fit!r} must be one of {FITS}")
    if options.channels not in (1, 3):
        problems.append(f"--channels {options.channels} must be 1 or 3")
    if options.split not in SPLIT_MODES:
        problems.append(f"--split {options.split!r} must be one of {SPLIT_MODES}")
    if not 0 <= options.phash_threshold < PHASH_BITS:
        problems.append(f"--phash-threshold {options.phash_threshold} must be in [0, {PHASH_BITS})")
    if problems:
        raise PrepareError("; ".join(problems))


def _resolve(options: PrepareOptions, discovery: Discovery, out: Path) -> PrepareOptions:
    """The options as run: classes found, fractions used, absolute output folder."""
    fractions: dict[str, float | None] = {"val_frac": None, "test_frac": None}
    if discovery.layout == "class-folders":
        fractions = {"val_frac": DEFAULT_VAL_FRAC if options.val_frac is None else options.val_frac,
                     "test_frac": DEFAULT_TEST_FRAC if options.test_frac is None else options.test_frac}
    return replace(options, out=out, classes=discovery.classes, **fractions)


def _fingerprint(options: PrepareOptions, discovery: Discovery) -> str:
    """Changes when an option, the code's output format, or any source file (name, size, mtime) changes."""
    settings = options_to_dict(options)
    for where in ("out", "source"):  # the resolved root below names the source, whatever the spelling
        settings.pop(where)
    files = []
    for file in discovery.files:
        stat = file.path.stat()
        files.append([file.relative_path, file.split, file.class_name, stat.st_size, stat.st_mtime_ns])
    payload = json.dumps({"version": FORMAT_VERSION, "root": str(discovery.root), "options": settings,
                          "files": files}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _finished_report(out: Path, fingerprint: str) -> dict[str, Any] | None:
    """The report of a complete earlier run with the same fingerprint, if every output is still there."""
    report_path = out / REPORT_NAME
    if not report_path.is_file():
        return None
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        with open(out / MANIFEST_NAME, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, json.JSONDecodeError):
        return None
    if report.get("input_fingerprint") != fingerprint or not (out / OPTIONS_NAME).is_file():
        return None
    expected = [out / "gan" / f"{name}.zip" for name in report["classes"]] + [out / "gan" / "all.zip"]
    expected += [out / row["image"] for row in rows if row.get("image")]
    return report if all(path.is_file() for path in expected) else None


def _image_names(files: tuple[SourceFile, ...]) -> list[str]:
    """`images/<split>/<class>/<name>.png` per file: the source name with spaces and odd characters
    made safe, and `_2`, `_3`... where two sources would share a name."""
    taken: set[str] = set()
    names = []
    for file in files:
        stem = "".join(char if char.isalnum() or char in "._-" else "_" for char in file.path.stem)
        stem = "_".join(part for part in stem.split("_") if part) or "image"
        candidate, number = stem, 1
        while f"{file.split}/{file.class_name}/{candidate}".lower() in taken:
            number += 1
            candidate = f"{stem}_{number}"
        taken.add(f"{file.split}/{file.class_name}/{candidate}".lower())
        names.append(f"images/{file.split}/{file.class_name}/{candidate}.png")
    return names


def _decode_all(files: tuple[SourceFile, ...], images: list[str], options: PrepareOptions,
                out: Path) -> list[FileRecord]:
    """Decode, normalise and write every file, reusing what an earlier run already recorded."""
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / CACHE_NAME
    cached = _read_cache(cache_path)
    records: list[FileRecord] = []
    current: dict[str, FileRecord] = {}
    with open(cache_path, "a", encoding="utf-8") as cache:
        for file, image in zip(tqdm(files, desc="prepare", unit="img", disable=None, file=sys.stderr), images):
            key = _cache_key(file, options)
            record = cached.get(key)
            if record is None or not _still_valid(record, image, out):
                record = _decode_one(file, image, options, out)
                cache.write(json.dumps({"key": key, **record.__dict__}, sort_keys=True) + "\n")
                cache.flush()
            records.append(record)
            current[key] = record
    atomic_write_text(cache_path, "".join(json.dumps({"key": key, **record.__dict__}, sort_keys=True) + "\n"
                                          for key, record in current.items()))
    return records


def _still_valid(record: FileRecord, image: str, out: Path) -> bool:
    """A cached record holds if its PNG is the one planned and still has the bytes it was written with."""
    if record.error:
        return True
    path = out / record.image
    return record.image == image and path.is_file() and sha256_file(path) == record.image_sha256


def _check_readable(files: tuple[SourceFile, ...], options: PrepareOptions, root: Path) -> None:
    """--strict: every file must decode; checked without writing anything."""
    unreadable = []
    for file in files:
        try:
            decode_image(file.path.read_bytes(), options.channels)
        except OSError as error:
            unreadable.append(f"{file.relative_path}: cannot read the file: {error.strerror or error}")
        except UnreadableImage as error:
            unreadable.append(f"{file.relative_path}: {error}")
    if unreadable:
        raise PrepareError(f"{len(unreadable)} unreadable file(s) in {root} (--strict): {'; '.join(unreadable)}")


def _check_every_class_readable(discovery: Discovery, records: list[FileRecord], root: Path) -> None:
    """A class none of whose files decode would be kept with 0 images and break every later step."""
    readable = Counter(file.class_name for file, record in zip(discovery.files, records) if not record.error)
    empty = [name for name in discovery.classes if not readable[name]]
    if empty:
        raise PrepareError(f"class(es) {', '.join(empty)} in {root}: none of their files is a readable image; "
                           "fix or replace the files, or leave the class out with --classes")


def _decode_one(file: SourceFile, image: str, options: PrepareOptions, out: Path) -> FileRecord:
    try:
        data = file.path.read_bytes()
    except OSError as error:
        return FileRecord("", "", error=f"cannot read the file: {error.strerror or error}")
    digest = sha256_bytes(data)
    try:
        decoded = decode_image(data, options.channels)
    except UnreadableImage as error:
        return FileRecord("", digest, error=str(error))
    encoded = png_bytes(fit_square(decoded.image, options.resolution, options.fit))  # type: ignore[arg-type]
    atomic_write_bytes(out / image, encoded)
    return FileRecord(image, digest, sha256_bytes(encoded), sha256_bytes(pixel_digest_input(decoded.image)),
                      phash(decoded.luma), decoded.width, decoded.height, decoded.source_mode,
                      decoded.source_format, decoded.colour)


def _cache_key(file: SourceFile, options: PrepareOptions) -> str:
    stat = file.path.stat()
    parts = [FORMAT_VERSION, str(file.path), stat.st_size, stat.st_mtime_ns, options.resolution, options.fit,
             options.channels]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def _read_cache(path: Path) -> dict[str, FileRecord]:
    """Records of earlier runs; a torn last line (a killed run) is skipped."""
    if not path.is_file():
        return {}
    records: dict[str, FileRecord] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            key = entry.pop("key")
            records[key] = FileRecord(**entry)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records


def _manifest_row(file: SourceFile, record: FileRecord, decision: DedupDecision | None,
                  split_mode: str) -> dict[str, str]:
    if decision is None:  # unreadable
        official_keep = dedup_keep = False
        reason = f"unreadable: {record.error}"
        group, kind, duplicate_of, dedup_reason = 0, "", "", reason
    else:
        official_keep, dedup_keep = True, decision.keep
        group, kind, duplicate_of, dedup_reason = decision.group, decision.kind, decision.duplicate_of, decision.reason
        reason = "" if split_mode == "official" else dedup_reason
    kept = official_keep if split_mode == "official" else dedup_keep
    return {
        "split": file.split, "class": file.class_name, "source_folder": file.source_folder,
        "source_path": file.relative_path, "sha256": record.sha256, "pixel_sha256": record.pixel_sha256,
        "phash": record.phash, "dup_group": f"g{group:04d}" if group else "", "dup_kind": kind,
        "dup_of": duplicate_of, "image": record.image, "official_keep": _flag(official_keep),
        "dedup_keep": _flag(dedup_keep), "kept": _flag(kept), "reason": reason,
        "width": str(record.width) if record.width else "", "height": str(record.height) if record.height else "",
        "mode": record.mode, "format": record.format, "colour": _flag(record.colour),
    }


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _remove_stale_images(out: Path, wanted: set[str]) -> None:
    """Delete PNGs an earlier run with other options left under images/, so the folder matches the manifest."""
    images = out / "images"
    if not images.is_dir():
        return
    for path in sorted(images.rglob("*.png")):
        if path.relative_to(out).as_posix() not in wanted:
            path.unlink()
    for folder in sorted((p for p in images.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _write_gan_zips(out: Path, rows: list[dict[str, str]], options: PrepareOptions) -> None:
    """Per-class zips (unlabelled) and all.zip (labelled) of the train images kept under --split."""
    gan = out / "gan"
    classes = list(options.classes)
    train = {name: sorted(row["image"] for row in rows
                          if row["split"] == "train" and row["class"] == name and row["kept"] == "1")
             for name in classes}
    for name in classes:
        write_dataset_zip(gan / f"{name}.zip", [out / image for image in train[name]], None, [name])
    everything = [(out / image, label) for label, name in enumerate(classes) for image in train[name]]
    write_dataset_zip(gan / "all.zip", [path for path, _ in everything], [label for _, label in everything],
                      classes)
    wanted = {f"{name}.zip" for name in classes} | {"all.zip"}
    for stale in gan.glob("*.zip"):
        if stale.name not in wanted:
            stale.unlink()


def _report(options: PrepareOptions, discovery: Discovery, rows: list[dict[str, str]], hashed: list[HashedFile],
            groups: list[int], unreadable: list[dict[str, str]], fingerprint: str) -> dict[str, Any]:
    classes = list(options.classes)

    def per_split(predicate: Any) -> dict[str, dict[str, int]]:
        return {split: {name: sum(1 for row in rows if row["split"] == split and row["class"] == name
                                  and predicate(row)) for name in classes} for split in SPLITS}

    leakage = leakage_counts(hashed, groups)
    readable = [row for row in rows if row["image"]]
    colour = per_split(lambda row: row["colour"] == "1")
    n_colour = sum(row["colour"] == "1" for row in readable)
    conflicts = {row["dup_group"] for row in rows if row["dup_kind"] == "conflict"}
    counts = per_split(lambda row: row["kept"] == "1")
    return {
        "warnings": _split_warnings(counts),
        "source": options.source,
        "source_dir": str(discovery.root),
        "layout": discovery.layout,
        "split": options.split,
        "classes": classes,
        "resolution": options.resolution,
        "channels": options.channels,
        "fit": options.fit,
        "class_folders": discovery.class_folders,
        "ignored_folders": list(discovery.ignored_folders),
        "ignored_files": list(discovery.ignored_files),
        "files": len(rows),
        "readable": len(readable),
        "counts": counts,
        "counts_official": per_split(lambda row: row["official_keep"] == "1"),
        "counts_dedup": per_split(lambda row: row["dedup_keep"] == "1"),
        "duplicates_across_splits": leakage["exact"],
        "near_duplicates_across_splits": leakage["near"],
        "duplicates_within_split": leakage["within"],
        "removed": per_split(lambda row: row["image"] != "" and row["kept"] == "0"),
        "removed_by_dedup": per_split(lambda row: row["image"] != "" and row["dedup_keep"] == "0"),
        "duplicate_groups": len({group for group in groups if group}),
        "label_conflicts": len(conflicts),
        "unreadable": unreadable,
        "colour": {"images": colour, "total": n_colour,
                   "grey_majority": n_colour < len(readable) - n_colour},
        "source_modes": dict(sorted(Counter(row["mode"] for row in readable).items())),
        "source_formats": dict(sorted(Counter(row["format"] for row in readable).items())),
        "phash": {"bits": PHASH_BITS, "threshold": options.phash_threshold},
        "input_fingerprint": fingerprint,
    }


def _split_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    """A class with no image in a split cannot be trained, tuned or tested on; say so where it is made."""
    return [f"class {name!r} has no {split} images after preparing (kept: "
            + ", ".join(f"{other} {counts[other][name]}" for other in SPLITS)
            + "); a classifier can neither learn nor be tested on it there: add images or leave it out with --classes"
            for split in SPLITS for name, count in counts[split].items() if count == 0]


def _nonzero(table: dict[str, dict[str, int]]) -> str:
    parts = [f"{split} {name} {count}" for split, by_class in table.items() for name, count in by_class.items()
             if count]
    return ", ".join(parts) if parts else "none"
