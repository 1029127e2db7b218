"""Package attributes that load on first use (PEP 562).

A package `__init__` that imports its submodules puts itself on every import path between
them: importing one submodule runs the package's others, and sibling imports turn into
circles. With `lazy_exports`, `from core.scoring import score_checkpoint` still works, yet
importing any submodule runs only what that submodule imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(__getattr__, __all__) for `package` exporting name -> defining module."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
