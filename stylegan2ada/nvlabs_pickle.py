"""Read NVlabs StyleGAN2-ADA network pickles without executing the code they carry.

The official files (training snapshots `network-snapshot-*.pkl` and the published pretrained
networks) are plain pickles of a dict whose networks are "persistent objects": each is stored as
a call ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where `meta` holds the Python
source of its module, the class name and the object's ``__dict__`` (parameters, buffers,
sub-modules, and the recorded ``_init_args``/``_init_kwargs``). The official loader executes that
source; a file written by anyone can therefore run anything on load.

`read_network_pickle` reads the file in an isolated child process with hard limits
(stylegan2ada.isolation), through `stylegan2ada.bounded_pickle` with a fixed allow-list:
persistent objects become inert records (their source is never imported or executed), tensor
storages are decoded by `stylegan2ada.torch_format` (no torch in the child), numpy scalars by a
checked dtype record, and every other global is refused, naming it. Records are checked only once the
whole file is read (so no later opcode can change them) and come back as plain data: recorded
arguments as JSON, tensors by dotted name.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from stylegan2ada.bounded_pickle import (
    MAX_NESTING,
    BoundedUnpickler,
    Budget,
    PlainDict,
    UntrustedDataError,
    build_state_dict_metadata,
    checked_frozenset,
    checked_set,
    empty_dict,
    to_plain,
)
from stylegan2ada.torch_format import (
    TENSOR_GLOBALS,
    TensorFormatError,
    TensorRecord,
    read_legacy_storage,
    refuse_torch_global,
)

PERSISTENT_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
# Plain-dict stand-ins for the official code's attribute dict (dnnlib.EasyDict).
_EASYDICT_GLOBALS = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}
_NUMPY_SCALAR_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_NUMPY_DTYPE = re.compile(r"^[<>|=]?([biuf][1248])$")  # numbers only: bool, integers, floats
# numpy dtype (kind and size) -> struct format: numpy scalars decode without numpy in the child
_STRUCT = {"b1": "?", "i1": "b", "i2": "h", "i4": "i", "i8": "q", "u1": "B", "u2": "H", "u4": "I", "u8": "Q",
           "f2": "e", "f4": "f", "f8": "d"}
NETWORK_ENTRIES = ("G", "D", "G_ema", "augment_pipe")
# The persistent classes of the official training/networks.py and training/augment.py.
NETWORK_CLASSES = frozenset(
    {
        "Generator",
        "MappingNetwork",
        "SynthesisNetwork",
        "SynthesisBlock",
        "SynthesisLayer",
        "ToRGBLayer",
        "Discriminator",
        "DiscriminatorBlock",
        "DiscriminatorEpilogue",
        "MinibatchStdLayer",
        "FullyConnectedLayer",
        "Conv2dLayer",
        "AugmentPipe",
    }
)


class NetworkPickleError(ValueError):
    """A file is not a network pickle this module can read; the message names the file and why."""


# -- parent side: what a read returns -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PersistentObject:
    """One official network object, as data: its class name, recorded arguments and tensors.

    `tensors` holds the parameters and buffers of the object and its sub-modules under their dotted
    names; `source_chars` is the length of the module source the file carries (kept only as a fact
    about the file; the source itself is dropped unread).
    """

    class_name: str
    version: int
    init_args: tuple[Any, ...]
    init_kwargs: dict[str, Any]
    tensors: dict[str, Any]
    source_chars: int

    def state_dict(self) -> dict[str, Any]:
        return dict(self.tensors)


@dataclasses.dataclass(frozen=True)
class NetworkFile:
    """The top level of an official pickle: its networks, what every entry is, its training set."""

    networks: dict[str, PersistentObject]
    entries: dict[str, str]  # entry name -> class name (networks) or Python type name (anything else)
    training_set_kwargs: dict[str, Any] | None


def read_network_pickle(path: str | os.PathLike[str]) -> NetworkFile:
    """The networks of an official network pickle, read in an isolated child process with hard limits."""
    from stylegan2ada.isolation import read_isolated

    path = Path(path)
    if not path.is_file():
        raise NetworkPickleError(f"{path}: no such file.")
    if not looks_like_pickle(path):
        raise NetworkPickleError(
            f"{path}: not a pickle (no pickle protocol header), so not an NVlabs network pickle."
        )
    result = read_isolated("nvlabs", [path])[0]
    if result.error is not None:
        raise NetworkPickleError(f"{path}: {result.error}.")
    tree = result.tree
    networks = {
        name: PersistentObject(**{**fields, "init_args": tuple(fields["init_args"])})
        for name, fields in tree["networks"].items()
    }
    return NetworkFile(networks, tree["entries"], tree["training_set_kwargs"])


def looks_like_pickle(path: str | os.PathLike[str]) -> bool:
    """True for a raw pickle (protocol 2+ header), as the official .pkl files are; False for zips etc."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# -- child side: the restricted unpickler and what it hands back ---------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class _Record:
    """A persistent object as found; its meta is read only after the whole file is (see `_network`)."""

    class_name: str
    meta: dict[str, Any]


def _persistent_object(meta: Any) -> _Record:
    """The record of an official persistent object; its module source is dropped unread."""
    if type(meta) is not dict or meta.get("type") != "class" or type(meta.get("class_name")) is not str:
        raise UntrustedDataError("a persistent object without the expected meta (type 'class', class_name)")
    if meta["class_name"] not in NETWORK_CLASSES:
        raise UntrustedDataError(
            f"refused a persistent object of class {meta['class_name']!r}: official network pickles hold only "
            f"{', '.join(sorted(NETWORK_CLASSES))} (its embedded source was not run)"
        )
    return _Record(meta["class_name"], meta)


class _DtypeRecord:
    """``numpy.dtype(spec)``: a number type, complete after exactly one BUILD (its byte order), then fixed."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        del align, copy
        match = _NUMPY_DTYPE.match(spec) if type(spec) is str else None
        if match is None or match.group(1) not in _STRUCT:
            raise UntrustedDataError(f"a numpy value of dtype {spec!r:.40} (only numeric numpy values are accepted)")
        self.code, self.format = match.group(1), None

    def build(self, state: Any) -> None:
        if self.format is not None:
            raise UntrustedDataError("a numpy dtype changed after it was built")
        order = state[1] if type(state) is tuple and len(state) == 8 and state[0] == 3 else None
        if order not in ("<", ">", "|", "=") or state[2:] != (None, None, None, -1, -1, 0):
            raise UntrustedDataError("a numpy dtype with a state that is not a plain number type's")
        self.format = {"|": "<", "=": "="}.get(order, order) + _STRUCT[self.code]


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar``: the Python number of exactly one element of a built dtype."""
    if type(dtype) is not _DtypeRecord or dtype.format is None or type(data) is not bytes:
        raise UntrustedDataError("a numpy scalar that is not a plain number")
    size = struct.calcsize(dtype.format)
    if len(data) != size:
        raise UntrustedDataError(f"a numpy scalar of {len(data)} bytes for a {size}-byte type")
    return struct.unpack(dtype.format, data)[0]


class _NetworkUnpickler(BoundedUnpickler):
    """Resolves only the globals of official network pickles, each to an inert implementation."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        PERSISTENT_GLOBAL: _persistent_object,
        ("collections", "OrderedDict"): empty_dict,
        ("builtins", "set"): checked_set,
        ("builtins", "frozenset"): checked_frozenset,
        **TENSOR_GLOBALS,
        ("torch.storage", "_load_from_bytes"): read_legacy_storage,
        ("numpy", "dtype"): _DtypeRecord,
        **{key: _numpy_scalar for key in _NUMPY_SCALAR_GLOBALS},
        **{key: PlainDict for key in _EASYDICT_GLOBALS},
    }
    NEWOBJ_CLASSES = (PlainDict,)

    def refuse_global(self, module: str, name: str) -> Exception:
        if module == "torch" or module.startswith("torch."):
            return refuse_torch_global(module, name)
        hint = (
            "; this is a TensorFlow StyleGAN/StyleGAN2 pickle, which only TensorFlow code can read: convert "
            "it to a PyTorch pickle with the official stylegan2-ada-pytorch legacy.py (which runs its code; "
            "do that only for files you trust) and import the result"
            if module.startswith("dnnlib.tflib")
            else ""
        )
        return UntrustedDataError(
            f"refused {module}.{name}: an official network pickle holds only persistent network "
            f"objects, tensors, numbers and plain containers, so this global is not loaded{hint}"
        )

    def build(self, obj: Any, state: Any) -> None:
        if type(obj) is _DtypeRecord:
            obj.build(state)
        elif type(obj) is _Record:
            raise UntrustedDataError(f"a {obj.class_name} changed by a BUILD opcode after its record was read")
        elif not build_state_dict_metadata(obj, state):
            super().build(obj, state)

    def persistent_load(self, pid: Any) -> Any:
        raise TensorFormatError(
            "it refers to external objects by persistent id (a torch.save file or another pickler's format)"
        )


def _tensor_leaf(emit: Callable[[TensorRecord], Any]) -> Callable[[Any], Any]:
    def leaf(value: Any) -> Any:
        if type(value) is not TensorRecord:
            raise UntrustedDataError(f"holds a {type(value).__name__} where a tensor was expected")
        return emit(value)

    return leaf


def _network(record: _Record, budget: Budget, emit: Callable[[TensorRecord], Any]) -> dict[str, Any]:
    """A top-level record as plain data: recorded arguments, and every tensor of its sub-modules."""
    state = record.meta.get("state") or {}
    if type(state) is not dict:
        raise UntrustedDataError(f"{record.class_name}: its state is not a dict")
    init_args, init_kwargs = state.get("_init_args", ()), state.get("_init_kwargs", {})
    if type(init_args) not in (tuple, list) or type(init_kwargs) not in (dict, PlainDict):
        raise UntrustedDataError(f"{record.class_name}: its recorded init arguments are not a tuple and a dict")
    version, source = record.meta.get("version", 0), record.meta.get("module_src")
    what = f"{record.class_name} recorded init arguments"
    tensors: dict[str, Any] = {}
    _collect(record, "", tensors, budget, _tensor_leaf(emit))
    return {
        "class_name": record.class_name,
        "version": version if type(version) is int and 0 <= version < 1 << 31 else -1,
        "init_args": to_plain(list(init_args), budget, what=what),
        "init_kwargs": to_plain(init_kwargs, budget, what=what),
        "tensors": tensors,
        "source_chars": len(source) if type(source) is str else 0,
    }


def _collect(record: _Record, prefix: str, tensors: dict[str, Any], budget: Budget,
             leaf: Callable[[Any], Any]) -> None:
    """Parameters and buffers of `record` and its sub-modules under dotted names (depth-limited)."""
    if prefix.count(".") > MAX_NESTING:
        raise UntrustedDataError(f"sub-modules nested more than {MAX_NESTING} levels deep (or cyclic)")
    state = record.meta.get("state") or {}
    if type(state) is not dict:
        raise UntrustedDataError(f"{record.class_name} {prefix or 'object'}: its state is not a dict")
    groups = {group: state.get(group) or {} for group in ("_parameters", "_buffers", "_modules")}
    for group, entries in groups.items():
        if type(entries) not in (dict, PlainDict):
            raise UntrustedDataError(f"{record.class_name} {prefix or 'object'}: its {group} is not a dict")
        budget.spend(1 + len(entries))
        for name in entries:
            if type(name) is not str or not name or "." in name:
                raise UntrustedDataError(f"{record.class_name} {prefix or 'object'}: a {group} entry named "
                                         f"{name!r:.40} (names are non-empty strings without dots)")
    for group in ("_parameters", "_buffers"):
        for name, value in groups[group].items():
            if value is not None:
                try:
                    tensors[prefix + name] = leaf(value)
                except UntrustedDataError as error:
                    raise UntrustedDataError(f"{prefix}{name} {error}") from None
    for name, child in groups["_modules"].items():
        if type(child) is _Record:
            _collect(child, f"{prefix}{name}.", tensors, budget, leaf)
        elif child is not None:
            raise UntrustedDataError(f"sub-module {prefix}{name} is a {type(child).__name__}, not a network object")


def parse_network_pickle(path: Path, emit: Callable[[TensorRecord], Any]) -> dict[str, Any]:
    """Child side: the file as plain data; `emit` hands each tensor on and returns its reference."""
    with open(path, "rb") as handle:
        data = _NetworkUnpickler(handle).load()
    if type(data) is int:  # torch.save's legacy format starts with a pickled magic number
        raise UntrustedDataError("a torch.save file in the legacy (non-zip) format, not a network pickle")
    if type(data) is not dict:
        raise UntrustedDataError(
            f"holds a {type(data).__name__}, not the dict of networks (G, D, G_ema, ...) an NVlabs pickle holds"
        )
    budget = Budget()
    networks = {name: _network(data[name], budget, emit)
                for name in NETWORK_ENTRIES if type(data.get(name)) is _Record}
    entries = {str(name)[:100]: value.class_name if type(value) is _Record else type(value).__name__
               for name, value in list(data.items())[:1000]}
    training_set = data.get("training_set_kwargs")
    return {
        "networks": networks,
        "entries": entries,
        "training_set_kwargs": to_plain(training_set, budget, what="training_set_kwargs")
        if type(training_set) in (dict, PlainDict) else None,
    }
