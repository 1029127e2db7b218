"""ssimz (core.scoring.residual): residual maps z-scored per location against normals."""

import numpy as np
import pytest

from core.runs.checkpoint import open_checkpoint
from core.scoring import score_image_set
from core.scoring.data import load_samples, reference_samples, samples_to_score
from core.scoring.residual import ResidualStats, residual_z


def _normals(rng, n=40, size=16):
    """Residual maps of normals: the left half is always rebuilt badly and noisily (a
    textured region), the right half well."""
    maps = rng.normal(0.02, 0.005, (n, size, size)).astype(np.float32)
    maps[:, :, : size // 2] = rng.normal(0.5, 0.1, (n, size, size // 2))
    return maps


def test_a_bump_where_normals_are_clean_outranks_the_same_bump_where_they_are_not():
    rng = np.random.default_rng(0)
    normals = _normals(rng)
    stats = ResidualStats.build(normals, ["tile"] * len(normals))
    test = _normals(rng, 3)
    test[1, 6:10, 2:6] += 0.3  # inside the badly rebuilt half: an ordinary normal variation
    test[2, 6:10, 10:14] += 0.3  # where every normal is rebuilt well: a defect
    scores, maps = residual_z(test, ["tile"] * 3, stats)
    assert maps.shape == test.shape and scores.shape == (3,)
    # the raw maximum ranks the textured half first; the z-score ranks the defect first
    assert test[1].max() > test[2].max()
    assert scores[2] > scores[1] and scores[2] > scores[0]
    assert maps[2, 6:10, 10:14].mean() > maps[2, :, :8].max()


def test_each_category_is_compared_with_its_own_normals_and_unknown_ones_are_named():
    rng = np.random.default_rng(1)
    a, b = _normals(rng), _normals(rng)[:, :, ::-1].copy()  # b's noisy half is on the right
    stats = ResidualStats.build(np.concatenate([a, b]), ["a"] * len(a) + ["b"] * len(b))
    probe = _normals(rng, 1)
    own, _ = residual_z(probe, ["a"], stats)
    other, _ = residual_z(probe, ["b"], stats)
    assert own[0] < other[0]
    with pytest.raises(ValueError, match="no category 'c'"):
        residual_z(probe, ["c"], stats)
    with pytest.raises(ValueError, match="normal training images"):
        ResidualStats.build(np.zeros((0, 16, 16), np.float32), [])


def test_ssimz_on_a_trained_run_scores_and_maps_every_image(tiny_run):
    config = tiny_run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    model = open_checkpoint(tiny_run, tiny_run.epochs()[-1]).model()
    result = score_image_set(model, test, "ssimz", train=train)
    size = config.image_size
    assert result.scores.shape == (len(test),) and np.isfinite(result.scores).all()
    assert result.maps.shape == (len(test), size, size)
    # what a user sees: the map's hottest place is the score
    np.testing.assert_allclose(result.scores, result.maps.reshape(len(test), -1).max(axis=1),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="needs the normal training images"):
        score_image_set(model, test, "ssimz")
