"""One writer per output folder, and a full disk reported as such.

`writing(folder, verb)` wraps the work of a verb that writes a folder:
- it takes an exclusive `fcntl.flock` on `folder/.augstudy-lock`. The kernel drops the lock when
  the process ends, however it ends (kill -9 included), so a crashed run never blocks the next one;
  a second writer is refused at once with the holder's pid, host and command line, instead of both
  duplicating work, interleaving log.txt or deleting each other's temp folders. The file stays
  after the run: it records which verb wrote the folder (see `augstudy.outputs.check_output`).
- it turns "no space left on device" (ENOSPC or EDQUOT, or the message torch's zip writer gives
  instead of an errno) into one `DiskFullError` naming the folder, the space free and, where the
  verb can estimate it, the space needed. Writes go through temp files and atomic renames
  (`stylegan2ada.io`), so whatever the disk refused is not mistaken for finished work later.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from augstudy.outputs import LOCK_NAME, OutputError, read_lock

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# torch.save reports a full disk through its zip writer, without an errno.
_DISK_FULL_MESSAGES = ("unexpected pos", "PytorchStreamWriter failed", "file write failed", "No space left")
_held: dict[Path, int] = {}  # lock file -> nesting depth, so one process may re-enter its own lock


class LockedError(OutputError):
    """Another process is writing the same output folder."""


class DiskFullError(OutputError):
    """The disk under the output folder is full; the message names the folder and the space needed."""


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def free_bytes(folder: Path) -> int:
    """Free space for an unprivileged writer on the disk holding `folder` (or its nearest parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(folder: Path, needed: int | None, flag: str = "--out") -> None:
    """Refuse before any work when the disk under `folder` has less free space than `needed` bytes."""
    if needed is None:
        return
    free = free_bytes(folder)
    if free < needed:
        raise DiskFullError(f"{flag} {folder}: this run needs about {human_bytes(needed)} of disk space and only "
                            f"{human_bytes(free)} is free there; free some space or write elsewhere")


def is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _DISK_FULL_MESSAGES)


def disk_full_message(folder: Path, needed: int | None) -> str:
    need = f"about {human_bytes(needed)} in all" if needed is not None else "more space"
    return (f"the disk holding {folder} is full ({human_bytes(free_bytes(folder))} free; this run needs {need}). "
            "Nothing half-written is kept: free some space and run the same command again to continue "
            "where it stopped")


@contextlib.contextmanager
def full_disk_reported(folder: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk met inside the block into one DiskFullError naming `folder` (see the module docstring)."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if is_disk_full(error):
            raise DiskFullError(disk_full_message(Path(folder), needed)) from error
        raise


@contextlib.contextmanager
def writing(folder: str | os.PathLike[str], verb: str, *, needed: int | None = None,
            lock_file: Path | None = None) -> Iterator[Path]:
    """Hold the writer lock of `folder` while the block runs; see the module docstring.

    Args:
        folder: the output folder (created if missing).
        verb: the command writing, recorded in the lock file.
        needed: an estimate of the bytes the run writes, checked against the free space first.
        lock_file: where the lock lives when the verb replaces the folder itself by a rename
            (publish); default `folder/.augstudy-lock`.
    """
    folder = Path(folder)
    check_space(folder, needed)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = (lock_file or folder / LOCK_NAME).resolve()
    if path in _held:
        _held[path] += 1
        try:
            yield folder
        finally:
            _held[path] -= 1
        return
    descriptor = _acquire(path, folder, verb)
    _held[path] = 1
    try:
        with full_disk_reported(folder, needed):
            yield folder
    except BaseException:
        if created and folder.is_dir() and {item.name for item in folder.iterdir()} <= {LOCK_NAME}:
            path.unlink(missing_ok=True)  # a run that failed before writing anything leaves no trace
            (folder / LOCK_NAME).unlink(missing_ok=True)
            folder.rmdir()
        raise
    finally:
        del _held[path]
        os.close(descriptor)  # releases the lock


def _acquire(path: Path, folder: Path, verb: str) -> int:
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OutputError(f"--out {folder}: cannot create its lock file {path.name} ({error.strerror})") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        holder = read_lock(path)
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}: "
               f"{holder.get('command', '?')}") if holder else "another process"
        raise LockedError(f"--out {folder} is being written by another augstudy run ({who}); wait for it to "
                          "finish or stop it, or write to another --out") from None
    record = {"verb": verb, "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
    return _stamp(descriptor, record)


def _stamp(descriptor: int, record: dict[str, object]) -> int:
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
    return descriptor
