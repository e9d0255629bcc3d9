"""The one place augstudy keeps downloaded weights and cached features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$AUGSTUDY_CACHE_DIR`, else `$XDG_CACHE_HOME/augstudy`, else `~/.cache/augstudy`."""
    explicit = os.environ.get("AUGSTUDY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "augstudy"
