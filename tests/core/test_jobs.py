"""Training jobs as separate processes: launch, watch, stop, refuse a second launch, resume."""

import time

import pytest

from core.runs.folder import Run, RunError
from core.training.jobs import job_progress, log_tail, start_training, stop_training, wait_for
from tests.conftest import tiny_config


def test_job_runs_to_the_end_and_reports_progress(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "job", epochs=1, categories=["pill"])
    start_training(config)
    run = Run(tmp_path / "job")
    status = wait_for(run, timeout=180)
    assert status["state"] == "finished", log_tail(run)
    progress = job_progress(run)
    assert progress["finished_epochs"] == [1] and progress["fraction"] == 1.0
    assert progress["last_metrics"]["epoch"] == 1
    assert "epoch 1/1" in log_tail(run)


def test_second_launch_is_refused_and_stop_keeps_epochs_then_resume(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "long", epochs=50, categories=["pill"])
    start_training(config)
    run = Run(tmp_path / "long")
    with pytest.raises(RunError, match="already training"):
        start_training(config)
    deadline = time.time() + 120
    while not run.epochs():
        assert time.time() < deadline, log_tail(run)
        time.sleep(0.1)
    assert stop_training(run)
    status = wait_for(run, timeout=30)
    assert status["state"] == "stopped", log_tail(run)
    kept = run.epochs()
    assert kept and all(run.checkpoint_path(e).is_file() for e in kept)
    start_training(config.with_overrides({"epochs": kept[-1] + 1}), resume=True)
    assert wait_for(run, timeout=120)["state"] == "finished", log_tail(run)
    assert run.epochs()[-1] == kept[-1] + 1
