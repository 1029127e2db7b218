"""The thread budget: how many CPU threads, and at what priority, each process ReconScope
starts gets, so that a training job, its background evaluator and the dashboard together do
not oversubscribe the machine's cores.

Why: every torch process takes all cores by default, and OpenMP threads that spin-wait for a
busy core cost 3-10x. Measured on 2 shared cores (load ~3.4), a 10k-parameter U-Net at 256 px
trained at 6.8 images/s with torch's default threads, 20.6 with OMP_WAIT_POLICY=PASSIVE and
26.5 with one thread.

The rule (`thread_share`, the one place it lives), for a machine whose usable cores are C
(the process's CPU set, capped by a cgroup CPU quota; `usable_cores`):
- jobs: training jobs running at once (a sweep over k GPUs runs k; its members get
  RECONSCOPE_JOBS=k). Each job's share is C // jobs cores (at least 1).
- A job's background evaluator (core.training.follow) gets 1 thread at nice +10 while the job trains,
  and one core of the job's share is kept for it when the share has 2 or more.
- training: the rest of the job's share, split evenly over its processes on this machine
  (torchrun ranks); at least 1 thread each.
- the evaluator once its job has ended ("catch-up"): every core, still at nice +10.
- the dashboard's own scoring: the cores the running jobs listed in it leave (at least 1).
`--threads` / config num_threads override the training count (and `follow --threads` the
evaluator's). Every child is started with OMP_WAIT_POLICY=PASSIVE (unless the user set it),
so idle OpenMP threads sleep instead of spinning; it must be in the environment before torch
loads OpenMP, hence in the child's environment (and `prefer_passive_wait` before import).
On Linux both torch's OpenMP thread count and the niceness `apply` sets hold for the calling
OS thread (and threads it starts later): call it in the thread that computes (the dashboard
does so at the top of every script run); the evaluator is niced at launch, whole process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.runs.folder import Run

JOBS_ENV = "RECONSCOPE_JOBS"  # training jobs sharing this machine's cores at once (a sweep's)
WAIT_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
BACKGROUND_NICE = 10
ROLES = ("training", "evaluator", "catch-up", "dashboard")


@dataclass(frozen=True)
class Workload:
    """What shares the cores. cores: usable CPU cores; jobs: training jobs at once; ranks:
    processes per job on this machine; evaluator: each job has a background evaluator beside
    it; busy: threads that running jobs use (what the dashboard leaves them)."""

    cores: int
    jobs: int = 1
    ranks: int = 1
    evaluator: bool = True
    busy: int = 0


@dataclass(frozen=True)
class ThreadShare:
    """One process's share: torch CPU threads, niceness (0 = normal, 10 = background) and
    whether the count came from the budget or from the user (--threads / config)."""

    role: str
    threads: int
    nice: int
    cores: int
    overridden: bool = False

    def describe(self) -> str:
        """e.g. '1 thread at nice +10' or '4 threads (set by --threads)'."""
        text = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.nice:
            text += f" at nice {self.nice:+d}"
        return text + (" (set by --threads)" if self.overridden else "")


def thread_share(role: str, load: Workload, override: int = 0) -> ThreadShare:
    """The share of one process in `role` (see the module docstring for the rule).
    override > 0 replaces the thread count (the user's --threads). Raises ValueError for an
    unknown role or a workload without cores, jobs or ranks."""
    if role not in ROLES:
        raise ValueError(f"thread role '{role}': expected one of {', '.join(ROLES)}")
    if min(load.cores, load.jobs, load.ranks) < 1 or load.busy < 0:
        raise ValueError(f"{load}: cores, jobs and ranks must be 1 or more, busy 0 or more")
    per_job = max(1, load.cores // load.jobs)
    kept = 1 if load.evaluator and per_job >= 2 else 0
    threads, nice = {
        "training": (max(1, (per_job - kept) // load.ranks), 0),
        "evaluator": (1, BACKGROUND_NICE),
        "catch-up": (max(1, load.cores - load.busy), BACKGROUND_NICE),
        "dashboard": (max(1, load.cores - load.busy), 0),
    }[role]
    if override > 0:
        return ThreadShare(role, override, nice, load.cores, overridden=True)
    return ThreadShare(role, threads, nice, load.cores)


def usable_cores() -> int:
    """CPU cores this process may use: its CPU set (sched_getaffinity), capped by a cgroup v2
    CPU quota (/sys/fs/cgroup/cpu.max, rounded up); os.cpu_count() where neither exists."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(Path("/sys/fs/cgroup/cpu.max"))
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(path: Path) -> int | None:
    """Whole cores a cgroup v2 quota allows ('200000 100000' -> 2), None when unlimited."""
    try:
        limit, period = path.read_text().split()[:2]
        return None if limit == "max" else max(1, -(-int(limit) // int(period)))
    except (OSError, ValueError):
        return None


def dashboard_share(runs: Iterable[Run]) -> ThreadShare:
    """The dashboard's share: the cores that the training jobs among `runs` leave (each
    job's status.json says how many threads it trains with)."""
    busy = sum(int(run.status().get("threads") or 0) for run in runs if run.is_training())
    return thread_share("dashboard", Workload(usable_cores(), busy=busy))


def jobs_sharing(environ: Mapping[str, str] = os.environ) -> int:
    """Training jobs sharing the machine, from RECONSCOPE_JOBS (a sweep sets it); 1 when unset.
    Raises ValueError naming the variable when it is not a positive whole number."""
    text = environ.get(JOBS_ENV, "1").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"environment variable {JOBS_ENV}={text!r}: expected a whole number "
                         "of training jobs, 1 or more; unset it for one job")
    return int(text)


def local_ranks(environ: Mapping[str, str] = os.environ) -> int:
    """Training processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    text = environ.get("LOCAL_WORLD_SIZE", "1")
    return int(text) if text.isdigit() and int(text) > 0 else 1


def training_workload(evaluator: bool, environ: Mapping[str, str] = os.environ) -> Workload:
    """The workload a training process sees: this machine's cores, the jobs and ranks its
    launcher declared, and whether its job has a background evaluator."""
    return Workload(usable_cores(), jobs_sharing(environ), local_ranks(environ), evaluator)


def child_env(jobs: int = 1) -> dict[str, str]:
    """Environment additions for a process ReconScope launches: passive OpenMP waiting unless
    the user chose a policy, and RECONSCOPE_JOBS when `jobs` training jobs run at once."""
    env = {k: v for k, v in WAIT_ENV.items() if k not in os.environ}
    if jobs > 1:
        env[JOBS_ENV] = str(jobs)
    return env


def prefer_passive_wait() -> None:
    """Sets OMP_WAIT_POLICY=PASSIVE in this process unless the user set a policy; it only
    takes effect when called before torch is first imported (OpenMP reads it once)."""
    for key, value in WAIT_ENV.items():
        os.environ.setdefault(key, value)


def apply(share: ThreadShare, renice: bool = True) -> ThreadShare:
    """Sets torch's CPU threads and (renice) lowers this process's priority to share.nice
    (never raises it: that needs privileges); returns what the process really has now."""
    import torch

    torch.set_num_threads(share.threads)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if renice and nice < share.nice:
        try:
            nice = os.nice(share.nice - nice)
        except OSError:  # not allowed here: the process keeps its priority
            pass
    return ThreadShare(share.role, torch.get_num_threads(), nice, share.cores, share.overridden)


def wait_policy() -> str:
    """How idle OpenMP threads wait in this process's environment, for the report line."""
    return os.environ.get("OMP_WAIT_POLICY", "").lower() or "OpenMP's default"
