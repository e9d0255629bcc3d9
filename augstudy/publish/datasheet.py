"""The README datasheet of a published pool (after Gebru et al., "Datasheets for Datasets").

It states only what the pool's files record; anything not recorded is written as "unknown" or
"not computed", because a synthetic medical data set with invented provenance is worse than none.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from typing import Any

from augstudy.publish.pool import POOL_COLUMNS, PoolImage
from augstudy.publish.provenance import UNKNOWN, Provenance

# Training options worth showing, in this order, under the names stylegan2ada's TrainOptions uses.
GAN_OPTION_KEYS = (
    "cfg",
    "kimg",
    "batch",
    "gamma",
    "aug",
    "p",
    "target",
    "augpipe",
    "mirror",
    "cond",
    "seed",
    "channel_base",
    "channel_max",
    "mapping_layers",
    "glr",
    "dlr",
    "freezed",
    "resume_from",
)
_METRICS = {
    "KID": "Kernel Inception Distance: squared MMD between 2048-d Inception (2015-12-05) features of the "
    "synthetic and the real images, averaged over subsets no larger than the smaller set. Unbiased, "
    "so it stays meaningful with a few hundred real images; lower is better.",
    "FID": "Fréchet Inception Distance on the same features. Biased and unstable with a few hundred real "
    "images; read it next to KID, never alone; lower is better.",
    "SWD": "Multi-scale sliced Wasserstein distance on Laplacian pyramids (Karras et al. 2018); needs no "
    "downloaded network; lower is better.",
}
_MEMORISATION_MARKERS = ("memori", "nearest", "near_cop", "near-cop", "nearcop", "copies")
_MAX_OTHER_ROWS = 30
_MAX_LISTED = 20
# An absolute local path (not a fraction like 4/5); only its last component is published.
_LOCAL_PATH = re.compile(r"(?<![\w.:/\\])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"(),;|]+[/\\])*([^\s/\\'\"(),;|]+)")
_SHORT_LIST = 8


@dataclass(frozen=True)
class DatasheetInput:
    """What the datasheet describes: the published selection and everything known about it."""

    title: str
    subtitle: str
    dataset_id: str
    license_name: str
    size: int
    selection: dict[str, list[PoolImage]]
    source_sizes: dict[str, tuple[str, ...]]
    image_modes: dict[str, tuple[str, ...]]
    provenance: Provenance
    citation: str | None = None
    flagged_published: tuple[str, ...] = ()
    flagged_excluded: tuple[str, ...] = ()


def seed_ranges(seeds: list[int]) -> str:
    """'0-4, 7, 9-10' for [0, 1, 2, 3, 4, 7, 9, 10]."""
    runs: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def plural(count: int, noun: str) -> str:
    """'1 image is' / '3 images are': the subject and verb of a sentence about `count` things."""
    return f"{count} {noun} is" if count == 1 else f"{count} {noun}s are"


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every figure in a JSON tree as (path, text); long lists are summarised, not dumped."""
    if (
        isinstance(node, dict)
        and node
        and all(
            _is_number_text(str(key)) and not isinstance(value, (dict, list)) for key, value in node.items()
        )
    ):
        # quantiles, pyramid levels: one row "key: value, ..." instead of one row each
        return [(path, ", ".join(f"{key}: {_format(value)}" for key, value in node.items()))]
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, path + (str(key),))]
    if isinstance(node, list):
        numbers = [item for item in node if isinstance(item, (int, float)) and not isinstance(item, bool)]
        if len(node) <= _SHORT_LIST and all(not isinstance(item, (dict, list)) for item in node):
            return [(path, ", ".join(_format(item) for item in node) or "(empty)")]
        if len(numbers) == len(node):
            summary = (
                f"{len(node)} values: min {_format(min(numbers))}, median "
                f"{_format(statistics.median(numbers))}, max {_format(max(numbers))}"
            )
            return [(path, summary)]
        shown = "; ".join(json.dumps(item, sort_keys=True, default=str) for item in node[:5])
        return [(path, f"{len(node)} entries: {shown}" + (" ..." if len(node) > 5 else ""))]
    return [(path, _format(node))]


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _tokens(path: tuple[str, ...]) -> set[str]:
    return {token for part in path for token in re.findall(r"[a-z]+", part.lower())}


def _is_memorisation(path: tuple[str, ...]) -> bool:
    return any(marker in part.lower() for part in path for marker in _MEMORISATION_MARKERS)


def redact_paths(text: str) -> str:
    """Replace absolute paths by their last component: a public datasheet has no business naming
    folders on the machine that built it."""
    return _LOCAL_PATH.sub(lambda match: match.group(1), text)


def _table(rows: list[tuple[tuple[str, ...], str]]) -> list[str]:
    lines = ["| where | value |", "|---|---|"]
    lines += [
        f"| {' / '.join(path) or '(value)'} | {redact_paths(text).replace('|', '/')} |" for path, text in rows
    ]
    return lines


def _flag_summary(sheet: DatasheetInput) -> list[str]:
    flagged = sheet.flagged_published
    if flagged:
        shown = ", ".join(f"`{name}`" for name in flagged[:_MAX_LISTED])
        more = f" and {len(flagged) - _MAX_LISTED} more" if len(flagged) > _MAX_LISTED else ""
        return [
            "",
            (
                f"**Warning: {plural(len(flagged), 'published image')} flagged by the memorisation check "
                f"(near-copies of training images):** {shown}{more}."
            ),
        ]
    if sheet.flagged_excluded:
        return [
            "",
            (
                f"The {len(sheet.flagged_excluded)} pool images the check flagged as near-copies were left "
                "out of this release."
            ),
        ]
    return []


def _quality(sheet: DatasheetInput) -> list[str]:
    metrics = sheet.provenance.metrics
    lines = ["## Quality", ""]
    if metrics is None:
        lines += [
            (
                "No `metrics.json` was found beside the pool: KID, FID and SWD were **not computed** "
                "for this release (`augstudy gan-metrics --real DIR --fake POOL` computes them)."
            ),
            "",
        ]
    else:
        lines += [
            (
                "Figures from `augstudy gan-metrics` (the pool's metrics.json), measured on the whole pool "
                "this release was drawn from."
            ),
            "",
        ]
    leaves = _leaves(metrics) if metrics is not None else []
    used: set[int] = set()
    for name, explanation in _METRICS.items():
        rows = [
            (index, leaf)
            for index, leaf in enumerate(leaves)
            if name.lower() in _tokens(leaf[0]) and not _is_memorisation(leaf[0])
        ]
        used.update(index for index, _ in rows)
        lines += [f"### {name}", "", explanation, ""]
        lines += _table([leaf for _, leaf in rows]) if rows else ["Not computed."]
        lines.append("")
    memorisation = [(index, leaf) for index, leaf in enumerate(leaves) if _is_memorisation(leaf[0])]
    used.update(index for index, _ in memorisation)
    lines += [
        "### Memorisation check",
        "",
        (
            "Each synthetic image's nearest neighbour among the GAN's training images (pixel and feature "
            "space); images closer than the flagging threshold are near-copies of a real scan."
        ),
        "",
    ]
    if memorisation:
        lines += _table([leaf for _, leaf in memorisation])
    else:
        lines += [
            (
                "**Not computed.** These images have not been checked for near-copies of the real training "
                "images; until they are, assume that some may closely resemble a real scan."
            )
        ]
    lines += _flag_summary(sheet)
    others = [leaf for index, leaf in enumerate(leaves) if index not in used]
    if others:
        lines += ["", "### Other recorded figures", ""] + _table(others[:_MAX_OTHER_ROWS])
        if len(others) > _MAX_OTHER_ROWS:
            lines.append(
                f"\n({len(others) - _MAX_OTHER_ROWS} more entries in the pool's metrics.json not shown.)"
            )
    return lines + [""]


def _gan_config(options: dict[str, Any]) -> str:
    # "kimg" in the options is the planned length of training; the snapshot's own kimg has its column.
    shown = [
        f"{'planned_kimg' if key == 'kimg' else key}={_format(options[key])}"
        for key in GAN_OPTION_KEYS
        if key in options
    ]
    return ", ".join(shown) if shown else UNKNOWN


def _preparation(prepare_options: dict[str, Any]) -> str:
    """How `augstudy prepare` normalised the real images, from its recorded options."""
    parts = []
    if "resolution" in prepare_options:
        side = prepare_options["resolution"]
        parts.append(f"{side}x{side} px")
    if "fit" in prepare_options:
        parts.append(f"made square by {prepare_options['fit']}")
    if "channels" in prepare_options:
        parts.append(
            "grey" if prepare_options["channels"] == 1 else f"{prepare_options['channels']} channels"
        )
    return ", ".join(parts) + " (augstudy prepare)" if parts else UNKNOWN


def _provenance(sheet: DatasheetInput) -> list[str]:
    prov = sheet.provenance
    source = prov.source
    source_line = f"[{source.dataset}]({source.url})" if source.url else source.dataset
    lines = [
        "## Provenance",
        "",
        f"- **Source data:** {source_line} (identified from {source.evidence}); license: {source.license}.",
        f"- **Split the GAN trained on:** the `{prov.split}` train split of `augstudy prepare`"
        + (
            " (exact and near duplicates removed across splits)."
            if prov.split == "dedup"
            else " (as published; the source may contain duplicated images)."
            if prov.split == "official"
            else "."
        ),
        f"- **Real images as the GAN saw them:** {_preparation(prov.prepare_options)}.",
        "- **Generator:** StyleGAN2-ADA (Karras et al., NeurIPS 2020), augstudy's PyTorch implementation.",
        (
            "- **Seeds:** image `seedNNNNN.png` comes from latent seed NNNNN; the lowest seeds of the pool "
            "were published."
        ),
        (
            f"- **Size:** {sheet.size}x{sheet.size} px; images generated at another size were resized with "
            "Lanczos resampling."
        ),
        "",
        (
            "| class | images | seeds | generated at | mode | training images | snapshot | sha256 | kimg "
            "| truncation | noise | GAN config |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for class_name, images in sheet.selection.items():
        for snapshot_sha in sorted({image.snapshot_sha256 for image in images}):
            chosen = [image for image in images if image.snapshot_sha256 == snapshot_sha]
            info = prov.snapshots[snapshot_sha]
            lines.append(
                f"| {class_name} | {len(chosen)} | {seed_ranges([image.seed for image in chosen])} "
                f"| {', '.join(sheet.source_sizes[class_name])} | {', '.join(sheet.image_modes[class_name])} "
                f"| {prov.train_counts.get(class_name, UNKNOWN)} | `{info.name}` | `{snapshot_sha}` "
                f"| {info.kimg if info.kimg is not None else UNKNOWN} "
                f"| {', '.join(sorted({image.truncation for image in chosen}))} "
                f"| {', '.join(sorted({image.noise_mode for image in chosen}))} "
                f"| {_gan_config(info.training_options)} |"
            )
    lines += [""] + [
        f"- `{info.name}` (`{sha[:12]}`): kimg and GAN config read from {info.evidence}."
        for sha, info in prov.snapshots.items()
    ]
    if prov.notes:
        lines += ["", "What could not be traced when this release was built:", ""]
        lines += [f"- {note}" for note in prov.notes]
    return lines + [""]


def _uses_and_limits(sheet: DatasheetInput) -> list[str]:
    counts = ", ".join(f"{count} {name}" for name, count in sheet.provenance.train_counts.items())
    lines = [
        "## Intended uses",
        "",
        (
            "- Research on data augmentation: does adding synthetic images to a small real training set help "
            "a classifier, and how much synthetic data is right?"
        ),
        "- Benchmarking and teaching: generative-model evaluation, memorisation checks, image pipelines.",
        "",
        "## Out-of-scope uses",
        "",
        "- Any clinical use: diagnosis, screening, triage, treatment planning or decision support.",
        (
            "- Training or validating a model meant for patients without evaluation on real, independent, "
            "clinically representative data."
        ),
        "- Drawing conclusions about real patients, populations, anatomy or disease from these images.",
        "",
        "## Limitations",
        "",
        "- Each class is one GAN's idea of the class, learned from few images"
        + (f" ({counts} training images)" if counts else "")
        + "; the images inherit that set's scanners, "
        "protocols, labels and biases, and can show artefacts no real scan has.",
        (
            "- The class label is the class of the GAN that made the image, not a diagnosis; nobody has "
            "reviewed the images clinically."
        ),
        "- Images are 8-bit PNGs without DICOM metadata (no Hounsfield units, no acquisition parameters).",
        (
            "- Quality figures (above) describe the distribution, not single images; KID/FID from a few "
            "hundred real images have wide uncertainty."
        ),
    ]
    if sheet.flagged_published:
        lines.append(
            f"- The memorisation check flags {len(sheet.flagged_published)} of the published images as "
            "near-copies of real training images (see Quality)."
        )
    caveat = sheet.provenance.source.official_split_caveat
    if sheet.provenance.split == "official":
        lines.append(
            "- The GAN trained on the official split, without removing images duplicated across "
            "splits"
            + (
                f" ({caveat}): do not evaluate a model trained with these images on that test set."
                if caveat
                else "."
            )
        )
    return lines + [""]


def _citation(sheet: DatasheetInput) -> list[str]:
    url = f"https://www.kaggle.com/datasets/{sheet.dataset_id}"
    owner = sheet.dataset_id.split("/")[0]
    lines = ["## How to cite", ""]
    lines += [sheet.citation] if sheet.citation else [f"{owner}. *{sheet.title}*. Kaggle data set, {url}."]
    source = sheet.provenance.source
    lines += ["", "Please also cite the source data and the method:", ""]
    if source.title and source.creator and source.year and source.url:
        lines.append(f"- {source.creator} ({source.year}). *{source.title}*. Kaggle, {source.url}.")
    else:
        lines.append(f"- Source data: {source.dataset}.")
    lines.append(
        "- Karras, T., Aittala, M., Hellsten, J., Laine, S., Lehtinen, J., Aila, T. (2020). Training "
        "Generative Adversarial Networks with Limited Data. NeurIPS 2020."
    )
    return lines + [""]


def render_datasheet(sheet: DatasheetInput) -> str:
    """README.md for the published folder; also used as the Kaggle description."""
    total = sum(len(images) for images in sheet.selection.values())
    classes = ", ".join(f"`{name}` ({len(images)})" for name, images in sheet.selection.items())
    lines = [
        f"# {sheet.title}",
        "",
        sheet.subtitle,
        "",
        (
            "> **Medical disclaimer.** Every image here was made by a generative adversarial network. The "
            "images are synthetic: they show no real patient and carry no patient data. They are not "
            "medical images of anyone, have not been reviewed by a radiologist, and must not be used for "
            "clinical purposes "
            "(diagnosis, screening or treatment decisions)."
        ),
        "",
        "## Contents",
        "",
        f"{total} synthetic {sheet.size}x{sheet.size} PNG images: {classes}.",
        "",
        "```",
        "<class>/seedNNNNN.png   one folder per class; NNNNN is the latent seed",
        f"manifest.csv            {', '.join(POOL_COLUMNS)}",
        "README.md               this datasheet",
        "```",
        "",
        "`sha256` is the hash of the published file; `snapshot_sha256` identifies the generator.",
        "",
    ]
    lines += _provenance(sheet)
    lines += _quality(sheet)
    lines += _uses_and_limits(sheet)
    lines += [
        "## License",
        "",
        f"{sheet.license_name}. Source data license: {sheet.provenance.source.license}.",
        "",
    ]
    lines += _citation(sheet)
    return "\n".join(lines)
