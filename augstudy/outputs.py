"""Where a command may write: its own output, never an input, and only where it can write.

Every verb calls `check_output` before any work. It refuses an output that overlaps an input in
either direction (a folder inside the other, or the same path: `prepare proj/images --out proj`
once overwrote and deleted its own source images) and proves the output can be written by
creating the folder and a probe file in it, so a read-only disk fails in the first second with
the folder and the reason, not after hours of work with a raw `OSError`.

Given the `verb`, it also refuses an existing output that the verb did not write: a non-empty
folder without the verb's mark (its writer lock, `augstudy.locks`, or a file the verb always
writes), or an existing file with no sign of the verb beside it. So `generate --out` into a real
data folder, or `gan-metrics --out` onto a pool image, fails before anything is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

LOCK_NAME = ".augstudy-lock"  # the writer lock of an output folder; it records the last writer's verb


class OutputError(ValueError):
    """The output overlaps an input or cannot be written; the message names both and says why."""


class OutputPath(click.Path):
    """click.Path for an --out: an empty name is refused, where click would quietly read it as the
    current folder (`phantom --out ''` once wrote Data/ into it)."""

    def __init__(self, *, file: bool = False) -> None:
        super().__init__(file_okay=file, dir_okay=not file, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail(f"{value!r}: give a {'file' if self.file_okay else 'folder'} name", param, ctx)
        return super().convert(value, param, ctx)


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


InputPath = str | os.PathLike[str] | None


def check_output(out: str | os.PathLike[str],
                 inputs: Mapping[str, InputPath] | Iterable[tuple[str, InputPath]] | None = None,
                 *, flag: str = "--out", is_file: bool = False, verb: str | None = None,
                 owned: Sequence[str] = ()) -> Path:
    """Check that `out` is safe and writable before any work; returns it resolved.

    Args:
        out: the output folder, or with `is_file` the output file (its folder is checked then).
        inputs: option name -> input path (file or folder; None entries are skipped), as a
            mapping or as (name, path) pairs when one option names several inputs.
        flag: how the output is named in messages.
        is_file: `out` is one file the command writes; inputs may then sit beside it, but the
            file may not be an input nor lie inside an input folder.
        verb: the command writing; with it an existing output must be one this verb wrote before.
        owned: names of files the verb always writes into its output folder (for a file output:
            beside its file); any of them marks an output the verb wrote before the lock existed.

    Raises:
        OutputError: the output and an input overlap, or the output folder cannot be written.
    """
    if not str(out).strip():
        raise OutputError(f"{flag} {str(out)!r}: give a {'file' if is_file else 'folder'} name (an empty name "
                          "would write into the current folder)")
    target = Path(out).expanduser().resolve()
    pairs = inputs.items() if isinstance(inputs, Mapping) else (inputs or ())
    for name, given in pairs:
        if given is None:
            continue
        source = Path(given).expanduser().resolve()
        if target == source:
            raise OutputError(f"{flag} {out} is the same path as {name} {given}; write the output elsewhere")
        if _within(target, source) and (source.is_dir() or not source.exists()):
            raise OutputError(f"{flag} {out} is inside {name} {given}; nothing may be written into an input "
                              f"folder: write the output elsewhere")
        if not is_file and _within(source, target):
            raise OutputError(f"{name} {given} is inside {flag} {out}; the output folder would overwrite or "
                              f"delete it: write the output to a folder outside the inputs")
    folder = target.parent if is_file else target
    if is_file and target.is_dir():
        raise OutputError(f"{flag} {out} is a folder; give a file name")
    if verb is not None:
        _check_owner(target, verb, owned, flag, is_file)
    _check_writable(folder, flag, Path(out))
    return target


def read_lock(path: Path) -> dict[str, object]:
    """What a lock file says about its last (or current) writer: verb, pid, host, command; {} when none."""
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


def last_writer(folder: Path) -> dict[str, object]:
    """`read_lock` of the lock file of `folder`."""
    return read_lock(Path(folder) / LOCK_NAME)


def _check_owner(target: Path, verb: str, owned: Sequence[str], flag: str, is_file: bool) -> None:
    """Refuse an existing output that `verb` did not write (see the module docstring)."""
    folder = target.parent if is_file else target
    marked = last_writer(folder).get("verb") == verb or any((folder / name).exists() for name in owned)
    if is_file:
        if target.exists() and not marked:
            raise OutputError(f"{flag} {target} already exists and `augstudy {verb}` did not write it; "
                              "give a new file name (nothing was overwritten)")
        return
    if not target.is_dir() or marked:
        return
    entries = sorted(path.name for path in target.iterdir() if path.name != LOCK_NAME)
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputError(f"{flag} {target} is a non-empty folder that `augstudy {verb}` did not write (it holds "
                          f"{shown}); write to a new or empty folder so nothing in it is mixed up or replaced")


def _check_writable(folder: Path, flag: str, given: Path) -> None:
    """Create `folder` and a probe file in it, then remove what was created: a refused or failed
    command leaves no trace, and the command itself creates the folder when it writes."""
    missing = [folder, *folder.parents]
    missing = [path for path in missing if not path.exists()][::-1]  # outermost first
    existing = missing[0].parent if missing else folder
    if not existing.is_dir():
        raise OutputError(f"{flag} {given}: {existing} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".augstudy-write-test-") as probe:
            probe.write(b"0")  # creating and writing a file proves the folder is writable; it is deleted on close
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(f"{flag} {given}: cannot write to {folder} ({reason})") from None
    finally:
        for path in reversed(missing):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
