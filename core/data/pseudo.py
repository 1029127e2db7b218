"""Pseudo-categories: K-Means groups for a flat train folder that comes without categories.

Why: per-category memory banks, thresholds and calibration need categories, and a homework
hand-out often gives only train/*.png of several mixed objects. Images of one object look
alike at thumbnail scale (layout and colour), so K-Means on the same thumbnail + colour
histogram vectors that route test images (core.scoring.routing.thumbnail_vectors) recovers
the objects well enough to calibrate per group.

Rule for K: given by the user (2..32), or with -1 ("auto") the K in 2..AUTO_MAX_K (at most
one group per MIN_GROUP images) with the highest silhouette score (scikit-learn); when even
that is below MIN_SILHOUETTE the images show no group structure and stay one category.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.samples import Sample

AUTO_MAX_K = 8
MIN_GROUP = 5
MIN_SILHOUETTE = 0.2
FILE_NAME = "pseudo_categories.csv"


@dataclass(frozen=True)
class PseudoCategories:
    """labels: (N,) group index per image; k: groups; silhouettes: K -> silhouette score
    (auto only); reason: one sentence saying how K was chosen."""

    labels: np.ndarray
    k: int
    silhouettes: dict[int, float]
    reason: str

    def names(self) -> list[str]:
        return [f"group_{int(i) + 1}" for i in self.labels]


def find_pseudo_categories(images: np.ndarray, k: int, seed: int = 0) -> PseudoCategories:
    """images: (N, S, S, 3) uint8; k: 2..32, or -1 to choose by silhouette (module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from core.scoring.routing import thumbnail_vectors

    vectors = thumbnail_vectors(images)
    n = len(vectors)

    def cluster(groups: int) -> np.ndarray:
        return KMeans(groups, n_init=4, random_state=seed).fit_predict(vectors)

    if k > 0:
        groups = min(k, n)
        return PseudoCategories(cluster(groups), groups, {}, f"K = {groups} as asked")
    candidates = range(2, max(2, min(AUTO_MAX_K, n // MIN_GROUP)) + 1)
    labelled = {g: cluster(g) for g in candidates if g < n}
    scores = {g: float(silhouette_score(vectors, lab)) for g, lab in labelled.items()
              if len(set(lab.tolist())) > 1}
    if not scores or max(scores.values()) < MIN_SILHOUETTE:
        best = max(scores.values(), default=float("nan"))
        return PseudoCategories(np.zeros(n, np.int64), 1, scores,
                                f"one category: no K in 2..{max(candidates)} separates the images "
                                f"(best silhouette {best:.2f} < {MIN_SILHOUETTE})")
    best_k = max(scores, key=scores.get)
    return PseudoCategories(labelled[best_k], best_k, scores,
                            f"K = {best_k}, the highest silhouette ({scores[best_k]:.2f}) "
                            f"of K in 2..{max(candidates)}")


def write_category_file(samples: list[Sample], names: list[str], path: Path) -> Path:
    """file,category rows (split folder included, e.g. train/0001.png) for core.data.layouts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "category"))
        for sample, name in zip(samples, names, strict=True):
            writer.writerow((f"{sample.split}/{sample.path.name}", name))
    return path
