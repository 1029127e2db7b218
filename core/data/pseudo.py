"""Pseudo-categories: K-Means groups for a flat train folder that comes without categories.

Why: per-category memory banks, thresholds and calibration need categories, and a homework
hand-out often gives only train/*.png of several mixed objects. Images of one object look
alike at thumbnail scale (layout and colour), so K-Means on the same thumbnail + colour
histogram vectors that route test images (core.scoring.routing.thumbnail_vectors) recovers
the objects well enough to calibrate per group.

Rule for K: given by the user (2..32), or with -1 ("auto", the default) the K in
2..AUTO_MAX_K whose every group holds at least MIN_GROUP images with the highest silhouette
score (scikit-learn; on a seeded sample of SILHOUETTE_SAMPLE images for large sets); when even
that is below MIN_SILHOUETTE the images show no reasonable group structure and stay one
category. MIN_GROUP is calibration's minimum (core.scoring.calibration.MIN_REFERENCE): one group
with fewer normals left every score of the run raw. On realdata at 30 normals the best
silhouette was K = 5 with a group of 7, and the export fell back to raw knn at .718 pooled;
with K = 4 (smallest group 13) it is calibrated (docs/homework.md, "Without the category CSV").

MIN_SILHOUETTE = 0.5 is Kaufman & Rousseeuw's line for "a reasonable structure has been found"
(Finding Groups in Data, 1990; .26-.50: weak, possibly artificial). Measured on 60-normal flat
sets without the CSV (benchmarks/bench_homework.py --csv no, docs/homework.md): three objects
(bottle, cookie, magnetic_tile; ball_screw, DeepPCB, ELPV) gave .60-.63 and pooled AUROC rose
from .64-.71 to .79-.94 with the groups; one object alone gave .18 (bottle) and .42
(magnetic_tile, whose knn fell from .80 to .71 when split in two at the old line of 0.2).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.samples import Sample
from core.scoring.calibration import MIN_REFERENCE

AUTO_MAX_K = 8
MIN_GROUP = MIN_REFERENCE  # images per group: fewer and calibration leaves every score raw
MIN_SILHOUETTE = 0.5
SILHOUETTE_SAMPLE = 4000  # images the silhouette is measured on (its cost grows with N^2)
VECTOR_BLOCK = 512  # images turned into vectors at a time (a memory-mapped set stays on disk)
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


def image_vectors(*image_sets: np.ndarray) -> np.ndarray:
    """(N, D) float32 routing vectors (core.scoring.routing.thumbnail_vectors) of every image of
    the (n_i, S, S, 3) uint8 sets in order, VECTOR_BLOCK images at a time."""
    from core.scoring.routing import thumbnail_vectors

    parts = [thumbnail_vectors(np.asarray(images[start:start + VECTOR_BLOCK]))
             for images in image_sets for start in range(0, len(images), VECTOR_BLOCK)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def find_pseudo_categories(*image_sets: np.ndarray, k: int, seed: int = 0) -> PseudoCategories:
    """image_sets: (n_i, S, S, 3) uint8 each, grouped together in order; k: 2..32, or -1 to
    choose by silhouette (module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    vectors = image_vectors(*image_sets)
    n = len(vectors)
    sample = min(n, SILHOUETTE_SAMPLE)

    def cluster(groups: int) -> np.ndarray:
        with warnings.catch_warnings():  # identical images form fewer clusters: the silhouette says so
            warnings.simplefilter("ignore", ConvergenceWarning)
            return KMeans(groups, n_init=4, random_state=seed).fit_predict(vectors)

    if k > 0:
        groups = min(k, n)
        return PseudoCategories(cluster(groups), groups, {}, f"K = {groups} as asked")
    candidates = range(2, max(2, min(AUTO_MAX_K, n // MIN_GROUP)) + 1)
    labelled = {g: cluster(g) for g in candidates if g < n}
    labelled = {g: lab for g, lab in labelled.items()
                if len(set(lab.tolist())) > 1 and np.bincount(lab).min() >= MIN_GROUP}
    scores = {g: float(silhouette_score(vectors, lab, sample_size=sample, random_state=seed))
              for g, lab in labelled.items()}
    if not scores or max(scores.values()) < MIN_SILHOUETTE:
        why = (f"no K in 2..{max(candidates)} separates the images (best silhouette "
               f"{max(scores.values()):.2f} < {MIN_SILHOUETTE})" if scores
               else f"the images are too few or too alike to form groups of {MIN_GROUP}")
        return PseudoCategories(np.zeros(n, np.int64), 1, scores, f"one category: {why}")
    best_k = max(scores, key=scores.get)
    return PseudoCategories(labelled[best_k], best_k, scores,
                            f"K = {best_k}, the highest silhouette ({scores[best_k]:.2f}) "
                            f"of K in 2..{max(candidates)}: these groups are the run's categories "
                            f"({FILE_NAME}; --pseudo-categories 0 keeps one category)")


def write_category_file(samples: list[Sample], names: list[str], path: Path) -> Path:
    """file,category rows (split folder included, e.g. train/0001.png) for core.data.layouts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "category"))
        for sample, name in zip(samples, names, strict=True):
            writer.writerow((f"{sample.split}/{sample.path.name}", name))
    return path
