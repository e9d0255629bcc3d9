"""Untrusted network files: every crafted file of issue 21 (tests/crafted_files.py) ends in one clean
refusal naming the file, its reader stays under 1 GiB, and the isolation turns a hang, a crash or a
memory blow-up of the reader into such a refusal. Legitimate snapshots from elsewhere read back exactly."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from crafted_files import (
    CASES,
    Case,
    case_params,
    glob,
    minimal_pickle,
    networks_pickle,
    official_pickle,
    saved,
    text,
    tiny_snapshot,
)

from stylegan2ada import isolation
from stylegan2ada.network_limits import parameter_bound
from stylegan2ada.networks import build_networks
from stylegan2ada.nvlabs_import import import_network_pickle
from stylegan2ada.nvlabs_pickle import NetworkPickleError, read_network_pickle
from stylegan2ada.snapshot import SnapshotError, load_generator, load_snapshot, save_snapshot, snapshot_meta

GIB = 1 << 30

# entry point -> (function, {suffix: the stages of crafted_files.Case it refuses})
API: dict[str, tuple[Callable[[Path], Any], dict[str, set[str]]]] = {
    "read_network_pickle": (read_network_pickle, {".pkl": {"read"}}),
    "import_network_pickle": (import_network_pickle, {".pkl": {"read", "build"}}),
    "load_snapshot": (load_snapshot, {".pkl": {"read", "build"}, ".pt": {"read", "weights"}}),
    "snapshot_meta": (snapshot_meta, {".pkl": {"read", "build"}, ".pt": {"read", "build", "meta"}}),
    "load_generator": (load_generator, {".pkl": {"read", "build"}, ".pt": {"read", "build", "weights"}}),
}
# the one entry point per case that the fast table uses: the narrowest read that must refuse it
FIRST = {(".pkl", "read"): "read_network_pickle", (".pkl", "build"): "import_network_pickle",
         (".pt", "read"): "load_snapshot", (".pt", "weights"): "load_snapshot", (".pt", "build"): "snapshot_meta",
         (".pt", "meta"): "snapshot_meta"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crafted")


def assert_refused(call: Callable[[Path], Any], path: Path, match: str) -> None:
    """One ValueError of ours that names the file and says `match`; the reader stayed under 1 GiB."""
    isolation.last_usage = None
    with pytest.raises((NetworkPickleError, SnapshotError)) as caught:
        call(path)
    message = str(caught.value)
    assert str(path) in message and "Traceback" not in message
    assert "took longer than" not in message and "crashed" not in message, message  # refused, not stopped
    assert caught.match(match)
    usage = isolation.last_usage
    assert usage is not None and usage.peak_rss_bytes is not None and usage.peak_rss_bytes < GIB, usage


@pytest.mark.parametrize("case", case_params(CASES))
def test_each_crafted_file_is_refused_cleanly(case: Case, folder: Path) -> None:
    path = case.write(folder)
    assert_refused(API[FIRST[(case.suffix, case.stage)]][0], path, case.match)


@pytest.mark.slow
@pytest.mark.parametrize("case", case_params(CASES))
def test_every_reading_api_refuses_what_it_reads(case: Case, folder: Path) -> None:
    """Each API that reads the crafted part refuses it; the others read the file as the network it is."""
    path = case.write(folder)
    for call, stages in API.values():
        if case.suffix not in stages:
            continue
        if case.stage in stages[case.suffix]:
            assert_refused(call, path, case.match)
        else:
            call(path)  # e.g. read_network_pickle reads huge recorded arguments; building from them is refused


def test_a_snapshot_from_elsewhere_reads_back_exactly(tmp_path: Path) -> None:
    """Through the isolated reader: tensors bit for bit, tuples as tuples, integer keys as integers."""
    snapshot = tiny_snapshot()
    G, _ = build_networks("auto", 8, 1, channel_base=256, channel_max=32, mapping_layers=1, seed=1)
    adam = torch.optim.Adam(G.parameters(), betas=(0.0, 0.99))
    G(torch.randn(2, G.z_dim), torch.zeros(2, 0)).square().mean().backward()
    adam.step()
    snapshot["state"] = {"G_opt": adam.state_dict(), "rng": [{"torch": torch.get_rng_state()}]}
    path = tmp_path / "elsewhere.pt"
    path.write_bytes(saved(snapshot))
    loaded = load_snapshot(path)
    assert isolation.last_usage is not None  # it went through the child
    for name in ("G", "D", "G_ema"):
        assert loaded[name].keys() == snapshot[name].keys()
        assert all(torch.equal(loaded[name][key], value) for key, value in snapshot[name].items())
    opt = loaded["state"]["G_opt"]
    assert opt["param_groups"][0]["betas"] == (0.0, 0.99) and set(opt["state"]) == set(range(len(opt["state"])))
    assert torch.equal(opt["state"][3]["exp_avg_sq"], adam.state_dict()["state"][3]["exp_avg_sq"])
    assert torch.equal(loaded["state"]["rng"][0]["torch"], snapshot["state"]["rng"][0]["torch"])
    G_again = build_networks("auto", 8, 1, channel_base=256, channel_max=32, mapping_layers=1, seed=1)[0]
    torch.optim.Adam(G_again.parameters()).load_state_dict(opt)  # what resume does with it
    assert snapshot_meta(path)["extra_meta"] == {"class_name": "x"}


def test_the_parent_never_unpickles_an_untrusted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the parent process unpickled an untrusted file")

    pt, pkl = tmp_path / "elsewhere.pt", tmp_path / "networks.pkl"
    pt.write_bytes(saved(tiny_snapshot()))
    G, D = build_networks("auto", 8, 1, c_dim=2, channel_base=256, channel_max=32, mapping_layers=1, seed=3)
    pkl.write_bytes(official_pickle(G, D))
    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (pickle, "_Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    assert load_generator(pt).z_dim == 512
    imported = import_network_pickle(pkl)  # and what comes back is bit for bit what was written
    for mine, theirs in ((imported.G_ema, G), (imported.D, D)):
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        assert all(torch.equal(value, theirs.state_dict()[key]) for key, value in mine.state_dict().items())


def test_trust_in_a_file_this_process_wrote_ends_when_it_changes(tmp_path: Path) -> None:
    path = save_snapshot(tmp_path / "s.pt", {key: value for key, value in tiny_snapshot().items()
                                             if key not in ("format", "version")})
    assert load_snapshot(path)["meta"]["cur_nimg"] == 0  # written here: read in this process
    crafted = next(case for case in CASES if case.name == "deep_key" and case.suffix == ".pt")
    path.write_bytes(crafted.build())
    assert_refused(load_snapshot, path, crafted.match)


def _limits(**changes: Any) -> Callable[[int], isolation.Limits]:
    return lambda nbytes: isolation.Limits(**{"memory": 1 << 30, "cpu_seconds": 30, "wall_seconds": 30.0,
                                              **changes})


@pytest.mark.parametrize(("changes", "command", "match"), [
    ({"wall_seconds": 0.01}, None, r"reading it took longer than 0 s, so it was stopped"),
    ({}, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", r"crashed the isolated reader \(SIGSEGV\)"),
    ({}, "import resource, signal; signal.pause()", r"took longer than 0 s"),
    ({"memory": 48 << 20}, None, r"reading it needs more than the 48 MiB allowed"),
], ids=["wall-limit", "segfault", "hang", "memory-limit"])
def test_a_reader_that_hangs_crashes_or_runs_out_of_memory_is_our_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], command: str | None,
        match: str) -> None:
    """The child's limits and death become one message naming the file (a stand-in child where needed)."""
    path = tmp_path / "networks.pkl"
    blob = b"B" + (48 << 20).to_bytes(4, "little") + bytes(48 << 20)  # 48 MB of bytes: more than the memory limit
    path.write_bytes(minimal_pickle(blob) if "memory" in changes else networks_pickle())
    monkeypatch.setattr(isolation.Limits, "for_bytes", staticmethod(_limits(
        **changes, **({"wall_seconds": 0.5} if command and "pause" in command else {}))))
    if command is not None:
        monkeypatch.setattr(isolation, "child_command", lambda: [sys.executable, "-c", command])
    with pytest.raises(NetworkPickleError, match=match) as caught:
        read_network_pickle(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("cfg", "resolution", "channels", "c_dim"), [
    ("auto", 8, 1, 0), ("auto", 64, 3, 2), ("auto", 256, 1, 0), ("paper256", 256, 3, 5), ("stylegan2", 32, 1, 3),
])
def test_the_parameter_bound_holds_before_anything_is_built(cfg: str, resolution: int, channels: int,
                                                           c_dim: int) -> None:
    for network, class_name in zip(build_networks(cfg, resolution, channels, c_dim), ("Generator", "Discriminator")):
        count = sum(param.numel() for param in network.parameters())
        assert count <= parameter_bound(class_name, network.init_kwargs) <= 1.15 * count



def test_numpy_scalars_read_as_numpy_writes_them(tmp_path: Path) -> None:
    """The child decodes numpy scalars without numpy: each must equal numpy's own value, bit for bit."""
    import numpy as np

    values = {"f4": np.float32(0.1), "f8": np.float64(-2.5e-300), "f2": np.float16(0.3), "i8": np.int64(-3),
              "u1": np.uint8(200), "b1": np.bool_(True)}
    path = tmp_path / "scalars.pkl"
    path.write_bytes(pickle.dumps({"training_set_kwargs": values}, protocol=4))
    read = read_network_pickle(path).training_set_kwargs
    assert read == {key: value.item() for key, value in values.items()}
    assert all(type(read[key]) is type(value.item()) for key, value in values.items())
    state = b"(K\x03" + text(">") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # a big-endian int32
    dtype = glob("numpy", "dtype") + b"(" + text("i4") + b"\x89\x88tR" + state + b"b"
    scalar = glob("numpy._core.multiarray", "scalar") + b"(" + dtype + b"C\x04\x00\x00\x01\x07tR"
    path.write_bytes(minimal_pickle(b"}" + text("big") + scalar + b"s"))
    assert read_network_pickle(path).training_set_kwargs == {"big": 263}


def test_when_a_child_reading_several_files_dies_each_is_read_alone(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """latest_snapshot reads every snapshot's metadata in one child: a crash there must name the culprit."""
    good, bad = tmp_path / "good.pt", tmp_path / "crash.pt"
    good.write_bytes(saved(tiny_snapshot()))
    bad.write_bytes(good.read_bytes())
    stand_in = ("import json, os, signal, sys; import stylegan2ada.isolation as m; "
                "r = json.loads(sys.stdin.buffer.read()); "
                "any('crash' in p for p in r['paths']) and os.kill(os.getpid(), signal.SIGSEGV); m.serve(r)")
    root = str(Path(isolation.__file__).resolve().parents[1])
    monkeypatch.setattr(isolation, "child_command", lambda: [sys.executable, "-I", "-c",
                                                              f"import sys; sys.path.insert(0, {root!r}); {stand_in}"])
    results = isolation.read_isolated("torch-zip", [good, bad], keys=("meta",))
    assert results[0].error is None and results[0].tree["meta"]["cur_nimg"] == 0
    assert results[1].error is not None and "crashed the isolated reader (SIGSEGV)" in results[1].error
