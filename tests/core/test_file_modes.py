"""Every file the product writes gets the mode a plain write would: 0o666 minus the umask
(atomic writes go through mkstemp, whose own mode is 0600 and would hide a shared run)."""

from __future__ import annotations

import os
import stat

import pytest

from core.reports.export import export_epoch
from core.runs.cache import store_cached
from core.runs.folder import Run, atomic_write_bytes, current_umask
from core.runs.storage import prune, set_kept
from core.scoring import score_checkpoint
from core.training.loop import train_one
from tests.conftest import tiny_config


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def modes(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_atomic_write_honours_the_umask_and_an_existing_files_mode(umask, tmp_path):
    assert current_umask() == umask
    path = tmp_path / "new.json"
    atomic_write_bytes(path, b"{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o640)  # a plain write keeps an existing file's mode, and so does this one
    atomic_write_bytes(path, b"[]")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"[]"


# a pill-only run scored on the three-category demo: the other two are named as left out
# (tests/core/test_input_faults_round3.py)
@pytest.mark.filterwarnings("ignore::core.data.images.LeftOutWarning")
def test_run_cache_and_export_files_get_the_umasks_mode(umask, demo_root, tmp_path):
    run = Run(tmp_path / "run")
    set_kept(run, [1])
    train_one(tiny_config(demo_root, run.path, epochs=3, categories=["pill"]),
              progress=False, log=lambda _: None)  # epoch 2 is rewritten without optimizer state
    run.pin(3, "shared")
    score_checkpoint(run, 2, demo_root, "pixel")
    store_cached(run, 1, "probe", {"k": 1}, {"n": 1})
    (run.path / "keep.json").unlink()
    assert prune(run).epochs == (1,)  # epoch 1 rewritten by prune
    export_epoch(run, 2, tmp_path / "export", test_dir=demo_root)
    written = {**modes(run.path), **{f"export/{k}": v for k, v in modes(tmp_path / "export").items()}}
    expected = 0o666 & ~umask
    assert {"epoch_001.pt", "epoch_002.pt", "status.json", "pinned.json", "metrics.jsonl",
            "export/model.pt", "export/card.json", "export/submission.csv"} <= set(written)
    assert any(name.startswith("cache/") for name in written)
    assert {name: mode for name, mode in written.items() if mode != expected} == {}
    folders = [p for p in run.path.rglob("*") if p.is_dir()]
    assert folders and all(stat.S_IMODE(p.stat().st_mode) == 0o777 & ~umask for p in folders)
