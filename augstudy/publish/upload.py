"""Send a built dataset folder to Kaggle: create it, or add a version when it already exists.

The folder goes up as `kaggle datasets create/version --dir-mode zip` would send it: top-level files
as they are, each class folder as one zip archive that Kaggle unpacks, so `<class>/` survives.
Kaggle creates the dataset (or version) only in its last call, after every file is uploaded, so a
failure on the way leaves nothing published.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augstudy.optional import require
from augstudy.publish.errors import KaggleCredentialsError, KaggleUploadError
from augstudy.publish.metadata import METADATA_FILE, validate_metadata
from augstudy.publish.provenance import read_json

DIR_MODE = "zip"
# kaggle's dataset_create_new refuses slugs under 6 characters, though its docs allow 3.
CREATE_MIN_SLUG = 6
CREDENTIAL_PLACES = (
    "KAGGLE_USERNAME and KAGGLE_KEY environment variables (or KAGGLE_API_TOKEN)",
    "~/.kaggle/kaggle.json, or kaggle.json in $KAGGLE_CONFIG_DIR or ~/.config/kaggle",
    "~/.kaggle/access_token, or a login saved by `kaggle auth login`",
)


@dataclass(frozen=True)
class UploadPlan:
    """Exactly what `upload_dataset` sends: the metadata and every file with its size."""

    folder: Path
    dataset_id: str
    public: bool
    version_notes: str
    metadata: dict[str, Any]
    files: tuple[tuple[str, int], ...]
    archives: tuple[str, ...]


@dataclass(frozen=True)
class UploadResult:
    dataset_id: str
    action: str
    url: str | None


def plan_upload(folder: Path, public: bool, version_notes: str) -> UploadPlan:
    """Read and validate the folder's metadata and list what would go up; contacts nobody."""
    metadata = read_json(folder / METADATA_FILE)
    validate_metadata(metadata, folder)
    files: list[tuple[str, int]] = []
    archives: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            archives.append(entry.name)
            files += [
                (path.relative_to(folder).as_posix(), path.stat().st_size)
                for path in sorted(entry.rglob("*"))
                if path.is_file()
            ]
        elif entry.name != METADATA_FILE:
            files.append((entry.name, entry.stat().st_size))
    return UploadPlan(folder, metadata["id"], public, version_notes, metadata, tuple(files), tuple(archives))


def describe_plan(plan: UploadPlan) -> str:
    """The dry-run report: metadata JSON, every file with its size, and the API calls in order."""
    total = sum(size for _, size in plan.files)
    lines = [
        f"Dry run: nothing is sent to Kaggle. --upload would publish {plan.folder} as {plan.dataset_id}.",
        "",
        f"Metadata ({METADATA_FILE}, sent as the request, not as a file):",
        json.dumps(plan.metadata, indent=2, sort_keys=True),
        "",
        f"Files: {len(plan.files)}, {total:,} bytes"
        + (
            f"; the folders {', '.join(f'{name}/' for name in plan.archives)} are each sent as one "
            f"{DIR_MODE} archive that Kaggle unpacks"
            if plan.archives
            else ""
        ),
    ]
    lines += [f"  {size:>12,}  {name}" for name, size in plan.files]
    visibility = "public" if plan.public else "private"
    lines += [
        "",
        "API calls (kaggle.api.kaggle_api_extended.KaggleApi):",
        "  1. api.authenticate()  with credentials from: " + "; ".join(CREDENTIAL_PLACES),
        f"  2. api.dataset_status({plan.dataset_id!r})  to learn whether the dataset exists",
        (
            f"  3. if it does not: api.dataset_create_new(folder={str(plan.folder)!r}, public={plan.public}, "
            f"quiet=False, dir_mode={DIR_MODE!r})  -> a new {visibility} dataset"
        ),
        (
            f"     if it does:     api.dataset_create_version(folder={str(plan.folder)!r}, "
            f"version_notes={plan.version_notes!r}, quiet=False, dir_mode={DIR_MODE!r})  -> a new version; "
            "title, license and visibility stay as they are on Kaggle"
        ),
    ]
    return "\n".join(lines)


def connect_kaggle() -> Any:
    """An authenticated KaggleApi, or an error listing where credentials are looked for."""
    # kaggle prints its own login help on import and on failure; our errors say the same, once.
    with contextlib.redirect_stdout(io.StringIO()):
        module = require(
            "kaggle.api.kaggle_api_extended", "kaggle", "Uploading to Kaggle (augstudy publish --upload)"
        )
        api = module.KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleCredentialsError(
                "no Kaggle credentials found; nothing was uploaded. Create an API token at "
                "https://www.kaggle.com/settings/api and provide it through one of: "
                + "; ".join(CREDENTIAL_PLACES)
            ) from None
        except Exception as error:
            raise KaggleUploadError(
                f"could not sign in to Kaggle ({error}); nothing was uploaded. "
                "Check the network connection and the credentials."
            ) from error
    return api


def _http_status(error: BaseException) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def dataset_exists(api: Any, dataset_id: str) -> bool:
    """Whether Kaggle has `dataset_id` (HTTP 404 means no); any other failure stops the upload."""
    try:
        api.dataset_status(dataset_id)
    except Exception as error:
        if _http_status(error) == 404:
            return False
        raise KaggleUploadError(
            f"could not ask Kaggle whether {dataset_id} exists ({error}); nothing was "
            "uploaded. Check the network connection and the credentials."
        ) from error
    return True


def upload_dataset(plan: UploadPlan, api: Any) -> UploadResult:
    """Create the dataset, or add a version to it when it exists; raise if Kaggle refuses."""
    exists = dataset_exists(api, plan.dataset_id)
    slug = plan.dataset_id.split("/")[1]
    if not exists and len(slug) < CREATE_MIN_SLUG:
        raise KaggleUploadError(
            f"the Kaggle client creates datasets only with slugs of {CREATE_MIN_SLUG} to 50 "
            f"characters; {slug!r} has {len(slug)}. Choose a longer --slug."
        )
    action = "new version" if exists else "created"
    try:
        if exists:
            response = api.dataset_create_version(
                str(plan.folder), version_notes=plan.version_notes, quiet=False, dir_mode=DIR_MODE
            )
        else:
            response = api.dataset_create_new(
                str(plan.folder), public=plan.public, quiet=False, dir_mode=DIR_MODE
            )
    except Exception as error:
        raise KaggleUploadError(
            f"uploading {plan.dataset_id} failed ({error}); Kaggle publishes only after "
            "every file arrived, so nothing was published. Run the command again."
        ) from error
    refusal = getattr(response, "error", None)
    if refusal:
        raise KaggleUploadError(f"Kaggle refused {plan.dataset_id} ({action}): {refusal}")
    url = getattr(response, "url", None) or f"https://www.kaggle.com/datasets/{plan.dataset_id}"
    return UploadResult(plan.dataset_id, action, url)
