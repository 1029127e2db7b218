"""Calibration's reference: the normal scores each category's calibration is fitted on.

Why: a run holds out few normals (10 % of 60 images is 2-6 per category), and a median and a
spread of 3 scores are noise: on a flat set built from ../shared/realdata calibration against
them LOWERED the pooled AUROC of the submission (.773 against .801 raw). The bank methods
(knn, rawknn, patchz) can score every training normal the way a test image is scored, against
the bank without it (leave-one-out), which gives about 50 reference normals per category at
60 images; the held-out normals complete it. Methods that read only the model (pixel, ssim,
feature, seg) were trained on the training images, so their reference is the held-out normals.

leave-one-out, per method (exact, not approximated):
  knn     each bank image's patches searched among the OTHER bank images of its category
          (the same image-first search, neighbours and map smoothing as a test image)
  rawknn  each thumbnail's k nearest OTHER thumbnails of its category
  patchz  each image against per-position statistics of the OTHER normals of its category
  finepatch  each image's patches against the category's patch bank without the entries only
          it holds (at most core.scoring.finepatch.LOO_MAX images per category)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.data.samples import ImageSet
from core.scoring.data import decoded_at
from core.scoring.finepatch import leave_one_out_finepatch
from core.scoring.knn import FeatureBank, leave_one_out_knn
from core.scoring.maps import reduce_maps
from core.scoring.methods import build_thumbnail_bank, patch_distance_maps
from core.scoring.options import ScoreOptions
from core.scoring.patchbank import PatchBank, patch_knn
from core.scoring.patchz import SIDE as PATCHZ_SIDE
from core.scoring.patchz import leave_one_out_patchz

LEAVE_ONE_OUT_METHODS = ("knn", "rawknn", "patchz", "globalknn", "finepatch")


@dataclass(frozen=True)
class ReferenceScores:
    """Normal images' scores by one method: what calibration fits each category on.

    scores: (R,) float64 raw scores; categories, names: (R,) each image's category and path
    (names align the members of an ensemble); held_out: (R,) bool, True for the run's
    held-out validation normals, False for leave-one-out scores of training normals.
    """

    scores: np.ndarray
    categories: list[str]
    names: list[str]
    held_out: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def counts(self) -> dict[str, tuple[int, int]]:
        """{category: (leave-one-out training normals, held-out normals)}."""
        out: dict[str, tuple[int, int]] = {}
        for category, held in zip(self.categories, self.held_out, strict=True):
            loo, val = out.get(category, (0, 0))
            out[category] = (loo, val + 1) if held else (loo + 1, val)
        return out

    def describe(self) -> str:
        """'leave-one-out training normals and held-out validation normals' or the one used."""
        parts = []
        if (~self.held_out).any():
            parts.append("leave-one-out scores of the training normals")
        if self.held_out.any():
            parts.append("held-out validation normals")
        return " and ".join(parts) or "no normals"

    @classmethod
    def join(cls, parts: Sequence[ReferenceScores]) -> ReferenceScores:
        """The parts one after another."""
        return cls(
            np.concatenate([p.scores for p in parts]) if parts else np.zeros(0),
            [c for p in parts for c in p.categories],
            [n for p in parts for n in p.names],
            np.concatenate([p.held_out for p in parts]) if parts else np.zeros(0, bool),
        )


def leave_one_out_scores(
    method: str, train: ImageSet, options: ScoreOptions, bank: FeatureBank | PatchBank | None = None
) -> np.ndarray:
    """(N,) float64 leave-one-out score of every training normal of `train` by a bank method;
    NaN for an image without one (alone in its category, or left out of a capped knn bank).

    bank: knn's bank built from exactly these images (core.scoring.methods.build_feature_bank).
    Raises ValueError for a method without a bank (LEAVE_ONE_OUT_METHODS lists those with one).
    """
    if method == "finepatch":
        return leave_one_out_finepatch(train, train.categories, options.seed)
    if method == "patchz":
        return leave_one_out_patchz(decoded_at(train, PATCHZ_SIDE), train.categories)
    if method == "rawknn":
        bank = build_thumbnail_bank(train, options)
    elif method not in ("knn", "globalknn"):
        raise ValueError(
            f"method '{method}' has no bank to leave an image out of; its reference is the run's "
            f"held-out normals ({', '.join(LEAVE_ONE_OUT_METHODS)} have one)"
        )
    if bank is None:
        raise ValueError("knn's leave-one-out scores need the bank built from the training images")
    out = np.full(len(train), np.nan)
    kept = np.asarray(bank.info["kept"], np.int64)
    if isinstance(bank, FeatureBank):
        out[kept] = leave_one_out_knn(bank, options.k)
        return out
    groups = [bank.categories[o] for o in bank.owner]
    alone = {c for c, n in zip(bank.categories, np.bincount(bank.owner), strict=True) if n < 2}
    sel = np.flatnonzero([g not in alone for g in groups])
    if len(sel):
        queries = bank.vectors[sel].astype(np.float32)
        distances = patch_knn(queries, [groups[i] for i in sel], bank, options.k,
                              options.neighbours, exclude=sel)
        maps = patch_distance_maps(distances, bank, options)
        out[kept[sel]] = reduce_maps(maps, options.reduce)
    return out


def as_reference(ref) -> ReferenceScores:
    """A ReferenceScores as is; a MethodScores on held-out normals as one (every row held out)."""
    if isinstance(ref, ReferenceScores):
        return ref
    return ReferenceScores(np.asarray(ref.image_scores, np.float64), list(ref.categories),
                           list(ref.paths), np.ones(len(ref), bool))
