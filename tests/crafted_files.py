"""Crafted network files, one per attack class a security review found (issue 21), built here.

Each `Case` writes one file: an official-format `.pkl` or one of our `.pt` snapshots with a payload
deep inside. Where the NVlabs fixtures are present (../shared/fixtures/nvlabs), `.pkl` payloads go
into a legitimate official file; every other case is built from scratch (or from a tiny snapshot
written here), so most of the table runs without the fixtures. `match` is what the refusal must say.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pickle
import sys
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/nvlabs"
OFFICIAL = FIXTURES / "nvlabs-rgb32.pkl"
HAVE_FIXTURES = (FIXTURES / "fixtures.json").is_file()
BASE = 1_000_000  # memo indices of injected payloads, far above those of the official file


# -- pickle opcodes, by hand (pickle.dumps cannot write most of these) --------------------------------
def text(value: str) -> bytes:
    return b"X" + len(value).to_bytes(4, "little") + value.encode()


def put(index: int) -> bytes:
    return b"r" + index.to_bytes(4, "little")


def get(index: int) -> bytes:
    return b"j" + index.to_bytes(4, "little")


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def deep_tuple_key(depth: int = 1_000_000) -> bytes:
    """A dict whose key is a tuple nested `depth` deep: hashing it recursed until the C stack overflowed."""
    return b"}N" + b"\x85" * depth + b"Ns"


def shared_levels(levels: int = 30) -> bytes:
    """A dict holding a list whose every level holds the next level twice (2**levels leaves, shared by memo)."""
    out = b"]" + put(BASE) + b"0"  # each level is memoised, then popped
    for level in range(levels):
        out += b"](" + get(BASE + level) * 2 + b"e" + put(BASE + level + 1) + b"0"
    return b"}" + _in_dict(out + get(BASE + levels))


def _in_dict(value: bytes) -> bytes:
    return text("x") + value + b"s"


def nested_frozensets(depth: int = 100_000) -> bytes:
    return b"}" + _in_dict(b"(" * depth + b"(N\x91" + b"\x91" * depth)


def long_text_integer(digits: int = 5000) -> bytes:
    return b"}" + _in_dict(b"L" + b"9" * digits + b"L\n")


def dtype_rebuilt(second_state: bool = True) -> bytes:
    """A numpy scalar whose dtype is built as float64, then changed by a second BUILD (or built forged)."""
    plain = b"(K\x03" + text("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    forged = b"(K\x03" + text("<") + b"NNNK\x20K\x08K\x00t"  # elsize 32: reads past an 8-byte buffer
    dtype = glob("numpy", "dtype") + b"(" + text("f8") + b"\x89\x88tR"
    dtype += (plain + b"b" + forged + b"b") if second_state else (forged + b"b")
    scalar = glob("numpy._core.multiarray", "scalar") + b"(" + dtype + b"C\x08" + bytes(8) + b"tR"
    return b"}" + _in_dict(scalar)


def into_official(payload: bytes, key: str = "training_set_kwargs") -> bytes:
    """The official fixture with one top-level entry replaced by `payload` (a pickled value)."""
    official = OFFICIAL.read_bytes()
    assert official.endswith(b".")  # STOP, with the top-level dict on the stack
    return official[:-1] + text(key) + payload + b"s."


def minimal_pickle(payload: bytes, key: str = "training_set_kwargs") -> bytes:
    return b"\x80\x02}" + text(key) + payload + b"s."


# -- official-layout objects through pickle.dumps ----------------------------------------------------
@contextlib.contextmanager
def official_globals() -> Iterator[types.ModuleType]:
    """A stand-in `torch_utils.persistence` so pickle can write the global the official files name."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict[str, Any]) -> None:
        raise AssertionError("never called when writing")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = _reconstruct_persistent_obj.__name__
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    package.persistence = module  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in (package.__name__, module.__name__)}
    sys.modules.update({package.__name__: package, module.__name__: module})
    try:
        yield module
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name)
            else:
                sys.modules[name] = previous


class Reduced:
    """Pickles as ``function(*args)`` (then BUILD with `state`, if given)."""

    def __init__(self, function: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.function, self.args, self.state = function, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)

    def __call__(self, *args: Any) -> Any:  # pickle writes only callables as functions; never called
        raise AssertionError("never called when writing")


def persistent(module: types.ModuleType, class_name: str, state: dict[str, Any], build: Any = None) -> Reduced:
    meta = {"type": "class", "version": 6, "module_src": "raise SystemExit", "class_name": class_name,
            "state": state}
    return Reduced(module._reconstruct_persistent_obj, (meta,), build)


G_KWARGS = {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 8, "img_channels": 1}
D_KWARGS = {"c_dim": 0, "img_resolution": 8, "img_channels": 1}


def networks_pickle(g_kwargs: dict[str, Any] | None = None, g_state: dict[str, Any] | None = None,
                    g_build: Any = None) -> bytes:
    """G, D and G_ema in the official layout, G's recorded arguments and state as given."""
    with official_globals() as module:
        g = persistent(module, "Generator", {"_init_kwargs": g_kwargs or G_KWARGS, **(g_state or {})}, g_build)
        d = persistent(module, "Discriminator", {"_init_kwargs": D_KWARGS})
        return pickle.dumps({"G": g, "D": d, "G_ema": g}, protocol=4)


def official_record(module: types.ModuleType, net: torch.nn.Module, init_kwargs: Any = None) -> Reduced:
    """`net` as the official code pickles a persistent module: its own tensors, sub-modules as records."""
    state: dict[str, Any] = {
        "_parameters": dict(net._parameters),
        "_buffers": {key: value for key, value in net._buffers.items() if key not in net._non_persistent_buffers_set},
        "_modules": {name: official_record(module, child) for name, child in net._modules.items()},
    }
    if init_kwargs is not None:
        state["_init_kwargs"] = init_kwargs
    return persistent(module, type(net).__name__, state)


def official_pickle(G: torch.nn.Module, D: torch.nn.Module) -> bytes:
    """Our G and D in the official file layout (official D arguments carry freeze_layers elsewhere)."""
    d_kwargs = {key: value for key, value in D.init_kwargs.items() if key != "freeze_layers"}
    with official_globals() as module:
        g = official_record(module, G, G.init_kwargs)
        return pickle.dumps({"G": g, "D": official_record(module, D, d_kwargs), "G_ema": g}, protocol=4)


def storage_bytes(obj: Any) -> bytes:
    """What the official pickles nest for a tensor storage: legacy torch.save bytes (of `obj`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def _storage(tensor: torch.Tensor) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is what pickled tensors hold
        return tensor.storage()


def buffer_pickle(buffer: Any) -> bytes:
    """A G whose buffer `w` is `buffer` (a Reduced call standing for a pickled tensor)."""
    return networks_pickle(g_state={"_buffers": {"w": buffer}})


def nested_tensor(tensor: torch.Tensor) -> Reduced:
    """A storage whose nested bytes hold a whole tensor (sparse, meta, quantized...) instead of a storage."""
    return Reduced(torch._utils._rebuild_tensor_v2,
                   (Reduced(torch.storage._load_from_bytes, (storage_bytes(tensor),)), 0, (2,), (1,), False, {}))


def modules_sharing_levels(levels: int = 30) -> bytes:
    with official_globals() as module:
        level = persistent(module, "Generator", {})
        for _ in range(levels):
            level = persistent(module, "Generator", {"_modules": {"a": level, "b": level}})
        g = persistent(module, "Generator", {"_init_kwargs": G_KWARGS, "_modules": {"m": level}})
        return pickle.dumps({"G": g, "D": g, "G_ema": g}, protocol=4)


def kwargs_sharing_levels(levels: int = 30) -> bytes:
    shared: list[Any] = []
    for _ in range(levels):
        shared = [shared, shared]
    return networks_pickle({**G_KWARGS, "mapping_kwargs": {"x": shared}})


# -- our .pt snapshots ---------------------------------------------------------------------------------
def tiny_snapshot() -> dict[str, Any]:
    from stylegan2ada.networks import build_networks

    G, D = build_networks("auto", 8, 1, channel_base=256, channel_max=32, mapping_layers=1, seed=1)
    return {"format": "stylegan2ada.snapshot", "version": 1, "G": G.state_dict(), "D": D.state_dict(),
            "G_ema": G.state_dict(), "G_init_kwargs": G.init_kwargs, "D_init_kwargs": D.init_kwargs,
            "options": {}, "meta": {"kimg": 0.0, "cur_nimg": 0, "extra_meta": {"class_name": "x"}}}


def saved(snapshot: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)  # not save_snapshot: a file from "elsewhere", read in isolation
    return buffer.getvalue()


def rezipped(data: bytes, pickle_bytes: Callable[[bytes], bytes] | None = None,
             records: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """A torch zip with its data.pkl rewritten and/or some records replaced (bytes, compression)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content, compression = source.read(info), zipfile.ZIP_STORED
            short = info.filename.split("/", 1)[1]
            if short == "data.pkl" and pickle_bytes is not None:
                content = pickle_bytes(content)
            if records and short in records:
                content, compression = records[short]
            target.writestr(info.filename, content, compress_type=compression)
    return out.getvalue()


def damaged_record() -> bytes:
    """A snapshot whose first tensor record has one byte changed (its CRC no longer matches)."""
    data = bytearray(saved(tiny_snapshot()))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = next(item for item in archive.infolist() if item.filename.endswith("/data/0"))
    local = info.header_offset
    start = local + 30 + int.from_bytes(data[local + 26:local + 28], "little") + int.from_bytes(
        data[local + 28:local + 30], "little")
    data[start] ^= 0xFF
    return bytes(data)


def meta_payload(payload: bytes) -> Callable[[bytes], bytes]:
    """data.pkl with its `meta` entry replaced by `payload`."""
    return lambda data: data[:-1] + text("meta") + payload + b"s."


# -- the table -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    """One crafted file: its attack class, how to build it, and what its refusal must say."""

    name: str
    attack: str  # crash, hang, oom, traceback, over-read
    suffix: str
    build: Callable[[], bytes]
    match: str
    needs_fixture: bool = False
    # Which reads refuse it: "read" every one; "build" those that build networks (import_network_pickle,
    # snapshot_meta, load_generator); "weights" (.pt) those that read the tensors' bytes (not snapshot_meta);
    # "meta" (.pt) those that read the metadata (snapshot_meta: load_generator does not need it).
    stage: str = "read"

    def write(self, folder: Path) -> Path:
        path = folder / f"{self.name}{self.suffix}"
        if not path.exists():
            path.write_bytes(self.build())
        return path


def _sparse() -> torch.Tensor:
    return torch.zeros(2).to_sparse()


def _quantized() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # quantized tensors are deprecated: still a file's content
        return torch.quantize_per_tensor(torch.zeros(2), 0.1, 0, torch.qint8)


CASES = [
    # crash: a tuple nested a million deep used as a dict key (SIGSEGV when hashed)
    Case("deep_key_official", "crash", ".pkl", lambda: into_official(deep_tuple_key()),
         "a dict key or set member of type tuple", needs_fixture=True),
    Case("deep_key", "crash", ".pkl", lambda: minimal_pickle(deep_tuple_key()), "a dict key or set member of type tuple"),
    Case("deep_key", "crash", ".pt", lambda: rezipped(saved(tiny_snapshot()), meta_payload(deep_tuple_key())),
         "a dict key or set member of type tuple"),
    # hang: levels sharing the next level twice, in training_set_kwargs, _init_kwargs or _modules
    Case("shared_training_set_official", "hang", ".pkl", lambda: into_official(shared_levels()),
         "beyond the size budget", needs_fixture=True),
    Case("shared_training_set", "hang", ".pkl", lambda: minimal_pickle(shared_levels()), "beyond the size budget"),
    Case("shared_init_kwargs", "hang", ".pkl", kwargs_sharing_levels, "beyond the size budget"),
    Case("shared_modules", "hang", ".pkl", modules_sharing_levels, "beyond the size budget"),
    Case("shared_meta", "hang", ".pt", lambda: rezipped(saved(tiny_snapshot()), meta_payload(shared_levels())),
         "beyond the size budget"),
    # oom: a 2**28 memo index; a callable from storage bytes called with 5 GiB; a deflated record;
    # recorded arguments that ask for gigabytes
    Case("memo_index", "oom", ".pkl", lambda: b"\x80\x02}r" + (2**28).to_bytes(4, "little") + b".",
         "a memo index of 268435456"),
    Case("storage_callable", "oom", ".pkl", lambda: buffer_pickle(
        Reduced(Reduced(torch.storage._load_from_bytes, (pickle.dumps(bytearray, protocol=2),)), (5 << 30,))),
         "storage's bytes name .*bytearray"),
    Case("deflated_record", "oom", ".pt", lambda: rezipped(
        saved(tiny_snapshot()), records={"data/0": (bytes(64 << 20), zipfile.ZIP_DEFLATED)}),
         "record 0 is compressed"),
    Case("damaged_record", "traceback", ".pt", damaged_record, "record .*data/0 cannot be read", stage="weights"),
    Case("huge_dims", "oom", ".pkl", lambda: networks_pickle({**G_KWARGS, "z_dim": 36000, "w_dim": 36000}),
         "z_dim=36000 .an integer from 1 to 4096", stage="build"),
    Case("million_layers", "oom", ".pkl", lambda: networks_pickle({**G_KWARGS, "mapping_kwargs": {"num_layers": 10**6}}),
         "num_layers=1000000", stage="build"),
    Case("huge_dims", "oom", ".pt", lambda: saved({**tiny_snapshot(), "G_init_kwargs": {
        **tiny_snapshot()["G_init_kwargs"], "z_dim": 36000, "w_dim": 36000}}), "z_dim=36000", stage="build"),
    Case("too_many_parameters", "oom", ".pt", lambda: saved({**tiny_snapshot(), "G_init_kwargs": {
        **tiny_snapshot()["G_init_kwargs"], "z_dim": 4096, "w_dim": 4096, "mapping_kwargs": {"num_layers": 32}}}),
         "would hold about [0-9,]+ parameters", stage="build"),
    # traceback: wrong types where numbers, names or storages are expected; damaged data
    Case("tensor_as_number", "traceback", ".pkl", lambda: networks_pickle({**G_KWARGS, "z_dim": torch.zeros(1)}),
         "recorded init arguments holds a TensorRecord"),
    Case("tensor_in_training_set_official", "traceback", ".pkl", lambda: into_official(
        b"}" + text("resolution") + pickle.dumps(torch.zeros(1), protocol=4)[11:-1] + b"s"),
         "training_set_kwargs holds a TensorRecord", needs_fixture=True),
    Case("int_parameter_name", "traceback", ".pkl", lambda: networks_pickle(
        g_state={"_parameters": {5: torch.nn.Parameter(torch.zeros(1))}}), "a _parameters entry named 5"),
    Case("zero_stride", "traceback", ".pkl", lambda: buffer_pickle(Reduced(
        torch._utils._rebuild_tensor_v2, (_storage(torch.zeros(4)), 0, (10**6, 10**6), (0, 0), False, {}))),
         "tensors hold more bytes than the file"),
    Case("nested_meta_tensor", "traceback", ".pkl", lambda: buffer_pickle(nested_tensor(torch.zeros(2, device="meta"))),
         "cannot read its tensors"),
    Case("nested_sparse_tensor", "traceback", ".pkl", lambda: buffer_pickle(nested_tensor(_sparse())),
         "cannot read its tensors: .*_rebuild_sparse_tensor"),
    Case("nested_quantized_tensor", "traceback", ".pkl", lambda: buffer_pickle(
        nested_tensor(_quantized())), "cannot read its tensors"),
    Case("truncated_storage", "traceback", ".pkl", lambda: buffer_pickle(Reduced(torch._utils._rebuild_tensor_v2, (
        Reduced(torch.storage._load_from_bytes, (storage_bytes(_storage(torch.zeros(4)))[:-3],)), 0, (4,), (1,), False, {}))),
         "cut off or padded"),
    Case("build_after_check", "traceback", ".pkl", lambda: networks_pickle(g_build={"class_name": "Payload"}),
         "Generator changed by a BUILD opcode after its record was read"),
    Case("nested_frozensets", "traceback", ".pkl", lambda: minimal_pickle(nested_frozensets()),
         "set member of type frozenset"),
    Case("long_integer", "traceback", ".pkl", lambda: minimal_pickle(long_text_integer()),
         "a text opcode longer than 4096 bytes"),
    Case("truncated_data_pkl", "traceback", ".pt", lambda: rezipped(
        saved(tiny_snapshot()), lambda data: data[: len(data) // 2]), "truncated"),
    Case("meta_wrong_type", "traceback", ".pt", lambda: saved({**tiny_snapshot(), "meta": [1, 2]}),
         "metadata is malformed .meta is list", stage="meta"),
    Case("sparse_weight", "traceback", ".pt", lambda: saved({**tiny_snapshot(), "G_ema": {"w": _sparse()}}),
         "_rebuild_sparse_tensor"),
    Case("weights_not_tensors", "traceback", ".pt", lambda: saved({**tiny_snapshot(), "G_ema": {"w": "abc"}}),
         "its G_ema is not a state dict", stage="weights"),
    Case("long_integer", "traceback", ".pt", lambda: rezipped(saved(tiny_snapshot()), meta_payload(
        b"L" + b"9" * 5000 + b"L\n")), "a text opcode longer than 4096 bytes"),
    # over-read: a numpy dtype checked, then changed by a later BUILD (or built with a forged size)
    Case("dtype_rebuilt_official", "over-read", ".pkl", lambda: into_official(dtype_rebuilt()),
         "a numpy dtype changed after it was built", needs_fixture=True),
    Case("dtype_rebuilt", "over-read", ".pkl", lambda: minimal_pickle(dtype_rebuilt()),
         "a numpy dtype changed after it was built"),
    Case("dtype_forged", "over-read", ".pkl", lambda: minimal_pickle(dtype_rebuilt(second_state=False)),
         "a numpy dtype with a state that is not a plain number type's"),
]


def case_params(cases: list[Case], *extra: Any) -> list[Any]:
    """`pytest.param`s of `cases` (each after the `extra` arguments), the ones injected into an official
    fixture marked to skip where ../shared/fixtures/nvlabs is absent (this clone has no shared/ beside it)."""
    absent = pytest.mark.skipif(not HAVE_FIXTURES, reason=f"NVlabs fixtures not found at {FIXTURES}")
    return [pytest.param(*extra, case, id="-".join([*map(str, extra), f"{case.attack}-{case.name}{case.suffix}"]),
                         marks=[absent] if case.needs_fixture else []) for case in cases]
