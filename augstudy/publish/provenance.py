"""Where a pool's images come from: source data, split, GAN snapshots and their training options.

The chain is pool manifest -> snapshot (its metadata, or training_options.json in its run folder)
-> the prepared data it trained on (prepare_options.json, report.json) -> the source data set.
Any link may be missing when a pool was copied to another machine; then the datasheet says
"unknown" and `notes` says why, rather than guessing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from augstudy.publish.errors import PublishError
from augstudy.publish.metadata import canonical_license
from augstudy.publish.pool import PoolImage
from stylegan2ada.io import sha256_file

UNKNOWN = "unknown"
_SNAPSHOT_KIMG = re.compile(r"network-snapshot-(\d+)")


@dataclass(frozen=True)
class KnownSource:
    """A public data set whose license and citation we know, recognised by its Kaggle id."""

    kaggle_id: str
    name: str
    creator: str
    year: int
    license: str
    subject: str
    keywords: tuple[str, ...]
    official_split_caveat: str = ""

    @property
    def url(self) -> str:
        return f"https://www.kaggle.com/datasets/{self.kaggle_id}"


KNOWN_SOURCES: dict[str, KnownSource] = {
    "mohamedhanyyy/chest-ctscan-images": KnownSource(
        kaggle_id="mohamedhanyyy/chest-ctscan-images",
        name="Chest CT-Scan images",
        creator="Mohamed Hany",
        year=2020,
        license="CC0-1.0",
        subject="chest CT",
        keywords=("health", "medicine", "cancer", "computer vision", "image", "deep learning"),
        official_split_caveat="most of its normal test images are byte-identical copies of train images",
    ),
}


@dataclass(frozen=True)
class SourceInfo:
    """The real data set the GAN learned from, and how we know."""

    dataset: str
    license: str
    evidence: str
    url: str | None = None
    title: str | None = None
    creator: str | None = None
    year: int | None = None
    subject: str | None = None
    keywords: tuple[str, ...] = ()
    official_split_caveat: str = ""


@dataclass(frozen=True)
class SnapshotInfo:
    """One generator snapshot named in the pool manifest."""

    name: str
    sha256: str
    kimg: int | None
    training_options: dict[str, Any]
    evidence: str
    run_dir: Path


@dataclass(frozen=True)
class Provenance:
    source: SourceInfo
    split: str
    prepare_options: dict[str, Any]
    train_counts: dict[str, int]
    snapshots: dict[str, SnapshotInfo]
    metrics: Any
    notes: tuple[str, ...] = field(default=())


def read_json(path: Path) -> Any:
    """A JSON file's content, or a PublishError naming the file when it cannot be parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PublishError(f"{path} could not be read as JSON: {error}") from error


def identify_source(text: str) -> KnownSource | None:
    """The known data set whose Kaggle id appears in `text` (a flag, a `kaggle:` source, a README)."""
    lowered = text.lower()
    return next((known for kaggle_id, known in KNOWN_SOURCES.items() if kaggle_id in lowered), None)


def _from_known(known: KnownSource, evidence: str) -> SourceInfo:
    return SourceInfo(
        dataset=f"{known.name} ({known.creator}, {known.year})",
        license=known.license,
        evidence=evidence,
        url=known.url,
        title=known.name,
        creator=known.creator,
        year=known.year,
        subject=known.subject,
        keywords=known.keywords,
        official_split_caveat=known.official_split_caveat,
    )


def resolve_source(
    source_dataset: str | None, source_license: str | None, prepared_source: str | None
) -> SourceInfo:
    """Identify the source data set from the flag, else from prepare's recorded SOURCE."""
    info = SourceInfo(
        dataset=UNKNOWN, license=UNKNOWN, evidence="no --source-dataset and no prepare_options.json"
    )
    if source_dataset:
        known = identify_source(source_dataset)
        info = (
            _from_known(known, "--source-dataset")
            if known
            else SourceInfo(dataset=source_dataset, license=UNKNOWN, evidence="--source-dataset")
        )
    elif prepared_source:
        info = _source_from_prepare(prepared_source)
    if source_license:
        info = replace(info, license=canonical_license(source_license) or source_license)
    return info


def _source_from_prepare(source: str) -> SourceInfo:
    if source.startswith("kaggle:"):
        evidence = f"prepare_options.json, whose source is {source}"
        kaggle_id = source.removeprefix("kaggle:")
        known = identify_source(kaggle_id)
        if known:
            return _from_known(known, evidence)
        return SourceInfo(
            dataset=kaggle_id,
            license=UNKNOWN,
            evidence=evidence,
            url=f"https://www.kaggle.com/datasets/{kaggle_id}",
        )
    folder = Path(source)
    evidence = f"prepare_options.json, whose source is a local folder named {folder.name!r}"
    for readme in sorted(folder.glob("README*")) if folder.is_dir() else []:
        known = identify_source(readme.read_text(encoding="utf-8", errors="replace"))
        if known:
            return _from_known(
                known, f"the source folder's {readme.name}, which names the Kaggle data set {known.kaggle_id}"
            )
    return SourceInfo(
        dataset=f"{UNKNOWN} (prepared from a local folder named {folder.name!r})",
        license=UNKNOWN,
        evidence=evidence,
    )


def read_snapshot(pool: Path, snapshot: str, expected_sha256: str, notes: list[str]) -> SnapshotInfo:
    """kimg and training options of a snapshot: its own metadata when the file is here and intact,
    completed by training_options.json in its run folder (the snapshot's values win)."""
    path = Path(snapshot)
    candidates = [path] if path.is_absolute() else [pool / path, path]
    found = next((candidate for candidate in candidates if candidate.is_file()), None)
    name_match = _SNAPSHOT_KIMG.search(path.name)
    kimg = int(name_match.group(1)) if name_match else None
    run_dir = (found or candidates[0]).parent
    meta: dict[str, Any] = {}
    if found is None:
        notes.append(
            f"snapshot {path.name} is not on this machine: kimg is read from its file name, "
            "its training options from its run folder when present"
        )
    elif sha256_file(found) != expected_sha256:
        notes.append(
            f"{path.name} no longer matches the sha256 in the pool manifest; its metadata was not used"
        )
    else:
        meta = _snapshot_meta(found, notes)
    if isinstance(meta.get("kimg"), (int, float)):
        kimg = int(meta["kimg"])
    evidence = ["snapshot metadata" if meta else "file name"]
    options_file = run_dir / "training_options.json"
    file_options = read_json(options_file) if options_file.is_file() else {}
    if options_file.is_file():
        evidence.append("training_options.json in its run folder")
    options = {
        **(file_options if isinstance(file_options, dict) else {}),
        **(meta["options"] if isinstance(meta.get("options"), dict) else {}),
    }
    if not options:
        notes.append(
            f"no training options found for {path.name} (looked in its metadata and in "
            "training_options.json in its run folder)"
        )
    return SnapshotInfo(path.name, expected_sha256, kimg, options, " and ".join(evidence), run_dir)


def _snapshot_meta(path: Path, notes: list[str]) -> dict[str, Any]:
    """stylegan2ada's snapshot metadata (loading executes no code); empty when it cannot be read."""
    try:
        from stylegan2ada.snapshot import SnapshotError, snapshot_meta
    except ImportError:
        notes.append(f"stylegan2ada cannot be imported here, so the metadata inside {path.name} was not read")
        return {}
    try:
        meta = snapshot_meta(path)
    except SnapshotError as error:
        notes.append(
            f"the metadata inside {path.name} could not be read ({str(error).replace(str(path), path.name)})"
        )
        return {}
    return meta if isinstance(meta, dict) else {}


def _prepared_from_data(data: str, run_dir: Path) -> Path | None:
    """The `augstudy prepare` folder behind a GAN's training data (DIR/gan/<class>.zip or a folder)."""
    data_path = Path(data)
    candidates = [data_path] if data_path.is_absolute() else [data_path, run_dir / data_path]
    for candidate in candidates:
        for folder in (candidate, candidate.parent, candidate.parent.parent):
            if (folder / "prepare_options.json").is_file():
                return folder
    return None


def read_metrics(pool: Path) -> Any:
    """POOL/metrics.json as written by `augstudy gan-metrics`, or None when there is none."""
    metrics_file = pool / "metrics.json"
    return read_json(metrics_file) if metrics_file.is_file() else None


def flagged_files(metrics: Any) -> set[str]:
    """Pool files the memorisation check flagged as near-copies of a training image.

    Looks for any "flagged" list of {"fake": name, ...} entries, wherever the report nests it.
    """
    found: set[str] = set()
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            if key == "flagged" and isinstance(value, list):
                found.update(
                    str(entry["fake"]).replace("\\", "/")
                    for entry in value
                    if isinstance(entry, dict) and "fake" in entry
                )
            else:
                found |= flagged_files(value)
    elif isinstance(metrics, list):
        for item in metrics:
            found |= flagged_files(item)
    return found


def gather_provenance(
    pool: Path,
    selection: dict[str, list[PoolImage]],
    *,
    metrics: Any = None,
    prepared: Path | None = None,
    source_dataset: str | None = None,
    source_license: str | None = None,
) -> Provenance:
    """Everything the datasheet says about origin and quality, read from the files that exist."""
    notes: list[str] = []
    snapshots: dict[str, SnapshotInfo] = {}
    for images in selection.values():
        for image in images:
            if image.snapshot_sha256 not in snapshots:
                snapshots[image.snapshot_sha256] = read_snapshot(
                    pool, image.snapshot, image.snapshot_sha256, notes
                )

    if prepared is None:
        for info in snapshots.values():
            data = info.training_options.get("data")
            prepared = _prepared_from_data(str(data), info.run_dir) if data else None
            if prepared:
                break
    if prepared is not None and not (prepared / "prepare_options.json").is_file():
        raise PublishError(
            f"{prepared / 'prepare_options.json'} not found: --prepared must be a folder "
            "written by `augstudy prepare`"
        )
    prepare_options: dict[str, Any] = {}
    train_counts: dict[str, int] = {}
    if prepared is None:
        notes.append("the prepared data the GAN trained on was not found (pass --prepared DIR)")
    else:
        loaded = read_json(prepared / "prepare_options.json")
        prepare_options = loaded if isinstance(loaded, dict) else {}
        report_file = prepared / "report.json"
        report = read_json(report_file) if report_file.is_file() else {}
        counts = report.get("counts") if isinstance(report, dict) else None
        train = counts.get("train") if isinstance(counts, dict) else None
        if isinstance(train, dict):
            train_counts = {str(name): count for name, count in train.items() if isinstance(count, int)}

    source = resolve_source(
        source_dataset,
        source_license,
        str(prepare_options["source"]) if prepare_options.get("source") else None,
    )
    return Provenance(
        source=source,
        split=str(prepare_options.get("split", UNKNOWN)),
        prepare_options=prepare_options,
        train_counts=train_counts,
        snapshots=snapshots,
        metrics=metrics,
        notes=tuple(notes),
    )
