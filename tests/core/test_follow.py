"""core.follow: epochs evaluated beside training land in the cache the dashboard reads."""

from __future__ import annotations

import re
import shutil

from core.follow import follow_run
from core.runs import Run
from core.scoring import score_checkpoint
from core.threads import usable_cores


def test_follow_scores_every_epoch_into_the_cache(tiny_run, tmp_path):
    run = Run(shutil.copytree(tiny_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    for epoch in run.epochs():
        assert score_checkpoint(run, epoch, run.config().data, "pixel", cached_only=True) is None
    lines = []
    scored = follow_run(run, methods=("pixel",), poll_s=0.01, log=lines.append)
    # the job has ended: the evaluator catches up with every core (core.threads), says so once
    assert re.fullmatch(rf"threads: {usable_cores()} threads?( at nice \+\d+)? \(the job has ended\)",
                        lines[0]), lines[0]
    assert scored == run.epochs() and len(lines) == 1 + len(scored)
    for epoch in run.epochs():  # what the Overview asks for is now read, not computed
        for method in ("pixel", "rawknn"):
            assert score_checkpoint(run, epoch, run.config().data, method, cached_only=True) is not None


def test_follow_does_nothing_on_an_unlabeled_test_set(flat_run, tmp_path):
    run = Run(shutil.copytree(flat_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    lines = []
    assert follow_run(run, methods=("pixel",), poll_s=0.01, log=lines.append) == []
    assert "no labels" in lines[-1]
