"""`ensemble`: the mean of several methods' calibrated scores.

Why: methods fail on different images -- the feature bank misses colour and low-frequency
defects that raw patch statistics catch, and raw statistics miss texture defects the encoder
sees -- and their raw scores live on unrelated scales. Each member's image scores (and maps)
are first calibrated per category against their reference normals (core.scoring.reference:
leave-one-out scores of the training normals and the held-out normals; core.scoring.calibration:
z-scores, median 0 and spread 1 on normal images), so averaging gives every member the same
weight on every category. Members come from ScoreOptions.members (default knn,patchz).

The ensemble is computed from its members' cached results, so it costs nothing beyond them
and is not cached itself. It needs MIN_REFERENCE reference normals per category for every
member; without them it says so in one sentence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.scoring.calibration import CalibrationError, fit_calibration
from core.scoring.reference import ReferenceScores, as_reference
from core.scoring.results import MAP_STORAGE_DTYPE, MethodScores


def ensemble_reference(references: dict[str, ReferenceScores]) -> ReferenceScores:
    """The ensemble's own reference: on the reference images every member scored (aligned by
    name, in the first member's order), the mean of the members' calibrated scores. Raises
    ValueError naming a member that cannot be calibrated."""
    refs = {m: as_reference(r) for m, r in references.items()}
    first = next(iter(refs.values()))
    common = set.intersection(*(set(r.names) for r in refs.values()))
    rows = [i for i, name in enumerate(first.names) if name in common]
    calibrated = []
    for method, ref in refs.items():
        position = {name: i for i, name in enumerate(ref.names)}
        try:
            fitted = fit_calibration(ref.scores, ref.categories, ref.describe())
        except CalibrationError as err:
            raise ValueError(f"method 'ensemble' cannot calibrate member '{method}': {err}") from err
        order = [position[first.names[i]] for i in rows]
        calibrated.append(fitted.apply(ref.scores[order], [ref.categories[i] for i in order]))
    return ReferenceScores(np.mean(calibrated, axis=0), [first.categories[i] for i in rows],
                           [first.names[i] for i in rows], first.held_out[rows])


def combine(members: dict[str, MethodScores],
            reference: dict[str, ReferenceScores | MethodScores | None]) -> MethodScores:
    """The ensemble of `members` ({method: result on the images to score}), each calibrated
    against reference[method] (its reference normals, core.scoring.reference, or its result on
    the held-out normals; None: there are none).

    Returns a MethodScores with method "ensemble": image_scores (N,) the mean of the members'
    calibrated scores, anomaly_maps (N, S, S) the mean of the members' calibrated maps (those
    that have maps) or None. Raises ValueError naming what is missing.
    """
    scores, maps, described = [], [], []
    for method, result in members.items():
        ref = reference.get(method)
        if ref is None:
            raise ValueError(
                f"method 'ensemble' calibrates its members against reference normal images and "
                f"member '{method}' has none; score a checkpoint (its training normals are the "
                "reference), or score with one method"
            )
        ref = as_reference(ref)
        try:
            fitted = fit_calibration(ref.scores, ref.categories, ref.describe())
            scores.append(fitted.apply(result.image_scores, result.categories))
            if result.anomaly_maps is not None:
                maps.append(fitted.apply_maps(result.anomaly_maps, result.categories))
        except CalibrationError as err:
            raise ValueError(f"method 'ensemble' cannot calibrate member '{method}': {err}") from err
        described.append(method)
    first = next(iter(members.values()))
    return dataclasses.replace(
        first,
        method="ensemble",
        image_scores=np.mean(scores, axis=0),
        anomaly_maps=(  # at the precision every stored map has (core.scoring.results)
            np.mean(maps, axis=0).astype(MAP_STORAGE_DTYPE).astype(np.float32) if maps else None
        ),
        bank_categories=None,
        info={"members": described, "calibration": "per-category z-scores against each "
              "member's reference normals, averaged"},
        seconds=sum(r.seconds or 0.0 for r in members.values()),
        raw_scores=None,
        calibration=None,
    )
