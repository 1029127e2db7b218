"""ReconScope core: data, model, training, scoring, diagnostics and exports.

albumentations 2.x phones home at import unless told not to; nothing here may touch the
network, so the switch is set before any submodule can import it.
"""

import importlib
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"


# Package attributes that load on first use (PEP 562).
#
# A package `__init__` that imports its submodules puts itself on every import path between
# them: importing one submodule runs the package's others, and sibling imports turn into
# circles. With `lazy_exports`, `from core.scoring import score_checkpoint` still works, yet
# importing any submodule runs only what that submodule imports.


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """(__getattr__, __all__) for `package` exporting name -> defining module."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
