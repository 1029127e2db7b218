"""`ensemble`: the mean of several methods' calibrated scores.

Why: methods fail on different images -- the feature bank misses colour and low-frequency
defects that raw patch statistics catch, and raw statistics miss texture defects the encoder
sees -- and their raw scores live on unrelated scales. Each member's image scores (and maps)
are first calibrated per category against the run's held-out normals (core.scoring.calibration:
z-scores, median 0 and spread 1 on normal images), so averaging gives every member the same
weight on every category. Members come from ScoreOptions.members (default knn,patchz).

The ensemble is computed from its members' cached results, so it costs nothing beyond them
and is not cached itself. It needs held-out normals; without them it says so in one sentence.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.scoring.calibration import CalibrationError, fit_calibration
from core.scoring.results import MAP_STORAGE_DTYPE, MethodScores


def combine(members: dict[str, MethodScores], reference: dict[str, MethodScores | None]
            ) -> MethodScores:
    """The ensemble of `members` ({method: result on the images to score}), each calibrated
    against reference[method] (its result on the held-out normals; None: there are none).

    Returns a MethodScores with method "ensemble": image_scores (N,) the mean of the members'
    calibrated scores, anomaly_maps (N, S, S) the mean of the members' calibrated maps (those
    that have maps) or None. Raises ValueError naming what is missing.
    """
    scores, maps, described = [], [], []
    for method, result in members.items():
        ref = reference.get(method)
        if ref is None:
            raise ValueError(
                "method 'ensemble' calibrates its members against the run's held-out normal "
                "images and this run has none; train with --val-fraction above 0 (or a val/good "
                "folder), or score with one method"
            )
        try:
            fitted = fit_calibration(ref.image_scores, ref.categories)
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
        info={"members": described, "calibration": "per-category z-scores against held-out "
              "normals, averaged"},
        seconds=sum(r.seconds or 0.0 for r in members.values()),
        raw_scores=None,
        calibration=None,
    )
