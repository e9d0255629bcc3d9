"""Read NVlabs StyleGAN2-ADA network pickles without executing the code they carry.

The official files (training snapshots `network-snapshot-*.pkl` and the published pretrained
networks) are plain pickles of a dict whose networks are "persistent objects": each is stored as
a call ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where `meta` holds the Python
source of its module, the class name and the object's ``__dict__`` (parameters, buffers,
sub-modules, and the recorded ``_init_args``/``_init_kwargs``). The official loader executes that
source; a file written by anyone can therefore run anything on load.

`read_network_pickle` unpickles with a fixed allow-list instead: persistent objects become inert
`PersistentObject` records (their source is never imported or executed), tensor storages are read
with ``torch.load(weights_only=True)``, and every other global the file names is refused, naming it.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

PERSISTENT_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
# Plain-dict stand-ins for the official code's attribute dict (dnnlib.EasyDict).
_EASYDICT_GLOBALS = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}
_NUMPY_SCALAR_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_PLAIN_DTYPES = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})
_NUMPY_DTYPE_KINDS = "biufc"  # bool, integers, floats, complex: numbers only
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


@dataclasses.dataclass
class PersistentObject:
    """One official network object, as data: its class name, recorded arguments and ``__dict__``.

    `source_chars` is the length of the module source the file carries (kept only as a fact
    about the file; the source itself is dropped unread).
    """

    class_name: str
    version: int
    init_args: tuple[Any, ...]
    init_kwargs: dict[str, Any]
    state: dict[str, Any]
    source_chars: int

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers of this object and its sub-modules under their dotted names.

        The state dicts stay mutable while the file loads, so a pickle can make a module its own
        sub-module; the depth limit turns that into our error.
        """
        if prefix.count(".") > MAX_NESTING:
            raise NetworkPickleError(f"sub-modules nested more than {MAX_NESTING} levels deep (or cyclic)")
        groups = {group: self.state.get(group) or {} for group in ("_parameters", "_buffers", "_modules")}
        malformed = [group for group, entries in groups.items() if not isinstance(entries, dict)]
        if malformed:
            raise NetworkPickleError(
                f"{self.class_name} {prefix or 'object'}: its {malformed[0]} is not a dict"
            )
        tensors: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, value in groups[group].items():
                if value is not None:
                    tensors[prefix + name] = value.detach() if isinstance(value, torch.Tensor) else value
        for name, child in groups["_modules"].items():
            if isinstance(child, PersistentObject):
                tensors.update(child.state_dict(f"{prefix}{name}."))
            elif child is not None:
                raise NetworkPickleError(
                    f"sub-module {prefix}{name} is a {type(child).__name__}, not a network object"
                )
        return tensors


class _PlainDict(dict):  # type: ignore[type-arg]
    """What an EasyDict becomes: a dict (pickle may set attributes on it through BUILD)."""

    def __setstate__(self, state: Any) -> None:
        if state:
            self.update(state)


class _TensorFormatError(NetworkPickleError):
    """Tensors stored in a way the importer does not know (reported as such, not as a damaged file)."""


def _load_storage(data: bytes) -> Any:
    """A tensor storage the official pickle wrote as nested ``torch.save`` bytes; weights only."""
    if not isinstance(data, (bytes, bytearray)):
        raise _TensorFormatError(
            f"a tensor storage is stored as {type(data).__name__}, not as torch-saved bytes"
        )
    try:
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise _TensorFormatError(f"a tensor storage could not be read as weights only ({error})") from error


def _rebuild_tensor(
    storage: Any,
    offset: int,
    size: Any,
    stride: Any,
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    del requires_grad, backward_hooks, metadata  # gradients and hooks are training-time state
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise _TensorFormatError(f"a tensor refers to a {type(storage).__name__}, not a tensor storage")
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    if not (dtype.is_floating_point or dtype in _PLAIN_DTYPES):  # quantized or complex: no network holds them
        raise _TensorFormatError(
            f"a tensor of dtype {dtype} (networks hold real floating-point or integer tensors)"
        )
    untyped = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    _check_bounds(untyped.nbytes(), dtype, offset, size, stride)
    return torch.empty(0, dtype=dtype).set_(untyped, int(offset), tuple(size), tuple(stride))


def _check_bounds(nbytes: int, dtype: torch.dtype, offset: Any, size: Any, stride: Any) -> None:
    """Refuse a tensor view reaching outside its storage (torch's set_ does not check this)."""
    numbers = (
        [offset, *size, *stride]
        if isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))
        else []
    )
    if not numbers or len(size) != len(stride) or not all(isinstance(n, int) and n >= 0 for n in numbers):
        raise _TensorFormatError("a tensor with a malformed offset, size or stride")
    last = offset + sum((n - 1) * step for n, step in zip(size, stride)) if all(size) else offset - 1
    needed = (last + 1) * torch.empty(0, dtype=dtype).element_size()
    if needed > nbytes:
        raise _TensorFormatError(
            f"a tensor does not fit its storage ({needed} bytes needed, {nbytes} stored)"
        )


def _rebuild_parameter(
    data: torch.Tensor, requires_grad: bool = False, backward_hooks: Any = None
) -> torch.Tensor:
    del requires_grad, backward_hooks
    if not isinstance(data, torch.Tensor):
        raise _TensorFormatError(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


def _numpy_dtype(*args: Any) -> np.dtype[Any]:
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMPY_DTYPE_KINDS:
        raise NetworkPickleError(f"a numpy value of dtype {dtype} (only numeric numpy values are accepted)")
    return dtype


def _numpy_scalar(dtype: np.dtype[Any], data: bytes | None = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMPY_DTYPE_KINDS or not isinstance(data, bytes):
        raise NetworkPickleError("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype, count=1)[0].item()


def _persistent_object(meta: Any) -> PersistentObject:
    """The record of an official persistent object; its module source is dropped unread."""
    if (
        not isinstance(meta, dict)
        or meta.get("type") != "class"
        or not isinstance(meta.get("class_name"), str)
    ):
        raise NetworkPickleError("a persistent object without the expected meta (type 'class', class_name)")
    if meta["class_name"] not in NETWORK_CLASSES:
        raise NetworkPickleError(
            f"refused a persistent object of class {meta['class_name']!r}: official network pickles hold only "
            f"{', '.join(sorted(NETWORK_CLASSES))} (its embedded source was not run)"
        )
    state = dict(meta.get("state") or {})
    init_args = state.get("_init_args", ())
    init_kwargs = state.get("_init_kwargs", {})
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
        raise NetworkPickleError(
            f"{meta['class_name']}: its recorded init arguments are not a tuple and a dict"
        )
    source = meta.get("module_src")
    return PersistentObject(
        class_name=meta["class_name"],
        version=int(meta.get("version", 0)),
        init_args=tuple(_plain(list(init_args))),
        init_kwargs=_plain(init_kwargs),
        state=state,
        source_chars=len(source) if isinstance(source, str) else 0,
    )


MAX_NESTING = 32  # the official init arguments nest three levels deep


def _plain(value: Any, depth: int = 0) -> Any:
    """Nested EasyDict stand-ins and tuples as dicts and lists (JSON-able init arguments).

    A pickle can make a container hold itself; the depth limit turns that into our error.
    """
    if depth > MAX_NESTING:
        raise NetworkPickleError(
            f"recorded init arguments nested more than {MAX_NESTING} levels deep (or cyclic)"
        )
    if isinstance(value, dict):
        return {key: _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    return value


_ALLOWED: dict[tuple[str, str], Any] = {
    PERSISTENT_GLOBAL: _persistent_object,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy", "dtype"): _numpy_dtype,
    **{key: _numpy_scalar for key in _NUMPY_SCALAR_GLOBALS},
    **{key: _PlainDict for key in _EASYDICT_GLOBALS},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in `_ALLOWED`, each to this module's own inert implementation."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            if module == "torch" or module.startswith("torch."):
                raise _TensorFormatError(
                    f"tensors are stored through {module}.{name}, a way this importer does not know "
                    f"(it reads tensors pickled by torch's own Tensor/Parameter/storage reducers)"
                ) from None
            hint = (
                "; this is a TensorFlow StyleGAN/StyleGAN2 pickle, which only TensorFlow code can read: convert "
                "it to a PyTorch pickle with the official stylegan2-ada-pytorch legacy.py (which runs its code; "
                "do that only for files you trust) and import the result"
                if module.startswith("dnnlib.tflib")
                else ""
            )
            raise NetworkPickleError(
                f"refused {module}.{name}: an official network pickle holds only persistent network "
                f"objects, tensors, numbers and plain containers, so this global is not loaded{hint}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _TensorFormatError(
            "it refers to external objects by persistent id (a torch.save file or another pickler's format)"
        )


def looks_like_pickle(path: str | os.PathLike[str]) -> bool:
    """True for a raw pickle (protocol 2+ header), as the official .pkl files are; False for zips etc."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def read_network_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level dict of an official network pickle, networks as `PersistentObject` records."""
    path = Path(path)
    if not path.is_file():
        raise NetworkPickleError(f"{path}: no such file.")
    if not looks_like_pickle(path):
        raise NetworkPickleError(
            f"{path}: not a pickle (no pickle protocol header), so not an NVlabs network pickle."
        )
    try:
        with open(path, "rb") as handle:
            data = _RestrictedUnpickler(handle).load()
    except _TensorFormatError as error:
        raise NetworkPickleError(f"{path}: cannot read its tensors: {error}.") from None
    except NetworkPickleError as error:
        raise NetworkPickleError(f"{path}: {error}.") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        RecursionError,
        MemoryError,  # a few bytes can ask for a huge memo or frame
    ) as error:
        raise NetworkPickleError(f"{path}: not a readable pickle (truncated or damaged): {error}") from None
    if isinstance(data, int):  # torch.save's legacy format starts with a pickled magic number
        raise NetworkPickleError(
            f"{path}: a torch.save file in the legacy (non-zip) format, not a network pickle."
        )
    if not isinstance(data, dict):
        raise NetworkPickleError(
            f"{path}: holds a {type(data).__name__}, not the dict of networks (G, D, G_ema, ...) an NVlabs pickle holds."
        )
    return data
