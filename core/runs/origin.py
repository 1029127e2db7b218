"""Whether a checkpoint in a run folder is that run's own epoch, or a file copied in from
another run (or renamed from another epoch).

Every checkpoint carries the config of the run that wrote it and that epoch's training record
(core.training.loop: "config", "metrics", "epoch"). A checkpoint is this run's epoch N when its record
is the one the run's metrics.jsonl holds for epoch N (same train_loss and seconds: a copy of
another run's file carries that run's record). Where the run has no record of epoch N (a crash
between the two writes), the run folder named in its config must be the one config.json names.
A run copied as a whole (and resumed under a new name) keeps both, so it is never called
foreign; hand-made checkpoints without a record are judged by the run folder alone.

`foreign_sentence` is asked by `core.runs.checkpoint.read_payload`, so evaluate, diagnose, export and score say it
(core.runs.folder.ForeignCheckpointWarning); `foreign_epochs` reads only each checkpoint's header
(memory-mapped, weights untouched) for the dashboard's epoch picker.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.runs.folder import Run

RECORD_KEYS = ("train_loss", "seconds")  # seconds: wall time of that epoch, unique to a training
_MEMO: dict[tuple, str] = {}
MEMO_SIZE = 4096


def foreign_sentence(run: Run, epoch: int, payload: dict[str, Any]) -> str:
    """"" when the checkpoint `payload` (file of `epoch` in `run`) is the run's own epoch, else
    one sentence naming the file, why it is not, and what to do. Runs without a readable
    config.json are not judged ("")."""
    own_run = _config_run(run.path / "config.json")
    record = next((m for m in run.metrics() if m.get("epoch") == epoch), None)
    return _sentence(run, epoch, payload, own_run, record)


def foreign_epochs(run: Run) -> dict[int, str]:
    """{epoch: foreign_sentence} of the run's foreign checkpoints; each header is read once per
    version of the checkpoint, of the run folder config.json names and of the epoch's record."""
    own_run = _config_run(run.path / "config.json")
    if own_run is None:
        return {}
    records = {m.get("epoch"): m for m in run.metrics()}
    found = {}
    for epoch in run.epochs():
        path = run.checkpoint_path(epoch)
        record = records.get(epoch)
        try:
            stat = path.stat()
        except OSError:
            continue
        key = (str(path), stat.st_size, stat.st_mtime_ns, own_run,
               tuple(str((record or {}).get(k)) for k in RECORD_KEYS))
        if key not in _MEMO:
            if len(_MEMO) >= MEMO_SIZE:
                _MEMO.pop(next(iter(_MEMO)))
            _MEMO[key] = _header_sentence(run, epoch, path, own_run, record)
        if _MEMO[key]:
            found[epoch] = _MEMO[key]
    return found


def _header_sentence(run: Run, epoch: int, path: Path, own_run: str,
                     record: dict[str, Any] | None) -> str:
    from core.runs.checkpoint import load_checkpoint

    try:  # memory-mapped: the config and record are read, the weights stay on disk
        payload = load_checkpoint(path, mmap=True)
    except ValueError:  # RunError: a damaged file is named when it is read for use
        return ""
    return _sentence(run, epoch, payload, own_run, record)


def _sentence(run: Run, epoch: int, payload: dict[str, Any], own_run: str | None,
              record: dict[str, Any] | None) -> str:
    if own_run is None:
        return ""
    reasons = _reasons(epoch, payload, own_run, record)
    if not reasons:
        return ""
    return (f"{run.checkpoint_path(epoch)}: not this run's epoch {epoch}: {' and '.join(reasons)}; "
            f"what is shown as epoch {epoch} is that other model -- move the file to its own run "
            "folder, or delete it here")


def _reasons(epoch: int, payload: dict[str, Any], own_run: str,
             record: dict[str, Any] | None) -> list[str]:
    reasons = []
    held = payload.get("epoch")
    if isinstance(held, int) and held != epoch:
        reasons.append(f"it holds epoch {held} of its run")
    written_by = str((payload.get("config") or {}).get("run", ""))
    carried = payload.get("metrics")
    if isinstance(record, dict) and isinstance(carried, dict):
        if not _same_record(record, carried):
            other = f" ({written_by})" if written_by and not _same_folder(written_by, own_run) else ""
            reasons.append(f"its training record (train_loss {_number(carried)}) is not the one this "
                           f"run logged for epoch {epoch} (train_loss {_number(record)}), so it "
                           f"was written by another training{other}")
    elif written_by and not _same_folder(written_by, own_run):
        reasons.append(f"it was written by the run {written_by}, not by this one ({own_run})")
    return reasons


def _config_run(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text()).get("run", ""))
    except (OSError, ValueError, AttributeError):
        return None


def _same_folder(a: str, b: str) -> bool:
    return Path(a).expanduser().as_posix().rstrip("/") == Path(b).expanduser().as_posix().rstrip("/")


def _same_record(logged: dict[str, Any], carried: dict[str, Any]) -> bool:
    for key in RECORD_KEYS:
        if key not in logged or key not in carried:
            continue
        try:
            a, b = float(logged[key]), float(carried[key])
        except (TypeError, ValueError):
            continue
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            return False
    return True


def _number(record: dict[str, Any]) -> str:
    try:
        return f"{float(record['train_loss']):.4f}"
    except (KeyError, TypeError, ValueError):
        return "unknown"
