"""What the dashboard's AppTest modules share: opening the app on a runs folder, reading errors."""

from __future__ import annotations

import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TIMEOUT = 240


def copy_run(run_path: Path, root: Path) -> Path:
    """A writable copy of a fixture run (pages write caches and pins into it)."""
    shutil.copytree(run_path, root / "tiny", ignore=shutil.ignore_patterns("cache"))
    return root


def open_app(root: Path, monkeypatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("RECONSCOPE_CHECKPOINTS", str(root))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["feat_method"] = "pca"  # UMAP's first call compiles numba code (~20 s)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    return at


def messages(at: AppTest) -> str:
    return " | ".join(e.value for e in [*at.error, *at.exception])
