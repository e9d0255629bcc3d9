"""Official NVlabs pickles through the CLI: import-network, generate, gan-metrics and train-gan
--resume-from read them safely (../shared/fixtures/nvlabs; skipped where absent)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from PIL import Image

from augstudy.cli import main
from stylegan2ada.dataset import write_dataset
from stylegan2ada.snapshot import load_generator, load_snapshot, snapshot_meta

FIXTURES = Path(__file__).resolve().parents[3] / "shared/fixtures/nvlabs"
pytestmark = pytest.mark.skipif(
    not (FIXTURES / "fixtures.json").is_file(), reason=f"NVlabs fixtures not found at {FIXTURES}"
)
RGB32 = FIXTURES / "nvlabs-rgb32.pkl"
GREY64 = FIXTURES / "nvlabs-cond-grey64.pkl"


def make_prepared(root: Path, channels: int, count: int = 8) -> Path:
    """The gan/ part of an `augstudy prepare` folder at 32 px with one class, `normal`."""
    rng = np.random.default_rng(0)
    shape = (32, 32) if channels == 1 else (32, 32, channels)
    write_dataset(
        root / "gan" / "normal.zip", [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    )
    return root


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_import_network_writes_a_snapshot_with_the_official_outputs(tmp_path: Path) -> None:
    out = tmp_path / "nets" / "grey64.pt"
    result = invoke("import-network", GREY64, "--out", out, "--class", "normal,squamous")
    assert result.exit_code == 0, result.output
    assert "64 px, 1 channel(s), c_dim 2, G 3,158,286 / D 452,672 parameters, augment p 0.23" in result.output
    reference = np.load(FIXTURES / "nvlabs-cond-grey64.npz")
    with torch.no_grad():
        images = load_generator(out)(
            torch.from_numpy(reference["z"]), torch.from_numpy(reference["c"]).float(), noise_mode="const"
        )
    assert (images - torch.from_numpy(reference["img_psi1"])).abs().max() < 1e-4
    meta = snapshot_meta(out)
    assert meta["extra_meta"]["class_names"] == ["normal", "squamous"]
    assert Path(meta["extra_meta"]["imported_from"]).resolve() == GREY64.resolve()  # a symlinked ../shared too
    again = invoke("import-network", GREY64, "--out", out)
    assert again.exit_code != 0 and "already exists" in again.output
    wrong = invoke("import-network", GREY64, "--out", tmp_path / "x.pt", "--class", "normal")
    assert wrong.exit_code != 0 and "c_dim=2, so give 2 names" in wrong.output


def test_malicious_pickle_is_refused_by_every_verb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("NVLABS_FIXTURE_CANARY", str(canary))
    malicious = FIXTURES / "malicious.pkl"
    (tmp_path / "data" / "gan").mkdir(parents=True)
    for args in (
        ("import-network", malicious, "--out", tmp_path / "m.pt"),
        ("generate", "--network", malicious, "--out", tmp_path / "pool", "--per-class", 1),
        ("gan-metrics", "--real", tmp_path / "data", "--network", malicious, "--out", tmp_path / "m.json"),
    ):
        result = invoke(*args)
        assert result.exit_code != 0, args
        assert "malicious.pkl" in result.output and "'Payload'" in result.output, result.output
        assert "Traceback" not in result.output
    assert not canary.exists()


def test_generate_reads_the_pickle_and_the_converted_snapshot_alike(tmp_path: Path) -> None:
    converted = tmp_path / "rgb32.pt"
    assert invoke("import-network", RGB32, "--out", converted, "--class", "cars").exit_code == 0
    pools = []
    for network, extra in ((RGB32, ("--class", "cars")), (converted, ())):
        pool = tmp_path / f"pool-{network.suffix[1:]}"
        result = invoke(
            "generate", "--network", network, "--out", pool, "--per-class", 2, "--device", "cpu", *extra
        )
        assert result.exit_code == 0, result.output
        pools.append(pool)
    for seed in (0, 1):
        png = f"cars/seed{seed:05d}.png"
        # Same pixels; the files' completion markers name their own network file, so compare pixels.
        assert np.array_equal(np.asarray(Image.open(pools[0] / png)), np.asarray(Image.open(pools[1] / png)))


def test_gan_metrics_measures_a_network(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data", channels=3)
    out = tmp_path / "metrics.json"
    result = invoke(
        "gan-metrics",
        "--real",
        data / "gan" / "normal.zip",
        "--network",
        RGB32,
        "--num-images",
        16,
        "--out",
        out,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["metrics"] == ["swd"] and report["num_images"] == 16 and report["values"]["swd"] > 0
    missing_out = invoke("gan-metrics", "--real", data / "gan" / "normal.zip", "--network", RGB32)
    assert missing_out.exit_code != 0 and "--out" in missing_out.output


def test_train_gan_fine_tunes_an_rgb_pickle_on_grey_data(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data", channels=1, count=4)
    runs = tmp_path / "runs"
    args = [
        "train-gan",
        "--data",
        data,
        "--out",
        runs,
        "--classes",
        "normal",
        "--resume-from",
        RGB32,
        "--kimg",
        "0.004",
        "--batch",
        "4",
        "--snap",
        "0.004",
        "--workers",
        "0",
        "--threads",
        "1",
        "--freezed",
        "2",
        "--device",
        "cpu",
    ]
    clash = invoke(*args, "--cbase", "1024")
    assert clash.exit_code != 0 and "--cbase cannot be combined with --resume-from" in clash.output
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "G synthesis.b32  adapted" in result.output and "torgb: adapted (3 -> 1 channels" in result.output
    kept = (runs / "normal" / "transfer.txt").read_text()
    assert "D b32" in kept and "summed over the input channels" in kept
    final = load_snapshot(next((runs / "normal").glob("network-snapshot-*.pt")))
    assert final["G_init_kwargs"]["img_channels"] == 1 and final["options"]["ada_kimg"] == 100
    assert final["D_init_kwargs"]["channel_base"] == 2048 and final["D_init_kwargs"]["freeze_layers"] == 2
    not_a_network = tmp_path / "notes.txt"
    not_a_network.write_text("hello")
    bad = invoke(*args[:-4], "--out", tmp_path / "other", "--resume-from", not_a_network)
    assert bad.exit_code != 0 and "notes.txt: not a snapshot: it is a text file" in bad.output


def test_generate_describes_a_file_that_is_no_network(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("seed,class\n")
    result = invoke("generate", "--network", notes, "--out", tmp_path / "pool", "--per-class", 1)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "notes.txt: not a snapshot: it is a text file" in result.output and ".pkl" in result.output
    assert "zipfile" not in result.output.lower()
