"""Helpers for the typed option dataclasses every command takes.

The resolved options are written as JSON beside each output so any result can be traced to the
command that made it (the NVlabs `training_options.json` habit).

Every numeric option declares its range once, as field metadata (`ranged`). The dataclass checks
it when built (`check_ranges` in `__post_init__`), the click option enforces it through
`RangedNumber`, and `augstudy run` reports it for a config key: all three say the same rule in
the same words ("--epochs 0: must be an integer >= 1"). A range never lets 0 stand for "the
default": 0 is either a real value of the option or out of its range.

Sizes have an upper end too: a side in pixels at most `MAX_SIDE`, and a count of images whose
memory the command would hold is checked against the memory this machine has (`check_memory`)
before any work, so `--per-class 10**12` is a message, not a process killed by the kernel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import click

from stylegan2ada.io import atomic_write_json

# Largest image side any option accepts: 8192 px is 8x StyleGAN2's largest network and already
# 256 MB per float32 RGB image; larger sides only exhaust memory.
MAX_SIDE = 8192


def options_to_dict(options: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass, with paths as strings and tuples as lists."""
    def convert(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {str(key): convert(item) for key, item in value.items()}
        return value

    return {field.name: convert(getattr(options, field.name)) for field in dataclasses.fields(options)}


def write_options(path: str | os.PathLike[str], options: Any) -> Path:
    """Write the resolved options of a command as JSON, atomically."""
    atomic_write_json(path, options_to_dict(options))
    return Path(path)


class OptionError(ValueError):
    """An option outside its documented range; the message names the CLI flag, `in_config` the key."""

    def __init__(self, flag: str, name: str, value: Any, problem: str) -> None:
        super().__init__(f"{flag} {value!r}: {problem}")
        self.name, self.value, self.problem = name, value, problem

    def in_config(self) -> str:
        """The same rule for a config key: "epochs = 0: must be an integer >= 1"."""
        return f"{self.name} = {self.value!r}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option accepts: [low, high], either end open or absent."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False
    flag: str | None = None  # the CLI flag when it is not --<field-name>

    def describe(self) -> str:
        """The rule in words, e.g. "an integer >= 1" or "a number in (0, 1]"."""
        kind = "an integer" if self.integer else "a number"
        low, high = _number_words(self.low), _number_words(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return kind

    def problem(self, value: Any) -> str | None:
        """None when `value` is allowed (None always is: it means "not given"), else the rule."""
        if value is None:
            return None
        wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or (
            self.integer and not isinstance(value, int))
        if wrong_type:
            return f"must be {self.describe()}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high or not math.isfinite(value):  # NaN and infinity are in no range
            return f"must be {self.describe()}"
        return None


def _number_words(value: float | None) -> str:
    """2**32 as 4294967296 (not 4.29497e+09), 0.5 as 0.5."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def ranged(default: Any = None, *, low: float | None = None, high: float | None = None, integer: bool = False,
           low_open: bool = False, high_open: bool = False, flag: str | None = None) -> Any:
    """A dataclass field with a documented range (see `Range`)."""
    rule = Range(low, high, integer, low_open, high_open, flag)
    return dataclasses.field(default=default, metadata={"range": rule})


def option_range(cls: type, name: str) -> Range:
    """The range declared on field `name` of the options class `cls`."""
    return {item.name: item for item in dataclasses.fields(cls)}[name].metadata["range"]


def flag_of(item: dataclasses.Field) -> str:  # type: ignore[type-arg]
    rule = item.metadata.get("range")
    return (rule.flag if rule is not None and rule.flag else None) or "--" + item.name.replace("_", "-")


def check_ranges(options: Any) -> None:
    """Raise OptionError for the first field outside its declared range, naming its CLI flag."""
    for item in dataclasses.fields(options):
        rule = item.metadata.get("range")
        if rule is None:
            continue
        value = getattr(options, item.name)
        problem = rule.problem(value)
        if problem:
            raise OptionError(flag_of(item), item.name, value, problem)


class RangedNumber(click.ParamType):
    """A click type for a field declared with `ranged`: same rule, same words as the dataclass check."""

    def __init__(self, cls: type, name: str) -> None:
        self.rule = option_range(cls, name)
        self.name = "integer" if self.rule.integer else "float"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"{'INTEGER' if self.rule.integer else 'FLOAT'} ({self.rule.describe().split(' ', 2)[-1]})"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(value) if self.rule.integer else float(value)
            except ValueError:
                self.fail(f"{value!r}: must be {self.rule.describe()}", param, ctx)
        problem = self.rule.problem(number)
        if problem:
            self.fail(f"{number!r}: {problem}", param, ctx)
        return number


def check_types(cls: type, values: dict[str, Any]) -> str | None:
    """The first `key = value` whose value does not fit the field's annotation, in words; else None.

    For config files (TOML), whose values arrive untyped: `seeds = "3"` must fail before any work.
    Paths may be given as strings; tuples as lists.
    """
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = hints.get(key)
        if expected is not None and not _fits(value, expected):
            return f"{key} = {value!r}: expected {_type_words(expected)}, got {type(value).__name__}"
    return None


def _fits(value: Any, expected: Any) -> bool:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if expected is Path:
        return isinstance(value, (str, os.PathLike))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return not args or (len(value) == len(args) and all(_fits(v, t) for v, t in zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if origin is typing.Literal:
        return value in args
    return True  # annotations this checker does not know are left to the options class


def _type_words(expected: Any) -> str:
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_words(arg) for arg in args if arg is not type(None))
    if origin is tuple:
        plurals = {bool: "true/false values", int: "integers", float: "numbers", str: "strings", Path: "paths"}
        return f"a list of {plurals.get(args[0], 'values')}" if args else "a list"
    if origin is dict:
        return "a table"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def available_memory() -> int:
    """Bytes of memory a new allocation can get now: MemAvailable on Linux, else physical memory."""
    meminfo = Path("/proc/meminfo")
    lines = meminfo.read_text(encoding="ascii").splitlines() if meminfo.is_file() else []
    available = [int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")]
    return available[0] if available else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(flag: str, name: str, value: Any, needed: float, what: str) -> None:
    """Raise OptionError when `needed` bytes (what `value` of the option implies) exceed free memory."""
    available = available_memory()
    if needed > available:
        raise OptionError(flag, name, value, f"{what} would need about {needed / 1e9:.3g} GB of memory and this "
                                             f"machine has {available / 1e9:.3g} GB available; give a smaller value")


# Backbone activation memory per input pixel of one image (ResNet50 forward pass, float32, an upper
# order of magnitude); times the input side squared and the images per pass it must fit in memory.
BACKBONE_BYTES_PER_PIXEL = 600


def check_backbone_memory(input_size: int | None, batch: int, flag: str = "--feature-batch-size",
                          name: str = "feature_batch_size", default_size: int = 224) -> None:
    """A backbone pass over `batch` images of side `input_size` (None: the backbone's, about 224) fits in memory."""
    side = input_size or default_size
    check_memory(flag, name, batch, BACKBONE_BYTES_PER_PIXEL * side**2 * batch,
                 f"a backbone pass over {batch} images of {side} px")


def check_percentages(flag: str, name: str, values: Any) -> None:
    """A list of percentages: finite numbers >= 0 without repeats (the --ratios rule, for configs too)."""
    numbers = list(values)
    if any(isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
           or value < 0 for value in numbers):
        raise OptionError(flag, name, numbers, "must be finite percentages >= 0")
    if len(set(numbers)) != len(numbers):
        raise OptionError(flag, name, numbers, "must be distinct percentages (a value is repeated)")


def class_list(text: str | None, flag: str = "--classes") -> tuple[str, ...]:
    """"a,b" -> ("a", "b"); not given -> () (every class); given but naming none is refused, not read as all."""
    if text is None:
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise click.BadParameter(f"{text!r} names no class; leave {flag} out to keep every class",
                                 param_hint=flag)
    return names
