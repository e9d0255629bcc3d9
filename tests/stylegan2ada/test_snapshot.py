"""Snapshots load without running code, carry their network arguments, and restore every RNG."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stylegan2ada.networks import build_networks
from stylegan2ada.snapshot import (
    SnapshotError,
    latest_snapshot,
    load_generator,
    load_snapshot,
    preserved_rng,
    rng_state,
    save_snapshot,
    set_rng_state,
    snapshot_meta,
    snapshot_name,
)


def _draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def _tiny_snapshot() -> tuple[dict, torch.nn.Module]:
    G, D = build_networks("auto", 8, 1, channel_base=256, channel_max=32, mapping_layers=1, seed=1)
    # G_ema differs from G so that the test sees which one load_generator returns
    G_ema = build_networks("auto", 8, 1, channel_base=256, channel_max=32, mapping_layers=1, seed=2)[0]
    snapshot = {
        "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
        "G_init_kwargs": G.init_kwargs, "D_init_kwargs": D.init_kwargs,
        "options": {"batch": 4}, "meta": {"kimg": 1.5, "cur_nimg": 1500, "extra_meta": {"class_name": "x"}},
        "state": {"rng": [rng_state()]},
    }
    return snapshot, G_ema


def test_roundtrip_with_weights_only_and_meta(tmp_path: Path) -> None:
    snapshot, G_ema = _tiny_snapshot()
    path = save_snapshot(tmp_path / snapshot_name(1500), snapshot)
    assert path.name == "network-snapshot-000001.500.pt"
    torch.load(path, weights_only=True)  # the contract: plain torch, no custom classes
    loaded = load_snapshot(path)
    assert all(torch.equal(loaded["G"][k], v) for k, v in snapshot["G"].items())
    meta = snapshot_meta(path)
    assert (meta["kimg"], meta["cur_nimg"], meta["extra_meta"]) == (1.5, 1500, {"class_name": "x"})
    assert meta["G_init_kwargs"] == G_ema.init_kwargs and meta["options"] == {"batch": 4}

    generator = load_generator(path)
    assert not generator.training and not any(p.requires_grad for p in generator.parameters())
    z, c = torch.randn([2, generator.z_dim]), torch.zeros([2, 0])
    with torch.no_grad():
        assert torch.equal(generator(z, c, noise_mode="const"), G_ema.eval()(z, c, noise_mode="const"))


def test_a_damaged_snapshot_is_refused_in_our_words(tmp_path: Path) -> None:
    snapshot, _ = _tiny_snapshot()
    bad_size = {**snapshot, "G_init_kwargs": {**snapshot["G_init_kwargs"], "img_resolution": 3}}
    missing = {**snapshot, "G_ema": dict(list(snapshot["G_ema"].items())[1:])}
    no_kwargs = {key: value for key, value in snapshot.items() if key != "G_init_kwargs"}
    for name, damaged in (("size", bad_size), ("missing", missing), ("no_kwargs", no_kwargs)):
        path = save_snapshot(tmp_path / f"{name}.pt", damaged)
        with pytest.raises(SnapshotError, match=f"{name}.pt: its G_ema cannot be rebuilt .*damaged"):
            load_generator(path)


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("code ran",))


def test_refuses_pickled_code_and_foreign_files(tmp_path: Path) -> None:
    torch.save({"format": "stylegan2ada.snapshot", "version": 1, "G": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(SnapshotError, match="evil.pt: not a snapshot: .*refused"):
        load_snapshot(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(SnapshotError, match="not a stylegan2ada snapshot"):
        load_snapshot(tmp_path / "other.pt")
    snapshot, _ = _tiny_snapshot()
    data = save_snapshot(tmp_path / "good.pt", snapshot).read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match="torn.pt"):
        load_snapshot(tmp_path / "torn.pt")
    with pytest.raises(SnapshotError, match="missing.pt: no such file"):
        load_snapshot(tmp_path / "missing.pt")


@pytest.mark.parametrize(("content", "looks_like"), [
    (b"", "an empty file"),
    (b"seed,class\n0,normal\n", "a text file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
    (b"PK\x03\x04" + bytes(64), "a zip archive that torch cannot read"),
    (b"\x00\x01\x02\xfe\xff" * 8, "a binary file starting with bytes 00 01 02 fe"),
])
def test_a_file_that_is_no_snapshot_is_described_in_our_words(tmp_path: Path, content: bytes,
                                                                looks_like: str) -> None:
    path = tmp_path / "net.pt"
    path.write_bytes(content)
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a snapshot: it is {looks_like}") or looks_like in message
    assert "stylegan2ada snapshot" in message and "NVlabs" in message and ".pkl" in message
    assert "zipfile" not in message.lower() and "weights_only" not in message  # never torch's own advice


def test_torch_legacy_file_gets_our_message(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"weights": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(path)
    assert "legacy.pt" in str(caught.value) and "zipfile" not in str(caught.value).lower()


def test_names_keep_fractional_kimg_apart_and_whole_kimg_as_the_reference() -> None:
    names = [snapshot_name(n) for n in (4, 8, 250, 1000, 1500, 80_000)]
    assert names == ["network-snapshot-000000.004.pt", "network-snapshot-000000.008.pt",
                     "network-snapshot-000000.250.pt", "network-snapshot-000001.pt",
                     "network-snapshot-000001.500.pt", "network-snapshot-000080.pt"]


def _meta_only(path: Path, cur_nimg: int) -> None:
    save_snapshot(path, {"G_init_kwargs": {}, "D_init_kwargs": {}, "options": {},
                         "meta": {"kimg": cur_nimg / 1000, "cur_nimg": cur_nimg}})


def test_latest_snapshot_goes_by_recorded_progress_and_reads_old_names(tmp_path: Path) -> None:
    assert latest_snapshot(tmp_path / "absent") is None
    assert latest_snapshot(tmp_path) is None
    _meta_only(tmp_path / "network-snapshot-000001.pt", 1000)  # an old whole-kimg name
    _meta_only(tmp_path / snapshot_name(250), 250)
    assert latest_snapshot(tmp_path) == tmp_path / "network-snapshot-000001.pt"
    _meta_only(tmp_path / snapshot_name(1500), 1500)
    assert latest_snapshot(tmp_path) == tmp_path / "network-snapshot-000001.500.pt"
    _meta_only(tmp_path / "network-snapshot-000900.pt", 100)  # the name says more than the file holds
    (tmp_path / ".network-snapshot-000200.pt.abc.tmp").write_bytes(b"")  # a half-written file
    assert latest_snapshot(tmp_path) == tmp_path / "network-snapshot-000001.500.pt"


def test_rng_state_restores_torch_numpy_and_python(tmp_path: Path) -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = rng_state()
    save_snapshot(tmp_path / "s.pt", {"state": {"rng": [state]}})
    expected = _draws()
    set_rng_state(load_snapshot(tmp_path / "s.pt")["state"]["rng"][0])
    assert _draws() == expected


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_preserved_rng_hides_side_work() -> None:
    _seed_all(0)
    expected = _draws()
    _seed_all(0)
    with preserved_rng():
        assert _draws() == expected  # side work draws from the same streams...
        torch.randn(100)
    assert _draws() == expected  # ...but leaves them where they were
