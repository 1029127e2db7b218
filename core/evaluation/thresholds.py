"""Threshold rules: how an anomaly score becomes a decision, written once for `evaluate`'s
threshold reports and the dashboard's Scores page.

Three rules (a score >= threshold is called anomalous):
* F1-max: the threshold with the best F1 on the labelled test images (needs labels).
* percentile: the q-th percentile of the held-out validation normals' scores (no test labels).
* jump: the midpoint of the first big gap in the sorted test scores (no labels at all).
The numbers come from core.evaluation.metrics (f1_max, percentile_threshold, jump_threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.samples import UNLABELED
from core.evaluation.metrics import confusion_at, f1_max, jump_threshold, percentile_threshold
from core.scoring.checkpoint import calibrate_result
from core.scoring.reference import ReferenceScores
from core.scoring.results import MethodScores

PERCENTILE = 99.0  # the percentile rule's default q
F1_RULE, PERCENTILE_RULE, JUMP_RULE = "f1_max", "percentile", "jump"
RULE_NAMES = {
    F1_RULE: "F1-max (uses labels)",
    PERCENTILE_RULE: "percentile of held-out normals",
    JUMP_RULE: "jump in sorted scores (no labels)",
}


@dataclass(frozen=True)
class Threshold:
    """One rule's threshold. value: None when the rule gives none here (note says why);
    note: how it was set, in words; f1: the best F1 (F1 rule only, else nan)."""

    rule: str
    value: float | None
    note: str
    f1: float = math.nan


def choose_threshold(rule: str, labels, scores, normal_scores=None,
                     q: float = PERCENTILE) -> Threshold:
    """The threshold of `rule` (F1_RULE, PERCENTILE_RULE or JUMP_RULE).

    labels, scores: (N,) test labels (negative = unknown) and scores; normal_scores: (M,) the
    held-out normals' scores on the same scale (percentile rule). Raises ValueError for an
    unknown rule."""
    if rule == F1_RULE:
        f1, value = f1_max(labels, scores)
        if not math.isfinite(value):
            return Threshold(rule, None, "F1-max needs defective images with labels.", f1)
        return Threshold(rule, value, f"best F1 = {f1:.3f}", f1)
    if rule == PERCENTILE_RULE:
        normals = np.asarray([] if normal_scores is None else normal_scores, np.float64)
        if normals.size == 0:
            return Threshold(rule, None, "no held-out normal images (the run has no validation split).")
        value = percentile_threshold(normals, q)
        return Threshold(rule, value if math.isfinite(value) else None,
                         f"{q:g}th percentile of {normals.size} held-out normals")
    if rule == JUMP_RULE:
        value = jump_threshold(scores)
        if value is None:
            return Threshold(rule, None, "no clear jump in the sorted scores.")
        return Threshold(rule, value, "midpoint of the first big gap above the lowest scores")
    raise ValueError(f"threshold rule '{rule}': use one of {', '.join(RULE_NAMES)}")


def normal_scores(
    val: MethodScores | None, calibrated: bool, category: str | None = None,
    reference: ReferenceScores | None = None,
) -> np.ndarray:
    """(M,) float64 scores of the held-out validation normals (a score_checkpoint result of the
    val split; None: the run holds none), calibrated when the test scores are, against the
    same reference (core.scoring.checkpoint.calibration_reference; None: the normals
    themselves), so both are on one scale; only `category`'s when given."""
    if val is None:
        return np.zeros(0)
    if calibrated:
        val = calibrate_result(val, val if reference is None else reference)
    scores = np.asarray(val.image_scores, np.float64)
    if category is None:
        return scores
    return scores[np.asarray(val.categories, dtype=object) == category]


def threshold_report(labels, scores, normal_val, q: float = PERCENTILE) -> dict[str, Any]:
    """Every rule's threshold for one score vector, with the confusion counts each gives.

    Keys: f1_max, f1_threshold (nan when undefined), jump (None without one),
    percentile_<q> (nan without normals), n_val_normals, at_percentile, at_jump."""
    f1 = choose_threshold(F1_RULE, labels, scores)
    jump = choose_threshold(JUMP_RULE, labels, scores).value
    percentile = percentile_threshold(normal_val, q)
    report = {
        "f1_max": f1.f1,
        "f1_threshold": math.nan if f1.value is None else f1.value,
        "jump": jump,
        f"percentile_{q:g}": percentile,
        "n_val_normals": int(len(normal_val)),
    }
    if math.isfinite(percentile):
        report["at_percentile"] = confusion_at(labels, scores, percentile)
    if jump is not None:
        report["at_jump"] = confusion_at(labels, scores, jump)
    return report


def threshold_reports(test: MethodScores, val: MethodScores | None,
                      reference: ReferenceScores | None = None) -> dict[str, Any]:
    """Per category and overall: F1-max, jump threshold and the 99th percentile of the
    category's held-out validation normals, with the confusion counts each would give.
    test, val: score_checkpoint results (raw scores) of the test and val splits; reference:
    what calibrated scores are calibrated against (None: the held-out normals)."""
    labels = np.asarray(test.labels)
    scores = np.asarray(test.image_scores, np.float64)
    cats = np.asarray(test.categories, dtype=object)
    val_scores = normal_scores(val, calibrated=False)
    val_cats = np.asarray([] if val is None else val.categories, dtype=object)
    reports = {"overall": threshold_report(labels, scores, val_scores)}
    calibrated = calibrate_result(test, val if reference is None else reference)
    if calibrated.calibrated:
        # one threshold for every category only makes sense on calibrated scores
        reports["overall (calibrated)"] = threshold_report(
            labels, np.asarray(calibrated.image_scores),
            normal_scores(val, calibrated=True, reference=reference)
        )
    for category in sorted(set(cats.tolist())):
        sel = cats == category
        reports[category or UNLABELED] = threshold_report(
            labels[sel], scores[sel], val_scores[val_cats == category]
        )
    return reports
