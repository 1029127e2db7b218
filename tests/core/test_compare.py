"""core.reports.compare on a real 2x2 sweep: every number traced to its source, and the CLI prints them."""

import math
import shutil

import numpy as np
import pytest

from core.__main__ import main as cli
from core.diagnostics import feature_clusters, weight_stats
from core.evaluation.evaluate import evaluate_run
from core.reports.compare import (
    CRITERIA,
    best_run,
    compare_many,
    expand_runs,
    format_comparison,
    list_test_images,
    reconstruct_across,
)
from core.runs.folder import Run, RunError
from core.training.sweep import load_plan


@pytest.fixture(scope="module")
def sweep_copy(tiny_sweep, tmp_path_factory):
    """A writable copy (this module evaluates and pins a member)."""
    target = tmp_path_factory.mktemp("cmp") / "grid2x2"
    shutil.copytree(tiny_sweep, target, ignore=shutil.ignore_patterns("cache"))
    return target


def test_sweep_expands_to_its_members_and_each_number_matches_its_source(sweep_copy, demo_root):
    plan = load_plan(sweep_copy)
    runs = expand_runs([sweep_copy])
    assert [r.name for r in runs] == [m.name for m in plan.members]
    comparison = compare_many(runs, data_root=demo_root)
    labels = [r.label for r in comparison.runs]
    assert labels == [m.name for m in plan.members]
    val = comparison.val_loss_table()
    assert list(val.columns) == labels and list(val.index) == [1]
    for run, summary in zip(runs, comparison.runs, strict=True):
        logged = run.metrics()[0]
        assert val.loc[1, summary.label] == pytest.approx(logged["val_loss"])
        assert summary.epoch == 1 and summary.val_loss == pytest.approx(logged["val_loss"])
        assert summary.synthetic_auroc == pytest.approx(logged["synthetic_auroc"])
        assert summary.settings["loss"] == run.config().loss and summary.settings["depth"] == 2
        stats = weight_stats(run, 1)
        deepest = stats[stats["part"] == "bottleneck"]
        assert summary.deep_std == pytest.approx(dict(zip(deepest["layer"], deepest["std"], strict=True)))
        clusters = feature_clusters(run, 1, demo_root)
        assert summary.purity == pytest.approx(clusters.purity)
        assert summary.confused_pairs == clusters.confused_pairs
        assert summary.real_auroc == {}  # nothing evaluated yet: nothing is made up
    healthy = [r for r in comparison.runs if not r.flags] or comparison.runs  # flagged runs only as a last resort
    assert best_run(comparison, "lowest validation loss").val_loss == min(r.val_loss for r in healthy)
    with pytest.raises(ValueError, match="criterion"):
        best_run(comparison, "fastest")


def test_real_auroc_comes_from_the_evaluation_cache_and_pins_are_honoured(sweep_copy, demo_root):
    runs = expand_runs([sweep_copy])
    evaluated = runs[2]
    table = evaluate_run(evaluated, [1], demo_root, methods=("pixel",))
    comparison = compare_many(runs, data_root=demo_root, health=False, cluster=False)
    summary = comparison.runs[2]
    assert summary.real_auroc["pixel"] == pytest.approx(table.loc[1, "real_auroc_pixel"])
    assert summary.real_auroc["rawknn"] == pytest.approx(table.loc[1, "real_auroc_rawknn"])
    assert "ssim" not in summary.real_auroc and comparison.runs[0].real_auroc == {}
    assert best_run(comparison, "highest real AUROC").label == summary.label
    row = comparison.epochs[comparison.epochs["run"] == summary.label].iloc[0]
    assert row["real_auroc_pixel"] == pytest.approx(summary.real_auroc["pixel"])
    evaluated.pin(1, "test")
    assert compare_many([evaluated], health=False, cluster=False).runs[0].epoch_source == "pinned"


def test_cli_prints_the_numbers_compare_many_returns(sweep_copy, demo_root, capsys):
    comparison = compare_many(expand_runs([sweep_copy]), data_root=demo_root)
    assert cli(["compare", "--sweep", str(sweep_copy), "--data", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert out == format_comparison(comparison) + "\n"
    for summary in comparison.runs:
        assert f"{summary.val_loss:.4f}" in out and f"{summary.purity:.3f}" in out
    for name in CRITERIA:
        assert f"best by {name}:" in out
    members = [str(sweep_copy / r.label) for r in comparison.runs[:2]]
    assert cli(["compare", *members, "--no-health", "--no-cluster", "--criterion", "lowest validation loss"]) == 0
    out = capsys.readouterr().out
    assert "best by lowest validation loss" in out and "best by highest purity" not in out


def test_one_test_image_reconstructed_by_every_run(sweep_copy, demo_root):
    comparison = compare_many(expand_runs([sweep_copy]), health=False, cluster=False)
    name = list_test_images(demo_root)[0]
    tiles = reconstruct_across(comparison, demo_root, name)
    assert [t.label for t in tiles] == [r.label for r in comparison.runs]
    for tile in tiles:
        assert tile.image.shape == tile.reconstruction.shape == (32, 32, 3)
        assert tile.reconstruction.dtype == np.uint8 and not tile.note
    assert not np.array_equal(tiles[0].reconstruction, tiles[2].reconstruction)  # l1 and l2 differ
    with pytest.raises(ValueError, match="no test image named"):
        reconstruct_across(comparison, demo_root, "nope")


def test_folders_without_runs_are_refused(tmp_path):
    with pytest.raises(RunError, match="no runs here"):
        expand_runs([tmp_path])


def test_damaged_member_is_a_note_not_a_failure(sweep_copy, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sweep_copy / "loss-l1_skips-all", broken, ignore=shutil.ignore_patterns("cache"))
    (broken / "epoch_001.pt").write_bytes(b"not a checkpoint")
    comparison = compare_many([Run(broken), Run(sweep_copy / "loss-l2_skips-all")], health=False, cluster=False)
    assert comparison.runs[0].epoch is None and "damaged" in " ".join(comparison.runs[0].notes)
    assert comparison.runs[1].epoch == 1 and not math.isnan(comparison.runs[1].val_loss)


def test_compare_suggests_the_epoch_the_overview_suggests(tiny_run, demo_root, tmp_path):
    """One run, one suggested epoch: compare reads the label-free ranking once its scores are
    cached (the Overview's suggestion); before that it says its suggestion is health-only."""
    from core.diagnostics import diagnose_run

    shutil.copytree(tiny_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    run = Run(tmp_path / "run")
    before = compare_many([run], data_root=demo_root, cluster=False).runs[0]
    assert any("health flags only" in note for note in before.notes)
    overview = diagnose_run(run, data_root=demo_root, cluster=False)  # ranks: scores every epoch
    assert overview.ranking is not None
    after = compare_many([run], data_root=demo_root, cluster=False).runs[0]
    assert after.epoch == overview.suggestion.epoch and after.epoch_source == "suggested"
    # the reconstruction table's second row: the epoch the same ranking chose for ssimz
    from core.diagnostics.choice import choose_epoch

    assert after.reconstruction_epoch == choose_epoch(run, overview, "ssimz").epoch is not None
    assert not any("health flags only" in note for note in after.notes)
