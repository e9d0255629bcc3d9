"""Atomic writes: all or nothing, and files readable like any other file the user creates."""

from __future__ import annotations

import os
import stat

import pytest

from stylegan2ada.io import atomic_open, atomic_write_json, atomic_write_text, sha256_bytes, sha256_file


def test_failed_write_leaves_old_content_and_no_temp_file(tmp_path):
    target = tmp_path / "result.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["result.txt"]


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "options.json", {"b": 1, "a": 2})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "options.json").stat().st_mode) == 0o644
    assert (tmp_path / "options.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_file_hash_equals_bytes_hash(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == sha256_bytes(data)
