"""core.training.follow: epochs evaluated beside training land in the cache the dashboard reads."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from core.runs.folder import Run
from core.scoring import score_checkpoint
from core.training.follow import follow_run
from core.training.threads import usable_cores


def test_follow_scores_every_epoch_into_the_cache(tiny_run, tmp_path):
    run = Run(shutil.copytree(tiny_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    for epoch in run.epochs():
        assert score_checkpoint(run, epoch, run.config().data, "pixel", cached_only=True) is None
    lines = []
    scored = follow_run(run, methods=("pixel",), poll_s=0.01, log=lines.append)
    # the job has ended: the evaluator catches up with every core (core.training.threads), says so once
    assert re.fullmatch(rf"threads: {usable_cores()} threads?( at nice \+\d+)? \(the job has ended\)",
                        lines[0]), lines[0]
    assert scored == run.epochs() and sum("evaluated" in line for line in lines) == len(scored)
    for epoch in run.epochs():  # what the Overview asks for is now read, not computed
        for method in ("pixel", "rawknn"):
            assert score_checkpoint(run, epoch, run.config().data, method, cached_only=True) is not None
    assert_features_mapped(run, run.epochs()[-1])


def assert_features_mapped(run: Run, epoch: int) -> None:
    """The Features page's default view (UMAP, bottleneck, k = categories) is in the cache."""
    from core.diagnostics.features import MAX_POINTS, _cluster_params
    from core.runs.cache import load_cached

    params = _cluster_params(Path(run.config().data), "bottleneck", MAX_POINTS, 0)
    assert load_cached(run, epoch, "feature_embedding", {**params, "method": "umap"}) is not None
    assert load_cached(run, epoch, "feature_clusters", {**params, "k": None}) is not None


def test_follow_does_nothing_on_an_unlabeled_test_set(flat_run, tmp_path):
    run = Run(shutil.copytree(flat_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    lines = []
    assert follow_run(run, methods=("pixel",), poll_s=0.01, log=lines.append) == []
    assert any("no labels" in line for line in lines), lines
    assert_features_mapped(run, run.epochs()[-1])  # the map needs no labels
