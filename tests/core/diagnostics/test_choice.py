"""The one chosen-epoch rule (core.diagnostics.choice) that the CLI, the dashboard, Compare and
export share: pinned, else the suggestion, else the lowest validation loss among healthy
epochs, else the last; each named with its reason, and never a method a flag rules out."""

from __future__ import annotations

import json

import pytest

from core.diagnostics.choice import (
    LAST,
    LOWEST_VAL_LOSS,
    PINNED,
    RANKED,
    SUGGESTED,
    caveat_for,
    choose_epoch,
    resolve_epoch,
)
from core.diagnostics.health import HealthFlag, HealthReport
from core.diagnostics.ranking import Suggestion
from core.diagnostics.results import RunDiagnosis
from core.runs.folder import RunError
from tests.core.test_runs import _run

COLLAPSED = HealthFlag("collapsed", "error", "...", {}, ("pixel", "ssim", "feature"))


def _diagnosis(suggested=None, method=None, unhealthy=()):
    reports = [HealthReport(e, [COLLAPSED] if e in unhealthy else [], {}) for e in (1, 2, 3, 4)]
    suggestion = Suggestion(suggested, method, reasons=[f"{method} ranked by test separation"]
                            if suggested else ["no healthy epoch"])
    return RunDiagnosis("run", [], reports, None, suggestion)


def test_a_pin_wins_and_says_it_is_pinned(tmp_path):
    run = _run(tmp_path, epochs=(1, 2, 3, 4), val_losses={1: 0.5, 2: 0.4, 3: 0.3, 4: 0.35})
    run.pin(2, "looked best on the Reconstructions page")
    choice = choose_epoch(run, _diagnosis(suggested=4, method="knn"))
    assert (choice.epoch, choice.rule) == (2, PINNED)
    assert "looked best" in choice.reason and choice.label == "epoch 2 (pinned)"


def test_the_suggestion_with_its_method_and_why_it_is_not_the_lowest_val_loss(tmp_path):
    run = _run(tmp_path, epochs=(1, 2, 3, 4), val_losses={1: 0.5, 2: 0.4, 3: 0.3, 4: 0.35})
    choice = choose_epoch(run, _diagnosis(suggested=4, method="knn"))
    assert (choice.epoch, choice.method, choice.rule) == (4, "knn", SUGGESTED)
    assert choice.label == "epoch 4 (suggested for knn)"
    assert choice.best_val_epoch == 3 and "Epoch 3 has the lowest validation loss" in choice.differs_from_best


def test_without_a_suggestion_the_lowest_val_loss_among_healthy_epochs_never_a_collapsed_one(tmp_path):
    run = _run(tmp_path, epochs=(1, 2, 3, 4), val_losses={1: 0.5, 2: 0.4, 3: 0.3, 4: 0.35})
    choice = choose_epoch(run, _diagnosis(unhealthy=(3,)))
    assert (choice.epoch, choice.rule) == (4, LOWEST_VAL_LOSS)  # epoch 3 has the lowest, but collapsed
    assert "without an error flag" in choice.reason
    every = choose_epoch(run, _diagnosis(unhealthy=(1, 2, 3, 4)))
    assert (every.epoch, every.rule) == (4, LAST) and "every epoch has an error flag" in every.reason


def test_without_any_diagnosis_it_says_the_health_was_not_checked(tmp_path):
    run = _run(tmp_path, epochs=(1, 2), val_losses={1: 0.5, 2: 0.6})
    choice = choose_epoch(run, None)
    assert (choice.epoch, choice.rule) == (1, LOWEST_VAL_LOSS) and "not been checked" in choice.reason
    assert choose_epoch(_run(tmp_path / "x", epochs=(1, 2)), None).rule == LAST


def test_a_flagged_epoch_for_an_unaffected_method_carries_one_plain_sentence():
    report = HealthReport(3, [COLLAPSED], {})
    assert report.unusable == ["pixel", "ssim", "feature"]
    text = caveat_for(3, "knn", report)
    assert text.startswith("Epoch 3 is flagged collapsed") and "never looks at the reconstruction" in text
    assert caveat_for(3, "knn", HealthReport(3, [], {})) == ""


def test_the_cli_words_resolve_through_one_function(tmp_path, monkeypatch):
    run = _run(tmp_path, epochs=(1, 2, 3), val_losses={1: 0.5, 2: 0.3, 3: 0.4})
    monkeypatch.setattr("core.diagnostics.choice.diagnosis_of", lambda r, d=None: _diagnosis(suggested=3, method="knn"))
    assert resolve_epoch(run, "best") == (2, None)
    assert resolve_epoch(run, "last") == (3, None)
    epoch, choice = resolve_epoch(run, "chosen")
    assert epoch == 3 and choice.rule == SUGGESTED
    with pytest.raises(RunError, match="use a number, chosen, best or last"):
        resolve_epoch(run, "newest")
    assert json.dumps(choice.to_dict())  # the card stores it as JSON


def test_a_score_the_suggested_epoch_rules_out_gets_the_lowest_val_loss_where_it_is_usable(tmp_path):
    # knn suggested at a collapsed epoch (fine for knn); someone scoring with ssim must not get it
    run = _run(tmp_path, epochs=(1, 2, 3, 4), val_losses={1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2})
    diagnosis = _diagnosis(suggested=4, method="knn", unhealthy=(4,))
    for_knn = choose_epoch(run, diagnosis, method="knn")
    assert (for_knn.epoch, for_knn.rule) == (4, SUGGESTED) == (choose_epoch(run, diagnosis).epoch, SUGGESTED)
    for_ssim = choose_epoch(run, diagnosis, method="ssim")
    assert (for_ssim.epoch, for_ssim.method, for_ssim.rule) == (3, "ssim", LOWEST_VAL_LOSS)
    assert for_ssim.label == "epoch 3 (lowest validation loss for ssim)"
    assert "epoch 4, for knn" in for_ssim.reason and "flagged collapsed" in for_ssim.reason
    assert "makes ssim useless there" in for_ssim.reason
    # a method no flag names keeps the suggestion
    assert choose_epoch(run, diagnosis, method="rawknn").epoch == 4
    # every epoch ruled out: the suggestion stays, with the caveat to look first
    everywhere = choose_epoch(run, _diagnosis(suggested=4, method="knn", unhealthy=(1, 2, 3, 4)), method="ssim")
    assert (everywhere.epoch, everywhere.rule) == (4, SUGGESTED)
    assert "so is every other epoch" in everywhere.reason and everywhere.caveat.startswith("Epoch 4 is flagged")


def test_chosen_for_one_method_through_the_cli_word(tmp_path, monkeypatch):
    run = _run(tmp_path, epochs=(1, 2, 3), val_losses={1: 0.5, 2: 0.3, 3: 0.4})
    monkeypatch.setattr("core.diagnostics.choice.diagnosis_of",
                        lambda r, d=None: _diagnosis(suggested=3, method="knn", unhealthy=(3,)))
    assert resolve_epoch(run, "chosen")[0] == 3
    epoch, choice = resolve_epoch(run, "chosen", method="pixel")
    assert epoch == 2 and choice.rule == LOWEST_VAL_LOSS and choice.method == "pixel"


def test_a_ranked_score_gets_its_own_pick_from_the_same_ranking(tmp_path):
    # knn separates the test set best at epoch 2 and is suggested; ssimz is ranked too, and
    # without labels its best criterion on labelled runs is the validation loss: its own pick
    # is the lowest validation loss where no flag rules it out (4 is collapsed -> 3)
    from core.diagnostics.ranking import rank

    run = _run(tmp_path, epochs=(1, 2, 3, 4), val_losses={1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2})
    epochs = [1, 2, 3, 4]
    # ssimz separates "best" but is PICK_ONLY: against a few held-out normals its separation is
    # noise, and suggested it cost a homework submission .04 pooled
    sep = {"knn": {1: 0.80, 2: 0.95, 3: 0.85, 4: 0.90}, "ssimz": {1: 0.99, 2: 0.99, 3: 0.99, 4: 0.99}}
    values = {"test_separation": sep,
              "val_loss": {m: {e: -run_loss for e, run_loss in {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2}.items()}
                           for m in sep}}
    unusable = {4: ["pixel", "ssim", "feature", "ssimz"]}
    ranking = rank(epochs, ["knn", "ssimz"], values, {}, unusable)
    assert ranking.picks["knn"].epoch == 2 and ranking.picks["ssimz"].epoch == 3
    assert ranking.picks["ssimz"].criterion == "val_loss"
    assert type(ranking).from_dict(json.loads(json.dumps(ranking.to_dict()))).picks == ranking.picks
    reports = [HealthReport(e, [COLLAPSED] if e == 4 else [], {}) for e in epochs]
    diagnosis = RunDiagnosis("run", [], reports, None, ranking.suggestion, [], ranking)
    assert (ranking.suggestion.epoch, ranking.suggestion.method) == (2, "knn")
    assert choose_epoch(run, diagnosis, method="knn").rule == SUGGESTED
    for_ssimz = choose_epoch(run, diagnosis, method="ssimz")
    assert (for_ssimz.epoch, for_ssimz.method, for_ssimz.rule) == (3, "ssimz", RANKED)
    assert for_ssimz.label == "epoch 3 (ranked for ssimz)"
    assert "lowest validation loss" in for_ssimz.reason and "epoch 2 for knn" in for_ssimz.reason
    # a score the ranking does not score keeps the suggestion's epoch (no flag names it there)
    assert choose_epoch(run, diagnosis, method="rawknn").epoch == 2
