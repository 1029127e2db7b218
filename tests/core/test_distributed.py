"""Data-parallel training: 2 gloo processes under torchrun agree with one process on the same
global batch; rank 0 alone writes; resume and stop work under the launcher."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from core.runs.checkpoint import load_checkpoint, model_from_checkpoint
from core.runs.folder import Run
from core.training import distributed
from core.training.distributed import Context
from core.training.loop import train_one
from tests.conftest import tiny_config

QUIET = dict(progress=False, log=lambda _: None)
# Same global batch, same order, no augmentation, GroupNorm (per-image statistics, so slicing a
# batch across ranks changes nothing but float summation order): what differs is rounding.
# reconstruct: denoise draws its synthetic corruptions per rank slice, so only the loop's
# arithmetic (sharding, loss scaling, all-reduce) can be compared with one process exactly
EXACT = dict(categories=["pill", "carpet"], batch_size=8, objective="reconstruct",
             balance_categories=False,
             **{"augment.enabled": False, "model.norm": "group"})
LOSS_RTOL = 1e-5  # epoch losses, relative
WEIGHT_ATOL = 1e-4  # every weight after 3 epochs of Adam, absolute
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_two_gloo_ranks_resume_and_match_one_process(demo_root, tmp_path):
    """Epoch 1 in one process, then epochs 2-3 under torchrun with --resume: the run matches a
    straight single-process run with the same global batch."""
    reference = train_one(tiny_config(demo_root, tmp_path / "one", epochs=3, **EXACT), **QUIET)
    config = tiny_config(demo_root, tmp_path / "ddp", epochs=1, **EXACT)
    train_one(config, **QUIET)
    command = TORCHRUN + ["-m", "core", "train", "--run-dir", str(config.run), "--resume", "--epochs", "3",
                          "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = Run(tmp_path / "ddp")
    assert run.epochs() == [1, 2, 3] and run.status()["state"] == "finished"
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # rank 0 alone appended
    assert [m.get("world_size") for m in run.metrics()] == [None, 2, 2]
    assert done.stdout.count("epoch 3/3") == 1  # only rank 0 logs
    for ddp, one in zip(run.metrics(), reference.metrics(), strict=True):
        assert ddp["train_loss"] == pytest.approx(one["train_loss"], rel=LOSS_RTOL)
        assert ddp["val_loss"] == pytest.approx(one["val_loss"], rel=LOSS_RTOL)
        assert ddp["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    payload = load_checkpoint(run.checkpoint_path(3))
    expected = load_checkpoint(reference.checkpoint_path(3))["model"]
    assert set(payload["model"]) == set(expected)  # no "module." prefix from DDP
    worst = max(float((payload["model"][k].float() - expected[k].float()).abs().max()) for k in expected)
    assert worst < WEIGHT_ATOL
    model = model_from_checkpoint(payload)
    assert torch.isfinite(model(torch.rand(2, 3, 32, 32))).all()


def test_two_rank_job_from_jobs_stops_and_keeps_epochs(demo_root, tmp_path):
    """The dashboard's path: start_training under torchrun, stop via the launcher's pid."""
    from core.training.jobs import log_tail, start_training, stop_training, wait_for

    config = tiny_config(demo_root, tmp_path / "job", epochs=50, categories=["pill"], device="cpu")
    start_training(config, processes=2)
    run = Run(tmp_path / "job")
    deadline = time.time() + 90
    while not run.epochs():
        assert time.time() < deadline and run.status()["state"] in ("starting", "running"), log_tail(run)
        time.sleep(0.1)
    launcher = run.status()["pid"]
    assert stop_training(run, timeout=30)
    assert wait_for(run, timeout=30)["state"] == "stopped", log_tail(run)
    assert run.epochs() and run.status()["pid"] == launcher
    assert "torch.distributed.run" in log_tail(run, 200) and "world_size" in run.metrics()[-1]


# --------------------------------------------------------------------------- pure rules, no processes


def test_global_batch_is_split_into_contiguous_rank_slices():
    batch = np.arange(7)
    slices = [Context(rank=r, world_size=3).shard(batch) for r in range(3)]
    assert np.array_equal(np.concatenate(slices), batch) and [len(s) for s in slices] == [3, 2, 2]
    assert Context().shard(batch) is batch
    with pytest.raises(ValueError, match="cannot be split across 3 processes"):
        Context(rank=0, world_size=3).shard(np.arange(2))


def test_scaled_rank_losses_average_to_the_global_mean():
    """DDP averages gradients over ranks; the scaled local sums must average to the batch mean
    even when the slices have different sizes."""
    losses = torch.rand(7, dtype=torch.float64)
    parts = [Context(rank=r, world_size=3) for r in range(3)]
    slices = [torch.from_numpy(c.shard(np.arange(7))) for c in parts]
    averaged = sum(c.gradient_loss(losses[s], 7) for c, s in zip(parts, slices, strict=True)) / 3
    assert float(averaged) == pytest.approx(float(losses.mean()), rel=1e-12)
    assert torch.equal(Context().gradient_loss(losses, 7), losses.mean())


def test_each_rank_draws_its_own_augmentation_stream():
    seeds = [Context(rank=r, world_size=4).augment_seed(1234) for r in range(4)]
    assert seeds[0] == 1234 and len(set(seeds)) == 4


def test_single_process_context_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    ctx = distributed.init(torch.device("cpu"))
    assert not ctx.active and ctx.is_main and ctx.sum([1.5, 2.0]) == [1.5, 2.0]
    assert distributed.on_main(ctx, lambda a: a + 1, 1) == 2
    assert distributed.run_view(Run(tmp_path), ctx) == Run(tmp_path)
    import os

    assert distributed.job_pid() == os.getpid()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert distributed.job_pid() == os.getppid()  # the launcher stands for the job


def test_follower_ranks_never_write_the_run(tmp_path):
    view = distributed.run_view(Run(tmp_path), Context(rank=1, world_size=2))
    view.write_status(state="running")
    view.append_metrics({"epoch": 1})
    assert list(tmp_path.iterdir()) == []


def test_jobs_launch_torchrun_when_several_gpus_are_visible(monkeypatch, tmp_path):
    from torch.distributed.run import get_args_parser

    from core.config import TrainConfig
    from core.training import jobs

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert jobs.processes_for(TrainConfig(device="auto")) == 4
    assert jobs.processes_for(TrainConfig(device="cpu")) == 1
    command = jobs.training_command(tmp_path / "job.json", tmp_path / "run", resume=True, processes=4)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    parsed = get_args_parser().parse_args(command[3:])  # torchrun's own parser takes it as meant
    assert parsed.module and parsed.training_script == "core" and parsed.nproc_per_node == "4"
    assert parsed.training_script_args[:1] == ["train"] and parsed.training_script_args[-1] == "--resume"
    assert str(tmp_path / "run") in parsed.training_script_args
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert jobs.processes_for(TrainConfig(device="auto")) == 1
    assert jobs.training_command(tmp_path / "job.json", tmp_path / "run", False)[1:4] == ["-m", "core", "train"]


def test_train_page_says_it_will_use_every_gpu(tmp_path, monkeypatch):
    from tests.dashboard_support import messages, open_app

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    at = open_app(tmp_path / "runs", monkeypatch, "train")
    assert not at.exception, messages(at)
    assert any("2 GPUs visible" in c.value and "global batch" in c.value for c in at.caption)
