"""globalknn: pooled encoder features of several levels, usable alone and as an ensemble member."""

from __future__ import annotations

import numpy as np
import pytest

from core.runs.checkpoint import open_checkpoint
from core.scoring import score_checkpoint, score_image_set
from core.scoring.checkpoint import calibrate_result, checkpoint_reference
from core.scoring.data import load_samples, reference_samples, samples_to_score
from core.scoring.globalknn import global_options
from core.scoring.options import ScoreOptions
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def held_out_run(demo_root, tmp_path_factory):
    """1 epoch with 3 held-out normals per category: enough to calibrate."""
    from core.runs.folder import Run
    from core.training.loop import train_one

    run_dir = tmp_path_factory.mktemp("runs") / "held_out_global"
    train_one(tiny_config(demo_root, run_dir, epochs=1, val_fraction=0.3), progress=False,
              log=lambda _: None)
    return Run(run_dir)


def test_globalknn_is_the_pooled_knn_of_the_model_levels(tiny_run):
    config = tiny_run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    model = open_checkpoint(tiny_run, tiny_run.epochs()[-1]).model()
    result = score_image_set(model, test, "globalknn", train=train)
    levels = global_options(ScoreOptions(), model.config.depth).levels
    assert levels and all(int(v) <= model.config.depth for v in levels.split(","))
    pooled = score_image_set(model, test, "knn", train=train, patch=False, levels=levels)
    np.testing.assert_allclose(result.scores, pooled.scores)
    assert result.method == "globalknn" and result.maps is None
    # a training normal scored against a bank that holds it is at distance 0
    own = score_image_set(model, train, "globalknn", train=train)
    np.testing.assert_allclose(own.scores, 0.0, atol=1e-3)


def test_globalknn_calibrates_on_leave_one_out_normals_inside_an_ensemble(held_out_run, demo_root):
    run = held_out_run
    reference = checkpoint_reference(run, 1, demo_root, "globalknn")
    assert set(reference.counts().values()) == {(7, 3)}  # every training normal and held-out one
    ensemble = score_checkpoint(run, 1, demo_root, "ensemble", members="knn,globalknn")
    expected = [calibrate_result(score_checkpoint(run, 1, demo_root, m),
                                 checkpoint_reference(run, 1, demo_root, m)).image_scores
                for m in ("knn", "globalknn")]
    np.testing.assert_allclose(ensemble.image_scores, np.mean(expected, axis=0))
    assert ensemble.info["members"] == ["knn", "globalknn"]
