"""The test set: built once by core, read by scoring, evaluation, export and every page.

What a run is scored on is decided here and nowhere else:

* which images: the test split of a dataset (MVTec layout or flat), or a bare folder of
  images; narrowed to the run's categories when the dataset holds some of them;
* which category each image belongs to: its own (folder or category CSV) when the run
  trained on it; else, for an image with no category (a flat or Kaggle test folder), the
  run's only category or -- with several -- the category of its nearest normal training
  image (routing). A known category the run never trained on is refused unless the caller
  asks to route it too;
* what is known: labels (NORMAL/ANOMALOUS, or UNKNOWN for unlabeled images) and masks.

Routing uses thumbnails and colour histograms (`core.scoring.routing.thumbnail_vectors`), not the
model, so the test set -- and every per-category number computed on it -- is the same for
every epoch of a run. Each routed image carries a confidence: 1 - d1 / d2, where d1 is the
distance to the nearest training image of the chosen category and d2 to the nearest one of
any other category (0 = a tie, 1 = an exact match). On the real sets in ../shared/realdata,
thumbnail routing agrees with the true category on 1.000 of test images (see the closing
note of issue #3).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import TrainConfig
from core.data.samples import UNKNOWN, ImageSet
from core.scoring.data import (
    fingerprint,
    load_samples,
    reference_root,
    reference_samples,
    select_test_samples,
)
from core.scoring.knn import knn_search
from core.scoring.routing import thumbnail_vectors

SOURCES = ("dataset", "single", "routed")  # where an image's category came from
UNKNOWN_CATEGORY_POLICIES = ("error", "route")
CACHE_SIZE = 8


class UnseenCategoryError(ValueError):
    """The test data holds categories the run never trained on; the message says what to do."""


@dataclass
class TestSet(ImageSet):
    """An ImageSet whose samples carry the category each image is scored under.

    root: the data folder. image_size: side in px the images were decoded at.
    category_source: (N,) one of SOURCES. routing_confidence: (N,) float in [0, 1], 1.0 where
    the category was known. trained: the run's categories. left_out: the test images of the
    data that are not in this set (categories without a model in this run), as a summary clause.
    """

    root: Path = Path(".")
    image_size: int = 0
    category_source: tuple[str, ...] = ()
    routing_confidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trained: tuple[str, ...] = ()
    left_out: str = ""

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def routed(self) -> np.ndarray:
        """(N,) bool: True where the category was assigned by routing."""
        return np.array([s == "routed" for s in self.category_source], bool)

    @property
    def has_labels(self) -> bool:
        """True when at least one image has a known label (AUROC can be defined)."""
        return bool((self.labels != UNKNOWN).any())

    def summary(self) -> str:
        """One sentence a page or the CLI can show above the results."""
        n = len(self)
        labelled = int((self.labels != UNKNOWN).sum())
        text = f"{n} test images in {len(self.category_names)} categories"
        routed = self.routed
        if routed.any():
            conf = self.routing_confidence[routed]
            text += (
                f"; {int(routed.sum())} had no trained category and were routed to the nearest "
                f"one (median confidence {np.median(conf):.2f}, lowest {conf.min():.2f})"
            )
        if labelled == 0:
            text += "; unlabeled, so AUROC cannot be computed (rankings and maps still work)"
        elif labelled < n:
            text += f"; {labelled} labelled"
        if self.left_out:
            text += f"; {self.left_out}"
        return text


_CACHE: OrderedDict[tuple, TestSet] = OrderedDict()


def build_test_set(
    config: TrainConfig, data_root: str | Path, unknown_categories: str = "error"
) -> TestSet:
    """The test set of `data_root` for a run with `config` (the checkpoint's own config).

    unknown_categories: "error" refuses known categories the run never trained on; "route"
    routes them like unlabeled images. Decoded at config.image_size, once per process for the
    same files (shared: treat as read-only). Raises DatasetLayoutError for a folder with no
    test images and UnseenCategoryError for untrained categories.
    """
    if unknown_categories not in UNKNOWN_CATEGORY_POLICIES:
        raise ValueError(
            f"unknown_categories must be one of {UNKNOWN_CATEGORY_POLICIES}, "
            f"got '{unknown_categories}'"
        )
    route_unseen = unknown_categories == "route"
    selection = select_test_samples(data_root, trained=None if route_unseen else config.categories)
    samples = selection.samples
    ref_root = reference_root(config, data_root)
    reference = reference_samples(ref_root, "train", config)
    trained = tuple(sorted({s.category for s in reference}))
    key = (fingerprint(samples), fingerprint(reference), int(config.image_size), route_unseen,
           selection.left_out)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    _refuse_unseen(samples, trained, route_unseen, data_root)
    decoded = load_samples(samples, config.image_size)
    needs = np.array([s.category not in trained for s in decoded.samples], bool)
    categories = [s.category for s in decoded.samples]
    confidence = np.ones(len(decoded), np.float64)
    sources = ["dataset"] * len(decoded)
    if needs.any() and len(trained) == 1:
        for i in np.flatnonzero(needs):
            categories[i], sources[i] = trained[0], "single"
    elif needs.any():
        train_set = load_samples(reference, config.image_size)
        routed, conf = route_by_thumbnail(
            decoded.images[needs], train_set.images, train_set.categories
        )
        for i, category, c in zip(np.flatnonzero(needs), routed, conf, strict=True):
            categories[i], sources[i], confidence[i] = category, "routed", c
    test = TestSet(
        samples=[
            dataclasses.replace(s, category=c)
            for s, c in zip(decoded.samples, categories, strict=True)
        ],
        images=decoded.images,
        masks=decoded.masks,
        has_mask=decoded.has_mask,
        skipped=list(decoded.skipped),
        mask_problems=list(decoded.mask_problems),
        root=Path(data_root).expanduser(),
        image_size=int(config.image_size),
        category_source=tuple(sources),
        routing_confidence=confidence,
        trained=trained,
        left_out=selection.left_out_clause(),
    )
    _CACHE[key] = test
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return test


def _refuse_unseen(samples, trained: tuple[str, ...], route_unseen: bool, where) -> None:
    unseen = sorted({s.category for s in samples if s.category and s.category not in trained})
    if unseen and not route_unseen:
        raise UnseenCategoryError(
            f"{where}: categories {', '.join(unseen)} were never seen by this run (trained on "
            f"{', '.join(trained)}); evaluate on data of those categories, train a run that "
            "includes them, or pass --route (unknown_categories='route') to score them against "
            "the nearest trained category"
        )


def route_by_thumbnail(
    images: np.ndarray, train_images: np.ndarray, train_categories: list[str]
) -> tuple[list[str], np.ndarray]:
    """Nearest training category of each image by thumbnail + colour histogram, and how sure.

    images: (N, S, S, 3) uint8; train_images: (M, S, S, 3) uint8 with train_categories (M,).
    Returns (categories (N,), confidence (N,) = 1 - d1 / d2 in [0, 1], where d1 is the distance
    to the chosen category's nearest image and d2 to the nearest image of any other category;
    1.0 when the run has one category).
    """
    query = thumbnail_vectors(images)
    reference = thumbnail_vectors(train_images)
    owners = np.asarray(train_categories, dtype=object)
    names = sorted(set(train_categories))
    nearest = np.stack(
        [knn_search(query, reference[owners == c], k=1)[0][:, 0] for c in names], axis=1
    )  # (N, C) distance to each category's nearest training image
    order = np.argsort(nearest, axis=1)
    best = nearest[np.arange(len(query)), order[:, 0]]
    if len(names) == 1:
        return [names[0]] * len(query), np.ones(len(query))
    second = nearest[np.arange(len(query)), order[:, 1]]
    confidence = np.clip(1.0 - best / np.maximum(second, 1e-12), 0.0, 1.0)
    return [names[i] for i in order[:, 0]], confidence


def clear_test_set_cache() -> None:
    _CACHE.clear()
