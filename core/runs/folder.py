"""The run folder: the contract between training, analysis and the dashboard.

checkpoints/<run>/
  config.json     the TrainConfig that made the run
  epoch_NNN.pt    {"model", "optimizer", "epoch", "config", "metrics", "version"}; the config
                  and metrics record tell a file copied in from another run (core.runs.origin);
                  written to a temporary name and renamed, so a crash never leaves a
                  half-written checkpoint under a real name;
                  "optimizer" only in the latest, pinned and kept epochs (core.runs.storage)
  metrics.jsonl   one JSON object per finished epoch, append-only
  status.json     job state: pid, state, epoch, device, message
  train.log       the job's output
  pinned.json     the epoch a user chose, when, and why
  cache/          per-checkpoint results (see core.runs.cache)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import TrainConfig

CHECKPOINT_PATTERN = re.compile(r"^epoch_(\d{3,})\.pt$")
ACTIVE_STATES = ("starting", "running")
STARTUP_GRACE_S = 60  # a job being launched has no pid yet; after this long it counts as failed


class RunError(ValueError):
    """A run, epoch or checkpoint cannot be used; the message says which and what to do."""


class ForeignCheckpointWarning(UserWarning):
    """A run folder holds a checkpoint another run wrote (a copied file); it is still read."""


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the fallback)
    os.umask(mask)
    return mask


def plain_write_mode(path: Path) -> int:
    """The mode `open(path, "w")` would leave: an existing file's own, else 0o666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename: readers see the old or the new file.

    The file gets the mode a plain write would give it (mkstemp's own is 0600, owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, plain_write_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonable(value: Any) -> Any:
    """nan/inf -> None, numpy scalars and arrays -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    try:  # a finished child not yet reaped by its parent is a zombie: it is gone for our purposes
        return Path(f"/proc/{int(pid)}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class Run:
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path).expanduser())

    @classmethod
    def open(cls, path: str | Path) -> Run:
        run = cls(Path(path).expanduser())
        if not run.path.is_dir():
            raise RunError(f"{run.path}: run folder does not exist; train one with python -m core train")
        return run

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def checkpoint_path(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:03d}.pt"

    def epochs(self) -> list[int]:
        """Finished epochs, i.e. the checkpoints present (temporary files are not listed)."""
        if not self.path.is_dir():
            return []
        found = (CHECKPOINT_PATTERN.match(p.name) for p in self.path.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def config(self) -> TrainConfig:
        path = self.path / "config.json"
        if not path.is_file():
            raise RunError(f"{self.path}: no config.json; this folder is not a ReconScope run")
        return TrainConfig.load(path)

    def foreign_epochs(self) -> dict[int, str]:
        """{epoch: sentence} of checkpoints copied in from another run (core.runs.origin)."""
        from core.runs.origin import foreign_epochs

        return foreign_epochs(self)

    def metrics(self) -> list[dict[str, Any]]:
        """Each finished epoch's record; a torn last line (crash mid-write) is ignored."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        latest: dict[int, dict[str, Any]] = {}
        for record in records:  # a resumed epoch replaces an older record of the same epoch
            latest[int(record.get("epoch", 0))] = record
        return [latest[e] for e in sorted(latest)]

    def append_metrics(self, record: dict[str, Any]) -> None:
        with (self.path / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def status(self) -> dict[str, Any]:
        """Job state; a 'running' job whose process is gone is reported as 'failed'."""
        path = self.path / "status.json"
        try:
            status = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"state": "finished" if self.epochs() else "empty"}
        launching = status.get("pid") is None and time.time() - status.get("updated", 0) < STARTUP_GRACE_S
        if status.get("state") in ACTIVE_STATES and not launching and not is_alive(status.get("pid")):
            status["state"] = "failed"
            status.setdefault("message", "the training process ended without saying why; see train.log")
        return status

    def write_status(self, **fields: Any) -> None:
        current = {}
        path = self.path / "status.json"
        if path.is_file():
            try:
                current = json.loads(path.read_text())
            except json.JSONDecodeError:
                current = {}
        current.update(fields, updated=time.time())
        atomic_write_json(path, current)

    def is_training(self) -> bool:
        return self.status().get("state") in ACTIVE_STATES

    def pinned(self) -> dict[str, Any] | None:
        path = self.path / "pinned.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def pin(self, epoch: int, reason: str = "") -> dict[str, Any]:
        if epoch not in self.epochs():
            raise RunError(f"{self.path}: cannot pin epoch {epoch}; available: {_span(self.epochs())}")
        record = {"epoch": epoch, "reason": reason, "pinned_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_json(self.path / "pinned.json", record)
        return record

    def best_by_val_loss(self, among: Iterable[int] | None = None) -> int | None:
        """The saved epoch (of `among`, default all) with the lowest finite validation loss;
        ties go to the earlier epoch; None when none was logged."""
        available = set(self.epochs()) & (set(among) if among is not None else set(self.epochs()))
        scored = [(m["val_loss"], m["epoch"]) for m in self.metrics()
                  if m.get("epoch") in available and _finite(m.get("val_loss"))]
        return min(scored)[1] if scored else None

    def resolve_epoch(self, which: str | int) -> int:
        """An int, 'last', or 'best' (the lowest validation loss, else the last epoch). The
        product's chosen epoch (pin, suggestion, ...) is core.diagnostics.choice: it needs the
        diagnosis, which this folder-level object does not compute."""
        epochs = self.epochs()
        if not epochs:
            raise RunError(f"{self.path}: no finished epochs yet")
        text = str(which).strip().lower()
        if text == "last":
            return epochs[-1]
        if text == "best":
            return self.best_by_val_loss() or epochs[-1]
        if text == "chosen":
            raise RunError("epoch 'chosen' needs the run's diagnosis: resolve it with "
                           "core.diagnostics.choice.resolve_epoch")
        try:
            epoch = int(text)
        except ValueError as err:
            raise RunError(f"epoch '{which}': use a number, chosen, best or last") from err
        if epoch not in epochs:
            raise RunError(f"{self.path}: epoch {epoch} does not exist; available: {_span(epochs)}")
        return epoch


def list_runs(root: str | Path = "checkpoints") -> list[Run]:
    """Every folder below root (two levels deep, for per-category runs) with a config.json."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    found = sorted({p.parent for p in root.glob("*/config.json")} | {p.parent for p in root.glob("*/*/config.json")})
    if (root / "config.json").is_file():
        found.insert(0, root)
    return [Run(p) for p in found]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _span(epochs: list[int]) -> str:
    if not epochs:
        return "none yet"
    return f"{epochs[0]}..{epochs[-1]}" if len(epochs) > 3 else ", ".join(map(str, epochs))
