"""Storage policy: optimizer state only in the latest (pinned, kept) epochs; every epoch still
loads and scores; resume still continues exactly; prune frees the rest and says what it did."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from core.__main__ import main as cli
from core.runs.cache import cached, load_cached
from core.runs.checkpoint import load_checkpoint, model_from_checkpoint, read_payload
from core.runs.folder import Run, RunError
from core.runs.storage import drop_optimizer_state, kept_by_request, plan_prune, prune, set_kept
from core.scoring import score_checkpoint
from core.training.loop import train_one
from tests.conftest import tiny_config

QUIET = dict(progress=False, log=lambda _: None)


def has_optimizer(run: Run, epoch: int) -> bool:
    return bool(torch.load(run.checkpoint_path(epoch), weights_only=True).get("optimizer"))


@pytest.fixture(scope="module")
def five(demo_root, tmp_path_factory) -> Run:
    """A 5-epoch run trained straight through (treat as read-only)."""
    config = tiny_config(demo_root, tmp_path_factory.mktemp("storage") / "five", epochs=5, categories=["pill"])
    return train_one(config, **QUIET)


# a pill-only run scored on the three-category demo: the other two are named as left out
# (tests/core/test_input_faults_round3.py)
@pytest.mark.filterwarnings("ignore::core.data.images.LeftOutWarning")
def test_five_epochs_hold_optimizer_state_in_the_last_only(five, demo_root):
    assert five.epochs() == [1, 2, 3, 4, 5]
    assert [has_optimizer(five, e) for e in five.epochs()] == [False, False, False, False, True]
    sizes = [five.checkpoint_path(e).stat().st_size for e in five.epochs()]
    assert len(set(sizes[:4])) == 1 and sizes[0] < sizes[4] / 2  # Adam's two moments are gone
    for epoch in five.epochs():  # every epoch rebuilds its model and scores
        payload = load_checkpoint(five.checkpoint_path(epoch))
        assert payload["epoch"] == epoch and payload["metrics"]["epoch"] == epoch
        model_from_checkpoint(payload)
        scores = score_checkpoint(five, epoch, demo_root, "pixel").image_scores
        assert len(scores) and np.isfinite(scores).all()


def test_resume_under_the_policy_continues_exactly(five, demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "resumed", epochs=3, categories=["pill"])
    run = train_one(config, **QUIET)
    train_one(config.with_overrides({"epochs": 5}), resume=True, **QUIET)
    assert run.epochs() == [1, 2, 3, 4, 5] and [m["epoch"] for m in run.metrics()] == [1, 2, 3, 4, 5]
    assert [has_optimizer(run, e) for e in run.epochs()] == [False, False, False, False, True]
    resumed, straight = read_payload(run, 5)["model"], read_payload(five, 5)["model"]
    assert all(torch.allclose(resumed[k].float(), straight[k].float(), atol=1e-6) for k in straight)


def test_a_failed_save_keeps_the_newest_epoch_resumable(demo_root, tmp_path, monkeypatch):
    """Disk full while writing epoch 3: epoch 2 must still hold its optimizer state."""
    import core.training.loop as train_module

    real_save = train_module.save_checkpoint

    def disk_full_at_epoch_3(path, payload):
        if payload["epoch"] == 3:
            raise OSError(28, "No space left on device")
        real_save(path, payload)

    monkeypatch.setattr(train_module, "save_checkpoint", disk_full_at_epoch_3)
    config = tiny_config(demo_root, tmp_path / "full", epochs=3, categories=["pill"])
    with pytest.raises(RunError, match="epoch 3 could not be saved .No space left on device"):
        train_one(config, **QUIET)
    run = Run(tmp_path / "full")
    assert run.epochs() == [1, 2] and has_optimizer(run, 2) and not has_optimizer(run, 1)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    train_one(config, resume=True, **QUIET)
    assert run.epochs() == [1, 2, 3] and [has_optimizer(run, e) for e in (1, 2, 3)] == [False, False, True]


def test_kept_epochs_keep_their_optimizer_state_while_training(demo_root, tmp_path):
    run = Run(tmp_path / "kept")
    assert set_kept(run, [2]) == [2] and kept_by_request(run) == [2]  # before the epoch exists
    train_one(tiny_config(demo_root, run.path, epochs=4, categories=["pill"]), **QUIET)
    assert [has_optimizer(run, e) for e in run.epochs()] == [False, True, False, True]
    with pytest.raises(RunError, match="1 or more"):
        set_kept(run, [0])


def legacy_copy(five: Run, path) -> Run:
    """A run as written before the policy: every epoch holds optimizer state."""
    shutil.copytree(five.path, path, ignore=shutil.ignore_patterns("cache"))
    run = Run(path)
    state = read_payload(run, 5)["optimizer"]
    for epoch in run.epochs()[:-1]:
        payload = read_payload(run, epoch)
        payload["optimizer"] = state
        torch.save(payload, run.checkpoint_path(epoch))
    return run


def test_prune_dry_run_then_apply_keeps_latest_pinned_and_best(five, tmp_path, capsys):
    run = legacy_copy(five, tmp_path / "legacy")
    run.pin(1, "first")
    best = run.best_by_val_loss()
    kept = {5: "latest", 1: "pinned"}
    kept.setdefault(best, "best validation loss")
    before = {e: run.checkpoint_path(e).stat() for e in run.epochs()}
    entry = cached(run, 3, "probe", None, lambda: {"x": np.arange(3)})

    assert cli(["prune", "--run", str(run.path)]) == 0  # a dry run by default
    out = capsys.readouterr().out
    freeable = [e for e in run.epochs() if e not in kept]
    assert "dry run: nothing was changed; add --apply" in out and "kept: " in out
    assert f"epochs {', '.join(map(str, freeable))} frees about" in out
    assert {e: run.checkpoint_path(e).stat().st_size for e in run.epochs()} == {
        e: s.st_size for e, s in before.items()}

    plan = plan_prune(run)
    assert {e.epoch: e.keep for e in plan.epochs if e.keep} == kept
    assert cli(["prune", "--run", str(run.path), "--apply"]) == 0
    assert "freed" in capsys.readouterr().out
    for epoch in run.epochs():
        stat = run.checkpoint_path(epoch).stat()
        assert has_optimizer(run, epoch) == (epoch in kept)
        assert (stat.st_size < before[epoch].st_size) == (epoch not in kept)
        assert stat.st_mtime_ns == before[epoch].st_mtime_ns  # weights unchanged, so is the mtime
        model_from_checkpoint(read_payload(run, epoch))
    freed = sum(before[e].st_size - run.checkpoint_path(e).stat().st_size for e in freeable)
    assert freed >= plan.bytes_to_free > 0
    hit = load_cached(run, 3, "probe", None)  # cached results of a pruned epoch stay valid
    assert hit is not None and np.array_equal(hit["x"], entry["x"])
    assert prune(run).freed_bytes == 0 and not plan_prune(run).to_free  # nothing left to free


def test_resume_refuses_a_pruned_latest_epoch_with_a_sentence(five, demo_root, tmp_path, capsys):
    shutil.copytree(five.path, tmp_path / "pruned", ignore=shutil.ignore_patterns("cache"))
    run = Run(tmp_path / "pruned")
    config_before = (run.path / "config.json").read_text()
    assert drop_optimizer_state(run.checkpoint_path(5)) > 0
    assert drop_optimizer_state(run.checkpoint_path(5)) == 0  # already weights-only
    config = run.config().with_overrides({"epochs": 6, "run": str(run.path)})
    with pytest.raises(RunError, match="epoch 5 has no optimizer state .* cannot continue exactly"):
        train_one(config, resume=True, **QUIET)
    assert (run.path / "config.json").read_text() == config_before and run.epochs() == [1, 2, 3, 4, 5]
    code = cli(["train", "--data", str(demo_root), "--run", str(run.path), "--categories", "pill",
                "--epochs", "6", "--image-size", "32", "--resume", "--quiet"])
    assert code == 2 and "no optimizer state" in capsys.readouterr().err


def test_prune_reports_a_folder_of_runs_and_bad_input(five, tmp_path, capsys):
    shutil.copytree(five.path, tmp_path / "per" / "pill", ignore=shutil.ignore_patterns("cache"))
    assert cli(["prune", "--run", str(tmp_path / "per"), "--keep", "2,3"]) == 0
    out = capsys.readouterr().out
    assert "nothing to free" in out and "epochs 2, 3 have no optimizer state left to keep" in out
    assert kept_by_request(Run(tmp_path / "per" / "pill")) == [2, 3]
    assert cli(["prune", "--run", str(tmp_path / "per"), "--keep", "two"]) == 2
    assert "--keep 'two'" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()
    assert cli(["prune", "--run", str(tmp_path / "nothing")]) == 2
    assert "no run here" in capsys.readouterr().err
