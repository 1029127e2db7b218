"""Keys that change exactly when a checkpoint or a run changes, for the in-memory caches, and
the epochs whose checkpoint failed to load in this session.

A checkpoint's key is core.runs.cache.checkpoint_stamp (path, size, mtime: the stamp core's caches
use too), so a retrained, resumed or pruned epoch is never served stale.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.runs.cache import checkpoint_stamp
from core.runs.folder import Run, RunError

KEY_DAMAGED = "rs_damaged_epochs"


def checkpoint_fingerprint(run: Run, epoch: int) -> tuple[str, int, int]:
    """(path, size, mtime_ns) of the epoch's checkpoint: the key every per-epoch cache entry carries.
    Raises RunError naming the file when it is gone."""
    return checkpoint_stamp(run.checkpoint_path(epoch))


def run_fingerprint(run: Run) -> tuple[Any, ...]:
    """Changes whenever an epoch is added, replaced or removed, or metrics are appended."""
    metrics = run.path / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns if metrics.is_file() else 0
    return (str(run.path), stamp, tuple(checkpoint_fingerprint(run, e) for e in run.epochs()))


def note_damaged(run: Run, epoch: int) -> None:
    damaged = st.session_state.setdefault(KEY_DAMAGED, {})
    damaged[(str(run.path), epoch)] = checkpoint_fingerprint(run, epoch)


def damaged_epochs(run: Run) -> set[int]:
    """Epochs whose checkpoint failed to load in this session (and was not rewritten since)."""
    damaged = st.session_state.get(KEY_DAMAGED, {})
    out = set()
    for (path, epoch), stamp in damaged.items():
        if path == str(run.path) and run.checkpoint_path(epoch).is_file():
            try:
                if checkpoint_fingerprint(run, epoch) == stamp:
                    out.add(epoch)
            except RunError:
                continue
    return out
