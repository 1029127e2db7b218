"""core.training.threads: one thread budget for training, torchrun ranks, the background evaluator,
sweep members and the dashboard, so together they do not oversubscribe the cores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.runs.folder import Run
from core.training.jobs import launch_detached, reap
from core.training.threads import (
    JOBS_ENV,
    Workload,
    _cgroup_quota,
    child_env,
    dashboard_share,
    jobs_sharing,
    thread_share,
    usable_cores,
)
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]


def _job_threads(load: Workload) -> int:
    """Threads one job's processes use beside each other: ranks x training + its evaluator."""
    training = thread_share("training", load).threads * load.ranks
    return training + (thread_share("evaluator", load).threads if load.evaluator else 0)


@pytest.mark.parametrize("cores", [2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("jobs,ranks", [(1, 1), (1, 2), (2, 1), (4, 1), (2, 2)])
def test_jobs_with_their_evaluators_never_take_more_than_the_cores(cores, jobs, ranks):
    load = Workload(cores, jobs, ranks)
    if cores // jobs < ranks + 1:  # fewer cores than processes: each still gets one thread
        assert thread_share("training", load).threads == 1
        return
    assert _job_threads(load) * jobs <= cores
    # and no core is left idle by more than the rounding of the split over ranks
    assert _job_threads(load) * jobs > cores - jobs * ranks


def test_the_rule_on_the_machines_we_know():
    two = Workload(cores=2)
    assert thread_share("training", two).threads == 1  # one core kept for the evaluator
    assert (thread_share("evaluator", two).threads, thread_share("evaluator", two).nice) == (1, 10)
    assert thread_share("training", Workload(2, evaluator=False)).threads == 2  # training alone
    assert thread_share("training", Workload(16, ranks=2)).threads == 7  # torchrun, 2 ranks
    assert thread_share("training", Workload(16, jobs=4)).threads == 3  # a sweep over 4 GPUs
    assert thread_share("training", Workload(1)).threads == 1  # one core: both get one thread
    assert thread_share("catch-up", Workload(8)).threads == 8  # the job ended: every core
    assert thread_share("dashboard", Workload(8, busy=3)).threads == 5
    assert thread_share("dashboard", Workload(2, busy=5)).threads == 1


def test_threads_flag_overrides_the_budget_and_bad_input_is_named():
    share = thread_share("training", Workload(2), override=6)
    assert share.threads == 6 and share.overridden and "set by --threads" in share.describe()
    with pytest.raises(ValueError, match="thread role 'gpu'"):
        thread_share("gpu", Workload(2))
    with pytest.raises(ValueError, match="cores, jobs and ranks must be 1 or more"):
        thread_share("training", Workload(0))
    with pytest.raises(ValueError, match=f"{JOBS_ENV}='two'"):
        jobs_sharing({JOBS_ENV: "two"})
    assert jobs_sharing({}) == 1 and jobs_sharing({JOBS_ENV: "3"}) == 3


def test_usable_cores_follow_the_cpu_set_and_a_cgroup_quota(tmp_path):
    pinned = subprocess.run(
        [sys.executable, "-c", "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
         "from core.training.threads import usable_cores; print(usable_cores())"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert pinned.stdout.strip() == "1"
    assert 1 <= usable_cores() <= len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    for text, cores in [("200000 100000", 2), ("150000 100000", 2), ("max 100000", None), ("", None)]:
        quota.write_text(text)
        assert _cgroup_quota(quota) == cores


def test_the_dashboard_leaves_running_jobs_their_threads(tmp_path):
    training, done = Run(tmp_path / "a"), Run(tmp_path / "b")
    for run in (training, done):
        run.path.mkdir()
    training.write_status(state="running", pid=os.getpid(), threads=1)
    done.write_status(state="finished", threads=5)
    assert dashboard_share([training, done]).threads == max(1, usable_cores() - 1)
    assert dashboard_share([done]).threads == usable_cores()


def test_launched_jobs_wait_passively_unless_the_user_chose(tmp_path, monkeypatch):
    command = [sys.executable, "-c", "import os; print('policy', os.environ.get('OMP_WAIT_POLICY'),"
               f" 'jobs', os.environ.get('{JOBS_ENV}'))"]
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    reap(launch_detached(command, tmp_path / "a.log").pid, timeout=60)
    assert "policy PASSIVE jobs None" in (tmp_path / "a.log").read_text()
    reap(launch_detached(command, tmp_path / "s.log", env=child_env(2)).pid, timeout=60)  # a sweep's
    assert "policy PASSIVE jobs 2" in (tmp_path / "s.log").read_text()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    reap(launch_detached(command, tmp_path / "b.log").pid, timeout=60)
    assert "policy ACTIVE" in (tmp_path / "b.log").read_text()


def _train(config, *flags: str, follow: bool, jobs: int = 1) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RECONSCOPE_NO_FOLLOW", "OMP_WAIT_POLICY")}
    if not follow:
        env["RECONSCOPE_NO_FOLLOW"] = "1"
    env[JOBS_ENV] = str(jobs)
    return subprocess.run(
        [sys.executable, "-m", "core", "train", "--data", config.data, "--run", config.run,
         "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--base-width", "8",
         "--depth", "3", "--categories", "pill", "--quiet", *flags],
        capture_output=True, text=True, cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)), timeout=300)


def test_a_job_says_first_what_each_process_got_and_records_it(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "job")
    done = _train(config, follow=True)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    expected = thread_share("training", Workload(usable_cores())).threads
    assert first.startswith(f"threads ({usable_cores()} cores; OpenMP wait policy passive): "
                            f"training {expected} thread"), first
    assert "background evaluator 1 thread at nice +" in first
    assert Run(config.run).status()["threads"] == expected  # what the dashboard leaves it
    log = Path(config.run) / "follow.log"
    deadline = time.time() + 240
    while "followed" not in (log.read_text() if log.is_file() else ""):
        assert time.time() < deadline, log.read_text() if log.is_file() else "no follow.log"
        time.sleep(0.5)
    nice = re.search(r"threads: \d+ threads? at nice \+(\d+)", log.read_text())
    assert nice and int(nice.group(1)) >= 10, log.read_text()  # background priority


def test_threads_flag_wins_and_a_job_without_evaluator_takes_every_core(demo_root, tmp_path):
    alone = _train(tiny_config(demo_root, tmp_path / "alone"), "--no-follow", follow=True)
    assert alone.returncode == 0, alone.stderr
    assert f"training {usable_cores()} thread" in alone.stdout.splitlines()[0]
    assert "no background evaluator" in alone.stdout.splitlines()[0]
    forced = _train(tiny_config(demo_root, tmp_path / "forced"), "--threads", "3", follow=False)
    assert re.search(r"training 3 threads (at nice \+\d+ )?\(set by --threads\)",
                     forced.stdout.splitlines()[0]), forced.stdout
    bad = _train(tiny_config(demo_root, tmp_path / "bad"), "--threads", "-1", follow=False)
    assert bad.returncode == 2 and "num_threads must be 0 (the thread budget) or more" in bad.stderr


def test_jobs_of_a_sweep_over_gpus_split_the_cores(demo_root, tmp_path):
    done = _train(tiny_config(demo_root, tmp_path / "member"), follow=False, jobs=2)
    assert done.returncode == 0, done.stderr
    share = thread_share("training", Workload(usable_cores(), jobs=2, evaluator=False))
    first = done.stdout.splitlines()[0]
    assert f"{usable_cores()} cores, shared by 2 jobs;" in first
    assert f"training {share.threads} thread" in first, first
