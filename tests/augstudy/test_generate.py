"""`augstudy generate`: seed-exact pools, grey PNGs, the manifest, skipping on re-run, conditional classes."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from augstudy.gan.generate import (
    MANIFEST_FIELDS,
    GenerateOptions,
    generate_command,
    generate_pool,
    parse_seeds,
)
from stylegan2ada.io import sha256_file
from stylegan2ada.networks import build_networks
from stylegan2ada.snapshot import save_snapshot

TINY = {"channel_base": 1024, "channel_max": 64, "mapping_layers": 2}


def make_snapshot(
    path: Path,
    *,
    channels: int = 1,
    class_names: list[str] | None = None,
    extra_meta: dict | None = None,
    seed: int = 0,
) -> Path:
    """A 32 px snapshot in the stylegan2ada layout with random weights and noise that visibly matters."""
    torch.manual_seed(seed)
    c_dim = len(class_names) if class_names else 0
    G, D = build_networks("auto", 32, channels, c_dim, **TINY)
    with torch.no_grad():
        for name, parameter in G.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(0.5)
    meta = extra_meta if extra_meta is not None else {"class_names": class_names} if class_names else {}
    return save_snapshot(
        path,
        {
            "G": G.state_dict(),
            "D": D.state_dict(),
            "G_ema": G.state_dict(),
            "G_init_kwargs": G.init_kwargs,
            "D_init_kwargs": D.init_kwargs,
            "options": {},
            "meta": {"kimg": 0.0, "cur_nimg": 0, "batch_idx": 0, "extra_meta": meta},
        },
    )


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("snapshots")
    return {
        "normal": make_snapshot(root / "normal.pt", extra_meta={"class_name": "normal"}, seed=1),
        "scc": make_snapshot(root / "scc.pt", extra_meta={"class_name": "scc"}, seed=2),
        "rgb": make_snapshot(root / "rgb.pt", channels=3, extra_meta={"class_name": "colour"}, seed=3),
        "nameless": make_snapshot(root / "nameless.pt", extra_meta={}, seed=4),
        "conditional": make_snapshot(root / "conditional.pt", class_names=["normal", "scc"], seed=5),
    }


def manifest(pool: Path) -> list[dict[str, str]]:
    with open(pool / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pool_bytes(pool: Path) -> dict[str, bytes]:
    return {path.relative_to(pool).as_posix(): path.read_bytes() for path in sorted(pool.glob("*/*.png"))}


def test_parse_seeds_ranges_and_lists() -> None:
    assert parse_seeds("0-3,7, 10-11") == (0, 1, 2, 3, 7, 10, 11)
    assert parse_seeds("5,5,4") == (5, 4)
    for bad in ("3-1", "a", "", "-2"):
        with pytest.raises(click.BadParameter):
            parse_seeds(bad)


def pool_pixels(pool: Path) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)
        for name, data in pool_bytes(pool).items()
    }


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_image_depends_on_seed_only_not_batch(
    tmp_path: Path, snapshots: dict[str, Path], noise_mode: str
) -> None:
    """z and noise come from each seed's own RNG, so batch 1 and batch 7 make the same images. Pixels may
    differ by one grey level: batched float32 kernels (matmul, grouped conv) round differently from
    single-image ones, so identical bytes cannot be promised; a batch-dependent z or noise would
    change every image completely (noise strength is 0.5 here)."""
    pixels = {}
    for batch in (1, 7):
        generate_pool(
            GenerateOptions(
                networks=(snapshots["normal"],),
                out=tmp_path / f"b{batch}",
                seeds=tuple(range(9)),
                batch=batch,
                noise_mode=noise_mode,
            )
        )
        pixels[batch] = pool_pixels(tmp_path / f"b{batch}")
    generate_pool(
        GenerateOptions(
            networks=(snapshots["normal"],), out=tmp_path / "alone", seeds=(3,), noise_mode=noise_mode
        )
    )
    alone = pool_pixels(tmp_path / "alone")["normal/seed00003.png"]
    assert sorted(pixels[1]) == sorted(pixels[7]) == [f"normal/seed{seed:05d}.png" for seed in range(9)]
    pairs = [(pixels[1][name], pixels[7][name]) for name in pixels[1]] + [
        (alone, pixels[7]["normal/seed00003.png"])
    ]
    for single, batched in pairs:
        assert np.abs(single - batched).max() <= 1
        assert np.mean(single != batched) < 0.01
    seed0, seed1 = pixels[7]["normal/seed00000.png"], pixels[7]["normal/seed00001.png"]
    assert np.abs(seed0 - seed1).mean() > 5  # different seeds: different images


def test_noise_modes_differ_and_random_noise_is_reproducible(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    images = {}
    for mode in ("const", "random", "none", "random-again"):
        generate_pool(
            GenerateOptions(
                networks=(snapshots["normal"],),
                out=tmp_path / mode,
                seeds=(0, 1),
                noise_mode=mode.split("-")[0],
            )
        )
        images[mode] = pool_bytes(tmp_path / mode)
    assert images["random"] == images["random-again"]
    assert len({data for pool in images.values() for data in pool.values()}) == 6


def test_one_channel_networks_write_grey_pngs_and_size_resamples(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    generate_pool(
        GenerateOptions(networks=(snapshots["normal"], snapshots["rgb"]), out=tmp_path, per_class=2, size=48)
    )
    with (
        Image.open(tmp_path / "normal/seed00001.png") as grey,
        Image.open(tmp_path / "colour/seed00000.png") as rgb,
    ):
        assert (grey.mode, grey.size) == ("L", (48, 48))
        assert (rgb.mode, rgb.size) == ("RGB", (48, 48))
        assert np.asarray(grey).std() > 0
    with Image.open(tmp_path / "preview.png") as preview:
        assert preview.mode == "RGB" and preview.size == (2 * 48, 2 * 48)


def test_manifest_records_every_image_and_rerun_skips_or_repairs(
    tmp_path: Path, snapshots: dict[str, Path]
) -> None:
    options = GenerateOptions(
        networks=(snapshots["normal"], snapshots["scc"]), out=tmp_path, per_class=3, truncation=0.7, batch=2
    )
    assert generate_pool(options) == {"generated": 6, "skipped": 0}
    rows = manifest(tmp_path)
    assert tuple(rows[0]) == MANIFEST_FIELDS
    assert sorted((row["class"], int(row["seed"])) for row in rows) == [
        (c, s) for c in ("normal", "scc") for s in range(3)
    ]
    for row in rows:
        assert sha256_file(tmp_path / row["file"]) == row["sha256"]
        assert row["snapshot_sha256"] == sha256_file(snapshots[row["class"]])
        assert (float(row["truncation"]), row["noise_mode"]) == (0.7, "const")
    assert (tmp_path / "generate_options.json").is_file() and (tmp_path / "preview.png").is_file()

    before = pool_bytes(tmp_path)
    assert generate_pool(options) == {"generated": 0, "skipped": 6}
    (tmp_path / "normal/seed00001.png").write_bytes(b"damaged")
    (tmp_path / "scc/seed00002.png").unlink()
    assert generate_pool(options) == {"generated": 2, "skipped": 4}
    assert pool_bytes(tmp_path) == before
    # other settings make other images: nothing is skipped
    assert (
        generate_pool(GenerateOptions(networks=options.networks, out=tmp_path, per_class=3))["generated"] == 6
    )
    assert pool_bytes(tmp_path) != before


def test_conditional_network_generates_chosen_classes(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    generate_pool(GenerateOptions(networks=(snapshots["conditional"],), out=tmp_path / "all", seeds=(0, 1)))
    both = pool_bytes(tmp_path / "all")
    assert sorted(both) == [
        "normal/seed00000.png",
        "normal/seed00001.png",
        "scc/seed00000.png",
        "scc/seed00001.png",
    ]
    assert both["normal/seed00000.png"] != both["scc/seed00000.png"]  # the label changes the image

    generate_pool(
        GenerateOptions(
            networks=(snapshots["conditional"],),
            out=tmp_path / "scc",
            seeds=(0, 1),
            classes=("scc",),
            batch=1,
        )
    )
    assert pool_bytes(tmp_path / "scc") == {
        name: data for name, data in both.items() if name.startswith("scc/")
    }
    with pytest.raises(click.UsageError, match="not a class"):
        generate_pool(
            GenerateOptions(
                networks=(snapshots["conditional"],),
                out=tmp_path / "x",
                seeds=(0,),
                classes=("adenocarcinoma",),
            )
        )


def test_class_of_unconditional_snapshots(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    with pytest.raises(click.UsageError, match="class_name"):
        generate_pool(GenerateOptions(networks=(snapshots["nameless"],), out=tmp_path / "a", seeds=(0,)))
    generate_pool(
        GenerateOptions(
            networks=(snapshots["nameless"],), out=tmp_path / "b", seeds=(0,), classes=("renamed",)
        )
    )
    assert (tmp_path / "b/renamed/seed00000.png").is_file()
    with pytest.raises(click.UsageError, match="both"):
        generate_pool(
            GenerateOptions(
                networks=(snapshots["normal"], snapshots["normal"]), out=tmp_path / "c", seeds=(0,)
            )
        )
    with pytest.raises(click.UsageError, match="exactly one"):
        generate_pool(
            GenerateOptions(networks=(snapshots["normal"],), out=tmp_path / "d", seeds=(0,), per_class=2)
        )


def test_cli_parses_seed_ranges(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    result = CliRunner().invoke(
        generate_command,
        [
            "--network",
            str(snapshots["scc"]),
            "--out",
            str(tmp_path),
            "--seeds",
            "2-3,7",
            "--noise-mode",
            "none",
            "--batch",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(pool_bytes(tmp_path)) == ["scc/seed00002.png", "scc/seed00003.png", "scc/seed00007.png"]
    assert {row["noise_mode"] for row in manifest(tmp_path)} == {"none"}


def test_a_file_that_is_not_a_snapshot_is_refused_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "network-snapshot-000000.pt"
    torch.save({"weights": torch.zeros(2)}, fake)
    with pytest.raises(click.ClickException, match="network-snapshot-000000.pt"):
        generate_pool(GenerateOptions(networks=(fake,), out=tmp_path / "pool", seeds=(0,)))
    assert not (tmp_path / "pool").exists()


@pytest.mark.gpu
def test_cuda_pool_matches_the_cpu_pool(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    """Same seeds, same images on either device, up to float rounding (cuDNN may use TF32)."""
    for device in ("cpu", "cuda"):
        generate_pool(
            GenerateOptions(
                networks=(snapshots["conditional"],),
                out=tmp_path / device,
                seeds=(0, 1, 2),
                noise_mode="random",
                batch=2,
                device=device,
            )
        )
    cpu, cuda = pool_pixels(tmp_path / "cpu"), pool_pixels(tmp_path / "cuda")
    assert sorted(cpu) == sorted(cuda)
    for name in cpu:
        assert np.abs(cpu[name] - cuda[name]).mean() < 2


def test_a_killed_run_redoes_only_the_images_in_flight(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    """A kill after some images were renamed into place but before the manifest recorded them: the
    re-run trusts those finished files by their completion marker, deletes the half-written temp
    file of the image in flight, and makes only the images that were never finished."""
    options = GenerateOptions(networks=(snapshots["normal"],), out=tmp_path, per_class=4, batch=2)
    assert generate_pool(options) == {"generated": 4, "skipped": 0}
    finished = pool_bytes(tmp_path)
    (tmp_path / "manifest.csv").unlink()  # the kill came before the first manifest write
    (tmp_path / "normal/seed00003.png").unlink()  # this one was in flight ...
    stale = tmp_path / "normal/.seed00003.png.k1ll3d.tmp"  # ... and left its temp file
    stale.write_bytes(b"half a png")
    assert generate_pool(options) == {"generated": 1, "skipped": 3}
    assert not stale.exists()
    assert pool_bytes(tmp_path) == finished
    assert sorted(row["file"] for row in manifest(tmp_path)) == [f"normal/seed0000{i}.png" for i in range(4)]


def test_a_finished_file_made_with_other_settings_is_not_trusted(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    generate_pool(GenerateOptions(networks=(snapshots["normal"],), out=tmp_path, per_class=2, truncation=0.5))
    (tmp_path / "manifest.csv").unlink()
    counts = generate_pool(GenerateOptions(networks=(snapshots["normal"],), out=tmp_path, per_class=2))
    assert counts == {"generated": 2, "skipped": 0}


def test_a_marked_file_cut_short_since_is_made_again(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    options = GenerateOptions(networks=(snapshots["normal"],), out=tmp_path, per_class=2)
    generate_pool(options)
    (tmp_path / "manifest.csv").unlink()
    damaged = tmp_path / "normal/seed00001.png"
    damaged.write_bytes(damaged.read_bytes()[:-40])  # the marker chunk survives, the pixels do not
    assert generate_pool(options) == {"generated": 1, "skipped": 1}


def test_a_snapshot_with_damaged_weights_gets_our_message(tmp_path: Path, snapshots: dict[str, Path]) -> None:
    damaged = torch.load(snapshots["scc"], weights_only=True)
    damaged["G_ema"].pop("synthesis.b4.const")
    save_snapshot(tmp_path / "damaged.pt", damaged)
    result = CliRunner().invoke(
        generate_command, ["--network", str(tmp_path / "damaged.pt"), "--out", str(tmp_path / "pool"), "--seeds", "0"]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "damaged.pt: its G_ema cannot be rebuilt" in result.output and "synthesis.b4.const" in result.output
    assert "Traceback" not in result.output
