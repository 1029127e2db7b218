"""Per-checkpoint results on disk, so the dashboard never recomputes what a click already paid for.

A result is keyed by the checkpoint's name and modification time plus the parameters
that produced it: retraining or resuming over an epoch invalidates its results by itself.
epoch None keys a result on its parameters alone, shared by every epoch of the run (scores that
never read the model: the no-learning floors, core.scoring.options.MODEL_FREE_METHODS).
Results are dicts; numpy arrays go to an .npz (no pickle), everything else to a .json beside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.runs.folder import Run, RunError, atomic_write_bytes

CACHE_VERSION = 1


def checkpoint_stamp(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime_ns): which version of a checkpoint file this is, the one stamp every
    cache of per-checkpoint things keys on (the dashboard's memory, checkpoint configs, and,
    through checkpoint_fingerprint, this module's disk cache). Raises RunError naming the
    file when it is gone."""
    try:
        stat = path.stat()
    except OSError as err:
        raise RunError(f"{path}: checkpoint is gone (deleted or renamed while open)") from err
    return str(path), stat.st_size, stat.st_mtime_ns


def checkpoint_fingerprint(path: Path) -> str:
    """"name:mtime_ns", the checkpoint part of a disk-cache key: checkpoint_stamp without the
    folder (results live inside the run) and without the size: dropping the optimizer state
    (core.runs.storage) rewrites a file with the same weights and mtime, and its cached results
    must stay valid. A retrained or resumed epoch is a new file with a new mtime (its size
    alone never told them apart)."""
    _, _, mtime_ns = checkpoint_stamp(path)
    return f"{path.name}:{mtime_ns}"


def cache_key(run: Run, epoch: int | None, kind: str, params: dict[str, Any] | None = None) -> str:
    ckpt = None if epoch is None else checkpoint_fingerprint(run.checkpoint_path(epoch))
    text = json.dumps({"v": CACHE_VERSION, "ckpt": ckpt,
                       "params": params or {}}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"


def _folder(run: Run, epoch: int | None) -> Path:
    return run.cache_dir / ("run" if epoch is None else f"epoch_{epoch:03d}")


def _paths(run: Run, epoch: int | None, key: str) -> tuple[Path, Path]:
    folder = _folder(run, epoch)
    return folder / f"{key}.json", folder / f"{key}.npz"


def load_cached(run: Run, epoch: int | None, kind: str, params: dict[str, Any] | None = None,
                skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The stored result, or None; arrays named in `skip` are not read (a page that needs a
    result's scores but not its maps reads a tenth of the bytes)."""
    json_path, npz_path = _paths(run, epoch, cache_key(run, epoch, kind, params))
    if not json_path.is_file():
        return None
    try:
        result = json.loads(json_path.read_text())
        if npz_path.is_file():
            with np.load(npz_path, allow_pickle=False) as arrays:
                result.update({name: arrays[name] for name in arrays.files if name not in skip})
    except (OSError, ValueError):
        return None  # a damaged cache entry is recomputed, never trusted
    return result


def has_entries(run: Run, epoch: int | None, kind: str) -> bool:
    """Whether any result of `kind` was stored for this epoch (any params): a cheap check
    before building the exact key, which may need the checkpoint itself."""
    return any(_folder(run, epoch).glob(f"{kind}-*.json"))


class CacheWarning(UserWarning):
    """A result could not be stored (a read-only run folder); the message names the folder."""


_UNWRITABLE: set[str] = set()  # cache folders already reported, so each is named once


def store_cached(run: Run, epoch: int | None, kind: str, params: dict[str, Any] | None, result: dict[str, Any]) -> None:
    """Stores a result; the cache is optional: a run folder the user may read but not write
    (a teammate's run, a read-only share) gets one CacheWarning and the result is just not kept."""
    json_path, npz_path = _paths(run, epoch, cache_key(run, epoch, kind, params))
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in result.items() if k not in arrays}
    try:
        text = json.dumps(rest, default=_numpy_scalar)
    except TypeError as err:
        raise TypeError(f"cache '{kind}': results must be numpy arrays at the top level or JSON values "
                        f"({err})") from err
    try:
        if arrays:
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write_bytes(npz_path, buffer.getvalue())
        atomic_write_bytes(json_path, text.encode())  # written last: its presence means the entry is complete
    except OSError as err:
        _warn_unwritable(run, err)


def _warn_unwritable(run: Run, err: OSError) -> None:
    if str(run.cache_dir) in _UNWRITABLE:
        return
    _UNWRITABLE.add(str(run.cache_dir))
    warnings.warn(
        f"{run.cache_dir}: results cannot be cached there ({err.strerror or err}); they are "
        "computed anew each time -- copy the run to a folder you can write to for faster reruns",
        CacheWarning, stacklevel=3)


def _numpy_scalar(value: Any) -> Any:
    """numpy scalars become Python numbers; anything else (nested arrays, objects) is refused."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def cached(run: Run, epoch: int | None, kind: str, params: dict[str, Any] | None,
           compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The stored result for (checkpoint, kind, params), computing and storing it on a miss."""
    hit = load_cached(run, epoch, kind, params)
    if hit is not None:
        return hit
    result = compute()
    store_cached(run, epoch, kind, params, result)
    return result
