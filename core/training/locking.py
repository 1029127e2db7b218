"""One training process per run folder, enforced by the operating system.

Two jobs started at the same moment on one run would both pass a check-then-write test of
status.json and interleave their checkpoints. An exclusive `fcntl.flock` on `<run>/train.lock`
is atomic: exactly one process gets it, and the kernel releases it when that process ends, even
on a crash or kill -9, so a stale lock never blocks the next job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from core.runs.folder import Run, RunError

LOCK_NAME = "train.lock"


class RunLockedError(RunError):
    """Another process is training this run; the message names it and what to do."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Holds the run's training lock for the duration of the block (creates the folder).

    Raises RunLockedError at once, without waiting, when another process (or another open
    lock in this process) holds it. Yields the lock file's path.
    """
    path = Path(run_dir).expanduser() / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for a plain write
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = _read_holder(path)
            raise RunLockedError(
                f"{path.parent}: another training process{holder} is already training this run; "
                "wait for it, stop it, or choose another --run"
            ) from err
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_locked(run_dir: str | Path) -> bool:
    """Whether some process holds the run's training lock right now (probes without waiting)."""
    path = Path(run_dir).expanduser() / LOCK_NAME
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def refuse_busy_run(run: Run, resume: bool, own_pid: int | None = None,
                    probe_lock: bool = False) -> None:
    """The one "may this run be trained now?" rule, for the training loop and the launcher.

    Raises RunError with a sentence when a job is training the run (its status says so; with
    `own_pid`, the job calling this, a status carrying that pid or none yet is this job), when
    `probe_lock` and another process holds the run's lock (a job started elsewhere whose status
    is not written yet), or when the run already has epochs and `resume` is off.
    """
    if run.path.is_dir() and run.is_training():
        pid = run.status().get("pid")
        if own_pid is None or pid not in (None, own_pid):
            raise RunError(f"{run.path}: already training (pid {pid}); stop it first or choose "
                           "another run name")
    if probe_lock and is_locked(run.path):
        raise RunError(f"{run.path}: another process is training this run; wait for it or stop it")
    epochs = run.epochs()
    if epochs and not resume:
        raise RunError(f"{run.path}: run already has epochs {epochs[0]}..{epochs[-1]}; resume it "
                       "(--resume) or choose another run name")
