"""Transfer learning between shapes: what each adaptation guarantees about the new networks' outputs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stylegan2ada.dataset import write_dataset
from stylegan2ada.networks import build_networks
from stylegan2ada.snapshot import load_snapshot
from stylegan2ada.training import TrainOptions, train
from stylegan2ada.transfer import LUMA, build_target, format_table, transfer_table, transfer_weights

TINY = {"channel_base": 1024, "channel_max": 64, "mapping_layers": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def source(resolution: int = 32, channels: int = 3, c_dim: int = 0) -> dict[str, Any]:
    """A snapshot-like dict of a tiny pair whose every tensor (biases, noise strengths too) is non-zero."""
    G, D = build_networks("auto", resolution, channels, c_dim, seed=1, **TINY)
    generator = torch.Generator().manual_seed(2)
    for module in (G, D):
        for param in module.parameters():
            param.data += 0.2 * torch.randn(param.shape, generator=generator)
    return {
        "G": G.state_dict(),
        "D": D.state_dict(),
        "G_ema": G.state_dict(),
        "G_init_kwargs": G.init_kwargs,
        "D_init_kwargs": D.init_kwargs,
    }


def rebuilt(snapshot: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    G, D = build_networks(
        "auto",
        snapshot["G_init_kwargs"]["img_resolution"],
        snapshot["G_init_kwargs"]["img_channels"],
        snapshot["G_init_kwargs"]["c_dim"],
        **TINY,
    )
    G.load_state_dict(snapshot["G"])
    D.load_state_dict(snapshot["D"])
    return G.eval(), D.eval()


def transferred(snapshot: dict[str, Any], resolution: int, channels: int, c_dim: int = 0):
    torch.manual_seed(3)
    G, D = build_target(snapshot, resolution, channels, c_dim)
    G_ema = copy.deepcopy(G)
    rows = transfer_weights(snapshot, G, D, G_ema)
    return G.eval(), D.eval(), G_ema.eval(), {(row.network, row.block): row for row in rows}


def luma(images: torch.Tensor) -> torch.Tensor:
    return (images * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


@torch.no_grad()
def test_rgb_to_grey_gives_the_luma_of_g_and_d_of_repeated_channels() -> None:
    rgb = source(channels=3)
    G_rgb, D_rgb = rebuilt(rgb)
    G, D, G_ema, rows = transferred(rgb, 32, 1)
    z = torch.randn([4, 512], generator=torch.Generator().manual_seed(0))
    expected = luma(G_rgb(z, None, noise_mode="const"))
    assert expected.std() > 0.1
    for generator in (G, G_ema):
        assert (generator(z, None, noise_mode="const") - expected).abs().max() < 1e-5
    x = torch.randn([4, 1, 32, 32], generator=torch.Generator().manual_seed(1))
    assert (D(x, None) - D_rgb(x.repeat(1, 3, 1, 1), None)).abs().max() < 1e-5
    assert rows[("G", "synthesis.b32")].status == "adapted" and "torgb" in rows[("G", "synthesis.b32")].detail
    assert rows[("D", "b32")].status == "adapted" and "fromrgb" in rows[("D", "b32")].detail
    assert rows[("G", "mapping")].status == rows[("D", "b16")].status == "transferred"


@torch.no_grad()
def test_grey_to_rgb_writes_equal_channels_and_d_sees_the_luma() -> None:
    grey = source(channels=1)
    G_grey, D_grey = rebuilt(grey)
    G, D, _, _ = transferred(grey, 32, 3)
    z = torch.randn([4, 512], generator=torch.Generator().manual_seed(0))
    images = G(z, None, noise_mode="const")
    reference = G_grey(z, None, noise_mode="const")
    for channel in range(3):
        assert (images[:, channel : channel + 1] - reference).abs().max() < 1e-5
    x = torch.randn([4, 3, 32, 32], generator=torch.Generator().manual_seed(1))
    assert (D(x, None) - D_grey(luma(x), None)).abs().max() < 1e-5


@torch.no_grad()
def test_another_resolution_transfers_the_shared_blocks_and_starts_the_others_fresh() -> None:
    small = source(resolution=32, channels=1)
    G, D, _, rows = transferred(small, 64, 1)
    for name, tensor in small["G"].items():
        assert torch.equal(G.state_dict()[name], tensor), name  # every block up to 32 px as it was
    for name in ("b32.conv0.weight", "b32.skip.weight", "b16.conv1.weight", "b4.fc.weight", "b4.out.bias"):
        assert torch.equal(D.state_dict()[name], small["D"][name]), name
    assert rows[("G", "synthesis.b64")].status == rows[("D", "b64")].status == "initialised"
    assert rows[("G", "synthesis.b32")].status == "transferred"
    assert rows[("D", "b32")].status == "dropped" and "fromrgb" in rows[("D", "b32")].detail  # moved to b64
    _, _, _, down = transferred(small, 16, 1)
    assert down[("G", "synthesis.b32")].status == down[("D", "b32")].status == "dropped"
    assert down[("D", "b16")].status == "initialised" and "fromrgb" in down[("D", "b16")].detail
    table = format_table(list(rows.values()))
    assert "G synthesis.b64" in table and "initialised" in table and table.strip().endswith("1 dropped")


@torch.no_grad()
def test_unconditional_to_conditional_starts_as_the_source_for_every_label() -> None:
    plain = source(channels=1)
    G_plain, _ = rebuilt(plain)
    G, D, _, rows = transferred(plain, 32, 1, c_dim=3)
    z = torch.randn([3, 512], generator=torch.Generator().manual_seed(0))
    expected = G_plain(z, None, noise_mode="const")
    for label in range(3):
        c = torch.nn.functional.one_hot(torch.full([3], label), 3).float()
        assert (G(z, c, noise_mode="const") - expected).abs().max() < 1e-5
    assert (
        "embed: initialised" in rows[("G", "mapping")].detail
        and "fc0: adapted" in rows[("G", "mapping")].detail
    )
    assert rows[("D", "mapping")].status == "initialised" and "out" in rows[("D", "b4")].detail
    assert D(torch.zeros([3, 1, 32, 32]), torch.eye(3)).shape == (3, 1)

    conditional = source(channels=1, c_dim=3)
    G_back, D_back = build_target(conditional, 32, 1, 0)
    back = [
        (row.network, row.block, row.status, row.detail)
        for row in transfer_weights(conditional, G_back, D_back, copy.deepcopy(G_back))
    ]
    assert ("G", "mapping", "adapted", "fc0: adapted (label columns dropped)") in back
    assert ("G", "mapping", "dropped", "embed: not in the new network") in back
    assert ("D", "mapping", "dropped", "not in the new network") in back
    assert G_back(z, None, noise_mode="const").shape == (3, 1, 32, 32)


def test_unsupported_channel_change_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot transfer between 3 and 2 image channels"):
        build_target(source(channels=3), 32, 2, 0)


def test_training_from_an_rgb_network_on_grey_data_freezes_the_adapted_d(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb_data = write_dataset(
        tmp_path / "rgb.zip", [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    )
    grey_data = write_dataset(
        tmp_path / "grey.zip", [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(8)]
    )
    common = {
        **TINY,
        "batch": 4,
        "kimg": 0.004,
        "snap": 0.004,
        "tick_kimg": 0.004,
        "workers": 0,
        "image_snapshots": False,
    }
    rgb = train(TrainOptions(data=str(rgb_data), run_dir=str(tmp_path / "rgb"), aug="noaug", **common))
    table = transfer_table(rgb, 32, 1, 0, freeze_layers=2)
    assert [row.status for row in table if row.block == "b32"] == ["adapted"]
    common.pop("channel_base"), common.pop("channel_max"), common.pop("mapping_layers")
    grey = train(
        TrainOptions(
            data=str(grey_data), run_dir=str(tmp_path / "grey"), resume_from=str(rgb), freezed=2, **common
        )
    )
    source_D, after = load_snapshot(rgb)["D"], load_snapshot(grey)
    assert after["G_init_kwargs"]["img_channels"] == 1 and after["options"]["ada_kimg"] == 100
    adapted = source_D["b32.fromrgb.weight"].sum(dim=1, keepdim=True) / 3**0.5  # fan-in 3 -> 1
    assert torch.allclose(
        after["D"]["b32.fromrgb.weight"], adapted, atol=1e-6
    )  # frozen: still the adapted value
    assert torch.equal(after["D"]["b32.conv0.weight"], source_D["b32.conv0.weight"])
    assert not torch.equal(after["D"]["b16.conv0.weight"], source_D["b16.conv0.weight"])  # trained
