"""Label-free epoch ranking (core.diagnostics.ranking): criteria, agreement, the suggestion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.__main__ import main as cli
from core.diagnostics import diagnose_run
from core.diagnostics.ranking import (
    HEDGE_ERRORS,
    MEASURED_AGREEMENT,
    EpochRanking,
    auroc_standard_error,
    rank,
    rank_run,
    separation_auroc,
    separation_error,
    spearman_agreement,
    synthetic_gaps,
)
from core.diagnostics.timeline import RANKED_METHODS


def test_separation_reads_no_label_and_is_per_category():
    rng = np.random.default_rng(0)
    normals = rng.normal(0, 1, 40)
    assert separation_auroc(normals, ["a"] * 40, normals + 10, ["a"] * 40) == 1.0
    assert separation_auroc(normals, ["a"] * 40, normals, ["a"] * 40) == pytest.approx(0.5)
    # a category scored on a higher scale does not help or hurt the other
    mixed = separation_auroc(np.r_[normals, normals + 100], ["a"] * 40 + ["b"] * 40,
                            np.r_[normals + 10, normals + 100], ["a"] * 40 + ["b"] * 40)
    assert mixed == pytest.approx(0.75, abs=0.01)
    assert np.isnan(separation_auroc(normals, ["a"] * 40, normals, ["b"] * 40))


def test_separation_error_shrinks_with_more_held_out_normals():
    # Hanley & McNeil's table: AUROC 0.8 from 50 and 50 images has a standard error of ~0.044
    assert auroc_standard_error(0.8, 50, 50) == pytest.approx(0.0435, abs=0.002)
    rng = np.random.default_rng(0)
    test = rng.normal(1, 1, 35)
    few = separation_error(rng.normal(0, 1, 3), ["a"] * 3, test, ["a"] * 35)
    many = separation_error(rng.normal(0, 1, 80), ["a"] * 80, test, ["a"] * 35)
    assert many < few
    assert np.isnan(separation_error([0.0], ["a"], [1.0], ["b"]))


HEDGE_VALUES = {"test_separation": {"knn": {1: 0.78, 2: 0.76}, "ensemble": {1: 0.74, 2: 0.76}}}


def test_the_ensemble_is_suggested_unless_another_method_separates_clearly_better():
    methods, epochs = ["knn", "ensemble"], [1, 2]
    # 3 held-out normals per category: knn's 0.02 lead is noise, the ensemble hedges
    noisy = {"knn": {1: 0.07, 2: 0.07}, "ensemble": {1: 0.07, 2: 0.07}}
    hedged = rank(epochs, methods, HEDGE_VALUES, {}, {}, errors=noisy).suggestion
    assert hedged.method == "ensemble"
    assert any("ensemble rather than knn" in reason and "+0.020" in reason for reason in hedged.reasons)
    # many held-out normals: the same lead is beyond HEDGE_ERRORS of its error, knn is suggested
    sharp = {m: {e: 0.02 / HEDGE_ERRORS / 3 for e in epochs} for m in methods}
    assert rank(epochs, methods, HEDGE_VALUES, {}, {}, errors=sharp).suggestion.method == "knn"
    # unknown errors (an old diagnosis): the highest separation, as before
    assert rank(epochs, methods, HEDGE_VALUES, {}, {}).suggestion.method == "knn"
    # a ranking keeps its errors through JSON
    ranking = rank(epochs, methods, HEDGE_VALUES, {}, {}, errors=noisy)
    again = EpochRanking.from_dict(json.loads(json.dumps(ranking.to_dict())))
    assert again.errors == ranking.errors and again.suggestion == ranking.suggestion


def test_spearman_needs_three_epochs_and_variation():
    assert spearman_agreement({1: 0.1, 2: 0.2, 3: 0.3}, {1: 0.5, 2: 0.6, 3: 0.9}) == (1.0, 3)
    assert spearman_agreement({1: 0.3, 2: 0.2, 3: 0.1}, {1: 0.5, 2: 0.6, 3: 0.9})[0] == -1.0
    assert spearman_agreement({1: 0.1, 2: 0.2}, {1: 0.5, 2: 0.6}) == (None, 2)
    assert spearman_agreement({1: 0.1, 2: 0.1, 3: 0.1}, {1: 0.5, 2: 0.6, 3: 0.9}) == (None, 3)


VALUES = {  # test separation misleads, val_loss (negated) tracks real AUROC
    "test_separation": {"pixel": {1: 0.9, 2: 0.7, 3: 0.6, 4: 0.5}, "knn": {1: 0.8, 2: 0.7, 3: 0.75, 4: 0.72}},
    "val_loss": {"pixel": {1: -0.4, 2: -0.3, 3: -0.2, 4: -0.1}, "knn": {1: -0.4, 2: -0.3, 3: -0.2, 4: -0.1}},
    "synthetic_auroc": {"pixel": {1: 0.95, 2: 0.95, 3: 0.95, 4: 0.96}},
}
REAL = {"pixel": {1: 0.5, 2: 0.6, 3: 0.7, 4: 0.8}, "knn": {1: 0.6, 2: 0.7, 3: 0.8, 4: 0.9}}


def test_suggestion_uses_the_best_agreeing_criterion_and_skips_unusable_methods():
    ranking = rank([1, 2, 3, 4], ["pixel", "knn"], VALUES, REAL, {})
    s = ranking.suggestion
    assert s.criterion == "val_loss" and s.agreement == pytest.approx(1.0) and s.epoch == 4
    assert s.method == "knn"  # at the picked epochs knn separates the test set better (0.72 vs 0.5)
    assert ranking.agreement("test_separation", "pixel").spearman == pytest.approx(-1.0)
    # pixel copied at epochs 3 and 4: never suggested there, whatever the criteria say
    unusable = {1: ["knn"], 2: ["knn"], 3: ["knn", "pixel"], 4: ["knn", "pixel"]}
    flagged = rank([1, 2, 3, 4], ["pixel", "knn"], VALUES, REAL, unusable)
    assert (flagged.suggestion.method, flagged.suggestion.epoch) == ("pixel", 2)
    assert any("3, 4 left out" in reason for reason in flagged.suggestion.reasons)
    everything = rank([1, 2], ["pixel"], VALUES, REAL, {1: ["pixel"], 2: ["pixel"]})
    assert everything.suggestion.epoch is None and "no method is usable" in everything.suggestion.reasons[0]


def test_without_labels_the_default_order_is_used_and_said():
    ranking = rank([1, 2, 3, 4], ["pixel", "knn"], VALUES, {}, {})
    s = ranking.suggestion
    assert not ranking.labelled and not ranking.agreements
    # pixel's best measured criterion is val_loss (MEASURED_AGREEMENT), knn's test_separation
    assert s.criterion == ("val_loss" if s.method == "pixel" else "test_separation")
    assert s.agreement == MEASURED_AGREEMENT[s.method][s.criterion]
    assert "labelled runs" in s.agreement_source and "agreed best on labelled runs" in s.reasons[0]


def test_synthetic_gap_against_real_or_separation():
    gaps = synthetic_gaps(VALUES, REAL)
    assert {(g.epoch, g.method) for g in gaps} == {(1, "pixel"), (2, "pixel"), (3, "pixel")}
    assert "real AUROC" in gaps[0].sentence
    unlabelled = synthetic_gaps(VALUES, {})
    assert {g.epoch for g in unlabelled} == {2, 3, 4} and unlabelled[0].reference_name == "test separation"


def test_rank_run_on_a_labelled_run_and_round_trip(tiny_run):
    ranking = rank_run(tiny_run, tiny_run.epochs(), tiny_run.config().data, ("pixel", "knn"), {})
    assert ranking.labelled and set(ranking.real) == {"pixel", "knn"}
    for method in ("pixel", "knn"):
        assert set(ranking.values["test_separation"][method]) == set(tiny_run.epochs())
    assert set(ranking.values["restoration"]["pixel"]) == set(tiny_run.epochs())
    assert not ranking.values["restoration"]["knn"]  # knn never reads the reconstruction
    assert ranking.suggestion.epoch in tiny_run.epochs() and ranking.suggestion.method in ("pixel", "knn")
    record = json.loads(json.dumps(ranking.to_dict(), allow_nan=False))
    assert EpochRanking.from_dict(record) == ranking


def test_diagnose_shows_agreement_and_suggests_a_method(tiny_run, capsys):
    result = diagnose_run(tiny_run, cluster=False)
    assert result.suggestion.method in RANKED_METHODS  # the default ensemble is ranked too
    assert result.ranking is not None and result.ranking.methods == list(RANKED_METHODS)
    assert cli(["diagnose", "--run", str(tiny_run.path), "--epoch", "all", "--no-cluster"]) == 0
    out = capsys.readouterr().out
    assert "label-free criteria vs real image AUROC" in out and "test_separation" in out
    assert f"suggested epoch: {result.suggestion.epoch} with {result.suggestion.method}" in out
