"""`augstudy publish` on a small pool the tests make: folder, metadata, datasheet, upload, errors."""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.locks import DiskFullError
from augstudy.outputs import OutputError
from augstudy.publish.build import PublishOptions, options_path, prepare_release
from augstudy.publish.cli import publish
from augstudy.publish.datasheet import redact_paths, seed_ranges
from augstudy.publish.errors import KaggleCredentialsError, KaggleUploadError, MetadataError, PublishError
from augstudy.publish.metadata import build_metadata, validate_metadata
from augstudy.publish.upload import connect_kaggle, plan_upload, upload_dataset
from stylegan2ada.io import sha256_file

CLASSES = ("normal", "squamous")
CHEST_CT = "mohamedhanyyy/chest-ctscan-images"


def save_snapshot(path: Path, kimg: int, options: dict[str, Any]) -> None:
    """A snapshot in stylegan2ada's format; its (empty) networks do not matter to publishing."""
    from stylegan2ada.snapshot import save_snapshot as save

    save(
        path,
        {
            "G": {},
            "D": {},
            "G_ema": {},
            "G_init_kwargs": {"img_resolution": 16},
            "D_init_kwargs": {},
            "options": options,
            "meta": {"kimg": kimg, "cur_nimg": kimg * 1000},
            "state": {},
        },
    )


def gan_metrics_report(root: Path, flagged: tuple[str, ...] = ()) -> dict[str, Any]:
    """The shape of the report `augstudy gan-metrics` writes to POOL/metrics.json."""

    def per_class(kid: float, fid: float, class_flagged: list[str]) -> dict[str, Any]:
        return {
            "num_real": 150,
            "num_fake": 6,
            "kid": {"mean": kid, "std": 0.002, "subset_size": 6, "num_subsets": 100},
            "fid": {
                "value": fid,
                "num_real": 150,
                "num_fake": 6,
                "feature_dim": 2048,
                "reliable": False,
                "warning": "fewer images than feature dimensions",
            },
            "swd": {"mean": 12.5, "levels": {"16": 10.0, "8": 15.0}},
            "memorisation": {
                "num_fake": 6,
                "num_real": 150,
                "num_flagged": len(class_flagged),
                "pixel": {"fake_to_real_quantiles": [0.1 * i for i in range(20)]},
                "flagged": [
                    {"fake": name, "real": "normal/10.png", "pixel_distance": 0.01} for name in class_flagged
                ],
            },
        }

    return {
        "real": str(root / "prepared" / "images" / "train"),
        "fake": str(root / "pool"),
        "extractor": {"id": "abc", "path": str(root / "cache" / "inception-2015-12-05.pt")},
        "classes": {
            "normal": per_class(0.0123, 45.6, [name for name in flagged if name.startswith("normal")]),
            "squamous": per_class(0.0456, 4.7e87, [name for name in flagged if name.startswith("squamous")]),
        },
        "warnings": [f"squamous: FID from 150 real images in {root / 'prepared'}"],
        "notes": [],
    }


def make_pool(
    root: Path,
    *,
    per_class: int = 6,
    side: int = 16,
    metrics: bool = True,
    flagged: tuple[str, ...] = (),
    source: str = f"kaggle:{CHEST_CT}",
    split: str = "dedup",
) -> Path:
    """A pool as `augstudy generate` writes it, with run folders and the prepared data behind it."""
    prepared = root / "prepared"
    (prepared / "gan").mkdir(parents=True)
    (prepared / "prepare_options.json").write_text(
        json.dumps({"source": source, "split": split, "resolution": 256, "fit": "pad", "channels": 1})
    )
    (prepared / "report.json").write_text(json.dumps({"counts": {"train": {"normal": 55, "squamous": 150}}}))
    pool = root / "pool"
    rng = np.random.default_rng(0)
    rows = []
    for class_name in CLASSES:
        run_dir = root / "runs" / class_name
        run_dir.mkdir(parents=True)
        options = {
            "data": str(prepared / "gan" / f"{class_name}.zip"),
            "cfg": "paper256",
            "batch": 8,
            "gamma": 50,
            "kimg": 80,
            "aug": "ada",
        }
        (run_dir / "training_options.json").write_text(json.dumps(options))
        snapshot = run_dir / "network-snapshot-000080.pt"
        save_snapshot(snapshot, 80, options)
        (pool / class_name).mkdir(parents=True)
        for seed in reversed(range(per_class)):  # manifest order must not decide the selection
            path = pool / class_name / f"seed{seed:05d}.png"
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L").save(path)
            rows.append(
                {
                    "file": f"{class_name}/{path.name}",
                    "class": class_name,
                    "seed": seed,
                    "snapshot": str(snapshot),
                    "snapshot_sha256": sha256_file(snapshot),
                    "truncation": "1.0",
                    "noise_mode": "const",
                    "size": "",
                    "sha256": sha256_file(path),
                }
            )
    with open(pool / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (pool / "generate_options.json").write_text(json.dumps({"truncation": 1.0, "noise_mode": "const"}))
    if metrics:
        (pool / "metrics.json").write_text(json.dumps(gan_metrics_report(root, flagged)))
    return pool


def options_for(tmp_path: Path, **changes: Any) -> PublishOptions:
    base = PublishOptions(
        pool=tmp_path / "pool",
        out=tmp_path / "release",
        owner="someone",
        slug="synthetic-chest-ct",
        per_class=4,
        size=8,
    )
    return dataclasses.replace(base, **changes)


def read_manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_build_writes_a_valid_dataset_folder(tmp_path: Path) -> None:
    make_pool(tmp_path)
    result = publish(options_for(tmp_path))
    folder = tmp_path / "release"
    assert result.build.changed and result.build.image_count == 8 and result.upload is None
    for class_name in CLASSES:
        names = sorted(path.name for path in (folder / class_name).iterdir())
        assert names == [f"seed{seed:05d}.png" for seed in range(4)]  # the lowest seeds
        for name in names:
            with Image.open(folder / class_name / name) as image:
                assert image.size == (8, 8) and image.mode == "L"
    rows = read_manifest(folder)
    assert list(rows[0]) == [
        "file",
        "class",
        "seed",
        "snapshot",
        "snapshot_sha256",
        "truncation",
        "noise_mode",
        "sha256",
    ]
    assert len(rows) == 8
    for row in rows:
        assert sha256_file(folder / row["file"]) == row["sha256"]
        assert row["snapshot"] == "network-snapshot-000080.pt"  # no local paths in the published files
    metadata = json.loads((folder / "dataset-metadata.json").read_text())
    validate_metadata(metadata, folder)
    assert metadata["id"] == "someone/synthetic-chest-ct"
    assert metadata["licenses"] == [{"name": "CC0-1.0"}]  # the chest CT source's license
    assert 6 <= len(metadata["title"]) <= 50 and 20 <= len(metadata["subtitle"]) <= 80
    assert metadata["description"] == (folder / "README.md").read_text()
    assert sorted(path.name for path in folder.iterdir()) == [
        "README.md",
        "dataset-metadata.json",
        "manifest.csv",
        "normal",
        "squamous",
    ]
    recorded = json.loads(options_path(folder).read_text())
    assert recorded["license"] == "CC0-1.0" and recorded["title"] == metadata["title"]
    assert not [path for path in tmp_path.glob(".release.*") if path.is_dir()]  # no staging folder left behind


def test_datasheet_states_provenance_quality_uses_and_disclaimer(tmp_path: Path) -> None:
    make_pool(tmp_path)
    publish(options_for(tmp_path))
    readme = (tmp_path / "release" / "README.md").read_text()
    snapshot_sha = read_manifest(tmp_path / "release")[0]["snapshot_sha256"]
    for expected in [
        "Chest CT-Scan images (Mohamed Hany, 2020)",
        f"https://www.kaggle.com/datasets/{CHEST_CT}",
        "license: CC0-1.0",
        "`dedup` train split",
        snapshot_sha,
        "network-snapshot-000080.pt",
        "cfg=paper256, planned_kimg=80, batch=8, gamma=50, aug=ada",
        "| 0-3 |",
        "16x16",
        "| 55 |",
        "| 150 |",
        "256x256 px, made square by pad, grey (augstudy prepare)",
        "## Intended uses",
        "## Out-of-scope uses",
        "## Limitations",
        "## How to cite",
        "not be used for clinical purposes",
        "show no real patient",
        "synthetic",
    ]:
        assert expected in readme, expected
    quality = readme.split("## Quality")[1].split("## Intended uses")[0]
    kid = quality.split("### KID")[1].split("###")[0]
    assert (
        "classes / normal / kid / mean | 0.0123" in kid and "classes / squamous / kid / mean | 0.0456" in kid
    )
    assert "classes / squamous / fid / value | 4.7e+87" in quality.split("### FID")[1].split("###")[0]
    swd = quality.split("### SWD")[1].split("###")[0]
    assert (
        "classes / normal / swd / mean | 12.5" in swd
        and "classes / normal / swd / levels | 16: 10, 8: 15" in swd
    )
    memorisation = quality.split("### Memorisation check")[1].split("###")[0]
    assert "20 values: min 0, median 0.95, max 1.9" in memorisation and "num_flagged | 0" in memorisation
    assert str(tmp_path) not in readme  # local paths in metrics.json are reduced to their last component
    assert "| extractor / path | inception-2015-12-05.pt |" in quality


def test_datasheet_without_metrics_says_not_computed(tmp_path: Path) -> None:
    make_pool(tmp_path, metrics=False)
    release = prepare_release(options_for(tmp_path))
    quality = release.readme.split("## Quality")[1].split("## Intended uses")[0]
    for name in ("KID", "FID", "SWD"):
        assert "Not computed." in quality.split(f"### {name}")[1].split("###")[0]
    memorisation = quality.split("### Memorisation check")[1]
    assert "**Not computed.**" in memorisation and "have not been checked for near-copies" in memorisation


def test_same_size_copies_bytes_and_rebuild_is_a_no_op(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    options = options_for(tmp_path, size=16)
    assert publish(options).build.changed
    for row in read_manifest(tmp_path / "release"):
        assert row["sha256"] == sha256_file(pool / row["file"])
    stamp = (tmp_path / "release" / "README.md").stat().st_mtime_ns
    assert not publish(options).build.changed
    assert (tmp_path / "release" / "README.md").stat().st_mtime_ns == stamp
    assert publish(dataclasses.replace(options, per_class=3)).build.changed
    assert len(read_manifest(tmp_path / "release")) == 6


def test_resize_uses_lanczos(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    publish(options_for(tmp_path))
    with Image.open(pool / "normal" / "seed00000.png") as original:
        expected = np.asarray(original.resize((8, 8), Image.Resampling.LANCZOS))
    with Image.open(tmp_path / "release" / "normal" / "seed00000.png") as published:
        assert np.array_equal(np.asarray(published), expected)


def test_metadata_errors_name_every_field(tmp_path: Path) -> None:
    metadata = build_metadata(
        title="Short",
        subtitle="too short",
        owner="me",
        slug="Bad_Slug",
        license_name="MIT",
        description="",
        keywords=[],
        resources=[],
    )
    with pytest.raises(MetadataError) as caught:
        validate_metadata(metadata)
    fields = [field for field, _ in caught.value.problems]
    assert fields == ["title", "subtitle", "id (slug)", "licenses"]
    message = str(caught.value)
    assert "'Short' is 5 characters; Kaggle needs 6 to 50" in message and "lowercase letters" in message
    two_licenses = dict(
        metadata,
        title="A fine title",
        subtitle="x" * 20,
        id="me/fine-slug",
        licenses=[{"name": "CC0-1.0"}, {"name": "CC-BY-4.0"}],
    )
    with pytest.raises(MetadataError, match="exactly one license, got 2"):
        validate_metadata(two_licenses)
    with pytest.raises(MetadataError, match=r"id \(slug\).*'ab' is 2 characters"):
        validate_metadata(dict(two_licenses, licenses=[{"name": "CC0-1.0"}], id="me/ab"))
    with pytest.raises(MetadataError, match="did you mean 'CC0-1.0'"):
        validate_metadata(dict(two_licenses, licenses=[{"name": "cc0-1.0"}]))


def test_invalid_options_fail_before_anything_is_written(tmp_path: Path) -> None:
    make_pool(tmp_path)
    with pytest.raises(MetadataError) as caught:
        publish(options_for(tmp_path, title="Tiny", subtitle="s" * 81, slug="UPPER"))
    assert [field for field, _ in caught.value.problems] == ["title", "subtitle", "id (slug)"]
    with pytest.raises(MetadataError, match="--license 'WTFPL' is not a license name Kaggle accepts"):
        publish(options_for(tmp_path, license="WTFPL"))
    assert not (tmp_path / "release").exists() and not options_path(tmp_path / "release").exists()


def test_license_comes_from_the_source_or_must_be_given(tmp_path: Path) -> None:
    make_pool(tmp_path, source=str(tmp_path / "somewhere"))
    with pytest.raises(MetadataError, match="no --license given and the source data's license is 'unknown'"):
        prepare_release(options_for(tmp_path))
    release = prepare_release(options_for(tmp_path, source_license="cc-by-4.0"))
    assert release.metadata["licenses"] == [{"name": "CC-BY-4.0"}]
    assert "unknown (prepared from a local folder named 'somewhere')" in release.readme
    assert release.metadata["title"] == "Synthetic images (StyleGAN2-ADA)"
    overridden = prepare_release(
        options_for(
            tmp_path,
            license="ODbL-1.0",
            source_dataset=CHEST_CT,
            title="My own title",
            citation="Cite me like this.",
        )
    )
    assert overridden.metadata["licenses"] == [{"name": "ODbL-1.0"}]
    assert "Source data license: CC0-1.0" in overridden.readme and "Cite me like this." in overridden.readme
    assert overridden.metadata["title"] == "My own title"


def test_local_source_folder_is_recognised_by_its_readme(tmp_path: Path) -> None:
    source = tmp_path / "chest-ct"
    source.mkdir()
    (source / "README.md").write_text(f"Real CT slices from Kaggle (`{CHEST_CT}`), CC0.")
    make_pool(tmp_path, source=str(source), split="official")
    release = prepare_release(options_for(tmp_path))
    assert release.metadata["licenses"] == [{"name": "CC0-1.0"}]
    assert "names the Kaggle data set" in release.readme
    assert "normal test images are byte-identical copies of train images" in release.readme


def test_snapshot_metadata_is_used_when_the_snapshot_is_intact(tmp_path: Path) -> None:
    make_pool(tmp_path)
    for (
        class_name
    ) in CLASSES:  # the run went on to 120 kimg; the snapshot's own record wins over the run folder
        run_dir = tmp_path / "runs" / class_name
        save_snapshot(run_dir / "network-snapshot-000080.pt", 120, {"cfg": "stylegan2", "gamma": 10})
    pool = tmp_path / "pool"
    with open(pool / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["snapshot_sha256"] = sha256_file(row["snapshot"])
    with open(pool / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    readme = prepare_release(options_for(tmp_path)).readme
    assert readme.count("| 120 |") == 2
    assert "cfg=stylegan2, planned_kimg=80, batch=8, gamma=10, aug=ada" in readme


def test_changed_or_missing_snapshot_is_reported_not_trusted(tmp_path: Path) -> None:
    make_pool(tmp_path)
    save_snapshot(tmp_path / "runs" / "normal" / "network-snapshot-000080.pt", 999, {"cfg": "cifar"})
    (tmp_path / "runs" / "squamous" / "network-snapshot-000080.pt").unlink()
    readme = prepare_release(options_for(tmp_path)).readme
    assert "cfg=cifar" not in readme and "| 999 |" not in readme
    assert "network-snapshot-000080.pt no longer matches the sha256 in the pool manifest" in readme
    assert "snapshot network-snapshot-000080.pt is not on this machine" in readme
    assert readme.count("| 80 |") == 2  # kimg from the file names
    assert readme.count("cfg=paper256") == 2  # training options from the run folders


def test_flagged_near_copies_are_reported_or_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pool(tmp_path, flagged=("normal/seed00001.png", "normal/seed00005.png"))
    release = prepare_release(options_for(tmp_path))
    assert release.flagged_published == ("normal/seed00001.png",)  # seed 5 is not among the 4 published
    assert (
        "**Warning: 1 published image is flagged by the memorisation check (near-copies of training "
        "images):** `normal/seed00001.png`" in release.readme
    )
    assert "The memorisation check flags 1 of the published images" in release.readme
    result = CliRunner().invoke(
        main,
        [
            "publish",
            "--pool",
            str(tmp_path / "pool"),
            "--out",
            str(tmp_path / "release"),
            "--owner",
            "someone",
            "--slug",
            "synthetic-chest-ct",
            "--per-class",
            "4",
            "--size",
            "8",
        ],
    )
    assert result.exit_code == 0 and "1 published image is flagged" in result.output
    excluded = publish(options_for(tmp_path, exclude_flagged=True))
    assert excluded.flagged_published == ()
    names = sorted(path.name for path in (tmp_path / "release" / "normal").iterdir())
    assert names == ["seed00000.png", "seed00002.png", "seed00003.png", "seed00004.png"]
    assert (
        "The 2 pool images the check flagged as near-copies were left out"
        in (tmp_path / "release" / "README.md").read_text()
    )


def test_pool_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    pool = make_pool(tmp_path)
    with pytest.raises(PublishError, match="class 'normal' has 6 images in the pool but --per-class is 7"):
        prepare_release(options_for(tmp_path, per_class=7))
    with pytest.raises(PublishError, match=r"class\(es\) adeno not in the pool"):
        prepare_release(options_for(tmp_path, classes=("adeno",)))
    Image.new("L", (16, 16)).save(pool / "normal" / "seed00001.png")
    with pytest.raises(PublishError, match=r"seed00001\.png does not match the sha256"):
        prepare_release(options_for(tmp_path))
    (pool / "manifest.csv").unlink()
    with pytest.raises(PublishError, match="manifest.csv not found"):
        prepare_release(options_for(tmp_path))


def test_out_that_is_not_a_release_is_refused(tmp_path: Path) -> None:
    make_pool(tmp_path)
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "precious.txt").write_text("keep me")
    with pytest.raises(OutputError, match="is a non-empty folder that `augstudy publish` did not write"):
        publish(options_for(tmp_path))
    assert (tmp_path / "release" / "precious.txt").read_text() == "keep me"


def test_redact_paths_keeps_urls_and_fractions() -> None:
    text = "cache (/root/.cache/x.pt); see https://example.org/a/b.pt; 4/5 done; C:\\Users\\bob\\inc.pt"
    assert redact_paths(text) == "cache (x.pt); see https://example.org/a/b.pt; 4/5 done; inc.pt"


def test_seed_ranges() -> None:
    assert seed_ranges([10, 0, 1, 2, 3, 4, 7, 9]) == "0-4, 7, 9-10"
    assert seed_ranges([5]) == "5"


# --- upload -------------------------------------------------------------------------------------------


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no Kaggle files and no KAGGLE_* variables, so nothing real is found or used."""
    pytest.importorskip("kaggle.api.kaggle_api_extended")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in [name for name in __import__("os").environ if name.startswith("KAGGLE_")]:
        monkeypatch.delenv(name)
    kaggle_api = sys.modules["kaggle.api.kaggle_api_extended"].KaggleApi
    monkeypatch.setattr(kaggle_api, "config", str(home / ".kaggle" / "kaggle.json"))
    return home


def http_error(status: int) -> Exception:
    import requests

    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


class Recorder:
    """Stands in for the network-facing KaggleApi methods and records how they were called."""

    def __init__(self, exists: bool | Exception) -> None:
        self.exists = exists
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def install(self, api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("dataset_status", "dataset_create_new", "dataset_create_version"):
            monkeypatch.setattr(api, name, getattr(self, name))

    def dataset_status(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append(("dataset_status", args, kwargs))
        if isinstance(self.exists, Exception):
            raise self.exists
        if not self.exists:
            raise http_error(404)
        return "ready"

    def dataset_create_new(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("dataset_create_new", args, kwargs))
        return types.SimpleNamespace(
            error=None, url="https://www.kaggle.com/datasets/someone/synthetic-chest-ct"
        )

    def dataset_create_version(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("dataset_create_version", args, kwargs))
        return types.SimpleNamespace(
            error=None, url="https://www.kaggle.com/datasets/someone/synthetic-chest-ct"
        )


def signed_in_api(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    return connect_kaggle()


def test_upload_creates_a_private_dataset_when_it_does_not_exist(
    tmp_path: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pool(tmp_path)
    api = signed_in_api(monkeypatch)
    recorder = Recorder(exists=False)
    recorder.install(api, monkeypatch)
    result = publish(options_for(tmp_path, upload=True), api=api)
    assert [name for name, _, _ in recorder.calls] == ["dataset_status", "dataset_create_new"]
    assert recorder.calls[0][1] == ("someone/synthetic-chest-ct",)
    _, args, kwargs = recorder.calls[1]
    assert args == (str(tmp_path / "release"),)
    assert kwargs == {"public": False, "quiet": False, "dir_mode": "zip"}
    assert result.upload is not None and result.upload.action == "created"


def test_upload_makes_a_new_version_when_the_dataset_exists(
    tmp_path: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pool(tmp_path)
    api = signed_in_api(monkeypatch)
    recorder = Recorder(exists=True)
    recorder.install(api, monkeypatch)
    result = publish(options_for(tmp_path, upload=True, public=True, version_notes="More seeds"), api=api)
    assert [name for name, _, _ in recorder.calls] == ["dataset_status", "dataset_create_version"]
    _, args, kwargs = recorder.calls[1]
    assert args == (str(tmp_path / "release"),)
    assert kwargs == {"version_notes": "More seeds", "quiet": False, "dir_mode": "zip"}
    assert result.upload is not None and result.upload.action == "new version"


def test_public_flag_reaches_create(
    tmp_path: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pool(tmp_path)
    api = signed_in_api(monkeypatch)
    recorder = Recorder(exists=False)
    recorder.install(api, monkeypatch)
    publish(options_for(tmp_path, upload=True, public=True), api=api)
    assert recorder.calls[1][2]["public"] is True


def test_network_failure_or_refusal_publishes_nothing(
    tmp_path: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    make_pool(tmp_path)
    api = signed_in_api(monkeypatch)
    offline = Recorder(exists=requests.ConnectionError("Name or service not known"))
    offline.install(api, monkeypatch)
    with pytest.raises(
        KaggleUploadError, match="could not ask Kaggle whether someone/synthetic-chest-ct exists"
    ):
        publish(options_for(tmp_path, upload=True), api=api)
    assert [name for name, _, _ in offline.calls] == ["dataset_status"]
    refused = Recorder(exists=False)
    refused.install(api, monkeypatch)
    monkeypatch.setattr(
        api,
        "dataset_create_new",
        lambda *args, **kwargs: types.SimpleNamespace(
            error="The requested title is already in use", url=None
        ),
    )
    with pytest.raises(KaggleUploadError, match="Kaggle refused .* already in use"):
        upload_dataset(plan_upload(tmp_path / "release", False, "notes"), api)
    short = dataclasses.replace(plan_upload(tmp_path / "release", False, "notes"), dataset_id="someone/abc")
    with pytest.raises(KaggleUploadError, match="slugs of 6 to 50"):
        upload_dataset(short, api)


def test_missing_credentials_give_a_clear_error(tmp_path: Path, kaggle_env: Path) -> None:
    with pytest.raises(KaggleCredentialsError) as caught:
        connect_kaggle()
    message = str(caught.value)
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in message and "kaggle.json" in message
    make_pool(tmp_path)
    with pytest.raises(KaggleCredentialsError):
        publish(options_for(tmp_path, upload=True))
    assert not (tmp_path / "release").exists()  # checked before anything was built


def test_real_kaggle_client_accepts_the_folder_and_keeps_class_folders(
    tmp_path: Path, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kaggle's own dataset_create_new on our folder, with only its HTTP calls replaced."""
    make_pool(tmp_path)
    api = signed_in_api(monkeypatch)
    if not all(hasattr(api, name) for name in ("_upload_blob", "build_kaggle_client")):
        pytest.skip("this kaggle version uploads through other internals")
    uploads: dict[str, list[str]] = {}
    requests_sent: list[Any] = []

    def upload_blob(path: str, *args: Any, **kwargs: Any) -> str:
        name = Path(path).name
        uploads[name] = sorted(zipfile.ZipFile(path).namelist()) if name.endswith(".zip") else []
        return f"token-{name}"

    def create_dataset(request: Any) -> Any:
        requests_sent.append(request)
        return types.SimpleNamespace(
            error="", url="https://www.kaggle.com/datasets/someone/synthetic-chest-ct"
        )

    client = types.SimpleNamespace(
        datasets=types.SimpleNamespace(
            dataset_api_client=types.SimpleNamespace(
                create_dataset=create_dataset,
                get_dataset_status=lambda request: (_ for _ in ()).throw(http_error(404)),
            )
        )
    )

    class ClientContext:
        def __enter__(self) -> Any:
            return client

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(api, "_upload_blob", upload_blob)
    monkeypatch.setattr(api, "build_kaggle_client", lambda: ClientContext())
    result = publish(options_for(tmp_path, upload=True), api=api)
    assert result.upload is not None and result.upload.action == "created"
    assert sorted(uploads) == ["README.md", "manifest.csv", "normal.zip", "squamous.zip"]
    assert uploads["normal.zip"] == [f"seed{seed:05d}.png" for seed in range(4)]
    (request,) = requests_sent
    assert request.is_private is True and request.license_name == "CC0-1.0"
    assert request.slug == "synthetic-chest-ct" and request.owner_slug == "someone"
    assert len(request.files) == 4


def test_cli_dry_run_prints_what_would_be_sent_and_contacts_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pool(tmp_path)

    def no_network() -> None:
        raise AssertionError("dry run must not contact Kaggle")

    monkeypatch.setattr("augstudy.publish.cli.connect_kaggle", no_network)
    result = CliRunner().invoke(
        main,
        [
            "publish",
            "--pool",
            str(tmp_path / "pool"),
            "--out",
            str(tmp_path / "release"),
            "--owner",
            "someone",
            "--slug",
            "synthetic-chest-ct",
            "--per-class",
            "3",
            "--size",
            "8",
            "--upload",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    output = result.output
    metadata = json.loads((tmp_path / "release" / "dataset-metadata.json").read_text())
    assert json.dumps(metadata, indent=2, sort_keys=True) in output
    for row in read_manifest(tmp_path / "release"):
        size = (tmp_path / "release" / row["file"]).stat().st_size
        assert f"{size:>12,}  {row['file']}" in output
    assert "api.dataset_create_new(" in output and "public=False" in output and "dir_mode='zip'" in output
    assert "api.dataset_create_version(" in output and "Files: 8," in output


def test_cli_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    make_pool(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "publish",
            "--pool",
            str(tmp_path / "pool"),
            "--out",
            str(tmp_path / "release"),
            "--owner",
            "someone",
            "--slug",
            "x",
            "--per-class",
            "2",
            "--size",
            "8",
        ],
    )
    assert result.exit_code == 1
    assert "id (slug): 'x' is 1 characters" in result.output and "Traceback" not in result.output


def test_a_full_disk_is_reported_and_leaves_no_half_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    make_pool(tmp_path)
    monkeypatch.setattr("augstudy.publish.build._write_contents", disk_full)
    with pytest.raises(DiskFullError, match="release is full"):
        publish(options_for(tmp_path))
    assert not (tmp_path / "release").exists()
    assert not [path for path in tmp_path.glob(".release.*") if path.is_dir()]
