"""Every cache of augstudy lives under one root the user can move."""

from __future__ import annotations

from pathlib import Path

from augstudy.cache import cache_root
from augstudy.classify.features import default_cache_dir
from augstudy.metrics.inception import cached_inception_path


def test_one_root_for_weights_and_features(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AUGSTUDY_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "augstudy"
    monkeypatch.setenv("AUGSTUDY_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir().parent == tmp_path / "mine"
    assert cached_inception_path().is_relative_to(tmp_path / "mine")
