"""`adaptive`: per category, knn or finepatch, whichever the test images themselves favour.

Why: knn (encoder features at 64 px) is the best single score on five of the six real sets of
../shared, and at chance on DeepPCB, whose defects are a few pixels at 256 px; finepatch (3 x 3
px grey patches at 128 px, core.scoring.finepatch) finds those (.96 there) and is below chance
on the ELPV solar cells. No fixed mix serves both (an average of the two loses the sets where
one of them is blind), so the choice is made per category, without labels: the member whose
test scores stand further above its reference normals (the separation AUROC of
core.diagnostics' epoch ranking: test images against the normals' leave-one-out and held-out
scores) is used, and finepatch replaces knn only when its separation is higher by more than
SWITCH_ERRORS standard errors of the difference (Hanley & McNeil 1982, the two taken as
independent). A test set of only normals separates neither, so knn stays.

Scores are each member's per-category calibrated scores (core.scoring.calibration), so one
ranking over several categories is fair whichever member each one uses; maps likewise.
It needs the members' reference normals (MIN_REFERENCE per category); without them it says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.evaluation.metrics import auroc_standard_error, image_auroc
from core.scoring.calibration import CalibrationError, fit_calibration
from core.scoring.reference import ReferenceScores, as_reference
from core.scoring.results import MAP_STORAGE_DTYPE, MethodScores

METHOD = "adaptive"
BASE = "knn"  # used unless the challenger separates clearly better
CHALLENGER = "finepatch"
MEMBERS = (BASE, CHALLENGER)
# Standard errors of the separation difference a switch needs. Measured (docs/detection.md,
# "The switch threshold"): every category of ../shared where finepatch detects worse than knn led
# by at most 0.3 errors (cookie at full size); DeepPCB at 60 normals a category led by 1.5-3.2,
# and where it led by 1.5-1.7 (one seed) 2.0 kept knn at .51 against finepatch's .94.
SWITCH_ERRORS = 1.0


@dataclass(frozen=True)
class Separation:
    """One member on one category: AUROC of test scores against reference normal scores
    (0.5 = the test set looks normal), its standard error, and the counts it rests on."""

    auroc: float
    error: float
    normals: int
    tests: int


def separation(reference: np.ndarray, test: np.ndarray) -> Separation:
    """AUROC of `test` (T,) against `reference` (R,) scores with its Hanley-McNeil error."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    reference, test = reference[np.isfinite(reference)], test[np.isfinite(test)]
    if not len(reference) or not len(test):
        return Separation(float("nan"), float("nan"), len(reference), len(test))
    labels = np.r_[np.zeros(len(reference)), np.ones(len(test))]
    auc = image_auroc(labels, np.r_[reference, test])
    return Separation(auc, auroc_standard_error(auc, len(reference), len(test)),
                      len(reference), len(test))


def choose(base: Separation, challenger: Separation) -> bool:
    """True when the challenger separates clearly better (SWITCH_ERRORS)."""
    if not (math.isfinite(base.auroc) and math.isfinite(challenger.auroc)):
        return False
    spread = math.hypot(base.error, challenger.error)
    return challenger.auroc - base.auroc > SWITCH_ERRORS * spread


def choices(members: dict[str, MethodScores], reference: dict[str, ReferenceScores]
            ) -> dict[str, tuple[str, dict[str, Separation]]]:
    """{category: (chosen member, {member: its Separation})} for every test category."""
    refs = {m: as_reference(reference[m]) for m in MEMBERS}
    categories = np.asarray(members[BASE].categories, dtype=object)
    out = {}
    for category in sorted(set(categories.tolist())):
        seps = {}
        for m in MEMBERS:
            ref_cats = np.asarray(refs[m].categories, dtype=object)
            seps[m] = separation(refs[m].scores[ref_cats == category],
                                 np.asarray(members[m].image_scores)[categories == category])
        out[category] = (CHALLENGER if choose(seps[BASE], seps[CHALLENGER]) else BASE, seps)
    return out


def combine_adaptive(members: dict[str, MethodScores],
                     reference: dict[str, ReferenceScores | MethodScores | None],
                     test: dict[str, MethodScores] | None = None) -> MethodScores:
    """members: {knn: result, finepatch: result} on the same images; reference: each member's
    reference normals (core.scoring.checkpoint.calibration_reference); test: the members' results
    on the test set when `members` are of another split (held-out normals): the choice is always
    the test set's, so every split of one checkpoint is on the same scale. Returns a MethodScores
    "adaptive": image_scores (N,) the chosen member's calibrated score per category, maps
    likewise (None when a chosen member has none), info["chosen"] {category: member} with
    each separation. Raises ValueError naming what is missing."""
    for m in MEMBERS:
        if reference.get(m) is None:
            raise ValueError(
                f"method '{METHOD}' compares its members' test scores with their reference normal "
                f"images and '{m}' has none; score a checkpoint (its training normals are the "
                "reference), or score with one method")
    refs = {m: as_reference(reference[m]) for m in MEMBERS}
    calibrated, maps = {}, {}
    for m in MEMBERS:
        try:
            fitted = fit_calibration(refs[m].scores, refs[m].categories, refs[m].describe())
        except CalibrationError as err:
            raise ValueError(f"method '{METHOD}' cannot calibrate member '{m}': {err}") from err
        result = members[m]
        calibrated[m] = fitted.apply(result.image_scores, result.categories)
        maps[m] = (None if result.anomaly_maps is None
                   else fitted.apply_maps(result.anomaly_maps, result.categories))
    picked = choices(test or members, refs)
    categories = np.asarray(members[BASE].categories, dtype=object)
    for category in sorted(set(categories.tolist()) - set(picked)):  # not in the test set
        picked[category] = (BASE, {})
    scores = np.zeros(len(categories))
    have_maps = all(maps[picked[c][0]] is not None for c in picked)
    out_maps = np.zeros_like(maps[BASE]) if have_maps and maps[BASE] is not None else None
    for category, (m, _) in picked.items():
        sel = categories == category
        scores[sel] = calibrated[m][sel]
        if out_maps is not None:
            out_maps[sel] = maps[m][sel]
    info = {"members": list(MEMBERS),
            "chosen": {c: {"method": m, **{k: dataclasses.asdict(s) for k, s in seps.items()}}
                       for c, (m, seps) in picked.items()},
            "calibration": "per-category z-scores against the chosen member's reference normals"}
    base = members[BASE]
    return dataclasses.replace(
        base, method=METHOD, image_scores=scores,
        anomaly_maps=None if out_maps is None else out_maps.astype(MAP_STORAGE_DTYPE).astype(np.float32),
        bank_categories=base.bank_categories, info=info,
        seconds=sum(r.seconds or 0.0 for r in members.values()), raw_scores=None, calibration=None)


def adaptive_reference(members: dict[str, MethodScores], reference: dict[str, ReferenceScores]
                       ) -> ReferenceScores:
    """The adaptive score's own reference normals: per category the chosen member's reference
    scores, calibrated as its test scores are (so calibrating them again changes nothing)."""
    refs = {m: as_reference(reference[m]) for m in MEMBERS}
    picked = choices(members, refs)
    parts = []
    for m in MEMBERS:
        ref = refs[m]
        fitted = fit_calibration(ref.scores, ref.categories, ref.describe())
        keep = np.flatnonzero([picked.get(c, (BASE,))[0] == m for c in ref.categories])
        cats = [ref.categories[i] for i in keep]
        parts.append(ReferenceScores(fitted.apply(ref.scores[keep], cats), cats,
                                     [ref.names[i] for i in keep], ref.held_out[keep]))
    return ReferenceScores.join(parts)


def describe_choices(info: dict) -> str:
    """One sentence from an adaptive result's info: which member each category used and why,
    e.g. 'adaptive used knn for bottle, cookie; finepatch for pcb (separation .75 against knn
    .51)'; empty for another method's info."""
    chosen = info.get("chosen") if isinstance(info, dict) else None
    if not chosen:
        return ""
    parts = []
    for member in MEMBERS:
        names = sorted(c for c, d in chosen.items() if d.get("method") == member)
        if not names:
            continue
        if member == BASE:
            parts.append(f"{member} for {', '.join(names)}")
        else:
            why = ", ".join(
                f"{c} (separation {chosen[c][member]['auroc']:.2f} against {BASE} "
                f"{chosen[c][BASE]['auroc']:.2f})" for c in names)
            parts.append(f"{member} for {why}")
    return f"{METHOD} used " + "; ".join(parts)
