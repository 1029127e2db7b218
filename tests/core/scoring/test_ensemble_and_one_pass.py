"""One model pass serves every method with the same numbers; the ensemble averages the
members' calibrated scores."""

from __future__ import annotations

import numpy as np
import pytest

from core.runs.checkpoint import open_checkpoint
from core.scoring import score_checkpoint, score_image_set, score_image_set_methods
from core.scoring.checkpoint import calibrate_result, checkpoint_reference
from core.scoring.data import load_samples, reference_samples, samples_to_score
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def held_out_run(demo_root, tmp_path_factory):
    """1 epoch with 3 held-out normals per category: enough to calibrate."""
    from core.runs.folder import Run
    from core.training.loop import train_one

    run_dir = tmp_path_factory.mktemp("runs") / "held_out"
    train_one(tiny_config(demo_root, run_dir, epochs=1, val_fraction=0.3), progress=False,
              log=lambda _: None)
    return Run(run_dir)


@pytest.fixture(scope="module")
def sets(tiny_run):
    config = tiny_run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    return open_checkpoint(tiny_run, tiny_run.epochs()[-1]).model(), test, train


def test_one_pass_gives_each_method_its_own_numbers(sets):
    model, test, train = sets
    methods = ("pixel", "ssim", "feature", "knn", "rawknn", "patchz")
    together = score_image_set_methods(model, test, methods, train=train)
    for method in methods:
        alone = score_image_set(model, test, method, train=train)
        np.testing.assert_allclose(together[method].scores, alone.scores, rtol=1e-5, atol=1e-7)
        if alone.maps is not None:
            np.testing.assert_allclose(together[method].maps, alone.maps, rtol=1e-4, atol=1e-6)


def test_ensemble_is_the_mean_of_calibrated_members(held_out_run, demo_root):
    run = held_out_run
    ensemble = score_checkpoint(run, 1, demo_root, "ensemble", members="patchz,rawknn")
    expected = []
    for member in ("patchz", "rawknn"):
        test = score_checkpoint(run, 1, demo_root, member)
        reference = checkpoint_reference(run, 1, demo_root, member)
        # every training normal (leave-one-out) and every held-out one: 10 per category
        assert set(reference.counts().values()) == {(7, 3)}
        expected.append(calibrate_result(test, reference).image_scores)
    np.testing.assert_allclose(ensemble.image_scores, np.mean(expected, axis=0))
    assert ensemble.method == "ensemble" and ensemble.info["members"] == ["patchz", "rawknn"]
    assert ensemble.anomaly_maps.shape[0] == len(ensemble.image_scores)
    assert np.isfinite(ensemble.anomaly_maps).all()


def test_ensemble_needs_a_run_normals_and_two_methods(sets, tiny_run, demo_root):
    model, test, train = sets
    with pytest.raises(ValueError, match="calibrated against a run.s normal images"):
        score_image_set(model, test, "ensemble", train=train)
    with pytest.raises(ValueError, match="members 'knn'"):
        score_checkpoint(tiny_run, 2, demo_root, "ensemble", members="knn")
    with pytest.raises(ValueError, match="cannot calibrate member 'pixel'.*10 reference"):
        score_checkpoint(tiny_run, 2, demo_root, "ensemble", members="knn,pixel")  # 1 held out
