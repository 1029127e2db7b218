"""The first-start demo launcher (core.training.demo_job), the one `python -m core demo` and the Get
started page call: data drawn once, a training run left alone, a finished one not retrained."""

from __future__ import annotations

import os

from core.runs.folder import Run
from core.training.demo_job import (
    DEMO_EPOCHS,
    DEMO_SPEC,
    demo_config,
    demo_data_ready,
    free_run_path,
    launch_demo,
)
from core.training.jobs import stop_training, wait_for
from tests.conftest import write_run


def test_launch_draws_the_data_once_and_leaves_busy_or_finished_runs_alone(tmp_path):
    data = tmp_path / "demo"
    busy = Run(tmp_path / "runs" / "busy")
    busy.path.mkdir(parents=True)
    busy.write_status(state="running", pid=os.getpid())
    launch = launch_demo(data, busy.path)
    assert demo_data_ready(data) and launch.categories_written == len(DEMO_SPEC.categories)
    assert (launch.state, launch.pid) == ("training", os.getpid())

    config = demo_config(data, tmp_path / "runs" / "done")
    finished = write_run(tmp_path / "runs" / "done", config, {DEMO_EPOCHS: {}})
    again = launch_demo(data, finished.path)
    assert (again.state, again.pid, again.categories_written) == ("done", None, 0)
    assert finished.status()["state"] == "finished" and finished.epochs() == [DEMO_EPOCHS]


def test_launch_starts_the_demo_job_on_a_free_run_folder(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "demo", demo_config(), {})
    target = free_run_path(root)
    assert target == root / "demo-2"
    launch = launch_demo(tmp_path / "demo", target, epochs=1)
    try:
        assert launch.state == "started" and launch.pid
        assert Run(target).config().epochs == 1 and Run(target).config().image_size == DEMO_SPEC.size
    finally:
        stop_training(launch.run)
    assert wait_for(launch.run, timeout=60)["state"] in ("stopped", "finished", "failed")
