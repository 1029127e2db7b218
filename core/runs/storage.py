"""Storage policy of a run folder: optimizer state only where a resume needs it.

Adam keeps two moments per parameter, so a checkpoint with optimizer state is about three
times its weights (the default 1.9M-parameter U-Net: 23.4 MB with, 7.8 MB without). Only the
latest epoch is ever resumed from, so once epoch N is safely on disk, the epoch before it is
rewritten without its optimizer state. Every epoch keeps its weights, config and metrics, so
every epoch still loads for scoring and diagnostics.

Optimizer state is kept in: the latest epoch, the pinned epoch (pinned.json) and the epochs
the user asked to keep (keep.json, `python -m core prune --keep 3,7`). `prune` applies the
same rule to an existing run (e.g. one trained before this policy) and also leaves the epoch
with the lowest validation loss alone.

Crash safety: the new epoch is written (temporary file, fsync, rename) and the folder synced
before the older one is rewritten, itself atomically; whatever the moment of a crash, the
newest epoch on disk holds its optimizer state. A rewrite keeps the file's mode and mtime:
the weights did not change, so results cached for the epoch (keyed by name and mtime) stay
valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.runs.checkpoint import load_checkpoint, read_payload
from core.runs.folder import Run, RunError, atomic_write_json, save_checkpoint

KEEP_FILE = "keep.json"


@dataclass(frozen=True)
class EpochStorage:
    """One checkpoint's footprint. bytes: file size; optimizer_bytes: tensor bytes of its
    optimizer state (0 = weights-only); keep: why its state stays ("" = it may be freed)."""

    epoch: int
    path: Path
    bytes: int
    optimizer_bytes: int
    keep: str

    @property
    def freeable(self) -> bool:
        return self.optimizer_bytes > 0 and not self.keep


@dataclass(frozen=True)
class PrunePlan:
    """What `prune` would do to one run: nothing is written until `prune` is called."""

    run: Run
    epochs: tuple[EpochStorage, ...]

    @property
    def to_free(self) -> tuple[EpochStorage, ...]:
        return tuple(e for e in self.epochs if e.freeable)

    @property
    def bytes_to_free(self) -> int:
        """About: the optimizer tensors' bytes (the file shrinks by this plus a few kB)."""
        return sum(e.optimizer_bytes for e in self.to_free)

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.epochs)

    def summary(self) -> str:
        """One sentence a user reads before deciding, e.g. in the CLI's dry run."""
        with_state = [e.epoch for e in self.epochs if e.optimizer_bytes > 0]
        kept = ", ".join(f"{e.epoch} ({e.keep})" for e in self.epochs if e.optimizer_bytes > 0 and e.keep)
        text = (f"{self.run.path}: {len(self.epochs)} epochs, {megabytes(self.total_bytes)}; optimizer "
                f"state in {'epochs ' + _epoch_list(with_state) if with_state else 'no epoch'}")
        if self.to_free:
            text += (f"; dropping it from epochs {_epoch_list(e.epoch for e in self.to_free)} frees "
                     f"about {megabytes(self.bytes_to_free)}")
        else:
            text += "; nothing to free"
        return text + (f"; kept: {kept}" if kept else "")


@dataclass(frozen=True)
class PruneResult:
    run: Run
    epochs: tuple[int, ...]
    freed_bytes: int  # measured: file sizes before minus after


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def kept_by_request(run: Run) -> list[int]:
    """Epochs listed in keep.json; an unreadable file keeps nothing extra (and is reported by
    set_kept when written again)."""
    try:
        raw = json.loads((run.path / KEEP_FILE).read_text())
        return sorted({int(e) for e in raw.get("epochs", [])})
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def set_kept(run: Run, epochs: list[int], keep: bool = True) -> list[int]:
    """Adds (or with keep=False removes) epochs to keep.json; returns the new list. Future
    epochs may be listed: training then never drops their optimizer state."""
    if any(e < 1 for e in epochs):
        raise RunError(f"{run.path / KEEP_FILE}: epochs to keep must be 1 or more, got {epochs}")
    current = set(kept_by_request(run))
    current = current | set(epochs) if keep else current - set(epochs)
    atomic_write_json(run.path / KEEP_FILE, {"epochs": sorted(current)})
    return sorted(current)


def keep_reasons(run: Run, epochs: list[int] | None = None) -> dict[int, str]:
    """epoch -> why its optimizer state stays: latest, pinned, kept (keep.json). The one rule
    both training and prune follow."""
    epochs = run.epochs() if epochs is None else epochs
    reasons: dict[int, str] = {e: "kept" for e in kept_by_request(run)}
    pinned = (run.pinned() or {}).get("epoch")
    if isinstance(pinned, int):
        reasons[pinned] = "pinned"
    if epochs:
        reasons[epochs[-1]] = "latest"
    return reasons


_OPTIMIZER_BYTES: dict[tuple, int] = {}  # file version -> optimizer_bytes; plan_prune re-plans every epoch
MEMO_SIZE = 4096


def optimizer_bytes(path: Path) -> int:
    """Bytes of the optimizer's tensors in a checkpoint, read through mmap (no full load);
    remembered per version of the file (inode, size, mtime: prune rewrites it under a new
    inode and size), so a plan while a run trains reads only the epochs saved since."""
    stat = path.stat()  # OSError: missing
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _OPTIMIZER_BYTES:
        if len(_OPTIMIZER_BYTES) >= MEMO_SIZE:
            _OPTIMIZER_BYTES.pop(next(iter(_OPTIMIZER_BYTES)))
        _OPTIMIZER_BYTES[key] = _read_optimizer_bytes(path)
    return _OPTIMIZER_BYTES[key]


def _read_optimizer_bytes(path: Path) -> int:
    payload = load_checkpoint(path, mmap=True)  # RunError naming a damaged file
    state = payload.get("optimizer")
    if not state:
        return 0
    tensors = [v for entry in state.get("state", {}).values() for v in entry.values() if torch.is_tensor(v)]
    return sum(t.untyped_storage().nbytes() for t in tensors) or 1  # state without tensors still counts


def plan_prune(run: Run) -> PrunePlan:
    """Each epoch's footprint and whether prune may drop its optimizer state. Keeps the
    latest, pinned, kept and lowest-validation-loss epochs' state; damaged files are left alone."""
    epochs = run.epochs()
    reasons = keep_reasons(run, epochs)
    best = run.best_by_val_loss()
    if best is not None:
        reasons.setdefault(best, "best validation loss")
    rows = []
    for epoch in epochs:
        path = run.checkpoint_path(epoch)
        try:
            size, state = path.stat().st_size, optimizer_bytes(path)
            keep = reasons.get(epoch, "")
        except (OSError, RunError):
            size, state, keep = 0, 0, "damaged or missing file, left alone"
        rows.append(EpochStorage(epoch, path, size, state, keep))
    return PrunePlan(run, tuple(rows))


def drop_optimizer_state(path: Path) -> int:
    """Rewrites a checkpoint without "optimizer" (atomically, same mode and mtime); returns the
    bytes freed (0 when it had none)."""
    payload = load_checkpoint(path)
    if "optimizer" not in payload:
        return 0
    before = path.stat()
    del payload["optimizer"]
    save_checkpoint(path, payload)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    return before.st_size - path.stat().st_size


def prune(run: Run, plan: PrunePlan | None = None) -> PruneResult:
    """Drops the optimizer state the plan marks freeable (re-planned when not given)."""
    plan = plan or plan_prune(run)
    freed = sum(drop_optimizer_state(e.path) for e in plan.to_free)
    return PruneResult(run, tuple(e.epoch for e in plan.to_free), freed)


def after_epoch_saved(run: Run, epoch: int) -> int:
    """Training's step, called once `epoch` is on disk: the epoch before it loses its optimizer
    state unless latest, pinned or kept. Returns the bytes freed."""
    _sync_folder(run.path)  # the new epoch's rename is durable before an older file changes
    earlier = [e for e in run.epochs() if e < epoch]
    if not earlier or earlier[-1] in keep_reasons(run):
        return 0
    return drop_optimizer_state(run.checkpoint_path(earlier[-1]))


def resume_payload(run: Run) -> dict[str, Any]:
    """The latest epoch's checkpoint, refused with a sentence when it cannot continue exactly."""
    epoch = run.epochs()[-1]
    payload = read_payload(run, epoch)
    if not payload.get("optimizer"):
        held = [e.epoch for e in plan_prune(run).epochs if e.optimizer_bytes > 0]
        where = (f"epochs {_epoch_list(held)} still hold it, but resume continues from the latest"
                 if held else "no epoch holds it any more")
        raise RunError(f"{run.checkpoint_path(epoch)}: epoch {epoch} has no optimizer state (it was "
                       f"pruned), so --resume cannot continue exactly; {where}. Train a new run "
                       "(--run NEW) instead")
    return payload


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _epoch_list(epochs) -> str:
    return ", ".join(map(str, epochs))
