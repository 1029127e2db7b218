"""Training objectives (core.training.objectives), the segmentation network, focal loss, and the
seg / patchz scoring methods end to end on a tiny discriminative run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import ModelConfig, TrainConfig
from core.data.synthetic import panel, perlin_blend
from core.evaluation.evaluate import evaluate_epoch
from core.model.losses import ReconstructionLoss, focal_loss
from core.model.segmentation import SEG_KEY, SegmentationNet, segmenter_of
from core.runs.checkpoint import load_checkpoint, open_checkpoint
from core.runs.folder import Run, RunError, save_checkpoint
from core.scoring import METHODS, score_checkpoint, score_image_set
from core.scoring.data import load_samples, reference_samples, samples_to_score
from core.scoring.patchz import PatchStats, patchz_scores
from core.training.objectives import Objective, corrupt_batch
from tests.conftest import tiny_config


def _images(n=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(1, size, size, 3))
    return np.clip(base + rng.integers(-20, 20, size=(n, size, size, 3)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- corruption


def test_corrupt_batch_marks_exactly_what_changed_and_leaves_input_alone():
    images = _images(40)
    before = images.copy()
    out, masks = corrupt_batch(images, list(images[::-1]), np.random.default_rng(3))
    np.testing.assert_array_equal(images, before)
    changed = np.any(out != images, axis=-1)
    np.testing.assert_array_equal(masks.astype(bool), changed)
    corrupted = masks.reshape(len(masks), -1).any(axis=1)
    assert 0.2 < corrupted.mean() < 0.8  # about half the batch stays clean


def test_panel_and_perlin_blend_another_image():
    image, other = _images(2)
    rng = np.random.default_rng(0)
    out, mask = panel(image, rng, source=other)
    assert mask.mean() >= 0.05  # a panel is large
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    out, mask = perlin_blend(image, np.random.default_rng(1), source=other)
    assert mask.any() and np.array_equal(out[mask == 0], image[mask == 0])
    with pytest.raises(ValueError, match="source must be a uint8 image"):
        panel(image, rng, source=other[:16])


def test_denoise_batches_pair_corrupted_inputs_with_clean_targets():
    images = _images(16)
    objective = Objective("denoise", ReconstructionLoss("l1"), ModelConfig(base_width=4, depth=2), images,
                          ["a"] * 8 + ["b"] * 8, seed=0)
    batch = objective.make_batch(None, np.arange(16), epoch=1, step=0)
    np.testing.assert_array_equal(batch.targets, images)
    assert batch.masks.any()
    np.testing.assert_array_equal(batch.masks.astype(bool), np.any(batch.inputs != images, axis=-1))
    again = objective.make_batch(None, np.arange(16), epoch=1, step=0)
    np.testing.assert_array_equal(again.inputs, batch.inputs)  # seeded by (seed, epoch, step)


def test_focal_loss_is_small_for_confident_right_answers():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, :4] = 1
    right = torch.where(target > 0, 6.0, -6.0)
    assert torch.all(focal_loss(right, target) < 1e-4)
    assert torch.all(focal_loss(-right, target) > 1.0)
    assert focal_loss(right, target).shape == (2,)


def test_segmentation_net_shapes():
    net = SegmentationNet(ModelConfig(base_width=4, depth=4, norm="instance"))
    x = torch.rand(2, 3, 32, 32)
    assert net(x, x).shape == (2, 1, 32, 32)


# --------------------------------------------------------------------------- patchz


def test_patchz_finds_a_planted_defect_where_it_is():
    images = _images(22, seed=1)
    normals, test = images[:20], images[20:].copy()
    stats = PatchStats.build(normals, ["a"] * 20)
    test[1, 20:28, 4:12] = 255
    scores, grids = patchz_scores(test, ["a", "a"], stats)
    assert scores[1] > 2 * scores[0]
    hot = np.unravel_index(np.argmax(grids[1]), grids[1].shape)
    assert hot[0] >= 15 and hot[1] <= 15  # lower-left part of the 31 x 31 grid
    with pytest.raises(ValueError, match="no category 'b'"):
        patchz_scores(test, ["b", "b"], stats)


# --------------------------------------------------------------------------- a discriminative run


@pytest.fixture(scope="module")
def seg_run(demo_root, tmp_path_factory):
    from core.training.loop import train_one

    config = tiny_config(demo_root, tmp_path_factory.mktemp("seg") / "run", objective="discriminative",
                         **{"model.norm": "instance", "model.skips": "all"})
    threads = torch.get_num_threads()
    try:
        return train_one(config, progress=False, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)


def test_discriminative_run_logs_terms_and_stores_both_networks(seg_run):
    records = seg_run.metrics()
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert record["objective"] == "discriminative"
        assert set(record["loss_terms"]) == {"ssim", "l1", "focal"}
        assert all(np.isfinite(v) for v in record["loss_terms"].values())
        assert 0.0 <= record["synthetic_auroc"]["seg"] <= 1.0
    payload = load_checkpoint(seg_run.checkpoint_path(2))
    assert SEG_KEY in payload
    model = open_checkpoint(seg_run, 2).model()
    segmenter = segmenter_of(model)
    assert segmenter is not None and not any(k.startswith("_segmenter") for k in model.state_dict())
    for key, value in segmenter.state_dict().items():
        torch.testing.assert_close(value, payload[SEG_KEY][key])


def test_seg_and_patchz_score_a_checkpoint(seg_run):
    data = seg_run.config().data
    for method in ("seg", "patchz"):
        result = score_checkpoint(seg_run, "last", data, method)
        n = len(result.image_scores)
        assert np.all(np.isfinite(result.image_scores)) and result.anomaly_maps.shape[0] == n
    seg = score_checkpoint(seg_run, "last", data, "seg")
    assert 0.0 <= seg.anomaly_maps.min() and seg.anomaly_maps.max() <= 1.0  # smoothed probabilities


def test_evaluate_all_shows_both_floors_and_seg_only_where_it_exists(seg_run, tiny_run, demo_root):
    result = evaluate_epoch(seg_run, "last", demo_root, "all", pixel=False, thresholds=False,
                            routing=False)
    # 1 held-out normal per category, but knn's and patchz's 9 training normals give
    # leave-one-out scores: 10 per category, enough to calibrate the ensemble's members
    assert set(result.methods) == set(METHODS)
    assert result.image_auroc["ensemble"]["overall"] is not None
    plain = evaluate_epoch(tiny_run, "last", demo_root, "pixel", pixel=False, thresholds=False,
                           routing=False)
    assert plain.methods == ["pixel", "rawknn", "patchz"]
    everything = evaluate_epoch(tiny_run, "last", demo_root, "all", pixel=False, thresholds=False,
                                routing=False)
    assert "seg" not in everything.methods and "patchz" in everything.methods
    with pytest.raises(ValueError, match="--objective discriminative"):
        evaluate_epoch(tiny_run, "last", demo_root, "seg", pixel=False, thresholds=False,
                       routing=False)


def test_resume_continues_the_segmenter(seg_run, tmp_path):
    from core.training.loop import train_one

    config = TrainConfig.from_dict(seg_run.config().to_dict()).with_overrides(
        {"run": str(tmp_path / "resumed"), "epochs": 1})
    train_one(config, progress=False, log=lambda _: None)
    resumed = train_one(config.with_overrides({"epochs": 2}), resume=True, progress=False,
                        log=lambda _: None)
    np.testing.assert_allclose(
        resumed.metrics()[1]["loss_terms"]["focal"], seg_run.metrics()[1]["loss_terms"]["focal"],
        rtol=1e-4)


def test_damaged_seg_weights_name_the_checkpoint(seg_run, tmp_path):
    payload = load_checkpoint(seg_run.checkpoint_path(2))
    payload[SEG_KEY] = {"stem.0.weight": torch.zeros(1)}
    run = Run(tmp_path / "bad")
    run.path.mkdir()
    save_checkpoint(run.checkpoint_path(1), payload)
    with pytest.raises(RunError, match="seg_model"):
        open_checkpoint(run, 1).model()


def test_seg_on_a_plain_model_is_one_clear_error(tiny_run):
    config = tiny_run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    model = open_checkpoint(tiny_run, tiny_run.epochs()[-1]).model()
    with pytest.raises(ValueError, match="--objective discriminative"):
        score_image_set(model, test, "seg")
    assert score_image_set(None, test, "patchz", train=train).scores.shape == (len(test),)


def test_epoch_table_and_overview_show_loss_terms_and_seg(seg_run):
    from core.evaluation.evaluate import run_table
    from dashboard.views.overview import curves_figure

    table = run_table(seg_run, [], [1, 2])
    assert {"loss_focal", "loss_ssim", "loss_l1", "synthetic_auroc_seg"} <= set(table.columns)
    np.testing.assert_allclose(table["loss_focal"], [r["loss_terms"]["focal"] for r in seg_run.metrics()])
    names = {trace.name for trace in curves_figure(table, {}, None, None).data}
    assert {"term focal", "synthetic seg"} <= names


def test_export_keeps_the_segmentation_network(seg_run, tmp_path):
    from core.reports.export import export_epoch, load_exported_model

    export_epoch(seg_run, 2, tmp_path / "export")
    assert segmenter_of(load_exported_model(tmp_path / "export")) is not None
