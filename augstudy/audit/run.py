"""`augstudy audit --data PREP [--pool POOL] --out DIR`: can the label be predicted without pathology?

For each attribute group (original size; file format, mode, bit depth and size; colour; padding
after `--fit`; the prepared image's intensity histogram; a random-init backbone's features) a
simple classifier is cross-validated over folds that keep duplicate groups together, and its ROC
AUC is reported. A group at or above `--threshold` (default 0.70: the lower bound of what
diagnostic-test literature calls "acceptable" discrimination) is flagged with a plain sentence.
With `--pool`, a linear probe on the backbone's features tells real from synthetic images per
class. The result is `OUT/audit.json` beside `OUT/audit_options.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from augstudy.audit.features import (
    AuditImage,
    FeatureGroup,
    audited_images,
    colour_group,
    file_group,
    histogram_group,
    padding_group,
    prepared_pixels,
    size_group,
    source_folder,
)
from augstudy.audit.probe import ProbeError, ProbeResult, cross_validated_auc, real_vs_synthetic_auc
from augstudy.classify.backend import KERAS_BACKENDS
from augstudy.classify.metrics import NEGATIVE_CLASS_NAME
from augstudy.data.prepared import (
    SPLIT_MODES,
    PreparedDataError,
    prepared_content_sha256,
    read_prepare_options,
)
from augstudy.locks import writing
from augstudy.options import (
    MAX_SIDE,
    OptionError,
    RangedNumber,
    check_backbone_memory,
    check_ranges,
    options_to_dict,
    ranged,
    write_options,
)
from augstudy.outputs import OutputError, OutputPath, check_output
from stylegan2ada.io import atomic_write_json, sha256_file

AUDIT_NAME = "audit.json"
OPTIONS_NAME = "audit_options.json"
DEFAULT_THRESHOLD = 0.70
# A yes/no attribute (a format, a mode, colour) carried by at least this many images, all of one
# class, is a partial shortcut: AUC stays low when few images carry it, yet those are labelled free.
EXCLUSIVE_MIN_IMAGES = 3
# Below the threshold, a group whose out-of-fold scores still differ between the classes at this
# p-value (and AUC) "weakly predicts" the label rather than "does not predict" it.
WEAK_P, WEAK_AUC = 0.01, 0.6
FORMAT_VERSION = 2  # 2: evidence-based wording, weak shortcuts, cues read from prepared pixels


class AuditError(ValueError):
    """The audit cannot run as asked; the message names the option or file."""


# Errors caused by the input or options: the CLI and `augstudy run` show their message without a traceback.
USER_ERRORS = (AuditError, OptionError)


@dataclass(frozen=True)
class AuditOptions:
    """Options of `augstudy audit`.

    Attributes:
        data: a prepared folder.
        out: folder for audit.json and audit_options.json.
        pool: a synthetic pool (`<class>/*.png`) for the real-vs-synthetic probe; None skips it.
        split: "official" or "dedup"; None takes prepare's own `--split`.
        threshold: an AUC at or above it flags a group (0.5 < threshold <= 1).
        seed: fold assignment and the probe's subsampling.
        backbone_features: audit the backbone's features (and allow `pool`); off skips Keras entirely.
        backbone, weights, input_size, keras_backend, cache_dir, feature_batch_size: as in `sweep`;
            `weights` defaults to "none", the random-init backbone.
    """

    data: Path
    out: Path
    pool: Path | None = None
    split: str | None = None
    threshold: float = ranged(DEFAULT_THRESHOLD, low=0.5, high=1, low_open=True)
    seed: int = ranged(0, low=0, integer=True)
    backbone_features: bool = True
    backbone: str = "resnet50"
    weights: str = "none"
    input_size: int | None = ranged(None, low=32, high=MAX_SIDE, integer=True)
    keras_backend: str | None = None
    cache_dir: Path | None = None
    feature_batch_size: int = ranged(32, low=1, integer=True)
    progress: bool = True

    def __post_init__(self) -> None:
        check_ranges(self)
        check_backbone_memory(self.input_size, self.feature_batch_size)


def run_audit(options: AuditOptions) -> dict[str, Any]:
    """Audit a prepared folder (and pool); writes and returns the audit.json content."""
    _check(options)
    try:
        weights = None if options.weights in ("imagenet", "none") else options.weights
        out = check_output(options.out, {"--data": options.data, "--pool": options.pool, "--weights": weights},
                           verb="audit", owned=(AUDIT_NAME,))
        with writing(out, "audit"):
            return _audit(options, out)
    except OutputError as error:  # the output, its lock or a full disk
        raise AuditError(str(error)) from error


def _audit(options: AuditOptions, out: Path) -> dict[str, Any]:
    """run_audit's work, under the writer lock of --out."""
    try:
        images, classes, split_mode = audited_images(Path(options.data), options.split)
        prepare_options = read_prepare_options(Path(options.data))
    except PreparedDataError as error:
        raise AuditError(str(error)) from error
    options = replace(options, split=split_mode)
    fingerprint = _fingerprint(options)
    done = out / AUDIT_NAME
    if done.is_file():
        previous = json.loads(done.read_text(encoding="utf-8"))
        if previous.get("fingerprint") == fingerprint:
            return previous
    labels = np.array([image.label for image in images])
    groups = np.array([image.group for image in images])
    pixels = prepared_pixels(images)
    source_dir = source_folder(Path(options.data))
    feature_groups = [size_group(images), file_group(images, source_dir), colour_group(images, source_dir),
                      padding_group(images, pixels, str(prepare_options["fit"])), histogram_group(pixels)]
    weights_label = None
    if options.backbone_features:
        vectors, weights_label = _backbone([image.path for image in images], options)
        feature_groups.append(FeatureGroup("backbone", f"{options.backbone} features ({weights_label})", "content",
                                           tuple(f"f{index}" for index in range(vectors.shape[1])), vectors))
    results = [_audit_group(group, labels, groups, classes, options) for group in feature_groups]
    pixel_features = _pixel_features(pixels)
    for group, entry in zip(feature_groups, results):
        survival = _survives_preparation(group, entry, pixel_features, groups, options)
        if survival is not None:
            entry["from_prepared_pixels"] = survival
    report: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "data": str(Path(options.data).resolve()),
        "split": split_mode,
        "fit": prepare_options["fit"],
        "resolution": prepare_options["resolution"],
        "classes": list(classes),
        "images": {name: int((labels == index).sum()) for index, name in enumerate(classes)},
        "duplicate_groups_kept_together": len({image.group for image in images if
                                                   not image.group.startswith("single-")}),
        "threshold": options.threshold,
        "groups": results,
        "source_files_found": source_dir is not None,
    }
    if options.pool is not None:
        report["real_vs_synthetic"] = _probe_pool(images, classes, options)
    report["shortcuts"] = [item["name"] for item in results if item.get("flagged") and item["kind"] == "metadata"]
    report["weak_shortcuts"] = [item["name"] for item in results if item.get("weak") and item["kind"] == "metadata"]
    report["partial_shortcuts"] = [cue for item in results for cue in item.get("exclusive", [])]
    report["flags"] = [item["sentence"] for item in results if item.get("flagged") or item.get("weak")]
    report["flags"] += [cue["sentence"] for cue in report["partial_shortcuts"]]
    report["flags"] += [item["sentence"] for item in report.get("real_vs_synthetic", {}).get("classes", {}).values()
                        if item.get("flagged")]
    report["verdict"] = _verdict(report)
    report["fingerprint"] = fingerprint
    out.mkdir(parents=True, exist_ok=True)
    write_options(out / OPTIONS_NAME, options)
    atomic_write_json(done, report)
    return report


def _check(options: AuditOptions) -> None:
    problems = []
    if options.split is not None and options.split not in SPLIT_MODES:
        problems.append(f"--split {options.split!r} must be one of {SPLIT_MODES}")
    if options.pool is not None and not options.backbone_features:
        problems.append("--pool needs the backbone's features: drop --no-backbone-features")
    if options.pool is not None and not Path(options.pool).is_dir():
        problems.append(f"--pool {options.pool}: no such folder")
    if problems:
        raise AuditError("; ".join(problems))


def _fingerprint(options: AuditOptions) -> str:
    settings = options_to_dict(options)
    settings.pop("progress")
    settings["manifest_sha256"] = sha256_file(Path(options.data) / "manifest.csv")
    settings["data_sha256"] = prepared_content_sha256(options.data)
    if options.pool is not None:
        settings["pool"] = sorted(f"{path.relative_to(options.pool)}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
                                  for path in Path(options.pool).rglob("*.png"))
    payload = json.dumps({"version": FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _backbone(paths: list[Path], options: AuditOptions) -> tuple[np.ndarray, str]:
    """The backbone's features of `paths` and the weights' label; Keras loads only here."""
    from augstudy.audit.backbone import backbone_features
    from augstudy.classify.backbones import WeightsUnavailableError
    from augstudy.classify.backend import KerasBackendError
    from augstudy.classify.images import prepared_geometry

    try:
        vectors, label, _ = backbone_features(paths, options.backbone, options.weights, options.input_size,
                                              options.keras_backend, options.cache_dir,
                                              prepared_geometry(options.data), options.feature_batch_size,
                                              options.progress)
        return vectors, label
    except (WeightsUnavailableError, KerasBackendError, ValueError) as error:
        raise AuditError(f"backbone features: {error}") from error


def _audit_group(group: FeatureGroup, labels: np.ndarray, groups: np.ndarray, classes: tuple[str, ...],
                 options: AuditOptions) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": group.name, "title": group.title, "kind": group.kind,
                             "features": list(group.columns) if group.name != "backbone" else len(group.columns)}
    varying = group.values.std(axis=0) > 0
    if group.name != "backbone":
        entry["class_means"] = {name: dict(zip(group.columns, np.round(group.values[labels == index].mean(axis=0),
                                                                         4).tolist()))
                                for index, name in enumerate(classes)}
    if group.kind == "metadata":
        entry["exclusive"] = _exclusive(group, labels, classes)
    if not varying.any():
        entry["skipped"] = "every image has the same value, so it cannot predict the label"
        entry["sentence"] = f"{_capital(group.title)}: the same for every image; nothing to learn."
        return entry
    try:
        result = cross_validated_auc(group.values[:, varying], labels, groups, options.seed)
    except ProbeError as error:
        raise AuditError(f"{options.data}: {error}") from error
    flagged = result.auc >= options.threshold
    weak = not flagged and result.p_value is not None and result.p_value < WEAK_P and result.auc >= WEAK_AUC
    entry.update(_result_fields(result), flagged=flagged, weak=weak)
    entry["sentence"] = _sentence(group, entry, classes, options.threshold)
    return entry


def _pixel_features(pixels: list[np.ndarray]) -> np.ndarray:
    """What the classifier sees, summarised: the prepared image's histogram and an 8 x 8 thumbnail."""
    histogram = histogram_group(pixels).values
    thumbnails = []
    for grey in pixels:
        height, width = grey.shape
        rows, columns = np.array_split(np.arange(height), 8), np.array_split(np.arange(width), 8)
        thumbnails.append([grey[np.ix_(r, c)].mean() for r in rows for c in columns])
    return np.column_stack([histogram, np.array(thumbnails)])


def _survives_preparation(group: FeatureGroup, entry: dict[str, Any], pixel_features: np.ndarray,
                          groups: np.ndarray, options: AuditOptions) -> dict[str, Any] | None:
    """Can a metadata cue (flagged, weak or partial) still be read from the prepared pixels the
    classifier sees? A cue that preparation erases cannot be learnt by the classifier."""
    if group.kind != "metadata" or not (entry.get("flagged") or entry.get("weak") or entry.get("exclusive")):
        return None
    if entry.get("exclusive"):
        column = entry["exclusive"][0]["feature"]
        target = group.values[:, group.columns.index(column)] == 1.0
        described = column
    else:
        index = group.columns.index("log_area") if "log_area" in group.columns else 0
        values = group.values[:, index]
        target = values > np.median(values)
        described = f"{group.columns[index]} above its median"
    if target.all() or not target.any():
        return None
    try:
        result = cross_validated_auc(pixel_features, target.astype(int), groups, options.seed)
    except ProbeError:
        return None
    survives = result.auc >= options.threshold
    return {"target": described, "auc": round(result.auc, 4),
            "p_value": None if result.p_value is None else float(f"{result.p_value:.3g}"), "survives": survives,
            "sentence": f"{described} {'can' if survives else 'can hardly'} be read from the prepared pixels "
                        f"(AUC {result.auc:.2f}): the cue {'survives' if survives else 'does not survive'} "
                        "preparation."}


def _exclusive(group: FeatureGroup, labels: np.ndarray, classes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Yes/no columns set on EXCLUSIVE_MIN_IMAGES or more images that all belong to one class."""
    found = []
    for column, values in zip(group.columns, group.values.T):
        if not np.isin(values, (0.0, 1.0)).all() or values.all():
            continue
        carriers = np.unique(labels[values == 1.0])
        count = int((values == 1.0).sum())
        if len(carriers) == 1 and count >= EXCLUSIVE_MIN_IMAGES:
            name = classes[int(carriers[0])]
            found.append({"feature": column, "class": name, "images": count,
                          "sentence": f"All {count} images with {column} are {name}: a classifier can label "
                                      "them from that alone."})
    return found


def _result_fields(result: ProbeResult) -> dict[str, Any]:
    return {"auc": round(result.auc, 4), "classifier": result.classifier,
            "aucs": {name: round(value, 4) for name, value in result.aucs.items()},
            "p_value": None if result.p_value is None else float(f"{result.p_value:.3g}"), "folds": result.folds}


def _sentence(group: FeatureGroup, entry: dict[str, Any], classes: tuple[str, ...], threshold: float) -> str:
    """What a group's result means, from its evidence: the AUC, its p-value and the class means."""
    auc, p_value = entry["auc"], entry.get("p_value")
    evidence = f"AUC {auc:.2f}" + (f", p = {p_value:.2g}" if p_value is not None else "")
    partial = entry.get("exclusive") or []
    if entry["flagged"]:
        if group.kind == "metadata":
            return (f"{_capital(group.title)} alone predicts the label: {evidence}. Pathology cannot change "
                    "this, so a classifier can score well here without seeing the disease.")
        if group.name == "histogram":
            return f"The {group.title} alone predicts the label: {evidence}. {histogram_reading(entry, classes)}"
        return (f"{_capital(group.title)} separate the classes: {evidence}. The difference between the classes "
                "is visible without any learned knowledge; the other groups tell whether it is more than the "
                "pathology.")
    if entry.get("weak"):
        return (f"{_capital(group.title)} weakly predicts the label: {evidence} (below {threshold:.2f}, yet "
                "far from chance); a classifier can pick it up in part.")
    if partial:
        cues = "; ".join(cue["sentence"].split(":")[0] for cue in partial)
        return (f"{_capital(group.title)} does not predict the label overall ({evidence}), but it does for the "
                f"images that carry it: {cues}.")
    return f"{_capital(group.title)} does not predict the label: {evidence} (below {threshold:.2f})."


def histogram_reading(entry: dict[str, Any], classes: tuple[str, ...]) -> str:
    """Which class is brighter, and what that can mean: a bright lesion explains a brighter lesion
    class, not a darker one (then a window, scanner or export difference is the likelier cause)."""
    means = entry.get("class_means") or {}
    if len(classes) != 2 or not all(name in means for name in classes):
        return "A whole-image statistic separates the classes; look at the images."
    level = {name: means[name].get("p99", means[name].get("mean", 0.0)) for name in classes}
    dark, bright = sorted(classes, key=lambda name: level[name])
    text = f"{_capital(bright)} images are brighter than {dark} ones (99th percentile {level[bright]:.0f} vs {level[dark]:.0f})"
    if NEGATIVE_CLASS_NAME in classes:
        lesion = classes[1 - classes.index(NEGATIVE_CLASS_NAME)]
        if lesion == dark:
            return (f"{text}: the lesion class is the darker one, so a bright lesion does not explain it; a "
                    "different window, scanner or export is the likelier cause. Look at the images.")
        return f"{text}: a large, bright lesion can do that, and so can a different scanner, window or crop."
    return f"{text}: a lesion, a scanner, a window or an export difference can each do that; look at the images."


def _probe_pool(images: list[AuditImage], classes: tuple[str, ...], options: AuditOptions) -> dict[str, Any]:
    """Per class: train images of the split vs as many synthetic images of that class (seeded sample)."""
    from augstudy.classify.data import DataError, read_pool

    try:
        pool = read_pool(Path(options.pool))  # type: ignore[arg-type]
    except DataError as error:
        raise AuditError(str(error)) from error
    rng = np.random.default_rng(options.seed)
    entries: dict[str, Any] = {}
    samples: dict[str, tuple[list[AuditImage], list[Path]]] = {}
    for name in classes:
        real = [image for image in images if image.class_name == name and image.row["split"] == "train"]
        synthetic = pool.get(name, [])
        if len(real) < 2 or len(synthetic) < 2:
            entries[name] = {"skipped": f"{len(real)} real train and {len(synthetic)} synthetic image(s); "
                                        "the probe needs at least 2 of each"}
            continue
        count = min(len(real), len(synthetic))
        samples[name] = ([real[index] for index in sorted(rng.choice(len(real), count, replace=False))],
                         [synthetic[index].path for index in sorted(rng.choice(len(synthetic), count,
                                                                                replace=False))])
    paths = [path for real, synthetic in samples.values() for path in [image.path for image in real] + synthetic]
    label = None
    if paths:  # one backbone pass (and one build) for every class
        vectors, label = _backbone(paths, options)
    start = 0
    for name, (real, synthetic) in samples.items():
        count = len(real)
        chunk = vectors[start:start + 2 * count]
        start += 2 * count
        result = real_vs_synthetic_auc(chunk[:count], chunk[count:], [image.group for image in real], options.seed)
        flagged = result.auc >= options.threshold
        sentence = (f"{name}: a linear probe on the classifier's features tells real from synthetic images: AUC "
                    f"{result.auc:.2f}. \"Synthetic\" is itself a learnable cue, so a classifier trained on a "
                    "mix can learn it instead of the pathology." if flagged else
                    f"{name}: a linear probe on the classifier's features barely tells real from synthetic "
                    f"images: AUC {result.auc:.2f} (below {options.threshold:.2f}).")
        entries[name] = {"n_real": count, "n_synthetic": count, **_result_fields(result), "flagged": flagged,
                         "sentence": sentence}
    return {"pool": str(Path(options.pool).resolve()), "weights": label,  # type: ignore[arg-type]
            "classes": {name: entries[name] for name in classes}}


def _verdict(report: dict[str, Any]) -> str:
    by_name = {item["name"]: item for item in report["groups"]}
    threshold = report["threshold"]
    if report["shortcuts"]:
        named = ", ".join(f"{by_name[name]['title']} (AUC {by_name[name]['auc']:.2f})" for name in report["shortcuts"])
        verb = "predicts" if len(report["shortcuts"]) == 1 else "predict"
        text = (f"Shortcut warning: {named} {verb} the label although pathology cannot change "
                f"{'it' if len(report['shortcuts']) == 1 else 'them'}. "
                "Accuracies on this data may measure these cues rather than the disease.")
    else:
        text = (f"No metadata shortcut found: image size, file, colour and padding each stay below AUC "
                f"{threshold:.2f}.")
    weak = [by_name[name] for name in report.get("weak_shortcuts", [])]
    if weak:
        text += " Weaker cues: " + "; ".join(f"{item['title']} (AUC {item['auc']:.2f}, p = {item['p_value']:.2g})"
                                             for item in weak) + " predict the label in part."
    if report["partial_shortcuts"]:
        text += " Partial shortcuts: " + "; ".join(
            f"all {cue['images']} images with {cue['feature']} are {cue['class']}"
            for cue in report["partial_shortcuts"]) + "."
    content = [item for item in report["groups"] if item["kind"] == "content" and item.get("flagged")]
    if content:
        text += " The classes also differ in " + " and ".join(
            f"{item['title']} (AUC {item['auc']:.2f})" for item in content) + "."
        histogram = by_name.get("histogram")
        if histogram is not None and histogram.get("flagged"):
            text += " " + histogram_reading(histogram, tuple(report["classes"]))
    probe = [name for name, item in report.get("real_vs_synthetic", {}).get("classes", {}).items()
             if item.get("flagged")]
    if probe:
        text += f" Synthetic images of {', '.join(probe)} are recognisable as synthetic."
    return text


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def format_audit(report: dict[str, Any]) -> str:
    """A short terminal summary: one line per group, then the verdict."""
    lines = [f"audit: {report['data']} ({report['split']} split, fit {report['fit']}), "
             + ", ".join(f"{count} {name}" for name, count in report["images"].items())]
    for item in report["groups"]:
        auc = f"AUC {item['auc']:.2f}" if "auc" in item else "skipped"
        lines.append(f"  {'FLAG' if item.get('flagged') else '    '} {item['title']}: {auc}")
    for cue in report["partial_shortcuts"]:
        lines.append(f"  PART {cue['sentence']}")
    for name, item in report.get("real_vs_synthetic", {}).get("classes", {}).items():
        auc = f"AUC {item['auc']:.2f}" if "auc" in item else item["skipped"]
        lines.append(f"  {'FLAG' if item.get('flagged') else '    '} real vs synthetic, {name}: {auc}")
    lines.append(report["verdict"])
    return "\n".join(lines)


@click.command("audit")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Prepared folder (from `augstudy prepare`).")
@click.option("--pool", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Synthetic pool (<class>/*.png): also probe real vs synthetic per class.")
@click.option("--out", required=True, type=OutputPath(),
              help="Folder for audit.json and audit_options.json.")
@click.option("--split", type=click.Choice(SPLIT_MODES), default=None, help="[default: prepare's --split]")
@click.option("--threshold", type=RangedNumber(AuditOptions, "threshold"), default=DEFAULT_THRESHOLD, show_default=True,
              help="Flag a group whose cross-validated ROC AUC reaches this.")
@click.option("--seed", type=RangedNumber(AuditOptions, "seed"), default=0, show_default=True, help="Folds and the probe's sampling.")
@click.option("--backbone-features/--no-backbone-features", default=True, show_default=True,
              help="Also audit a backbone's features (loads Keras; a few images per second on a CPU).")
@click.option("--backbone", default="resnet50", show_default=True)
@click.option("--weights", default="none", show_default=True, help="none (random init), imagenet or PATH.")
@click.option("--input-size", type=RangedNumber(AuditOptions, "input_size"), default=None, help="Backbone input side. [default: the backbone's]")
@click.option("--keras-backend", type=click.Choice(KERAS_BACKENDS), default=None,
              help="Keras backend. [default: $KERAS_BACKEND, else tensorflow]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Feature cache, shared with `sweep`. [default: augstudy's cache]")
@click.option("--feature-batch-size", type=RangedNumber(AuditOptions, "feature_batch_size"), default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def audit_command(quiet: bool, **kwargs: Any) -> None:
    """Can the label be predicted without pathology? Cross-validated AUC of simple cues."""
    try:
        report = run_audit(AuditOptions(progress=not quiet, **kwargs))
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_audit(report))
