"""Calibration's reference (core.scoring.reference): leave-one-out scores of the training
normals are exactly the scores each would get as a test image of a bank without it."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.samples import ImageSet, Sample
from core.scoring.knn import FeatureBank, knn_search, leave_one_out_knn
from core.scoring.options import ScoreOptions
from core.scoring.patchbank import EXHAUSTIVE_IMAGES, PatchBank, patch_knn, searched_images
from core.scoring.patchz import PatchStats, leave_one_out_patchz, patchz_scores
from core.scoring.reference import ReferenceScores, leave_one_out_scores


def _images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _image_set(images: np.ndarray, cats: list[str]) -> ImageSet:
    samples = [Sample(f"/x/{i}.png", c, 0, "", "train") for i, c in enumerate(cats)]
    n = len(images)
    return ImageSet(samples, images, np.zeros((n, 32, 32), bool), np.zeros(n, bool), [], [])


def test_patchz_leave_one_out_equals_statistics_without_the_image():
    images, cats = _images(9), ["a"] * 5 + ["b"] * 4
    loo = leave_one_out_patchz(images, cats, 32)
    for i in (0, 6):
        others = [j for j in range(9) if j != i and cats[j] == cats[i]]
        stats = PatchStats.build(images[others], [cats[i]] * len(others), 32)
        expected, _ = patchz_scores(images[[i]], [cats[i]], stats)
        assert loo[i] == pytest.approx(expected[0], rel=1e-4)


def test_knn_leave_one_out_never_finds_the_image_itself():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(10, 6)).astype(np.float32)
    cats = ["a"] * 7 + ["b"] * 2 + ["c"]
    bank = FeatureBank.build(vectors, cats, max_per_category=100, seed=0)
    loo = leave_one_out_knn(bank, k=2)
    rows_a = bank.owner == bank.categories.index("a")
    table = bank.vectors[rows_a]
    expected = knn_search(table[:1], table[1:], 2)[0].mean()  # image 0 against the others
    assert loo[np.flatnonzero(rows_a)[0]] == pytest.approx(expected, rel=1e-5)
    assert (loo[np.flatnonzero(rows_a)] > 0).all()
    assert np.isnan(loo[bank.owner == bank.categories.index("c")]).all()  # alone: no reference
    assert bank.info["kept"] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_patch_knn_exclusion_equals_a_bank_without_the_image():
    rng = np.random.default_rng(2)
    normals = rng.normal(size=(8, 9, 4)).astype(np.float32)
    bank = PatchBank.build(normals, ["a"] * 8, max_patches=10**6, seed=0)
    queries = np.asarray(bank.vectors[[3]], np.float32)
    left_out = patch_knn(queries, ["a"], bank, neighbours=0, exclude=np.array([3]))
    without = PatchBank.build(normals[[0, 1, 2, 4, 5, 6, 7]], ["a"] * 7, 10**6, 0)
    np.testing.assert_allclose(left_out, patch_knn(queries, ["a"], without, neighbours=0),
                               atol=1e-5)
    assert left_out.min() > 0.1  # it did not find its own patches


def test_leave_one_out_scores_cover_every_training_image_of_a_bank_method():
    images, cats = _images(12, seed=3), ["a"] * 6 + ["b"] * 6
    train = _image_set(images, cats)
    for method in ("rawknn", "patchz"):
        scores = leave_one_out_scores(method, train, ScoreOptions())
        assert scores.shape == (12,) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match="pixel.*held-out normals"):
        leave_one_out_scores("pixel", train, ScoreOptions())


def test_small_categories_are_searched_exhaustively_large_ones_among_the_nearest():
    assert searched_images(60) == 60
    assert searched_images(EXHAUSTIVE_IMAGES + 1) == 5
    assert searched_images(60, neighbours=5) == 5  # an explicit choice is kept
    assert searched_images(3, neighbours=5) == 3


def test_reference_counts_and_description():
    ref = ReferenceScores.join([
        ReferenceScores(np.ones(3), ["a", "a", "b"], ["1", "2", "3"], np.zeros(3, bool)),
        ReferenceScores(np.ones(1), ["a"], ["4"], np.ones(1, bool)),
    ])
    assert ref.counts() == {"a": (2, 1), "b": (1, 0)}
    assert ref.describe() == ("leave-one-out scores of the training normals and held-out "
                              "validation normals")
