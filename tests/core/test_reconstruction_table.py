"""core.reports.reconstruction on a real 2-run sweep (all skips / none): the users' table holds
each run's recipe, its bottleneck weight std and the same image AUROCs evaluate gives, read
from the cache once scored."""

from __future__ import annotations

import math
import shutil

import pytest

from core.diagnostics.weights import weight_stats
from core.evaluation.evaluate import evaluate_epoch
from core.reports.compare import expand_runs
from core.reports.reconstruction import (
    ALL_METHODS,
    reconstruction_rows,
    row_epochs,
    rows_frame,
    table_methods,
)

METHODS = ("pixel", "ssim", "feature", "ssimz", "rawknn", "patchz")


@pytest.fixture(scope="module")
def sweep(skips_sweep, tmp_path_factory):
    """A writable copy: scoring fills each run's cache."""
    copy = tmp_path_factory.mktemp("recon_table") / skips_sweep.name
    shutil.copytree(skips_sweep, copy)
    return copy


def test_rows_hold_recipe_bottleneck_std_and_evaluates_aurocs(sweep, demo_root):
    runs = expand_runs([sweep])
    before = reconstruction_rows(runs, epochs="last", cached_only=True)
    assert [r.missing for r in before] == [METHODS, METHODS], "nothing was scored before"
    assert all(not r.auroc for r in before)

    seen = []
    rows = reconstruction_rows(runs, epochs="last", progress=lambda *step: seen.append(step))
    assert [(r.run, r.skips, r.objective, r.loss, r.epoch) for r in rows] == [
        ("skips-all", "all", "denoise", "0.5*ssim+0.5*l1", 1),
        ("skips-none", "none", "denoise", "0.5*ssim+0.5*l1", 1)]
    assert [step[:2] for step in seen] == [(1, 2), (2, 2)]
    for run, row in zip(runs, rows, strict=True):
        assert table_methods(run) == METHODS and not row.missing and not row.note
        stats = weight_stats(run, 1)
        assert row.bottleneck_std == pytest.approx(stats.loc[stats["part"] == "bottleneck", "std"].mean())
        logged = next(m for m in run.metrics() if m.get("epoch") == 1)
        assert row.val_loss == pytest.approx(logged["val_loss"])
        evaluation = evaluate_epoch(run, 1, demo_root, METHODS, pixel=False, thresholds=False,
                                    routing=False)
        for method in METHODS:
            assert row.auroc[method] == pytest.approx(evaluation.mean_auroc(method)), method
            assert 0.0 <= row.auroc[method] <= 1.0

    again = reconstruction_rows(runs, epochs="last", cached_only=True)
    assert [r.auroc for r in again] == [r.auroc for r in rows], "read back from the cache"
    frame = rows_frame(again)
    assert list(frame["run"]) == ["skips-all", "skips-none"]
    assert [c for c in frame.columns if c in ALL_METHODS] == list(METHODS), "no seg column without seg"
    assert frame[list(METHODS)].notna().all().all()


def test_epochs_and_a_missing_data_folder(sweep, tmp_path):
    run = expand_runs([sweep])[0]
    assert row_epochs(run, "chosen,last", 1) == [1] and row_epochs(run, "chosen", None) == []
    with pytest.raises(ValueError, match="chosen,last"):
        row_epochs(run, "best", None)
    rows = reconstruction_rows([run], data_root=tmp_path / "gone", epochs="last", cached_only=True)
    assert len(rows) == 1 and str(tmp_path / "gone") in rows[0].note and rows[0].epoch is None
    assert math.isnan(rows_frame(rows)["ssimz"].iloc[0])


def test_the_epoch_chosen_for_the_reconstruction_score_gets_its_own_row(sweep, tmp_path, monkeypatch):
    from tests.core.test_runs import _run

    run = _run(tmp_path, epochs=(1, 2, 3), val_losses={1: 0.5, 2: 0.4, 3: 0.3})
    assert row_epochs(run, "chosen", 1, (3,)) == [1, 3] and row_epochs(run, "last", 1, (2,)) == [3]
    asked = []

    def chosen(run, root, method=None):
        asked.append(method)
        return 1

    monkeypatch.setattr("core.reports.reconstruction._chosen_epoch", chosen)
    rows = reconstruction_rows(expand_runs([sweep])[:1], epochs="chosen", cached_only=True)
    assert asked == [None, "ssimz"]
    assert [(r.epoch, r.chosen, r.chosen_for) for r in rows] == [(1, True, "ssimz")]
    assert rows_frame(rows)["chosen_for"].tolist() == ["ssimz"]
    # the Compare page knows both epochs from its own diagnosis: nothing is resolved again
    path = str(expand_runs([sweep])[0].path)
    given = reconstruction_rows(expand_runs([sweep])[:1], epochs="chosen", cached_only=True,
                                chosen={path: 1}, chosen_for={path: 1})
    assert asked == [None, "ssimz"] and [(r.chosen, r.chosen_for) for r in given] == [(True, "ssimz")]
