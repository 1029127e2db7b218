"""The run-folder contract (core/runs/folder.py): what every writer and reader of checkpoints/<run>/
relies on. Checkpoints are written by hand here (no training), so every rule is checked on
exactly the files it speaks of."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from core.config import TrainConfig
from core.runs.checkpoint import load_checkpoint, read_payload
from core.runs.folder import (
    Run,
    RunError,
    atomic_write_bytes,
    atomic_write_json,
    jsonable,
    list_runs,
    save_checkpoint,
)


def _checkpoint(run: Run, epoch: int, **extra) -> None:
    payload = {"model": {"w": torch.full((2,), float(epoch))},
               "config": TrainConfig(run=str(run.path)).to_dict()}  # this run's own checkpoint
    save_checkpoint(run.checkpoint_path(epoch), {**payload, **extra})


def _run(tmp_path, epochs=(), val_losses=None) -> Run:
    """A run folder with config.json, the given epochs and, optionally, {epoch: val_loss}."""
    run = Run(tmp_path / "run")
    run.path.mkdir(parents=True)
    TrainConfig(run=str(run.path)).save(run.path / "config.json")
    for epoch in epochs:
        _checkpoint(run, epoch)
    for epoch, loss in (val_losses or {}).items():
        run.append_metrics({"epoch": epoch, "val_loss": loss})
    return run


# --------------------------------------------------------------------------- epochs


def test_epochs_are_the_checkpoints_on_disk_in_numeric_order(tmp_path):
    run = _run(tmp_path, epochs=(10, 2, 1000))
    (run.path / ".epoch_003.pt.abc.tmp").write_bytes(b"half written")  # an unfinished write
    (run.path / "epoch_7.pt").write_bytes(b"")  # not the epoch_NNN pattern
    (run.path / "notes.txt").write_text("x")
    assert run.epochs() == [2, 10, 1000]
    assert run.checkpoint_path(2).name == "epoch_002.pt"
    assert Run(tmp_path / "missing").epochs() == []


def test_open_refuses_a_missing_folder_and_config_needs_config_json(tmp_path):
    with pytest.raises(RunError, match="run folder does not exist"):
        Run.open(tmp_path / "nothing")
    (tmp_path / "bare").mkdir()
    with pytest.raises(RunError, match="no config.json"):
        Run.open(tmp_path / "bare").config()


def test_list_runs_finds_runs_two_levels_deep_and_the_root_itself(tmp_path):
    for name in ("a", "sweep/b", "sweep/c"):
        (tmp_path / name).mkdir(parents=True)
        TrainConfig().save(tmp_path / name / "config.json")
    (tmp_path / "empty").mkdir()
    assert [r.path for r in list_runs(tmp_path)] == [tmp_path / "a", tmp_path / "sweep" / "b",
                                                    tmp_path / "sweep" / "c"]
    assert [r.path for r in list_runs(tmp_path / "a")] == [tmp_path / "a"]
    assert list_runs(tmp_path / "nowhere") == []


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "deep" / "file.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert os.listdir(path.parent) == ["file.json"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "epoch_001.pt"
    atomic_write_bytes(path, b"old")

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["epoch_001.pt"]


def test_jsonable_turns_nan_and_numpy_into_strict_json():
    import numpy as np

    value = jsonable({"a": float("nan"), 1: np.float32(0.5), "b": np.arange(2), "c": (np.inf,)})
    assert value == {"a": None, "1": 0.5, "b": [0, 1], "c": [None]}
    json.dumps(value, allow_nan=False)


# --------------------------------------------------------------------------- loading


def test_checkpoints_round_trip_and_load_as_weights_only(tmp_path):
    run = _run(tmp_path, epochs=(1,))
    payload = read_payload(run, 1)
    assert torch.equal(payload["model"]["w"], torch.ones(2))
    assert TrainConfig.from_dict(payload["config"]) == TrainConfig(run=str(run.path))


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a torch file", "damaged or not a ReconScope checkpoint"),
    ({"weights": {}}, "no model weights and config inside"),
])
def test_unusable_checkpoints_are_refused_with_a_sentence(tmp_path, content, message):
    path = tmp_path / "epoch_001.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(RunError, match=message):
        load_checkpoint(path)


def test_a_python_object_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "epoch_001.pt"
    torch.save({"model": {}, "config": {}, "extra": TrainConfig()}, path)  # a dataclass, not weights
    with pytest.raises(RunError, match="refused unrun.*weights_only=True"):
        load_checkpoint(path)


def test_loading_an_epoch_that_is_not_there_names_the_available_ones(tmp_path):
    run = _run(tmp_path, epochs=(1, 2))
    with pytest.raises(RunError, match="epoch 5 does not exist; available: 1, 2"):
        read_payload(run, 5)


# --------------------------------------------------------------------------- metrics.jsonl


def test_metrics_skip_a_torn_last_line_and_keep_the_newest_record_per_epoch(tmp_path):
    run = _run(tmp_path)
    run.append_metrics({"epoch": 1, "val_loss": 0.9})
    run.append_metrics({"epoch": 2, "val_loss": 0.8})
    run.append_metrics({"epoch": 2, "val_loss": 0.7})  # epoch 2 again after a resume
    with (run.path / "metrics.jsonl").open("a") as handle:
        handle.write('{"epoch": 3, "val_lo')  # the job died mid-write
    assert run.metrics() == [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.7}]
    assert Run(tmp_path / "none").metrics() == []


# --------------------------------------------------------------------------- status


def test_status_without_a_file_says_empty_or_finished(tmp_path):
    run = _run(tmp_path)
    assert run.status() == {"state": "empty"}
    _checkpoint(run, 1)
    assert run.status() == {"state": "finished"}
    (run.path / "status.json").write_text("{torn")
    assert run.status() == {"state": "finished"} and not run.is_training()


def test_write_status_merges_fields_and_stamps_the_time(tmp_path):
    run = _run(tmp_path)
    run.write_status(state="finished", epoch=3)
    run.write_status(message="done")
    status = run.status()
    assert (status["state"], status["epoch"], status["message"]) == ("finished", 3, "done")
    assert abs(status["updated"] - time.time()) < 60


def test_a_running_job_whose_process_is_gone_reads_as_failed(tmp_path):
    run = _run(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid is free
    run.write_status(state="running", pid=child.pid)
    status = run.status()
    assert status["state"] == "failed" and "train.log" in status["message"]
    assert not run.is_training()


def test_a_live_job_and_one_being_launched_count_as_training(tmp_path):
    run = _run(tmp_path)
    run.write_status(state="running", pid=os.getpid())
    assert run.is_training()
    run.write_status(state="starting", pid=None)  # the launcher has not written a pid yet
    assert run.is_training()


# --------------------------------------------------------------------------- pin and resolve_epoch


def test_pin_writes_pinned_json_and_refuses_a_missing_epoch(tmp_path):
    run = _run(tmp_path, epochs=(1, 2))
    assert run.pinned() is None
    record = run.pin(2, "sharpest")
    assert run.pinned() == record and (record["epoch"], record["reason"]) == (2, "sharpest")
    with pytest.raises(RunError, match="cannot pin epoch 9"):
        run.pin(9)
    (run.path / "pinned.json").write_text("{torn")
    assert run.pinned() is None


def test_resolve_epoch_last_number_and_errors(tmp_path):
    run = _run(tmp_path, epochs=(1, 2, 3))
    assert run.resolve_epoch("last") == 3
    assert run.resolve_epoch(" 2 ") == 2 and run.resolve_epoch(1) == 1
    with pytest.raises(RunError, match="epoch 7 does not exist"):
        run.resolve_epoch(7)
    with pytest.raises(RunError, match="use a number, chosen, best or last"):
        run.resolve_epoch("newest")
    with pytest.raises(RunError, match="no finished epochs yet"):
        _run(tmp_path / "other").resolve_epoch("last")


def test_best_is_the_lowest_finite_val_loss_of_an_epoch_on_disk_whatever_is_pinned(tmp_path):
    run = _run(tmp_path, epochs=(1, 2, 3, 4),
               val_losses={1: 0.5, 2: float("nan"), 3: 0.3, 4: 0.4, 5: 0.1})  # 5: no checkpoint
    assert run.best_by_val_loss() == 3 and run.resolve_epoch("best") == 3
    assert run.best_by_val_loss(among=[1, 2, 4]) == 4
    run.pin(4)  # the pin is the chosen epoch (core.diagnostics.choice), not "best"
    assert run.resolve_epoch("BEST") == 3
    with pytest.raises(RunError, match="needs the run's diagnosis"):
        run.resolve_epoch("chosen")


def test_best_without_validation_losses_is_the_last_epoch(tmp_path):
    run = _run(tmp_path, epochs=(1, 2))
    assert run.best_by_val_loss() is None and run.resolve_epoch("best") == 2


def test_new_files_get_the_mode_a_plain_write_gives(tmp_path):
    run = _run(tmp_path, epochs=(1,))
    probe = tmp_path / "plain"
    probe.write_text("x")
    plain = stat.S_IMODE(probe.stat().st_mode)
    assert stat.S_IMODE(run.checkpoint_path(1).stat().st_mode) == plain
