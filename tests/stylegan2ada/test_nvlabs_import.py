"""Official NVlabs pickles (../shared/fixtures/nvlabs): imported without running their code, and
our networks reproduce the official code's own outputs for them. Skipped where the fixtures are absent."""

from __future__ import annotations

import json
import pickle
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from crafted_files import Reduced, official_globals, persistent

from stylegan2ada.nvlabs_import import import_network_pickle, imported_snapshot
from stylegan2ada.nvlabs_pickle import NetworkPickleError, read_network_pickle
from stylegan2ada.snapshot import SnapshotError, load_generator, save_snapshot, snapshot_meta

FIXTURES = Path(__file__).resolve().parents[3] / "shared/fixtures/nvlabs"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "fixtures.json").is_file(), reason=f"NVlabs fixtures not found at {FIXTURES}"
)
NAMES = ["nvlabs-rgb32", "nvlabs-cond-grey64"]


def _reference(name: str) -> dict[str, Any]:
    listed = {
        entry["name"]: entry for entry in json.loads((FIXTURES / "fixtures.json").read_text())["networks"]
    }
    return {**listed[name], **dict(np.load(FIXTURES / f"{name}.npz"))}


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_imported_networks_reproduce_the_official_outputs(name: str) -> None:
    ref = _reference(name)
    net = import_network_pickle(FIXTURES / f"{name}.pkl")
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]).float() if ref["c_dim"] else None
    with torch.no_grad():
        for psi, key in ((1, "img_psi1"), (0.7, "img_psi07")):
            image = net.G_ema(z, c, truncation_psi=psi, noise_mode="const", force_fp32=True)
            assert (image - torch.from_numpy(ref[key])).abs().max().item() < 1e-4, key
        ws = net.G_ema.mapping(z, c, truncation_psi=0.7)
        assert (ws - torch.from_numpy(ref["ws_psi07"])).abs().max().item() < 1e-4
        logits = net.D(torch.from_numpy(ref["img_psi1"]), c)
        assert (logits - torch.from_numpy(ref["d_logits"])).abs().max().item() < 1e-4
    assert torch.equal(net.G_ema.mapping.w_avg, torch.from_numpy(ref["w_avg"]))
    assert sum(p.numel() for p in net.G.parameters()) == ref["params"]["G"]
    assert sum(p.numel() for p in net.D.parameters()) == ref["params"]["D"]
    assert net.augment_p == pytest.approx(float(ref["augment_p"]))
    synthesis = net.G.init_kwargs["synthesis_kwargs"]
    assert (synthesis["num_fp16_res"], synthesis["conv_clamp"]) == (ref["num_fp16_res"], ref["conv_clamp"])


@needs_fixtures
def test_converted_snapshot_generates_the_same_images(tmp_path: Path) -> None:
    ref = _reference("nvlabs-cond-grey64")
    pkl = FIXTURES / "nvlabs-cond-grey64.pkl"
    saved = save_snapshot(tmp_path / "imported.pt", imported_snapshot(import_network_pickle(pkl), "0" * 64))
    c = torch.from_numpy(ref["c"]).float()
    for source in (saved, pkl):  # our snapshot, and the .pkl read directly through the snapshot readers
        G = load_generator(source)
        with torch.no_grad():
            image = G(torch.from_numpy(ref["z"]), c, noise_mode="const")
        assert (image - torch.from_numpy(ref["img_psi1"])).abs().max().item() < 1e-4
        assert snapshot_meta(source)["G_init_kwargs"]["c_dim"] == 2
    torch.load(saved, weights_only=True)  # what we write is plain tensors and data


@needs_fixtures
def test_malicious_pickle_is_refused_and_its_code_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    monkeypatch.setenv("NVLABS_FIXTURE_CANARY", str(canary))
    modules_before = set(sys.modules)
    with pytest.raises(NetworkPickleError, match="refused a persistent object of class 'Payload'"):
        import_network_pickle(FIXTURES / "malicious.pkl")
    with pytest.raises(SnapshotError, match="malicious.pkl"):
        load_generator(FIXTURES / "malicious.pkl")
    assert not canary.exists()
    assert not [name for name in set(sys.modules) - modules_before if name.startswith("_imported_module_")]


# -- hand-made pickles in the official layout (helpers shared with tests/crafted_files.py) ---------
def _write(path: Path, obj: Any) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_tensors_stored_another_way_give_a_clear_error(tmp_path: Path) -> None:
    with official_globals() as module:
        sparse = _write(
            tmp_path / "sparse.pkl",
            {
                "G": persistent(
                    module,
                    "Generator",
                    {
                        "_parameters": {
                            "w": Reduced(torch._utils._rebuild_sparse_tensor, (torch.sparse_coo, ()))
                        }
                    },
                )
            },
        )
        garbage = _write(
            tmp_path / "garbage.pkl",
            {
                "G": persistent(
                    module,
                    "Generator",
                    {"_buffers": {"w": Reduced(torch.storage._load_from_bytes, (b"not torch bytes",))}},
                )
            },
        )
        code_in_storage = _write(
            tmp_path / "nested.pkl",
            {
                "G": persistent(
                    module,
                    "Generator",
                    {
                        "_buffers": {
                            "w": Reduced(
                                torch.storage._load_from_bytes,
                                (pickle.dumps(Reduced(print, ("x",)), protocol=2),),
                            )
                        }
                    },
                )
            },
        )
        persistent_id = tmp_path / "saved.pkl"
        torch.save({"G": torch.zeros(2)}, persistent_id, _use_new_zipfile_serialization=False)
    with pytest.raises(
        NetworkPickleError,
        match=r"sparse.pkl: cannot read its tensors: .*_rebuild_sparse_tensor.* does not know",
    ):
        read_network_pickle(sparse)
    for path in (garbage, code_in_storage):
        with pytest.raises(NetworkPickleError, match=f"{path.name}: cannot read its tensors: a tensor storage"):
            read_network_pickle(path)
    with pytest.raises(NetworkPickleError, match="saved.pkl: .*legacy"):
        read_network_pickle(persistent_id)


def test_a_tensor_larger_than_its_storage_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is what pickled tensors hold
        storage = torch.zeros(4).storage()
    with official_globals() as module:
        path = _write(
            tmp_path / "big.pkl",
            {
                "G": persistent(
                    module,
                    "Generator",
                    {
                        "_buffers": {
                            "w": Reduced(
                                torch._utils._rebuild_tensor_v2, (storage, 0, (1000,), (1,), False, {})
                            )
                        }
                    },
                )
            },
        )
    with pytest.raises(
        NetworkPickleError, match="big.pkl: cannot read its tensors: a tensor does not fit its storage"
    ):
        read_network_pickle(path)


def test_any_other_global_is_refused_by_name(tmp_path: Path) -> None:
    import os

    path = _write(tmp_path / "system.pkl", {"G": Reduced(os.system, ("echo ran",))})
    with pytest.raises(NetworkPickleError, match=rf"system.pkl: refused {os.system.__module__}.system"):
        read_network_pickle(path)
    with official_globals() as module:
        wrong = _write(tmp_path / "wrong.pkl", {"G": persistent(module, "Discriminator", {}), "D": None})
    with pytest.raises(
        NetworkPickleError, match="wrong.pkl: its 'G' entry is Discriminator, not an official Generator"
    ):
        import_network_pickle(wrong)


def test_tensorflow_pickles_are_refused_with_what_to_do(tmp_path: Path) -> None:
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    assert not any(name in sys.modules for name in names)
    modules = {name: types.ModuleType(name) for name in names}

    class Network:
        def __reduce__(self) -> tuple[Any, ...]:
            return Network, ()

    Network.__module__, Network.__qualname__ = names[-1], "Network"
    modules[names[-1]].Network = Network  # type: ignore[attr-defined]
    sys.modules.update(modules)
    try:
        path = _write(tmp_path / "stylegan2-ffhq-config-f.pkl", (Network(), Network(), Network()))
    finally:
        for name in names:
            sys.modules.pop(name)
    with pytest.raises(
        NetworkPickleError, match="refused dnnlib.tflib.network.Network: .*TensorFlow .*legacy.py"
    ):
        read_network_pickle(path)


def test_crafted_init_arguments_give_our_error_not_a_traceback(tmp_path: Path) -> None:
    kwargs = {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 8, "img_channels": 1}
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with official_globals() as module:

        def networks(g_kwargs: dict[str, Any], g_state: dict[str, Any] | None = None) -> dict[str, Any]:
            g = persistent(module, "Generator", {"_init_kwargs": g_kwargs, **(g_state or {})})
            d = persistent(
                module,
                "Discriminator",
                {"_init_kwargs": {"c_dim": 0, "img_resolution": 8, "img_channels": 1}},
            )
            return {"G": g, "D": d, "G_ema": g}

        cases = {
            "cyclic": ({"G": persistent(module, "Generator", {"_init_kwargs": cyclic})}, "nested more than"),
            "text": (networks({**kwargs, "z_dim": "4"}), "G cannot be built from its recorded arguments"),
            "resolution": (networks({**kwargs, "img_resolution": 3}), "G cannot be built from its recorded"),
            "not_a_tensor": (networks(kwargs, {"_parameters": {"w": "abc"}}), "w holds a str where a tensor was"),
            "block_kwargs": (
                {
                    **networks(kwargs),
                    "D": persistent(
                        module,
                        "Discriminator",
                        {
                            "_init_kwargs": {
                                "c_dim": 0,
                                "img_resolution": 8,
                                "img_channels": 1,
                                "block_kwargs": {"freeze_layers": [1]},
                            }
                        },
                    ),
                },
                "recorded network arguments are malformed",
            ),
            "mapping_list": (
                networks({**kwargs, "mapping_kwargs": [1]}),
                "recorded network arguments are malformed",
            ),
        }
        # A module made its own sub-module: its _modules dict is filled after the module is built.
        modules: dict[str, Any] = {}
        itself = persistent(module, "Generator", {"_init_kwargs": kwargs, "_modules": modules})
        modules["x"] = itself
        cases["own_submodule"] = (
            {"_": modules, "G": itself, "D": networks(kwargs)["D"], "G_ema": itself},
            "nested more than",
        )
        cases["parameters_int"] = (networks(kwargs, {"_parameters": 5}), "_parameters is not a dict")
        cyclic_args: list[Any] = [4, 0, 4, 8, 1, {}]
        cyclic_args[5]["self"] = cyclic_args
        cases["cyclic_args"] = (
            {"G": persistent(module, "Generator", {"_init_args": cyclic_args})},
            "nested more than",
        )
        paths = {
            name: (_write(tmp_path / f"{name}.pkl", data), match) for name, (data, match) in cases.items()
        }
    for name, (path, match) in paths.items():
        with pytest.raises(NetworkPickleError, match=f"{name}.pkl: .*{match}"):
            import_network_pickle(path)
        with pytest.raises(SnapshotError, match=f"{name}.pkl"):
            load_generator(path)


@needs_fixtures
def test_a_cyclic_training_set_entry_gives_our_error(tmp_path: Path) -> None:
    """An official file with one entry added that holds itself: training_set_kwargs = {'self': itself}."""

    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    memo = (999_999).to_bytes(4, "little")
    added = text("training_set_kwargs") + b"}r" + memo + text("self") + b"j" + memo + b"ss"
    official = (FIXTURES / "nvlabs-rgb32.pkl").read_bytes()
    assert official.endswith(b".")  # STOP, with the top-level dict on the stack
    path = tmp_path / "cyclic.pkl"
    path.write_bytes(official[:-1] + added + b".")
    with pytest.raises(NetworkPickleError, match="cyclic.pkl: training_set_kwargs nested more than .*cyclic"):
        import_network_pickle(path)
    with pytest.raises(SnapshotError, match="cyclic.pkl"):
        load_generator(path)


def test_a_few_bytes_asking_for_huge_memory_give_our_error(tmp_path: Path) -> None:
    huge_memo = b"\x80\x04}r" + (0xFFFFFFF0).to_bytes(4, "little") + b"."  # LONG_BINPUT at index 2**32 - 16
    huge_frame = b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"}."  # FRAME of 2**62 bytes
    for name, data, match in (("memo", huge_memo, "a memo index of 4294967280"),
                              ("frame", huge_frame, f"it asks for {2**62} bytes where only 2 remain")):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(NetworkPickleError, match=f"{name}.pkl: {match}"):
            read_network_pickle(path)


def test_quantized_and_complex_tensors_are_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is what pickled tensors hold
        storages = {
            "QInt8Storage": torch.quantize_per_tensor(torch.zeros(4), 0.1, 0, torch.qint8).storage(),
            "ComplexFloatStorage": torch.zeros(4, dtype=torch.complex64).storage(),
        }
    with official_globals() as module:
        paths = {
            name: _write(
                tmp_path / f"{name}.pkl",
                {
                    "G": persistent(
                        module,
                        "Generator",
                        {
                            "_buffers": {
                                "w": Reduced(
                                    torch._utils._rebuild_tensor_v2, (storage, 0, (2,), (1,), False, {})
                                )
                            }
                        },
                    )
                },
            )
            for name, storage in storages.items()
        }
    for name, path in paths.items():
        with pytest.raises(
            NetworkPickleError, match=f"{name}.pkl: cannot read its tensors: .*storage of type torch.{name}"
        ):
            read_network_pickle(path)
