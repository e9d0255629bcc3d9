"""dataset-metadata.json in Kaggle's format, and the checks Kaggle applies to it.

Validation runs before anything is written or sent, so a bad title or license fails in a second
with the field named, not after minutes of uploading.
Rules: https://github.com/Kaggle/kaggle-api/blob/main/docs/datasets_metadata.md
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from augstudy.publish.errors import MetadataError

# The license names Kaggle accepts in "licenses": [{"name": ...}] (its datasets_metadata.md).
KAGGLE_LICENSES: tuple[str, ...] = (
    "CC0-1.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-SA-4.0",
    "GPL-2.0",
    "ODbL-1.0",
    "DbCL-1.0",
    "copyright-authors",
    "other",
    "unknown",
    "CC-BY-4.0",
    "CC-BY-NC-4.0",
    "PDDL",
    "CC-BY-3.0",
    "CC-BY-3.0-IGO",
    "US-Government-Works",
    "CC-BY-NC-SA-3.0-IGO",
    "CDLA-Permissive-1.0",
    "CDLA-Sharing-1.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0",
    "ODC-BY-1.0",
    "LGPL-3.0",
    "AGPL-3.0",
    "FDL-1.3",
    "EU-ODP-Legal-Notice",
    "apache-2.0",
    "GPL-3.0",
)
TITLE_LENGTH = (6, 50)
SUBTITLE_LENGTH = (20, 80)
SLUG_LENGTH = (3, 50)
_SLUG = re.compile(r"[a-z0-9-]+")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
METADATA_FILE = "dataset-metadata.json"


def canonical_license(name: str) -> str | None:
    """Kaggle's spelling of a license name given in any letter case, or None if Kaggle has no such name."""
    by_lower = {license_name.lower(): license_name for license_name in KAGGLE_LICENSES}
    return by_lower.get(name.strip().lower())


def build_metadata(
    *,
    title: str,
    subtitle: str,
    owner: str,
    slug: str,
    license_name: str,
    description: str,
    keywords: list[str],
    resources: list[dict[str, Any]],
) -> dict[str, Any]:
    """The dataset-metadata.json content; call `validate_metadata` on it before using it."""
    return {
        "title": title,
        "subtitle": subtitle,
        "description": description,
        "id": f"{owner}/{slug}",
        "licenses": [{"name": license_name}],
        "keywords": keywords,
        "resources": resources,
    }


def _check_length(problems: list[tuple[str, str]], field: str, value: Any, bounds: tuple[int, int]) -> None:
    if not isinstance(value, str):
        problems.append((field, f"must be a string, got {type(value).__name__}"))
        return
    low, high = bounds
    if not low <= len(value) <= high:
        problems.append((field, f"{value!r} is {len(value)} characters; Kaggle needs {low} to {high}"))


def _check_id(problems: list[tuple[str, str]], dataset_id: Any) -> None:
    if not isinstance(dataset_id, str) or dataset_id.count("/") != 1:
        problems.append(("id", f"{dataset_id!r} must be 'owner/slug' with exactly one '/'"))
        return
    owner, slug = dataset_id.split("/")
    if not _OWNER.fullmatch(owner):
        problems.append(
            (
                "id (owner)",
                (
                    f"{owner!r} is not a Kaggle user or organisation name "
                    "(letters, digits, '-' and '_', starting with a letter or digit)"
                ),
            )
        )
    low, high = SLUG_LENGTH
    if not low <= len(slug) <= high:
        problems.append(("id (slug)", f"{slug!r} is {len(slug)} characters; Kaggle needs {low} to {high}"))
    if not _SLUG.fullmatch(slug):
        problems.append(("id (slug)", f"{slug!r} may contain only lowercase letters, digits and hyphens"))


def _check_licenses(problems: list[tuple[str, str]], licenses: Any) -> None:
    if not isinstance(licenses, list) or len(licenses) != 1:
        count = len(licenses) if isinstance(licenses, list) else "no list of"
        problems.append(("licenses", f"Kaggle needs exactly one license, got {count}"))
        return
    entry = licenses[0]
    name = entry.get("name") if isinstance(entry, dict) else None
    if name not in KAGGLE_LICENSES:
        suggestion = canonical_license(name) if isinstance(name, str) else None
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        problems.append(
            (
                "licenses",
                (
                    f"{name!r} is not a license name Kaggle accepts{hint}; "
                    f"use one of: {', '.join(KAGGLE_LICENSES)}"
                ),
            )
        )


def _check_resources(problems: list[tuple[str, str]], resources: Any, folder: Path | None) -> None:
    if not isinstance(resources, list):
        problems.append(("resources", "must be a list"))
        return
    seen: set[str] = set()
    for index, resource in enumerate(resources):
        path = resource.get("path") if isinstance(resource, dict) else None
        if not isinstance(path, str) or not path:
            problems.append((f"resources[{index}].path", "missing"))
            continue
        if path in seen:
            problems.append((f"resources[{index}].path", f"{path!r} is listed twice"))
        seen.add(path)
        if folder is not None and not (folder / path).is_file():
            problems.append((f"resources[{index}].path", f"{path!r} does not exist in {folder}"))


def validate_metadata(metadata: dict[str, Any], folder: Path | None = None) -> None:
    """Raise MetadataError naming every field Kaggle would refuse; `folder` also checks resource files."""
    problems: list[tuple[str, str]] = []
    _check_length(problems, "title", metadata.get("title"), TITLE_LENGTH)
    if "subtitle" in metadata:
        _check_length(problems, "subtitle", metadata["subtitle"], SUBTITLE_LENGTH)
    _check_id(problems, metadata.get("id"))
    _check_licenses(problems, metadata.get("licenses"))
    keywords = metadata.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(word, str) and word for word in keywords):
        problems.append(("keywords", "must be a list of non-empty strings"))
    if not isinstance(metadata.get("description", ""), str):
        problems.append(("description", "must be a string"))
    if "resources" in metadata:
        _check_resources(problems, metadata["resources"], folder)
    if problems:
        raise MetadataError(problems)
