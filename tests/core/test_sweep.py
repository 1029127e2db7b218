"""Sweeps: the grid rule, the plan, commands for a scheduler, running and resuming members."""

import json
import shlex

import pytest
import torch

from core.__main__ import build_parser
from core.__main__ import main as cli
from core.cli.flags import config_from_args
from core.model.unet import UNetAutoencoder
from core.runs.folder import Run, RunError
from core.training.loop import train_one
from core.training.sweep import (
    SweepError,
    load_plan,
    member_state,
    open_or_plan,
    parse_grid,
    plan_sweep,
    print_commands,
    progress_table,
    run_sweep,
    split_values,
    sweep_status,
)
from tests.conftest import tiny_config, write_run


def test_grid_values_split_on_commas_or_on_bars_when_a_value_has_a_comma():
    assert split_values("l1,l2,0.5*ssim+0.5*l1") == ["l1", "l2", "0.5*ssim+0.5*l1"]
    assert split_values("all|none|1,2") == ["all", "none", "1,2"]
    grid = parse_grid(["loss=l1,0.5*ssim+0.5*l1", "skips=all|1,2", "depth=2,4", "lr=0.001", "augment.enabled=true"])
    assert grid == {"loss": ["l1", "0.5*ssim+0.5*l1"], "model.skips": ["all", "1,2"], "model.depth": [2, 4],
                    "lr": [0.001], "augment.enabled": [True]}


@pytest.mark.parametrize("items, words", [
    (["model.skip=all,none"], "not a TrainConfig field"),
    (["depth=2,deep"], "expected int"),
    (["loss=l1,,l2"], "empty value"),
    (["loss=l1", "loss=l2"], "given twice"),
    (["loss=l1,l1"], "repeated"),
    (["run=a,b"], "fixed per sweep"),
    (["loss"], "KEY=V1,V2"),
    ([], "at least one --grid"),
])
def test_bad_grids_are_named(items, words):
    with pytest.raises(SweepError, match=words):
        parse_grid(items)


def test_invalid_member_config_is_named_before_anything_runs(tmp_path):
    base = tiny_config(tmp_path, tmp_path / "x")
    with pytest.raises(SweepError, match="member depth-6.*divisible"):
        plan_sweep(tmp_path / "s", base, parse_grid(["depth=2,6"]))
    assert not (tmp_path / "s").exists()
    plan = plan_sweep(tmp_path / "s", tiny_config(tmp_path / "nowhere", tmp_path / "x"), parse_grid(["depth=2"]))
    with pytest.raises(SweepError, match="nowhere does not exist"):
        run_sweep(plan, gpus=[])
    assert not plan.run_path(plan.members[0]).exists()


def test_printed_commands_rebuild_each_members_config(tmp_path, capsys):
    folder = tmp_path / "cmds"
    assert cli(["sweep", "--root", str(tmp_path), "--name", "cmds", "--data", "data/x", "--epochs", "3",
                "--image-size", "32", "--set", "augment.rotate_limit=15", "--no-synthetic-val",
                "--grid", "loss=l1,0.5*ssim+0.5*l1", "--grid", "model.skips=all|none|1,2", "--print-commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    plan = load_plan(folder)
    assert len(lines) == len(plan.members) == 6
    for line, member in zip(lines, plan.members, strict=True):
        words = shlex.split(line)
        assert words[:4] == ["python", "-m", "core", "train"]
        config = config_from_args(build_parser().parse_args(words[3:]))
        assert config == plan.config(member)
        assert config.run == str(folder / member.name) and config.augment.rotate_limit == 15
    assert {m.name for m in plan.members} >= {"loss-l1_skips-1-2", "loss-0.5ssim+0.5l1_skips-none"}
    # the same sweep again is the saved plan; another grid under the same name is refused
    assert open_or_plan(folder, plan.base, plan.grid).to_dict() == plan.to_dict()
    with pytest.raises(SweepError, match="different sweep"):
        open_or_plan(folder, plan.base, parse_grid(["loss=l2"]))


def test_cli_sweep_trains_every_member_and_a_second_start_skips_them(tiny_sweep, capsys):
    plan = load_plan(tiny_sweep)
    assert [m.name for m in plan.members] == ["loss-l1_skips-all", "loss-l1_skips-none",
                                              "loss-l2_skips-all", "loss-l2_skips-none"]
    for member in plan.members:
        run = Run(plan.run_path(member))
        assert run.epochs() == [1] and run.status()["state"] == "finished"
        assert run.config().loss == member.overrides["loss"]
        assert run.config().model.skips == member.overrides["model.skips"]
    assert sweep_status(tiny_sweep)["state"] == "finished"
    assert all(row["state"] == "done" for row in progress_table(plan))
    stamps = [Run(plan.run_path(m)).checkpoint_path(1).stat().st_mtime_ns for m in plan.members]
    capsys.readouterr()
    assert cli(["sweep", "--folder", str(tiny_sweep)]) == 0
    out = capsys.readouterr().out
    assert out.count("already finished, skipped") == 4
    assert stamps == [Run(plan.run_path(m)).checkpoint_path(1).stat().st_mtime_ns for m in plan.members]
    assert cli(["sweep", "--folder", str(tiny_sweep), "--print-commands"]) == 0
    assert "every member" in capsys.readouterr().out


def test_partial_member_is_resumed_and_finished_member_skipped(demo_root, tmp_path):
    base = tiny_config(demo_root, tmp_path / "unused", epochs=2, categories=["pill"]).with_overrides(
        {"model.depth": 2, "model.base_width": 4, "num_threads": 1})
    plan = plan_sweep(tmp_path / "resume", base, parse_grid(["loss=l1,l2"]))
    plan.save()
    partial, done = plan.members
    train_one(plan.config(partial).with_overrides({"epochs": 1}), progress=False, log=lambda _: None)
    torch.manual_seed(0)
    state = UNetAutoencoder(plan.config(done).model).state_dict()
    write_run(plan.run_path(done), plan.config(done), {1: state, 2: state})
    assert member_state(plan, partial) == "partial" and member_state(plan, done) == "done"
    first = Run(plan.run_path(partial)).checkpoint_path(1).stat().st_mtime_ns
    assert "--resume" in print_commands(plan)[0] and len(print_commands(plan)) == 1
    outcome = run_sweep(plan, gpus=[], poll_s=0.2, log=lambda _: None)
    assert outcome.states == {partial.name: "finished", done.name: "skipped"} and outcome.ok
    resumed = Run(plan.run_path(partial))
    assert resumed.epochs() == [1, 2] and resumed.checkpoint_path(1).stat().st_mtime_ns == first
    assert "--resume" in (resumed.path / "train.log").read_text()
    assert json.loads((tmp_path / "resume" / "sweep_status.json").read_text())["state"] == "finished"


def test_one_member_per_gpu_at_a_time(tmp_path, monkeypatch):
    """Scheduling alone (no GPU here): a fake job records its environment and keeps running
    until the runner's next poll, so the most jobs alive at once is measured."""
    import os

    import core.training.jobs
    import core.training.sweep

    launched, alive, most = [], [], []

    def fake_start(config, resume=False, env=None):
        launched.append((config, dict(env or {})))
        run = Run(config.run)
        run.path.mkdir(parents=True)
        config.save(run.path / "config.json")
        run.write_status(state="running", pid=os.getpid())
        alive.append(run)
        most.append(len(alive))
        return os.getpid()

    def fake_sleep(_):  # one poll later every running fake job has finished its one epoch
        for run in alive:
            (run.path / "epoch_001.pt").write_bytes(b"")
            run.write_status(state="finished", pid=None)
        alive.clear()

    monkeypatch.setattr(core.training.jobs, "start_training", fake_start)
    monkeypatch.setattr(core.training.sweep.time, "sleep", fake_sleep)
    base = tiny_config(tmp_path, tmp_path / "unused", epochs=1)
    plan = plan_sweep(tmp_path / "gpus", base, parse_grid(["loss=l1,l2,ssim", "seed=0,1"]))
    outcome = run_sweep(plan, gpus=[0, 1], log=lambda _: None)
    assert outcome.ok and len(launched) == 6 and max(most) == 2
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in launched] == ["0", "1"] * 3
    assert {env["RECONSCOPE_JOBS"] for _, env in launched} == {"2"}  # they share the CPU cores
    assert [c.run for c, _ in launched] == [str(plan.run_path(m)) for m in plan.members]
    launched.clear()
    most.clear()
    assert run_sweep(plan_sweep(tmp_path / "cpu", base, parse_grid(["loss=l1,l2,ssim"])), gpus=[],
                     log=lambda _: None).ok
    assert [env for _, env in launched] == [{}, {}, {}] and max(most) == 1


def test_background_sweep_stops_its_members_and_resumes(demo_root, tmp_path):
    import time

    from core.training.jobs import log_tail
    from core.training.sweep import start_sweep, stop_sweep

    # many epochs: at 0.1 s each, 50 could all finish before the stop arrived on a loaded machine
    base = tiny_config(demo_root, tmp_path / "unused", epochs=2000, categories=["pill"]).with_overrides(
        {"model.depth": 2, "model.base_width": 4, "num_threads": 1})
    plan = plan_sweep(tmp_path / "bg", base, parse_grid(["loss=l1,l2"]))
    start_sweep(plan)
    first = Run(plan.run_path(plan.members[0]))
    deadline = time.time() + 120
    while not first.epochs():
        assert time.time() < deadline, (tmp_path / "bg" / "sweep.log").read_text()
        time.sleep(0.2)
    with pytest.raises(RunError, match="already running"):
        start_sweep(plan)
    assert stop_sweep(plan.folder)
    assert sweep_status(plan.folder)["state"] == "stopped"
    assert first.status()["state"] == "stopped", log_tail(first)
    assert first.epochs() and not Run(plan.run_path(plan.members[1])).epochs()
    assert [member_state(plan, m) for m in plan.members] == ["partial", "new"]
    assert "--resume" in print_commands(plan)[0]
