"""Start, stop and watch a training job as a separate process.

The job is `python -m core train` in its own process session, so it survives page reloads and
dashboard restarts; its PID and state live in the run folder (status.json), its output in
train.log. Nothing here imports Streamlit: the dashboard only calls these functions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from core.config import TrainConfig
from core.runs.folder import Run, is_alive
from core.training.locking import refuse_busy_run
from core.training.threads import Workload, child_env, jobs_sharing, thread_share, usable_cores

# Launched jobs by pid: holding the Popen lets this process reap its own children (no zombies,
# no ResourceWarning); jobs started by an earlier dashboard process are watched through their pid.
_CHILDREN: dict[int, subprocess.Popen] = {}

def start_training(config: TrainConfig, resume: bool = False, env: dict[str, str] | None = None,
                   processes: int | None = None) -> int:
    """Launches the job and returns its PID; refuses a run that is already training.
    `env`: extra environment variables for the job (a sweep pins each member to one GPU, and
    such a job runs as one process). `processes` None = one per visible GPU (torchrun when
    several), else that many ranks."""
    run = Run(Path(config.run).expanduser())
    refuse_busy_run(run, resume, probe_lock=True)  # also a job started elsewhere (a terminal)
    run.path.mkdir(parents=True, exist_ok=True)
    job_config = run.path / "job_config.json"
    config.save(job_config)
    if not (run.path / "config.json").is_file():  # listed as a run at once, before the job starts
        config.save(run.path / "config.json")
    if processes is None:
        processes = 1 if env and "CUDA_VISIBLE_DEVICES" in env else processes_for(config)
    command = training_command(job_config, run.path, resume, processes)
    if processes > 1:  # torchrun would set each rank's OMP_NUM_THREADS to 1 (with a warning)
        env = {**(env or {}), "OMP_NUM_THREADS": str(_rank_threads(config, processes, env))}
    run.write_status(state="starting", pid=None, epoch=len(run.epochs()), epochs=config.epochs,
                     message="starting", started=time.time())
    process = launch_detached(command, run.path / "train.log", env)
    run.write_status(pid=process.pid)  # the job writes the same pid itself once it runs
    return process.pid


def _rank_threads(config: TrainConfig, processes: int, env: dict[str, str] | None) -> int:
    """Each torchrun rank's threads under the budget (core.training.threads); the rank applies it too."""
    load = Workload(usable_cores(), jobs_sharing({**os.environ, **(env or {})}), processes)
    return thread_share("training", load, config.num_threads).threads


def launch_detached(command: list[str], log_path: Path, env: dict[str, str] | None = None
                    ) -> subprocess.Popen:
    """Starts `command` in its own process session, so it survives page reloads and the
    launching process; stdout and stderr are appended to `log_path` after a `$ command` line.
    `env`: extra environment variables, on top of the thread budget's (passive OpenMP waiting,
    core.training.threads.child_env). The process is held here for reaping (no zombies)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_ALBUMENTATIONS_UPDATE": "1", **child_env(),
           **(env or {})}
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, cwd=os.getcwd())
    track_child(process)
    return process


def processes_for(config: TrainConfig) -> int:
    """Training processes for a job: one per visible GPU when CUDA is wanted and there are
    several, else one."""
    if config.device == "cpu":
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def training_command(job_config: Path, run_path: Path, resume: bool, processes: int = 1) -> list[str]:
    """`python -m core train ...`, or the same under torchrun (one machine, `processes` ranks).
    The run folder goes as --run-dir: torchrun's own parser claims --run."""
    command = [sys.executable, "-m", "core", "train", "--config", str(job_config), "--run-dir", str(run_path),
               "--quiet"] + (["--resume"] if resume else [])
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={processes}", "-m"]
        command = launcher + command[2:]  # from "core" on
    return command


def stop_training(run: Run, timeout: float = 10.0) -> bool:
    """SIGTERM: the loop stops, keeping finished epochs. Returns True once the process is gone."""
    pid = run.status().get("pid")
    if not run.is_training() or not is_alive(pid):
        return False
    try:
        os.killpg(os.getpgid(int(pid)), signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not is_alive(pid) or _reaped(int(pid)):
            return True
        time.sleep(0.1)
    return not is_alive(pid)


def _reaped(pid: int) -> bool:
    """A child of this process stays a zombie until waited for; reap it so it reads as gone."""
    process = _CHILDREN.get(pid)
    if process is None or process.poll() is None:
        return False
    del _CHILDREN[pid]
    return True


def track_child(process: subprocess.Popen) -> None:
    """Holds a process this one launched (a sweep runner) so that reap / reap_if_done find it."""
    _CHILDREN[process.pid] = process


def reap_if_done(pid: int | None) -> bool:
    """Reaps a launched process that has exited (no zombie); True when it was reaped now."""
    return bool(pid) and _reaped(int(pid))


def reap(pid: int | None, timeout: float = 60.0) -> None:
    """Waits for a job this process launched to exit (its status may say finished a moment
    before the process is gone); a pid it did not launch is left alone."""
    process = _CHILDREN.pop(int(pid), None) if pid else None
    if process is not None:
        process.wait(timeout=timeout)


def log_tail(run: Run, lines: int = 40) -> str:
    path = run.path / "train.log"
    if not path.is_file():
        return ""
    with path.open(errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


def job_progress(run: Run) -> dict[str, Any]:
    """Status plus the latest epoch's record: what a progress panel shows."""
    status = run.status()
    metrics = run.metrics()
    progress = dict(status)
    progress["finished_epochs"] = run.epochs()
    progress["last_metrics"] = metrics[-1] if metrics else None
    total, done = status.get("epochs"), len(progress["finished_epochs"])
    if total and metrics:
        per_epoch = sum(m.get("seconds", 0) for m in metrics[-3:]) / len(metrics[-3:])
        progress.setdefault("eta_s", per_epoch * max(0, total - done))
    progress["fraction"] = (done / total) if total else 0.0
    return progress


def wait_for(run: Run, states=("finished", "failed", "stopped"), timeout: float = 300.0) -> dict[str, Any]:
    """Polls status.json until the job reaches one of `states` (tests and scripts)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run.status()
        pid = status.get("pid")
        if pid:
            _reaped(int(pid))
        status = run.status()
        if status.get("state") in states:
            return status
        time.sleep(0.2)
    raise TimeoutError(f"{run.path}: job did not reach {states} within {timeout:.0f}s")
