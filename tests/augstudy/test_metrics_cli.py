"""`augstudy gan-metrics` end to end on small folders, and the snapshot-time `generator_metrics`.

A tiny TorchScript network made here stands in for Inception; nothing is downloaded.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from augstudy.cli import main
from augstudy.data.nvlabs_zip import write_dataset_zip
from augstudy.metrics import inception
from augstudy.metrics.evaluate import generator_metrics

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
CLASSES = ("normal", "tumour")
SIZE = 32


class TinyFeatures(torch.nn.Module):
    """The NVIDIA export's interface (NCHW 0..255 in, (N, D) features out) at a fraction of its size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=9, stride=8)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 128 - 1
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


class TinyGenerator(torch.nn.Module):
    """The StyleGAN2-ADA generator contract: G(z, c, truncation_psi, noise_mode) -> NCHW in [-1, 1]."""

    def __init__(self, c_dim: int = 0) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.img_channels = 8, c_dim, 1
        self.fc = torch.nn.Linear(8 + c_dim, SIZE * SIZE)

    def forward(
        self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1, noise_mode: str = "random"
    ):
        assert noise_mode == "const" and truncation_psi == 1
        return torch.tanh(self.fc(torch.cat([z, c], dim=1))).view(-1, 1, SIZE, SIZE)


def blob(rng: np.random.Generator, width: tuple[float, float] = (0.08, 0.2)) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    image = np.zeros((SIZE, SIZE))
    for _ in range(3):
        cy, cx = rng.uniform(0.15, 0.85, 2)
        spread = rng.uniform(*width)
        image += rng.uniform(0.4, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * spread**2))
    return np.clip(image * 180 + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "L").save(path)
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("AUGSTUDY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(url: str, destination: Path, timeout_s: float = 0) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(inception, "download_file", fail)


@pytest.fixture
def network_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny-inception.pt"
    torch.jit.script(TinyFeatures()).save(str(path))
    return path


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared folder: 13 train PNGs per class, of which the GAN zip keeps the first 12."""
    root = tmp_path / "prepared"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        paths = [
            save(root / "images" / "train" / name / f"{index:03d}.png", blob(rng)) for index in range(13)
        ]
        write_dataset_zip(root / "gan" / f"{name}.zip", paths[:12], None, [name])
    return root


@pytest.fixture
def pool(tmp_path: Path, prepared: Path) -> Path:
    """A pool of 10 images per class, plus a copy of a training image planted in `normal`."""
    root = tmp_path / "pool"
    rng = np.random.default_rng(1)
    for name in CLASSES:
        for seed in range(10):
            save(root / name / f"seed{seed:05d}.png", blob(rng, (0.03, 0.08)))
    (root / "normal" / "seed00010.png").write_bytes((prepared / "images/train/normal/004.png").read_bytes())
    save(root / "preview.png", np.zeros((64, 64), np.uint8))
    (root / "manifest.csv").write_text("file,class,seed\n")
    return root


def run(*args: str | Path) -> object:
    return CliRunner().invoke(main, ["gan-metrics", *map(str, args)])


def test_per_class_metrics_of_a_pool_against_the_gan_training_images(
    prepared: Path, pool: Path, network_file: Path
) -> None:
    result = run("--real", prepared, "--fake", pool, "--inception", network_file, "--kid-subsets", 5)
    assert result.exit_code == 0, result.output + str(result.exception)

    report = json.loads((pool / "metrics.json").read_text())
    assert report["real_layout"] == "prepared" and report["fake_layout"] == "class-folders"
    assert report["metrics"] == ["kid", "fid", "swd", "memo"]
    assert set(report["classes"]) == set(CLASSES)
    normal, tumour = report["classes"]["normal"], report["classes"]["tumour"]
    assert (normal["num_real"], normal["num_fake"], tumour["num_fake"]) == (
        12,
        11,
        10,
    )  # the zip, not images/
    assert normal["kid"]["subset_size"] == 11 and normal["kid"]["num_subsets"] == 5
    assert normal["fid"]["reliable"] is False and normal["fid"]["feature_dim"] == 32
    assert set(normal["swd"]["per_level"]) == {"32", "16"} and normal["swd"]["channels"] == 1
    memo = normal["memorisation"]
    # (the tiny random feature network makes feature distances of other images meaningless: pixels only)
    assert [
        (entry["fake"], entry["real"]) for entry in memo["flagged"] if "pixel" in entry["flagged_by"]
    ] == [("normal/seed00010.png", "images/train/normal/004.png")]
    assert not [entry for entry in tumour["memorisation"]["flagged"] if "pixel" in entry["flagged_by"]]
    assert memo["flagged"][0]["flagged_by"] == ["pixel", "feature"]
    assert memo["flagged"][0]["pixel_distance"] == 0.0
    assert memo["feature"]["ratio"] == pytest.approx(1 / 3) and "real_to_real_quantiles" in memo["feature"]
    assert any("normal: FID from 12 real and 11 synthetic images" in text for text in report["warnings"])
    assert "warning: normal: FID" in result.stderr
    assert "normal: 12 real, 11 fake, KID" in result.stdout

    options = json.loads((pool / "gan_metrics_options.json").read_text())
    assert options["real"] == str(prepared) and options["inception"] == str(network_file)
    assert options["kid_num_subsets"] == 5 and options["metrics"] is None


def test_the_same_inputs_give_the_same_report(
    prepared: Path, pool: Path, network_file: Path, tmp_path: Path
) -> None:
    arguments = ("--real", prepared, "--fake", pool, "--inception", network_file, "--kid-subsets", 5)
    assert run(*arguments, "--out", tmp_path / "a.json").exit_code == 0
    assert run(*arguments, "--out", tmp_path / "b.json", "--no-feature-cache").exit_code == 0
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_offline_auto_runs_swd_and_pixel_memorisation_with_a_note(
    prepared: Path, pool: Path, offline: None
) -> None:
    result = run("--real", prepared, "--fake", pool)
    assert result.exit_code == 0, result.output + str(result.exception)
    report = json.loads((pool / "metrics.json").read_text())
    assert report["metrics"] == ["swd", "memo"] and report["extractor"] is None
    assert "kid" not in report["classes"]["normal"]
    assert report["classes"]["normal"]["memorisation"]["num_flagged"] == 1
    assert "skipped" in report["classes"]["normal"]["memorisation"]["feature"]
    assert any("--inception PATH" in note for note in report["notes"])
    assert "note: KID, FID and the feature-space memorisation check were skipped" in result.stderr


def test_asking_for_kid_offline_is_an_error_that_says_what_to_do(
    prepared: Path, pool: Path, offline: None
) -> None:
    result = run("--real", prepared, "--fake", pool, "--metrics", "kid,swd")
    assert result.exit_code == 1
    assert "--inception PATH" in result.output and inception.INCEPTION_URL in result.output
    assert not (pool / "metrics.json").exists()


def test_a_labelled_zip_against_class_folders_and_plain_folders_against_each_other(
    prepared: Path, pool: Path, tmp_path: Path
) -> None:
    labelled = [
        (path, label)
        for label, name in enumerate(CLASSES)
        for path in sorted((prepared / "images/train" / name).glob("*.png"))
    ]
    all_zip = tmp_path / "all.zip"
    write_dataset_zip(all_zip, [path for path, _ in labelled], [label for _, label in labelled], CLASSES)

    result = run("--real", all_zip, "--fake", pool, "--metrics", "swd", "--out", tmp_path / "by-class.json")
    assert result.exit_code == 0, result.output + str(result.exception)
    by_class = json.loads((tmp_path / "by-class.json").read_text())
    assert {name: value["num_real"] for name, value in by_class["classes"].items()} == {
        "normal": 13,
        "tumour": 13,
    }

    flat = run("--real", prepared / "images/train/tumour", "--fake", pool / "tumour", "--metrics", "swd,memo",
               "--out", tmp_path / "flat.json")
    assert flat.exit_code == 0, flat.output + str(flat.exception)
    one_set = json.loads((tmp_path / "flat.json").read_text())
    assert list(one_set["classes"]) == ["all"] and one_set["classes"]["all"]["num_real"] == 13


def test_sources_without_a_shared_class_and_bad_arguments_are_reported(
    prepared: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    save(other / "cats" / "a.png", np.zeros((SIZE, SIZE), np.uint8))
    result = run("--real", prepared, "--fake", other, "--metrics", "swd", "--out", tmp_path / "m.json")
    assert result.exit_code == 1 and "no class in common" in result.output
    result = run("--real", prepared, "--fake", prepared / "gan/normal.zip", "--metrics", "swd")
    assert result.exit_code == 1 and "pass --out FILE" in result.output
    result = run("--real", prepared, "--fake", other, "--metrics", "kid,lpips")
    assert result.exit_code == 2 and "unknown metrics ['lpips']" in result.output


def test_generator_metrics_at_snapshot_time(prepared: Path, network_file: Path) -> None:
    torch.manual_seed(0)
    generator = TinyGenerator()
    real = prepared / "gan" / "normal.zip"
    results = generator_metrics(
        generator,
        real,
        ("swd", "kid", "fid"),
        num_images=20,
        seed=3,
        inception_path=network_file,
        batch_size=4,
    )
    assert set(results) == {"swd", "swd_32", "swd_16", "kid", "kid_std", "fid"}
    assert results["swd"] == pytest.approx((results["swd_32"] + results["swd_16"]) / 2)
    in_one_batch = generator_metrics(
        generator,
        real,
        ("swd", "kid", "fid"),
        num_images=20,
        seed=3,
        inception_path=network_file,
        batch_size=20,
    )
    assert in_one_batch == pytest.approx(results, rel=1e-4)
    assert generator_metrics(generator, real, ("swd",), num_images=20, seed=4)["swd"] != results["swd"]
    with pytest.raises(ValueError, match="must be among"):
        generator_metrics(generator, real, ("memo",))


def test_generator_metrics_of_a_conditional_generator_need_matching_classes(
    prepared: Path, tmp_path: Path
) -> None:
    labelled = [
        (path, label)
        for label, name in enumerate(CLASSES)
        for path in sorted((prepared / "images/train" / name).glob("*.png"))
    ]
    all_zip = tmp_path / "all.zip"
    write_dataset_zip(all_zip, [path for path, _ in labelled], [label for _, label in labelled], CLASSES)
    results = generator_metrics(TinyGenerator(c_dim=2), all_zip, ("swd",), num_images=12)
    assert set(results) == {"swd", "swd_32", "swd_16"} and results["swd"] > 0
    with pytest.raises(ValueError, match="c_dim=3 needs a real source with 3 classes"):
        generator_metrics(TinyGenerator(c_dim=3), all_zip, ("swd",), num_images=12)


def test_memorisation_also_compares_with_the_validation_and_test_images(
    prepared: Path, pool: Path, network_file: Path
) -> None:
    """A synthetic copy of a test image (a duplicate of a train slice the GAN saw, on a split that keeps
    copies apart) would carry a test image into training; before, only train images were compared."""
    rng = np.random.default_rng(5)
    test_image = save(prepared / "images" / "test" / "tumour" / "900.png", blob(rng))
    save(prepared / "images" / "valid" / "tumour" / "901.png", blob(rng))
    (pool / "tumour" / "seed00011.png").write_bytes(test_image.read_bytes())
    result = run("--real", prepared, "--fake", pool, "--inception", network_file, "--metrics", "memo")
    assert result.exit_code == 0, result.output + str(result.exception)
    report = json.loads((pool / "metrics.json").read_text())
    heldout = report["classes"]["tumour"]["memorisation_heldout"]
    assert heldout["num_heldout"] == 2
    assert [(entry["fake"], entry["real"]) for entry in heldout["flagged"]] == [
        ("tumour/seed00011.png", "images/test/tumour/900.png")]
    assert report["classes"]["normal"].get("memorisation_heldout") is None  # no held-out normal images
