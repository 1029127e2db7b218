"""Shared fixtures: one tiny demo dataset and one tiny trained run per test session.

Everything is small (32-64 px, a few images per category, 2 epochs) so the whole suite runs
on 2 CPU cores in minutes.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# no background evaluation beside the many tiny training runs (tests/core/test_follow.py runs it)
os.environ.setdefault("RECONSCOPE_NO_FOLLOW", "1")
# decoded image sets go to a folder of this session, never to the user's ~/.cache; the folder
# is removed when the session ends (subprocesses of tests inherit the variable, not the cleanup)
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

if "RECONSCOPE_CACHE" not in os.environ:
    os.environ["RECONSCOPE_CACHE"] = tempfile.mkdtemp(prefix="reconscope-decoded-")
    atexit.register(shutil.rmtree, os.environ["RECONSCOPE_CACHE"], ignore_errors=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from core.config import ModelConfig, TrainConfig  # noqa: E402
from core.data.demo import DemoSpec, generate_demo_dataset  # noqa: E402

SHARED_REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
TINY_CATEGORIES = ("carpet", "bottle", "pill")


def tiny_config(data: Path, run: Path, **overrides) -> TrainConfig:
    """A model and schedule small enough for a CPU test, still a real U-Net."""
    config = TrainConfig(data=str(data), run=str(run), image_size=32, epochs=2, batch_size=8,
                         model=ModelConfig(base_width=8, depth=3), seed=0)
    return config.with_overrides(overrides) if overrides else config


def write_run(path: Path, config: TrainConfig, states: dict, metrics=()):
    """A run folder made by hand: config.json, one checkpoint per {epoch: state_dict}, metrics."""
    from core.runs.folder import Run, save_checkpoint

    path.mkdir(parents=True, exist_ok=True)
    config = config.with_overrides({"run": str(path)})
    config.save(path / "config.json")
    for epoch, state in states.items():
        save_checkpoint(path / f"epoch_{epoch:03d}.pt",
                        {"model": state, "optimizer": {}, "epoch": epoch, "config": config.to_dict()})
    run = Run(path)
    for record in metrics:
        run.append_metrics(record)
    return run


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(root, DemoSpec(size=64, seed=0, n_train=10, n_test_good=3, n_test_per_defect=2,
                                         categories=TINY_CATEGORIES))
    return root


@pytest.fixture(scope="session")
def tiny_run(demo_root, tmp_path_factory):
    """A finished 2-epoch run on the tiny demo set (treat as read-only)."""
    from core.runs.folder import Run
    from core.training.loop import train_one

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_one(tiny_config(demo_root, run_dir), progress=False, log=lambda _: None)
    return Run(run_dir)


@pytest.fixture(scope="session")
def shared_realdata() -> Path:
    if not SHARED_REALDATA.is_dir():
        pytest.skip("../shared/realdata is absent")
    return SHARED_REALDATA


@pytest.fixture(scope="session")
def flat_data(demo_root, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny demo set handed out the homework way: flat train/ with a category CSV, a
    shuffled unlabeled test/; and the hidden answer key (file, category, label) beside it."""
    from core.data.flatten import write_flat_dataset

    root = tmp_path_factory.mktemp("flat") / "homework"
    answers = write_flat_dataset(demo_root, root, train_per_category=10, test_per_category=20)
    return root, answers


@pytest.fixture(scope="session")
def flat_run(flat_data, tmp_path_factory):
    """A finished 2-epoch run on the flat homework set (treat as read-only)."""
    from core.runs.folder import Run
    from core.training.loop import train_one

    run_dir = tmp_path_factory.mktemp("flat_runs") / "homework"
    # 3 held-out normals per category: enough to calibrate scores per category
    train_one(tiny_config(flat_data[0], run_dir, **{"model.skips": "none", "val_fraction": 0.3}),
              progress=False, log=lambda _: None)
    return Run(run_dir)


SWEEP_ARGS = ("--grid", "loss=l1,l2", "--grid", "skips=all|none", "--epochs", "1", "--image-size", "32",
              "--batch-size", "8", "--base-width", "8", "--depth", "2", "--threads", "1")


@pytest.fixture(scope="session")
def tiny_sweep(demo_root, tmp_path_factory) -> Path:
    """A finished 2x2 sweep (loss l1/l2 x skips all/none, 1 epoch, 32 px) made by the CLI;
    returns its folder (treat as read-only)."""
    from core.__main__ import main

    root = tmp_path_factory.mktemp("sweeps")
    assert main(["sweep", "--root", str(root), "--name", "grid2x2", "--data", str(demo_root), *SWEEP_ARGS]) == 0
    return root / "grid2x2"


@pytest.fixture(scope="session")
def skips_sweep(demo_root, tmp_path_factory) -> Path:
    """A finished 2-run sweep (the default loss, all skips and none, 1 epoch, 32 px) made by the
    CLI without the background follower, so nothing is scored yet; returns its folder (read-only)."""
    from core.__main__ import main

    root = tmp_path_factory.mktemp("sweeps2")
    args = [arg for arg in SWEEP_ARGS if arg not in ("--grid", "loss=l1,l2", "skips=all|none")]
    assert main(["sweep", "--root", str(root), "--name", "skips2", "--data", str(demo_root),
                 "--grid", "skips=all|none", "--no-follow", *args]) == 0
    return root / "skips2"
