"""Threshold rules (core.evaluation.thresholds): the numbers `evaluate` reports and the Scores page draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.evaluation.thresholds import (
    F1_RULE,
    JUMP_RULE,
    PERCENTILE_RULE,
    RULE_NAMES,
    choose_threshold,
    normal_scores,
    threshold_report,
)
from core.scoring.results import MethodScores

NORMAL = np.round(np.arange(30) * 0.01, 2)  # 0.00 .. 0.29
LABELS = np.r_[np.zeros(30), np.ones(3)].astype(int)
SCORES = np.r_[NORMAL, [1.0, 1.1, 1.2]]


def test_each_rule_gives_its_threshold_and_says_how():
    f1 = choose_threshold(F1_RULE, LABELS, SCORES)
    assert (f1.value, f1.f1) == (1.0, 1.0) and f1.note == "best F1 = 1.000"
    jump = choose_threshold(JUMP_RULE, LABELS, SCORES)
    assert jump.value == pytest.approx((0.29 + 1.0) / 2)
    pct = choose_threshold(PERCENTILE_RULE, LABELS, SCORES, np.linspace(0.0, 0.1, 11), q=99)
    assert pct.value == pytest.approx(0.099) and pct.note == "99th percentile of 11 held-out normals"
    assert set(RULE_NAMES) == {F1_RULE, PERCENTILE_RULE, JUMP_RULE}


def test_a_rule_without_what_it_needs_gives_no_threshold_and_says_why():
    unlabeled = -np.ones(33, int)
    assert choose_threshold(F1_RULE, unlabeled, SCORES).value is None
    assert "needs defective images" in choose_threshold(F1_RULE, unlabeled, SCORES).note
    none = choose_threshold(PERCENTILE_RULE, LABELS, SCORES, None)
    assert none.value is None and "no held-out normal" in none.note
    flat = choose_threshold(JUMP_RULE, LABELS, np.linspace(0, 1, 40))
    assert flat.value is None and "no clear jump" in flat.note
    with pytest.raises(ValueError, match="threshold rule 'best'"):
        choose_threshold("best", LABELS, SCORES)


def test_the_report_holds_every_rule_with_its_confusion_counts():
    report = threshold_report(LABELS, SCORES, np.linspace(0.0, 0.1, 11))
    assert report["f1_threshold"] == choose_threshold(F1_RULE, LABELS, SCORES).value
    assert report["at_jump"]["tp"] == 3 and report["at_jump"]["fp"] == 0
    assert report["at_percentile"]["fp"] == 20  # 0.10 .. 0.29 are above the 99th percentile
    empty = threshold_report(-np.ones(33, int), SCORES, np.array([]))
    assert math.isnan(empty["f1_max"]) and math.isnan(empty["percentile_99"])
    assert "at_percentile" not in empty and empty["n_val_normals"] == 0


def test_normal_scores_are_put_on_the_test_scores_scale():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(10, 2, 20), rng.normal(100, 5, 20)]
    n = len(values)
    val = MethodScores("knn", 1, "val", values, None, [str(i) for i in range(n)], [""] * n,
                       np.zeros(n, int), ["a"] * 20 + ["b"] * 20, [""] * n, np.zeros(n, bool))
    raw = normal_scores(val, calibrated=False, category="b")
    assert raw.shape == (20,) and raw.mean() > 90
    calibrated = normal_scores(val, calibrated=True)
    assert calibrated.shape == (40,) and abs(np.median(calibrated)) < 1  # z-scores per category
