"""Calibration's reference (core.scoring.reference): leave-one-out scores of the training
normals are exactly the scores each would get as a test image of a bank without it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.samples import ImageSet, Sample
from core.scoring import patchz
from core.scoring.data import load_samples
from core.scoring.knn import FeatureBank, knn_search, leave_one_out_knn
from core.scoring.methods import score_image_set
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
    loo = leave_one_out_patchz(images, cats)
    for i in (0, 6):
        others = [j for j in range(9) if j != i and cats[j] == cats[i]]
        stats = PatchStats.build(images[others], [cats[i]] * len(others))
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


def test_patchz_leave_one_out_is_the_same_in_blocks(monkeypatch):
    images, cats = _images(9), ["a"] * 5 + ["b"] * 4
    whole = leave_one_out_patchz(images, cats)
    monkeypatch.setattr(patchz, "BLOCK", 2)
    monkeypatch.setattr(patchz, "DOUBLE_BLOCK", 2)
    assert leave_one_out_patchz(images, cats) == pytest.approx(whole, rel=1e-5)
    stats = PatchStats.build(images, cats)
    monkeypatch.setattr(patchz, "BLOCK", 128)
    assert patchz_scores(images, cats, stats)[0] == pytest.approx(
        patchz_scores(images, cats, PatchStats.build(images, cats))[0], rel=1e-5)


def test_patchz_reads_the_files_at_its_own_size_and_finds_a_spot_the_model_size_loses(tmp_path):
    """A 3-px dark spot on a 128-px tile: at a 32-px model size it is under one pixel, and the
    32-px thumbnails patchz used to read lost it among the normals' own variation; patchz now
    decodes the files again at 128 px (core.scoring.data.decoded_at)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128]
    samples = []
    for i in range(24):
        tile = 120 + 40 * np.sin(xx / 9.0 + rng.uniform(0, 6)) * np.cos(yy / 11.0)
        tile = np.clip(tile + rng.normal(0, 6, tile.shape), 0, 255)
        if i >= 20 and i % 2:  # two test tiles with a spot
            y, x = rng.integers(20, 100, 2)
            tile[y:y + 3, x:x + 3] = 0
        path = tmp_path / f"{i:02d}.png"
        Image.fromarray(np.repeat(tile[..., None], 3, axis=-1).astype(np.uint8)).save(path)
        samples.append(Sample(path, "tile", int(i >= 20 and i % 2), "", "train" if i < 20 else "test"))
    train, test = load_samples(samples[:20], 32), load_samples(samples[20:], 32)
    assert train.images.shape[1] == 32
    result = score_image_set(None, test, "patchz", train)
    labels = np.array([s.label for s in samples[20:]])
    assert result.scores[labels == 1].min() > result.scores[labels == 0].max()
