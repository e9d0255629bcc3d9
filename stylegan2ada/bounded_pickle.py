"""A pickle reader for untrusted bytes whose every opcode is bounded (no torch, no numpy).

Python's C unpickler trusts sizes written in the file (a 9-byte file can ask for a 2 GiB memo),
hashes whatever key it is given (a tuple nested a million deep crashes the interpreter) and lets a
later BUILD opcode change an object after its constructor checked it. `BoundedUnpickler` is the
pure-Python unpickler restricted to the opcodes network files use, each checked first:

- a read never asks for more bytes than the file still holds, a text line never exceeds
  `MAX_LINE`, an integer never exceeds `MAX_INT_BITS`, a memo index never exceeds `MAX_MEMO`;
- dict keys and set members are flat scalars (str, int, float, bool, None, bytes), so hashing
  and comparing them never recurses;
- globals resolve only through the subclass's allow-list (`ALLOWED`), REDUCE calls only those,
  and BUILD reaches only the types the subclass lets it (`build`); every other opcode is refused.

`to_plain` then copies the result into JSON-able data under a total budget (nodes and bytes),
so a structure whose levels share their children cannot expand into gigabytes.

This module runs in the isolated child process (stylegan2ada.isolation); it imports nothing heavy.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO, ClassVar

MAX_LINE = 4096  # text opcodes (protocol 0 numbers and names)
MAX_INT_BITS = 256  # torch's legacy magic number has 80 bits; nothing a network file holds is larger
MAX_MEMO = 1 << 24  # memo indices; an official 1024 px file uses about 10^5
MAX_NESTING = 32  # containers in recorded arguments and snapshot metadata nest at most 6 levels
SCALARS = (str, int, float, bool, type(None), bytes)


class UntrustedDataError(ValueError):
    """The bytes are not what the reader accepts; the message says why (without the file name)."""


class _BoundedFile:
    """A file whose reads never ask for more than it holds (pickle allocates the size it is given)."""

    def __init__(self, handle: BinaryIO, size: int | None = None) -> None:
        self._handle = handle
        self._remaining = os.fstat(handle.fileno()).st_size if size is None else size

    def read(self, count: int = -1) -> bytes:
        if count < 0 or count > self._remaining:
            raise UntrustedDataError(
                f"it asks for {count} bytes where only {self._remaining} remain (truncated or forged sizes)"
            )
        data = self._handle.read(count)
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        return self._handle.readinto(buffer)  # never reached: BYTEARRAY8 is refused

    def readline(self) -> bytes:
        line = self._handle.readline(MAX_LINE)
        self._remaining -= len(line)
        if not line.endswith(b"\n"):
            raise UntrustedDataError(f"a text opcode longer than {MAX_LINE} bytes or cut off")
        return line


def check_key(value: Any) -> None:
    """Dict keys and set members must be flat scalars: hashing them cannot recurse."""
    if type(value) not in SCALARS:
        raise UntrustedDataError(f"a dict key or set member of type {type(value).__name__} (only plain scalars)")
    if type(value) is int:
        check_int(value)


def check_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise UntrustedDataError(f"an integer of {value.bit_length()} bits (at most {MAX_INT_BITS})")
    return value


def _checked_keys(items: Any, step: int) -> list[Any]:
    if type(items) not in (list, tuple):
        raise UntrustedDataError(f"a set built from a {type(items).__name__}")
    for key in items[::step]:
        check_key(key)
    return list(items)


class PlainDict(dict):  # type: ignore[type-arg]
    """What a dict subclass named by the file (e.g. NVlabs' EasyDict) becomes: a dict, no behaviour."""


def checked_set(items: Any = ()) -> set[Any]:
    """``set`` for REDUCE: its members are checked before they are hashed."""
    return set(_checked_keys(items, 1))


def checked_frozenset(items: Any = ()) -> frozenset[Any]:
    return frozenset(_checked_keys(items, 1))


def empty_dict() -> dict[str, Any]:
    """``collections.OrderedDict`` for REDUCE: pickle writes it as a call without arguments, then SETITEMS."""
    return {}


def build_state_dict_metadata(obj: Any, state: Any) -> bool:
    """torch's state_dict is an OrderedDict whose BUILD sets `_metadata` (module versions): dropped, unused."""
    return type(obj) is dict and type(state) is dict and set(state) <= {"_metadata"}


_OP = {name: getattr(pickle, name)[0] for name in (
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP", "NONE", "NEWTRUE", "NEWFALSE",
    "BININT", "BININT1", "BININT2", "BINFLOAT", "FLOAT", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "UNICODE", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "EMPTY_LIST", "LIST", "APPEND", "APPENDS", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "EMPTY_SET", "ADDITEMS", "FROZENSET", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "GET", "BINGET",
    "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "BINPERSID", "INT", "LONG", "LONG1", "LONG4",
)}


class BoundedUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler with every opcode bounded; subclasses name what globals mean."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {}
    NEWOBJ_CLASSES: ClassVar[tuple[type, ...]] = ()  # classes NEWOBJ may create, always without arguments

    def __init__(self, handle: BinaryIO, size: int | None = None) -> None:
        super().__init__(_BoundedFile(handle, size))
        self._callables = {id(value) for value in self.ALLOWED.values()
                           if callable(value) and value not in self.NEWOBJ_CLASSES}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise self.refuse_global(module, name) from None

    def refuse_global(self, module: str, name: str) -> Exception:
        return UntrustedDataError(f"refused {module}.{name}: not a global this file format may name")

    def build(self, obj: Any, state: Any) -> None:
        """Apply a BUILD opcode's state; subclasses accept it for the types that legitimately get one."""
        raise UntrustedDataError(f"a BUILD opcode applied to a {type(obj).__name__}, which takes none")

    def persistent_load(self, pid: Any) -> Any:
        raise UntrustedDataError("it refers to external objects by persistent id")

    # -- opcodes replaced by checked versions --------------------------------------------------
    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callables or type(args) is not tuple:
            raise UntrustedDataError(f"a call of a {type(func).__name__} (only the allowed globals are called)")
        self.stack[-1] = func(*args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in self.NEWOBJ_CLASSES or args != ():
            raise UntrustedDataError(f"an object of type {getattr(cls, '__name__', type(cls).__name__)} created "
                                     "through NEWOBJ (only plain dicts may be)")
        self.append(cls())

    def _load_build(self) -> None:
        state = self.stack.pop()
        self.build(self.stack[-1], state)

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._setitems([key, value])

    def _load_setitems(self) -> None:
        self._setitems(self.pop_mark())

    def _setitems(self, items: list[Any]) -> None:
        target = self.stack[-1]
        if not isinstance(target, dict):
            raise UntrustedDataError(f"SETITEM on a {type(target).__name__}")
        for index in range(0, len(items) - 1, 2):
            check_key(items[index])
            target[items[index]] = items[index + 1]

    def _load_dict(self) -> None:
        items = _checked_keys(self.pop_mark(), 2)
        self.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})

    def _load_additems(self) -> None:
        items = _checked_keys(self.pop_mark(), 1)
        target = self.stack[-1]
        if type(target) is not set:
            raise UntrustedDataError(f"ADDITEMS on a {type(target).__name__}")
        target.update(items)

    def _load_frozenset(self) -> None:
        items = _checked_keys(self.pop_mark(), 1)  # pop_mark rebinds self.append: call it afterwards
        self.append(frozenset(items))

    def _load_append(self) -> None:
        value = self.stack.pop()
        if type(self.stack[-1]) is not list:
            raise UntrustedDataError(f"APPEND on a {type(self.stack[-1]).__name__}")
        self.stack[-1].append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        if type(self.stack[-1]) is not list:
            raise UntrustedDataError(f"APPENDS on a {type(self.stack[-1]).__name__}")
        self.stack[-1].extend(items)

    def _memo_put(self, index: int) -> None:
        if not 0 <= index < MAX_MEMO:
            raise UntrustedDataError(f"a memo index of {index} (at most {MAX_MEMO})")
        self.memo[index] = self.stack[-1]

    def _load_put(self) -> None:
        self._memo_put(int(self.readline()[:-1]))

    def _load_binput(self) -> None:
        self._memo_put(self.read(1)[0])

    def _load_long_binput(self) -> None:
        self._memo_put(int.from_bytes(self.read(4), "little"))

    def _load_memoize(self) -> None:
        self._memo_put(len(self.memo))

    def _load_int(self) -> None:
        line = self.readline()
        flags = {b"00\n": False, b"01\n": True}  # protocol 0 writes booleans as INT 00 / 01
        self.append(flags[line] if line in flags else check_int(int(line, 0)))

    def _load_long(self) -> None:
        text = self.readline()[:-1]
        self.append(check_int(int(text[:-1] if text.endswith(b"L") else text, 0)))

    def _load_long_bytes(self, count: int) -> None:
        if count < 0 or count * 8 > MAX_INT_BITS + 8:
            raise UntrustedDataError(f"an integer of {count} bytes (at most {MAX_INT_BITS} bits)")
        self.append(check_int(pickle.decode_long(self.read(count))))

    def _load_long1(self) -> None:
        self._load_long_bytes(self.read(1)[0])

    def _load_long4(self) -> None:
        self._load_long_bytes(int.from_bytes(self.read(4), "little", signed=True))

    def _refuse_opcode(self) -> None:
        raise UntrustedDataError("an opcode that network files never use (object construction or buffers)")

    dispatch: ClassVar[dict[int, Callable[..., None]]] = collections.defaultdict(
        lambda: BoundedUnpickler._refuse_opcode,
        {
            **{code: pickle._Unpickler.dispatch[code] for code in _OP.values()},  # type: ignore[attr-defined]
            _OP["REDUCE"]: _load_reduce,
            _OP["BUILD"]: _load_build,
            pickle.NEWOBJ[0]: _load_newobj,
            _OP["SETITEM"]: _load_setitem,
            _OP["SETITEMS"]: _load_setitems,
            _OP["DICT"]: _load_dict,
            _OP["ADDITEMS"]: _load_additems,
            _OP["FROZENSET"]: _load_frozenset,
            _OP["APPEND"]: _load_append,
            _OP["APPENDS"]: _load_appends,
            _OP["PUT"]: _load_put,
            _OP["BINPUT"]: _load_binput,
            _OP["LONG_BINPUT"]: _load_long_binput,
            _OP["MEMOIZE"]: _load_memoize,
            _OP["INT"]: _load_int,
            _OP["LONG"]: _load_long,
            _OP["LONG1"]: _load_long1,
            _OP["LONG4"]: _load_long4,
        },
    )

    def load(self) -> Any:
        try:
            return super().load()
        except UntrustedDataError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, OverflowError, UnicodeDecodeError) as error:
            raise UntrustedDataError(f"not a readable pickle (truncated or damaged): {error}") from None


# -- copying untrusted containers into plain data --------------------------------------------------
@dataclasses.dataclass
class Budget:
    """What one file's plain data may hold in all: a structure sharing its children cannot grow past it."""

    nodes: int = 200_000
    chars: int = 16 << 20

    def spend(self, nodes: int, chars: int = 0) -> None:
        self.nodes -= nodes
        self.chars -= chars
        if self.nodes < 0 or self.chars < 0:
            raise UntrustedDataError(
                "holds more data than a network file's metadata can (its containers share or repeat their "
                "contents beyond the size budget)"
            )


TUPLE_KEY = "__tuple__"
ITEMS_KEY = "__items__"
TENSOR_KEY = "__tensor__"
MARKERS = frozenset({TUPLE_KEY, ITEMS_KEY, TENSOR_KEY})


def to_plain(value: Any, budget: Budget, leaf: Callable[[Any], Any] | None = None, depth: int = 0,
             what: str = "its data", tuples: bool = False) -> Any:
    """JSON-able data: dicts with str keys, lists, numbers, strings; `leaf` handles anything else.

    With `tuples`, tuples and dicts with other keys are kept apart ({"__tuple__": [...]},
    {"__items__": [[key, value], ...]}) so a reader can restore them exactly.
    """
    if depth > MAX_NESTING:
        raise UntrustedDataError(f"{what} nested more than {MAX_NESTING} levels deep (or cyclic)")
    kind = type(value)
    if value is None or kind in (bool, str):
        budget.spend(1, len(value) if kind is str else 0)
        return value
    if kind is int:
        budget.spend(1)
        return check_int(value) if value.bit_length() <= 63 else _too_big(value)
    if kind is float:
        budget.spend(1)
        return value if math.isfinite(value) else str(value)
    if kind in (dict, PlainDict):
        budget.spend(1 + len(value))
        if all(type(key) is str for key in value):
            if MARKERS & value.keys():
                raise UntrustedDataError(f"{what}: a dict key named like this reader's own markers")
            return {key: to_plain(item, budget, leaf, depth + 1, what, tuples) for key, item in value.items()}
        if not tuples:
            raise UntrustedDataError(f"{what}: a dict whose keys are not all strings")
        return {ITEMS_KEY: [[to_plain(key, budget, leaf, depth + 1, what, tuples),
                             to_plain(item, budget, leaf, depth + 1, what, tuples)] for key, item in value.items()]}
    if kind in (list, tuple):
        budget.spend(1 + len(value))
        items = [to_plain(item, budget, leaf, depth + 1, what, tuples) for item in value]
        return {TUPLE_KEY: items} if tuples and kind is tuple else items
    if leaf is not None:
        budget.spend(1)
        return leaf(value)
    raise UntrustedDataError(f"{what} holds a {kind.__name__} where plain data was expected")


def _too_big(value: int) -> int:
    raise UntrustedDataError(f"{value.bit_length()}-bit integer where a plain number was expected")

