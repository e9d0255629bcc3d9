"""torch's own ways of pickling tensors, read from untrusted bytes without torch.

Two layouts reach us: the nested ``torch.save`` bytes of one storage that an official NVlabs
pickle holds for every tensor (torch's legacy format: four small pickles, then the raw data), and
the zip archive ``torch.save`` writes for our snapshots (``data.pkl`` plus one stored record per
storage). Both name storages by torch class (``torch.FloatStorage`` ...) and tensors by
``torch._utils._rebuild_tensor_v2``; here a storage becomes a `Storage` of an allowed dtype whose
size is checked against the bytes present, and a tensor a `TensorRecord` whose view is checked to
lie inside its storage. Nothing else decodes: no other classes, no sparse, quantized, complex or meta
tensors, no compressed zip records (torch writes none; a deflated record could expand without limit).

This module runs in the isolated child process (stylegan2ada.isolation): no torch, and numpy only for
the rare tensor that is not contiguous (importing it would double the child's start-up time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from stylegan2ada.bounded_pickle import (
    BoundedUnpickler,
    Budget,
    UntrustedDataError,
    build_state_dict_metadata,
    check_int,
    empty_dict,
    to_plain,
)

# torch storage class -> safetensors dtype name and element size
STORAGE_DTYPES = {
    "FloatStorage": ("F32", 4),
    "DoubleStorage": ("F64", 8),
    "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2),
    "CharStorage": ("I8", 1),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
}
MAX_DIMS = 8
MAX_PICKLE_BYTES = 64 << 20  # data.pkl of a 1024 px snapshot with optimiser state is under 1 MB
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class TensorFormatError(UntrustedDataError):
    """Tensors stored in a way this reader does not accept (reported as such, not as a damaged file)."""


@dataclasses.dataclass(frozen=True)
class StorageType:
    """What a pickled ``torch.FloatStorage`` (etc.) global becomes: a dtype name, nothing callable."""

    name: str
    dtype: str
    itemsize: int


class Storage:
    """The raw bytes of one storage, read on first use and checked to hold exactly `numel` elements."""

    def __init__(self, kind: StorageType, numel: int, read: Callable[[], Any]) -> None:
        self.kind, self.numel, self._read, self._data = kind, numel, read, None

    def data(self) -> memoryview:
        if self._data is None:
            data = memoryview(self._read())
            if data.nbytes != self.numel * self.kind.itemsize:
                raise TensorFormatError(
                    f"a tensor storage holds {data.nbytes} bytes where its header says "
                    f"{self.numel} x {self.kind.itemsize}"
                )
            self._data = data
        return self._data


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """A tensor as data: a view (offset, shape, stride in elements) into a checked storage."""

    storage: Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.kind.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.storage.kind.itemsize

    def contiguous_bytes(self) -> memoryview:
        """The tensor's bytes in row-major order (a slice of its storage when it is contiguous already)."""
        itemsize, data = self.storage.kind.itemsize, self.storage.data()
        expected, step = [], 1
        for size in reversed(self.shape):
            expected.insert(0, step)
            step *= size
        if all(size == 1 or stride == want for size, stride, want in zip(self.shape, self.stride, expected)):
            start = self.offset * itemsize
            return data[start:start + self.nbytes]
        import numpy as np

        raw = np.frombuffer(data, dtype=f"<u{itemsize}")
        view = np.lib.stride_tricks.as_strided(
            raw[self.offset:], shape=self.shape, strides=[step * itemsize for step in self.stride], writeable=False
        )
        return memoryview(np.ascontiguousarray(view)).cast("B")


def storage_type(name: str) -> StorageType:
    if name not in STORAGE_DTYPES:
        raise TensorFormatError(
            f"a tensor storage of type torch.{name} (networks hold real floating-point or integer tensors)"
        )
    return StorageType(name, *STORAGE_DTYPES[name])


@dataclasses.dataclass(frozen=True)
class StorageRef:
    """A storage named by persistent id, before its bytes are found."""

    kind: StorageType
    key: str
    numel: int


def _storage_from_pid(pid: Any) -> StorageRef:
    """torch's persistent id of a storage: ('storage', type, key, location, numel[, view metadata])."""
    if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage":
        raise TensorFormatError("a persistent id that is not a tensor storage")
    _, kind, key, location, numel, *view = pid
    if type(kind) is not StorageType or type(key) is not str or type(location) is not str:
        raise TensorFormatError("a tensor storage with a malformed type, key or location")
    if view and view[0] is not None:
        raise TensorFormatError("a storage view (torch's pre-1.0 format)")
    if type(numel) is not int or not 0 <= numel < 1 << 40:
        raise TensorFormatError(f"a tensor storage of {numel!r} elements")
    return StorageRef(kind, key, numel)


def rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                   backward_hooks: Any = None, metadata: Any = None) -> TensorRecord:
    """``torch._utils._rebuild_tensor_v2`` as a check: the view must lie inside its storage."""
    del requires_grad, backward_hooks, metadata  # gradients and hooks are training-time state
    if not isinstance(storage, Storage):
        raise TensorFormatError(f"a tensor refers to a {type(storage).__name__}, not a tensor storage")
    if type(size) is not tuple or type(stride) is not tuple or len(size) != len(stride) or len(size) > MAX_DIMS:
        raise TensorFormatError("a tensor with a malformed size or stride")
    numbers = (offset, *size, *stride)
    if not all(type(n) is int and 0 <= check_int(n) < 1 << 40 for n in numbers):
        raise TensorFormatError("a tensor with a malformed offset, size or stride")
    last = offset + sum((n - 1) * step for n, step in zip(size, stride)) if all(size) else offset - 1
    if last + 1 > storage.numel:
        raise TensorFormatError(
            f"a tensor does not fit its storage ({(last + 1) * storage.kind.itemsize} bytes needed, "
            f"{storage.numel * storage.kind.itemsize} stored)"
        )
    return TensorRecord(storage, offset, size, stride)


def rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> TensorRecord:
    del requires_grad, backward_hooks
    if not isinstance(data, TensorRecord):
        raise TensorFormatError(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
}


def refuse_torch_global(module: str, name: str) -> TensorFormatError:
    """A torch global outside the allow-list: storage classes by dtype, anything else by name."""
    if module == "torch" and name.endswith("Storage"):
        storage_type(name)  # raises, naming the dtype: the allowed ones never reach here
    return TensorFormatError(
        f"tensors are stored through {module}.{name}, a way this importer does not know "
        f"(it reads tensors pickled by torch's own Tensor/Parameter/storage reducers)"
    )


class _LegacyStorageUnpickler(BoundedUnpickler):
    """One of the small pickles of torch's legacy format: only numbers, strings and storage types."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {("torch", name): storage_type(name) for name in STORAGE_DTYPES}

    def refuse_global(self, module: str, name: str) -> Exception:
        return refuse_torch_global(module, name) if module.startswith("torch") else TensorFormatError(
            f"a tensor storage's bytes name {module}.{name} (they may name only a storage type)"
        )

    def persistent_load(self, pid: Any) -> Any:
        return _storage_from_pid(pid)


def read_legacy_storage(data: Any) -> Storage:
    """The storage in nested legacy ``torch.save`` bytes (what ``torch.storage._load_from_bytes`` gets)."""
    if not isinstance(data, bytes):
        raise TensorFormatError(f"a tensor storage is stored as {type(data).__name__}, not as torch-saved bytes")
    if data.startswith(b"PK\x03\x04"):
        raise TensorFormatError("a tensor storage saved in torch's zip format (official pickles nest the legacy one)")
    if not data.startswith(b"\x80\x02"):  # torch's legacy format opens with a protocol-2 pickle
        raise TensorFormatError("a tensor storage whose bytes are not torch-saved bytes")
    stream = io.BytesIO(data)
    try:  # magic number, protocol, system info, the storage's persistent id, the list of storage keys
        magic, protocol, sys_info, found, keys = (
            _LegacyStorageUnpickler(stream, len(data) - stream.tell()).load() for _ in range(5)
        )
    except TensorFormatError:
        raise
    except UntrustedDataError as error:
        raise TensorFormatError(f"a tensor storage could not be read ({error})") from None
    if (magic, protocol) != (_LEGACY_MAGIC, _LEGACY_PROTOCOL) or type(sys_info) is not dict or sys_info.get(
            "little_endian") is not True:
        raise TensorFormatError("a tensor storage that is not little-endian torch-saved bytes")
    if type(found) is not StorageRef:
        raise TensorFormatError(f"a tensor storage's bytes hold a {type(found).__name__}, not a storage")
    kind, key, numel = found.kind, found.key, found.numel
    if keys != [key]:
        raise TensorFormatError("a tensor storage's bytes hold other storages too")
    start = stream.tell() + 8
    if int.from_bytes(data[start - 8:start], "little") != numel or len(data) != start + numel * kind.itemsize:
        raise TensorFormatError(
            f"a tensor storage's bytes are cut off or padded ({len(data) - start} data bytes for {numel} elements)"
        )
    view = memoryview(data)[start:]
    return Storage(kind, numel, lambda: view)


# -- torch.save zip archives (our snapshots) -------------------------------------------------------
class _ZipUnpickler(BoundedUnpickler):
    """data.pkl of a torch.save zip: tensors, OrderedDicts (their BUILD sets only `_metadata`), plain data."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        **TENSOR_GLOBALS,
        ("collections", "OrderedDict"): empty_dict,
        **{("torch", name): storage_type(name) for name in STORAGE_DTYPES},
    }

    def __init__(self, handle: Any, size: int, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(handle, size)
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def refuse_global(self, module: str, name: str) -> Exception:
        if module.startswith("torch"):
            return refuse_torch_global(module, name)
        return UntrustedDataError(
            f"refused {module}.{name}: a snapshot holds only tensors and plain data (loading it could run code)"
        )

    def build(self, obj: Any, state: Any) -> None:
        if not build_state_dict_metadata(obj, state):
            super().build(obj, state)

    def persistent_load(self, pid: Any) -> Storage:
        ref = _storage_from_pid(pid)
        kind, key, numel = ref.kind, ref.key, ref.numel
        if key not in self._storages:
            name = f"{self._prefix}data/{key}"
            info = _stored_entry(self._archive, name, f"tensor record {key}")
            if info.file_size != numel * kind.itemsize:
                raise TensorFormatError(
                    f"tensor record {key} holds {info.file_size} bytes where its storage needs "
                    f"{numel} x {kind.itemsize}"
                )
            self._storages[key] = Storage(kind, numel, lambda: _read_entry(self._archive, name))
        storage = self._storages[key]
        if storage.kind != kind or storage.numel != numel:
            raise TensorFormatError(f"tensor record {key} is named with two different types or sizes")
        return storage


def _read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as error:  # e.g. a CRC that does not match
        raise UntrustedDataError(f"its record {name} cannot be read ({error})") from None


def _stored_entry(archive: zipfile.ZipFile, name: str, what: str) -> zipfile.ZipInfo:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UntrustedDataError(f"its {what} is missing") from None
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise UntrustedDataError(
            f"its {what} is compressed (torch stores records uncompressed; a compressed one is refused unread)"
        )
    return info


@contextlib.contextmanager
def open_torch_zip(path: Path) -> Iterator[Any]:
    """The object a ``torch.save`` zip archive holds, tensors as `TensorRecord` (read while open)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise UntrustedDataError(
            f"a zip archive that torch cannot read as a saved file (truncated, damaged, or a dataset zip: {error})"
        ) from None
    with archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise UntrustedDataError(
                "a zip archive without torch's data.pkl (a dataset zip or another program's archive?)"
            )
        prefix = pickles[0][: -len("data.pkl")]
        info = _stored_entry(archive, pickles[0], "data.pkl")
        if info.file_size > MAX_PICKLE_BYTES:
            raise UntrustedDataError(f"its data.pkl has {info.file_size} bytes (at most {MAX_PICKLE_BYTES})")
        if prefix + "byteorder" in archive.namelist() and archive.read(prefix + "byteorder") != b"little":
            raise UntrustedDataError("tensors saved big-endian")
        data = _read_entry(archive, info.filename)
        yield _ZipUnpickler(io.BytesIO(data), len(data), archive, prefix).load()


def read_torch_zip_tree(path: Path, emit: Callable[[TensorRecord], Any], keys: list[str] | None) -> Any:
    """Child side: a torch.save archive as plain data (only `keys` of its top-level dict, if given)."""

    def leaf(value: Any) -> Any:
        if type(value) is not TensorRecord:
            raise UntrustedDataError(f"holds a {type(value).__name__} where tensors and plain data were expected")
        value.storage.data()  # read and size-checked now, so a damaged record is this file's error
        return emit(value)

    with open_torch_zip(path) as data:
        if keys is not None and type(data) is dict:
            data = {key: data[key] for key in keys if key in data}
        return to_plain(data, Budget(), leaf, tuples=True)
