"""`augstudy train-diffusion` (dry run, checked options, safe snapshots, exact resume, also after SIGKILL) and
`augstudy generate` on its snapshots (the GAN's pool format, sampler choice, resume, gan-metrics)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from augstudy.diffusion.snapshot import latest_snapshot, load_denoiser, load_snapshot, snapshot_meta
from augstudy.diffusion.train import (
    TrainDiffusionOptions,
    describe_runs,
    train_diffusion_command,
    train_diffusions,
)
from augstudy.gan.generate import (
    GenerateOptions,
    Network,
    _check_kind_options,
    generate_command,
    generate_pool,
)
from augstudy.metrics.evaluate import GanMetricsOptions, gan_metrics
from stylegan2ada.dataset import write_dataset
from stylegan2ada.snapshot import SnapshotError

TINY = {"channels": (8, 16), "attention": (False, True), "norm_groups": 8, "batch": 4, "timesteps": 50,
        "threads": 1}
TINY_FLAGS = ["--channels", "8,16", "--attention", "0,1", "--norm-groups", "8", "--batch", "4", "--timesteps", "50",
              "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_prepared(root: Path, resolution: int = 16, per_class: int = 4) -> Path:
    """The gan/ part of an `augstudy prepare` folder: one zip per class and a labelled all.zip."""
    rng = np.random.default_rng(0)
    images = {name: [rng.integers(0, 256, (resolution, resolution), dtype=np.uint8) for _ in range(per_class)]
              for name in ("normal", "scc")}
    for name, class_images in images.items():
        write_dataset(root / "gan" / f"{name}.zip", class_images)
    write_dataset(root / "gan" / "all.zip", images["normal"] + images["scc"], [0] * per_class + [1] * per_class,
                  ["normal", "scc"])
    return root


@pytest.mark.slow
def test_dry_run_prints_parameters_and_a_measured_estimate_and_writes_nothing(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    flags = ["--data", str(data), "--out", str(tmp_path / "runs"), "--dry-run", "--kimg", "2", *TINY_FLAGS]
    result = CliRunner().invoke(train_diffusion_command, flags)
    assert result.exit_code == 0, result.output
    per_class = json.loads(result.output)
    assert sorted(per_class) == ["normal", "scc"]
    for name, described in per_class.items():
        assert described["extra_meta"]["class_name"] == name
        assert described["unet_kwargs"]["channels"] == [8, 16] and described["unet_kwargs"]["in_channels"] == 1
        assert described["unet_kwargs"]["num_class_embeds"] is None
        assert 0 < described["parameters"] < 200_000
        assert described["measured_sec_per_kimg"] > 0
        assert described["estimated_train_s"] == pytest.approx(2 * described["measured_sec_per_kimg"])
        assert described["estimated_sec_per_image_ddim"] > 0 and described["ddim_steps"] == 50

    conditional = json.loads(CliRunner().invoke(train_diffusion_command, [*flags, "--conditional"]).output)
    assert conditional["conditional"]["unet_kwargs"]["num_class_embeds"] == 2
    assert conditional["conditional"]["extra_meta"]["class_names"] == ["normal", "scc"]
    # The cpu config's own sizes apply when nothing overrides them.
    cpu = describe_runs(TrainDiffusionOptions(data=data, out=tmp_path / "runs", classes=("normal",), threads=1))
    assert cpu["normal"]["unet_kwargs"]["channels"] == [32, 64, 64] and cpu["normal"]["batch"] == 16
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--kimg", "0"], "--kimg"),
        (["--lr", "-1"], "--lr"),
        (["--timesteps", "1"], "--timesteps"),
        (["--ema-kimg", "nan"], "--ema-kimg"),
        (["--channels", "12,16"], "not multiples of the 8 GroupNorm groups"),
        (["--channels", "8,8,8,8,8,8", "--attention", "0,0,0,0,0,0"], "use fewer levels"),
        (["--attention", "0,maybe"], "0/1 per UNet level"),
        (["--channels", "8,16,16"], "3 channel levels but 2 attention flags"),
        (["--classes", "adenocarcinoma"], "available: normal, scc"),
        (["--schedule", "quadratic"], "--schedule"),
    ],
)
def test_bad_options_get_one_clear_error(tmp_path: Path, flags: list[str], message: str) -> None:
    data = make_prepared(tmp_path / "data", resolution=16)
    result = CliRunner().invoke(train_diffusion_command,
                                ["--data", str(data), "--out", str(tmp_path / "runs"), *TINY_FLAGS, *flags])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    data = load_snapshot(path)
    tensors = {f"model.{key}": value for key, value in data["model"].items()}
    tensors.update({f"ema.{key}": value for key, value in data["ema"].items()})
    for index, state in data["state"]["optimizer"]["state"].items():
        tensors.update({f"adam.{index}.{key}": value for key, value in state.items() if torch.is_tensor(value)})
    tensors["generator"] = data["state"]["generator"]
    return tensors


def test_resume_continues_exactly_and_finished_runs_are_skipped(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = make_prepared(tmp_path / "data")
    common = {"data": data, "classes": ("normal",), "snap": 0.008, "tick_kimg": 0.004, "seed": 3, **TINY}
    whole = train_diffusions(TrainDiffusionOptions(out=tmp_path / "whole", kimg=0.016, **common))["normal"]
    train_diffusions(TrainDiffusionOptions(out=tmp_path / "split", kimg=0.008, **common))
    split = train_diffusions(TrainDiffusionOptions(out=tmp_path / "split", kimg=0.016, **common))["normal"]
    assert "Resuming diffusion-snapshot-000000.008.pt" in capsys.readouterr().out
    a, b = _weights(whole), _weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a), [key for key in a if not torch.equal(a[key], b[key])]
    assert not torch.equal(a["model.out.2.conv.weight"], a["ema.out.2.conv.weight"])  # the EMA is its own
    meta = snapshot_meta(split)
    assert (meta["cur_nimg"], meta["step"], meta["kimg"]) == (16, 4, 0.016) and meta["train_s"] > 0
    assert meta["extra_meta"]["class_name"] == "normal" and meta["resolution"] == 16 and meta["channels"] == 1
    records = [json.loads(line) for line in (split.parent / "stats.jsonl").read_text().splitlines()]
    assert [record["cur_nimg"] for record in records] == [4, 8, 12, 16]
    assert json.loads((tmp_path / "split/train_diffusion_options.json").read_text())["kimg"] == 0.016

    assert train_diffusions(TrainDiffusionOptions(out=tmp_path / "split", kimg=0.016, **common)) == {"normal": split}
    assert "finished" in capsys.readouterr().out
    with pytest.raises(click.UsageError, match=r"lr 0\.01 \(snapshot: 0\.001\)"):
        train_diffusions(TrainDiffusionOptions(out=tmp_path / "split", kimg=0.032, **{**common, "lr": 0.01}))
    assert json.loads((tmp_path / "split/train_diffusion_options.json").read_text())["lr"] is None  # not rewritten
    with pytest.raises(click.UsageError, match="--no-resume"):
        train_diffusions(TrainDiffusionOptions(out=tmp_path / "split", kimg=0.032, resume=False, **common))


def test_snapshots_hold_only_plain_data_and_damage_is_named(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    snapshot = train_diffusions(TrainDiffusionOptions(data=data, out=tmp_path / "runs", classes=("scc",),
                                                      kimg=0.004, snap=0.004, **TINY))["scc"]
    torch.load(snapshot, weights_only=True)  # raises if anything but tensors and plain data is inside
    model, scheduler_kwargs = load_denoiser(snapshot)
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert scheduler_kwargs == {"num_train_timesteps": 50, "schedule": "linear_beta"}

    stored = torch.load(snapshot, weights_only=True)
    stored["unet_kwargs"]["channels"] = [4096, 4096]  # a huge network: refused before allocation
    torch.save(stored, tmp_path / "edited.pt")
    with pytest.raises(SnapshotError, match="edited.pt: its network cannot be rebuilt"):
        load_denoiser(tmp_path / "edited.pt")

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({**stored, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(SnapshotError, match="evil.pt: not a diffusion snapshot"):
        load_snapshot(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(SnapshotError, match="it is a PNG image"):
        load_snapshot(tmp_path / "image.png")


RUNNER = """
import json, sys
from pathlib import Path
from augstudy.diffusion.train import TrainDiffusionOptions, train_diffusions
options = json.loads(sys.argv[1])
options.update(data=Path(options["data"]), out=Path(options["out"]), classes=tuple(options["classes"]),
               channels=tuple(options["channels"]), attention=tuple(options["attention"]))
train_diffusions(TrainDiffusionOptions(**options))
"""


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = make_prepared(tmp_path / "data")
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    options = {"data": str(data), "classes": ["normal"], "kimg": 0.048, "snap": 0.008, "tick_kimg": 0.004,
               "seed": 5, **TINY, "channels": [8, 16], "attention": [False, True]}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def command(out: Path) -> list[str]:
        return [sys.executable, str(runner), json.dumps({**options, "out": str(out)})]

    subprocess.run(command(tmp_path / "whole"), env=env, check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while latest_snapshot(killed / "normal") is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = snapshot_meta(latest_snapshot(killed / "normal"))["cur_nimg"]
    assert 0 < interrupted_at < 48

    subprocess.run(command(killed), env=env, check=True, capture_output=True, timeout=600)
    a = _weights(latest_snapshot(tmp_path / "whole/normal"))
    b = _weights(latest_snapshot(killed / "normal"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    kept = [json.loads(line)["cur_nimg"] for line in (killed / "normal/stats.jsonl").read_text().splitlines()]
    assert kept == sorted(set(kept)) and kept[-1] == 48


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A prepared folder and a tiny conditional diffusion snapshot trained on it."""
    root = tmp_path_factory.mktemp("diffusion")
    data = make_prepared(root / "data", per_class=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    snapshot = train_diffusions(TrainDiffusionOptions(data=data, out=root / "runs", conditional=True, kimg=0.008,
                                                      snap=0.008, **TINY))["conditional"]
    torch.set_num_threads(threads)
    return data, snapshot


def _manifest(pool: Path) -> list[dict[str, str]]:
    with open(pool / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_diffusion_pool_has_the_gan_pool_format_and_resumes(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, snapshot = trained
    pool = tmp_path / "pool"
    options = GenerateOptions(networks=(snapshot,), out=pool, per_class=3, steps=5, batch=2, device="cpu")
    assert generate_pool(options) == {"generated": 6, "skipped": 0}
    files = sorted(path.relative_to(pool).as_posix() for path in pool.glob("*/*.png"))
    assert files == [f"{name}/seed{seed:05d}.png" for name in ("normal", "scc") for seed in range(3)]
    with Image.open(pool / "scc/seed00001.png") as image:
        assert image.mode == "L" and image.size == (16, 16)
    rows = _manifest(pool)
    assert {row["sampler"] for row in rows} == {"ddim:5"} and {row["truncation"] for row in rows} == {""}
    timing = json.loads((pool / "sampling.json").read_text())
    assert timing["normal"]["generator"] == "diffusion" and timing["normal"]["images"] == 3
    assert timing["normal"]["images_per_s"] > 0
    assert (pool / "preview.png").is_file()

    # Same settings: nothing to do. A deleted image is made again, identical (image i from seed i).
    before = (pool / "normal/seed00002.png").read_bytes()
    (pool / "normal/seed00002.png").unlink()
    assert generate_pool(options) == {"generated": 1, "skipped": 5}
    assert (pool / "normal/seed00002.png").read_bytes() == before
    # Another step count makes other images: every image is redone, none is mixed in from the old setting.
    assert generate_pool(GenerateOptions(networks=(snapshot,), out=pool, per_class=3, steps=4, batch=3,
                                         device="cpu"))["generated"] == 6
    assert {row["sampler"] for row in _manifest(pool)} == {"ddim:4"}


def test_options_of_the_other_generator_kind_are_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, snapshot = trained
    base = ["--network", str(snapshot), "--out", str(tmp_path / "pool"), "--per-class", "2"]
    for flags, message in ((["--trunc", "0.7"], "--trunc/--noise-mode apply to StyleGAN2-ADA"),
                           (["--noise-mode", "random"], "--trunc/--noise-mode apply to StyleGAN2-ADA"),
                           (["--sampler", "ddpm", "--steps", "10"], "--sampler ddpm runs all 50 training steps"),
                           (["--steps", "51"], "give 1 to 50"),
                           (["--steps", "0"], "--steps")):
        result = CliRunner().invoke(generate_command, [*base, *flags])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "pool").glob("*/*.png"))
    gan = {Path("g.pt"): Network(Path("g.pt"), "gan", {}, 0)}
    with pytest.raises(click.UsageError, match="--sampler/--steps apply to diffusion snapshots"):
        _check_kind_options(GenerateOptions(networks=(Path("g.pt"),), out=tmp_path, per_class=1, steps=5), gan)
    mixed = {**gan, snapshot: Network(snapshot, "diffusion", {}, 0)}
    with pytest.raises(click.UsageError, match="mixed"):
        _check_kind_options(GenerateOptions(networks=tuple(mixed), out=tmp_path, per_class=1), mixed)


def test_ddpm_pool_and_gan_metrics_read_diffusion_pools_unchanged(trained: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    data, snapshot = trained
    pool = tmp_path / "pool"
    generate_pool(GenerateOptions(networks=(snapshot,), out=pool, per_class=8, sampler="ddpm", batch=8,
                                  device="cpu"))
    assert {row["sampler"] for row in _manifest(pool)} == {"ddpm:50"}
    report = gan_metrics(GanMetricsOptions(real=data / "gan/all.zip", fake=pool, metrics=("swd", "memo"),
                                           device="cpu"))
    for name in ("normal", "scc"):
        measured = report["classes"][name]
        assert np.isfinite(measured["swd"]["mean"]) and measured["swd"]["num_b"] == 8
        assert measured["memorisation"]["num_fake"] == 8 and "fake_to_real_quantiles" in measured["memorisation"]["pixel"]
