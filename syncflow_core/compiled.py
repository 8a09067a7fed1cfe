"""The compiled loops (C extensions built by ``setup.py``), where the package was built with them.

Each has a Python/numpy reference beside its caller, which the tests check it against and which
runs instead where the package was built without a C compiler.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["compiled_module"]


def compiled_module(name: str) -> ModuleType | None:
    """``syncflow_core.<name>`` (e.g. ``_hashloops``), or None when it was not built."""
    try:
        return importlib.import_module(f"syncflow_core.{name}")
    except ImportError:
        return None
