"""Choosing the Keras backend before Keras is imported.

Keras reads `KERAS_BACKEND` once, at its first import, and cannot switch afterwards. Every module
of `augstudy.classify` therefore imports Keras only through `import_keras`, inside functions, so
that `augstudy sweep --keras-backend torch` can still pick the backend when the command starts.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

KERAS_BACKENDS = ("tensorflow", "torch")
DEFAULT_KERAS_BACKEND = "tensorflow"


class KerasBackendError(RuntimeError):
    """Keras was already imported with another backend than the one asked for."""


def resolve_keras_backend(requested: str | None) -> str:
    """The backend a command will use: the one asked for, else `KERAS_BACKEND`, else TensorFlow."""
    if "keras" in sys.modules and requested is None:
        return str(sys.modules["keras"].backend.backend())
    backend = requested or os.environ.get("KERAS_BACKEND") or DEFAULT_KERAS_BACKEND
    if backend not in KERAS_BACKENDS:
        raise KerasBackendError(f"unknown Keras backend {backend!r}; choose one of {', '.join(KERAS_BACKENDS)}")
    return backend


def import_keras(requested: str | None = None) -> ModuleType:
    """Import Keras with the requested backend (see `resolve_keras_backend`) and return it.

    Raises `KerasBackendError` when Keras is already loaded in this process with another backend,
    since the only fix is a new process (run the command again with the backend you want).
    """
    backend = resolve_keras_backend(requested)
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        active = keras.backend.backend()
        if active != backend:
            raise KerasBackendError(
                f"Keras is already imported in this process with the {active!r} backend, so it cannot "
                f"switch to {backend!r}; start a new process (e.g. run the command again) with "
                f"--keras-backend {backend} or KERAS_BACKEND={backend}"
            )
        return keras
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras
