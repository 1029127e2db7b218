"""Evaluate every epoch as it lands, beside training, so a finished run opens from cache.

`follow_run` watches a run folder and scores each new checkpoint's test set with the methods
the dashboard's Overview shows first (OVERVIEW_METHODS; image AUROC, calibrated and raw) and
computes its health flags (core.diagnostics, without clustering), then maps the newest epoch's
encoder features as the Features page first shows them (UMAP and K-Means, `map_features`),
storing results in the run's per-checkpoint cache (core.runs.cache) exactly as the dashboard and
`evaluate` would compute them. It runs in its own low-priority process (`python -m core
follow`, started by `python -m core train` and by the dashboard's training jobs), so it never
blocks the next epoch, and it ends once the job has stopped and every epoch is scored.
Its threads follow the budget (core.training.threads): 1 thread at nice +10 while the run trains,
every core (still niced) for the epochs left once the job has ended.

A run without test labels is not evaluated (only its features are mapped); one whose data
folder is gone is noted and skipped. A checkpoint that cannot be scored (diverged, damaged) is noted and skipped.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.diagnostics.timeline import RANKED_METHODS
from core.runs.folder import Run
from core.training.threads import (
    BACKGROUND_NICE,
    ThreadShare,
    Workload,
    apply,
    child_env,
    thread_share,
    usable_cores,
)

OVERVIEW_METHODS = RANKED_METHODS  # what the Overview's real-AUROC table shows first
POLL_S = 2.0
LOG_NAME = "follow.log"
ENDED_STATES = ("finished", "failed", "stopped")


def follow_run(run: Run, data_root: str | Path | None = None,
               methods: Sequence[str] = OVERVIEW_METHODS, poll_s: float = POLL_S,
               log: Callable[[str], None] = print, max_idle_s: float = 3600.0,
               threads: int = 0, features: bool = True) -> list[int]:
    """Scores each epoch of `run` once it exists (when its test set has labels) and, with
    `features`, maps the newest epoch's features (map_features); returns the epochs scored.
    Stops when the job is no longer running and every epoch is done, or after max_idle_s with
    nothing new. threads: torch CPU threads; 0 = the budget's (core.training.threads), which changes
    when the job ends (each change is logged)."""
    from core.diagnostics.timeline import diagnose_epoch
    from core.evaluation.evaluate import evaluate_epoch
    from core.scoring.data import run_data_root
    from core.scoring.testset import build_test_set

    done: set[int] = set()
    scored: list[int] = []
    idle_since = time.monotonic()
    share = None
    labelled: bool | None = None
    while True:
        pending = [e for e in run.epochs() if e not in done]
        if pending:
            share = _share_now(run, threads, share, log)
        for epoch in pending:
            done.add(epoch)
            try:
                config = run.config()
                root = run_data_root(config, data_root)
                if labelled is None:
                    labelled = build_test_set(config, root).has_labels
                    if not labelled:
                        log(f"epoch {epoch}: the test set has no labels; nothing to evaluate")
                if not labelled:
                    continue
                started = time.perf_counter()
                evaluate_epoch(run, epoch, root, methods, pixel=False, thresholds=False,
                               routing=False)
                diagnose_epoch(run, epoch, root, cluster=False)  # the Overview's health marks
                scored.append(epoch)
                log(f"epoch {epoch}: evaluated ({', '.join(methods)}) and diagnosed in "
                    f"{time.perf_counter() - started:.1f} s")
            except (ValueError, RuntimeError, OSError) as err:
                log(f"epoch {epoch}: not evaluated: {err}")
        if pending and features:
            map_features(run, pending[-1], data_root, log)  # the newest only: UMAP is the slow part
        if pending:
            idle_since = time.monotonic()
            continue
        ended = run.status().get("state") in ENDED_STATES  # no status yet: the job is starting
        if ended or time.monotonic() - idle_since > max_idle_s:
            return scored
        time.sleep(poll_s)


def _share_now(run: Run, override: int, before: ThreadShare | None,
               log: Callable[[str], None]) -> ThreadShare:
    """Applies the budget's share for now: beside the training job, or catching up after it."""
    role = "evaluator" if run.is_training() else "catch-up"
    if before is not None and before.role == role:
        return before
    # the priority is the process's own (python -m core follow sets it), not this call's
    share = apply(thread_share(role, Workload(usable_cores()), override), renice=False)
    actual = dataclasses.replace(share, nice=os.nice(0))  # what this process really runs at
    log(f"threads: {actual.describe()} "
        f"({'beside training' if role == 'evaluator' else 'the job has ended'})")
    return share


def follower_enabled() -> bool:
    """False when RECONSCOPE_NO_FOLLOW is set (the test suite sets it)."""
    return not os.environ.get("RECONSCOPE_NO_FOLLOW")


def map_features(run: Run, epoch: int, data_root: str | Path | None = None,
                 log: Callable[[str], None] = print) -> bool:
    """The Features page's default view of one epoch (UMAP of the bottleneck features and
    K-Means with k = number of categories, core.diagnostics.features' defaults) computed into
    the run's cache, so the page opens from it. Labels are not needed. False when it failed."""
    from core.diagnostics.features import feature_clusters, feature_embedding
    from core.scoring.data import run_data_root

    started = time.perf_counter()
    try:
        root = run_data_root(run.config(), data_root)
        feature_embedding(run, epoch, root)
        feature_clusters(run, epoch, root)
    except (ValueError, RuntimeError, OSError) as err:
        log(f"epoch {epoch}: features not mapped: {err}")
        return False
    log(f"epoch {epoch}: features mapped in {time.perf_counter() - started:.1f} s")
    return True


def start_follower(run_path: str | Path, data_root: str | Path | None = None) -> subprocess.Popen | None:
    """`python -m core follow` for the run, detached, at low priority and with passive OpenMP
    waiting (core.training.threads); its output goes to <run>/follow.log. None when not
    follower_enabled()."""
    if not follower_enabled():
        return None
    path = Path(run_path)
    path.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "core", "follow", "--run", str(path)]
    if data_root:
        command += ["--data", str(data_root)]
    with (path / LOG_NAME).open("a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, **child_env()), preexec_fn=_lower_priority)


def _lower_priority() -> None:
    try:
        os.nice(BACKGROUND_NICE)
    except OSError:
        pass
