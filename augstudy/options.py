"""Helpers for the typed option dataclasses every command takes.

The resolved options are written as JSON beside each output so any result can be traced to the
command that made it (the NVlabs `training_options.json` habit).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from stylegan2ada.io import atomic_write_json


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
