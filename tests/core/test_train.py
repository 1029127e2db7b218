"""Training: a checkpoint per epoch that rebuilds its model, metrics, resume, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import torch

from core.runs.checkpoint import load_checkpoint, model_from_checkpoint
from core.runs.folder import Run, RunError
from core.training.loop import train_one
from tests.conftest import tiny_config

QUIET = dict(progress=False, log=lambda _: None)


def test_two_epochs_give_loadable_checkpoints_and_metrics(tiny_run):
    assert tiny_run.epochs() == [1, 2]
    payload = torch.load(tiny_run.checkpoint_path(2), weights_only=True)
    assert payload["epoch"] == 2 and "optimizer" in payload
    model = model_from_checkpoint(payload)  # the checkpoint alone rebuilds the model
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    lines = (tiny_run.path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[1])
    for key in ("train_loss", "val_loss", "lr", "seconds", "images_per_s", "device", "grad_norm",
                "synthetic_auroc"):
        assert key in record
    assert set(record["grad_norm"]) and all(v >= 0 for v in record["grad_norm"].values())
    assert tiny_run.status()["state"] == "finished"
    assert (tiny_run.path / "config.json").is_file()
    assert not list(tiny_run.path.glob("*.tmp"))


def test_same_seed_same_weights_and_refuses_to_overwrite(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "a", epochs=1, categories=["pill"])
    train_one(config, **QUIET)
    train_one(config.with_overrides({"run": str(tmp_path / "b")}), **QUIET)
    a = load_checkpoint(Run(tmp_path / "a").checkpoint_path(1))["model"]
    b = load_checkpoint(Run(tmp_path / "b").checkpoint_path(1))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(RunError, match="--resume"):
        train_one(config, **QUIET)


def test_resume_after_a_killed_job_continues_exactly(demo_root, tmp_path):
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "core", "train", "--data", str(demo_root), "--run", str(killed),
               "--categories", "pill", "--epochs", "3", "--image-size", "32", "--depth", "3",
               "--base-width", "8", "--batch-size", "8", "--threads", "1", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "epoch_001.pt").exists():
        assert time.time() < deadline and process.poll() is None, "job died before epoch 1"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run = Run(killed)
    finished = run.epochs()
    assert finished and finished[-1] < 3
    assert run.status()["state"] == "failed"  # dead pid is reported, not left "running"
    subprocess.run(command + ["--resume"], check=True, capture_output=True)
    assert run.epochs() == [1, 2, 3]
    assert [m["epoch"] for m in run.metrics()] == [1, 2, 3]
    # one torch thread on both sides: other tests (UMAP's numba) may leave this process at two,
    # and a different thread count sums in another order
    straight = tiny_config(demo_root, tmp_path / "straight", epochs=3, categories=["pill"], num_threads=1)
    threads = torch.get_num_threads()
    try:
        train_one(straight, **QUIET)
    finally:
        torch.set_num_threads(threads)
    resumed = load_checkpoint(run.checkpoint_path(3))["model"]
    reference = load_checkpoint(Run(tmp_path / "straight").checkpoint_path(3))["model"]
    assert all(torch.allclose(resumed[k].float(), reference[k].float(), atol=1e-5) for k in reference)


def test_running_job_blocks_a_second_training(demo_root, tmp_path):
    run = Run(tmp_path / "busy")
    run.path.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run.write_status(state="running", pid=sleeper.pid)
        with pytest.raises(RunError, match="already training"):
            train_one(tiny_config(demo_root, run.path), **QUIET)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_nan_loss_fails_clearly(demo_root, tmp_path, monkeypatch):
    import core.training.loop as train_module

    class NanLoss(train_module.ReconstructionLoss):
        def forward(self, x, y):
            return super().forward(x, y) * float("nan")

    monkeypatch.setattr(train_module, "ReconstructionLoss", NanLoss)
    with pytest.raises(FloatingPointError, match="lower --lr"):
        train_one(tiny_config(demo_root, tmp_path / "nan", epochs=2, categories=["pill"]), **QUIET)
    run = Run(tmp_path / "nan")
    assert run.status()["state"] == "failed" and "NaN" in run.status()["message"]
    assert run.epochs() == [1]  # the NaN epoch is kept for diagnosis; no further epoch is trained


def test_per_category_mode_makes_one_run_each(demo_root, tmp_path):
    from core.training.loop import train

    config = tiny_config(demo_root, tmp_path / "per", epochs=1, categories=["pill", "carpet"],
                         per_category=True)
    runs = train(config, **QUIET)
    assert sorted(r.name for r in runs) == ["carpet", "pill"]
    assert all(r.epochs() == [1] for r in runs)
    assert Run(tmp_path / "per" / "pill").config().categories == ["pill"]


def test_ctrl_c_marks_the_run_stopped_and_keeps_finished_epochs(demo_root, tmp_path, monkeypatch):
    import core.training.loop as train_module

    real_epoch = train_module.run_epoch

    def interrupted_at_epoch_2(*args, **kwargs):
        if args[6] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "run_epoch", interrupted_at_epoch_2)
    run = train_one(tiny_config(demo_root, tmp_path / "ctrlc", epochs=3, categories=["pill"]), **QUIET)
    assert run.status()["state"] == "stopped" and run.epochs() == [1]


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tmp_path):
    empty = tmp_path / "no_images"
    empty.mkdir()
    run_dir = tmp_path / "runs" / "never"
    with pytest.raises(ValueError, match="no dataset found"):
        train_one(tiny_config(empty, run_dir, epochs=1), **QUIET)
    assert not run_dir.exists(), "a run that never trained must not be listed as a run"
    kept = tmp_path / "runs" / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="no dataset found"):
        train_one(tiny_config(empty, kept, epochs=1), **QUIET)
    assert (kept / "notes.txt").read_text() == "mine", "a folder the user made is left alone"


def test_balanced_epochs_give_every_category_an_equal_share():
    from core.training.loop import epoch_order

    rng = np.random.default_rng(0)
    cats = ["tile"] * 77 + ["cookie"] * 3 + ["bottle"] * 20
    order = epoch_order(rng, cats, balance=True)
    assert len(order) == len(cats)
    counts = Counter(cats[i] for i in order)
    assert max(counts.values()) - min(counts.values()) <= 1  # 34 / 33 / 33
    assert {i for i in order if cats[i] == "cookie"} == {77, 78, 79}  # the small one: every image
    tiles = [i for i in order if cats[i] == "tile"]
    assert len(set(tiles)) == len(tiles)  # the large one: a subset, none twice
    equal = ["a"] * 6 + ["b"] * 6
    assert sorted(epoch_order(rng, equal, balance=True)) == list(range(12))  # all, once each
    assert sorted(epoch_order(rng, cats, balance=False)) == list(range(100))
