"""Scoring: the kNN search, banks, maps, each method's contract, the cache, and bad input.

The "planted defects" test trains its own small model (32 px, no skips, 15 epochs: about
20-40 s on one CPU thread), because the shared 2-epoch tiny_run is too untrained to separate
anything but the easiest defects.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

import core.scoring.checkpoint as checkpoint_module
import core.scoring.knn as knn_module
from core.config import ModelConfig, TrainConfig
from core.data.demo import DemoSpec, generate_demo_dataset
from core.data.images import LeftOutWarning
from core.data.layouts import DatasetLayoutError
from core.evaluation.metrics import image_auroc
from core.model.tensors import reconstruct
from core.runs.checkpoint import load_checkpoint, open_checkpoint
from core.runs.folder import Run, RunError, save_checkpoint
from core.scoring import (
    METHODS,
    FeatureBank,
    ScoreOptions,
    knn_search,
    score_checkpoint,
    score_image_set,
)
from core.scoring.data import load_samples, reference_samples, samples_to_score
from core.scoring.features import parse_levels
from core.scoring.knn import cap_rows, thumbnails
from core.scoring.maps import gaussian_smooth, reduce_maps
from core.scoring.options import CHECKPOINT_METHODS, SEGMENTER_METHODS
from core.scoring.testset import UnseenCategoryError

# --------------------------------------------------------------------------- helpers

# seg needs a discriminative checkpoint; tests/core/test_objectives.py covers it
PLAIN_METHODS = [m for m in METHODS if m not in SEGMENTER_METHODS]
# what score_image_set gives without a run (ensemble needs the run's held-out normals)
IMAGE_SET_METHODS = [m for m in PLAIN_METHODS if m not in CHECKPOINT_METHODS]


def _sets(run: Run):
    config = run.config()
    test = load_samples(samples_to_score(config.data), config.image_size)
    train = load_samples(reference_samples(config.data, "train", config), config.image_size)
    return config, test, train


@pytest.fixture(scope="module")
def tiny(tiny_run):
    config, test, train = _sets(tiny_run)
    return tiny_run, open_checkpoint(tiny_run, tiny_run.epochs()[-1]).model(), test, train


# --------------------------------------------------------------------------- kNN search and banks


@pytest.mark.parametrize("k", [1, 3])
def test_knn_search_matches_sklearn(k, monkeypatch):
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(300, 16)).astype(np.float32)
    monkeypatch.setattr(knn_module, "DISTANCE_BUDGET_BYTES", 4 * 500 * 7)  # 7 queries per chunk
    dist, idx = knn_search(queries, bank, k)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=k).fit(bank).kneighbors(queries)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4, atol=1e-4)
    assert (idx == ref_idx).mean() > 0.99  # only exact ties may order differently
    assert dist.shape == (300, k) and np.all(np.diff(dist, axis=1) >= 0)


def test_knn_search_clips_k_and_rejects_bad_shapes():
    bank = np.eye(3, dtype=np.float32)
    dist, idx = knn_search(bank, bank, k=10)
    assert (
        dist.shape == (3, 3)
        and np.allclose(dist[:, 0], 0, atol=1e-3)
        and list(idx[:, 0]) == [0, 1, 2]
    )
    with pytest.raises(ValueError, match="bank is empty"):
        knn_search(bank, np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match=r"\(Q, D\) and \(M, D\)"):
        knn_search(np.zeros((2, 4)), bank, 1)


def test_bank_caps_each_category_deterministically():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 25, 4)).astype(np.float32)  # 12 images x 25 patches
    cats = ["a"] * 8 + ["b"] * 4
    bank = FeatureBank.build(vectors, cats, max_per_category=60, seed=3)
    assert bank.sizes() == {"a": 60, "b": 60}
    again = FeatureBank.build(vectors, cats, max_per_category=60, seed=3)
    np.testing.assert_array_equal(bank.vectors, again.vectors)
    other = FeatureBank.build(vectors, cats, max_per_category=60, seed=4)
    assert not np.array_equal(bank.vectors, other.vectors)
    # every kept row of "b" is a real patch of a "b" image
    b_rows = vectors[8:].reshape(-1, 4)
    kept = bank.rows_of("b")
    assert all(np.any(np.all(b_rows == row, axis=1)) for row in kept)
    small = cap_rows(np.arange(10)[:, None], 20, [0, 0])
    assert small.shape == (10, 1)
    restored = FeatureBank.from_record(bank.to_record())
    np.testing.assert_array_equal(restored.vectors, bank.vectors)
    assert restored.categories == ["a", "b"]


def test_thumbnails_average_blocks():
    images = np.zeros((1, 4, 4, 3), np.uint8)
    images[0, :2, :2] = 255
    thumbs = thumbnails(images, 2).reshape(1, 3, 2, 2)
    np.testing.assert_allclose(thumbs[0, 0], [[1.0, 0.0], [0.0, 0.0]])


# --------------------------------------------------------------------------- maps and options


def test_gaussian_smooth_keeps_constants_and_mass():
    flat = torch.full((2, 16, 16), 0.25)
    torch.testing.assert_close(gaussian_smooth(flat, 2.0), flat)
    spike = torch.zeros(1, 33, 33)
    spike[0, 16, 16] = 1.0
    smooth = gaussian_smooth(spike, 1.5)
    assert smooth.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert smooth[0, 16, 16] < 1.0 and smooth[0, 16, 18] > 0
    assert torch.equal(gaussian_smooth(spike, 0), spike)


def test_reduce_maps():
    maps = np.array([[[0.0, 1.0], [0.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]])
    np.testing.assert_allclose(reduce_maps(maps, "max"), [3.0, 2.0])
    np.testing.assert_allclose(reduce_maps(maps, "mean"), [1.0, 2.0])


def test_parse_levels():
    assert parse_levels("auto", 3, (1, 2)) == (1, 2)
    assert parse_levels("all", 3, (1,)) == (0, 1, 2, 3)
    assert parse_levels("bottleneck", 4, (1,)) == (4,)
    assert parse_levels("2,1,2", 3, (1,)) == (1, 2)
    with pytest.raises(ValueError, match="levels 0..3"):
        parse_levels("5", 3, (1,))
    with pytest.raises(ValueError, match="use auto"):
        parse_levels("deep", 3, (1,))


def test_options_name_unknown_and_invalid_values():
    with pytest.raises(ValueError, match="unknown scoring option.*knn_k"):
        ScoreOptions.from_kwargs({"knn_k": 3})
    with pytest.raises(ValueError, match="reduce must be"):
        ScoreOptions(reduce="median")
    assert ScoreOptions().sigma_for(128) == 2.0 and ScoreOptions(sigma=0).sigma_for(128) == 0.0
    assert "k" in ScoreOptions().cache_params("knn") and "k" not in ScoreOptions().cache_params(
        "pixel"
    )


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", IMAGE_SET_METHODS)
def test_each_method_shapes_and_determinism(tiny, method):
    _, model, test, train = tiny
    first = score_image_set(model, test, method, train=train)
    second = score_image_set(model, test, method, train=train)
    n, size = len(test), test.images.shape[1]
    assert first.method == method and first.scores.shape == (n,)
    assert np.all(np.isfinite(first.scores))
    np.testing.assert_array_equal(first.scores, second.scores)
    if method == "globalknn":  # one pooled vector per image: a score, no map
        assert first.maps is None
        return
    assert (
        first.maps is not None
        and first.maps.shape == (n, size, size)
        and first.maps.dtype == np.float32
    )
    if method not in ("rawknn", "patchz"):  # rawknn: thumbnail distances, its map only shows where;
        # patchz: the worst patch before smoothing
        np.testing.assert_allclose(first.scores, first.maps.reshape(n, -1).max(axis=1), rtol=1e-6)


def test_pixel_map_is_the_squared_error(tiny):
    _, model, test, _ = tiny
    result = score_image_set(model, test, "pixel", sigma=0, reduce="mean")
    x = test.images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    expected = ((x - reconstruct(model, test.images)) ** 2).mean(axis=1)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        result.scores, expected.reshape(len(test), -1).mean(axis=1), rtol=1e-4
    )


def test_knn_without_patches_has_no_map(tiny):
    _, model, test, train = tiny
    result = score_image_set(model, test, "knn", train=train, patch=False, k=2)
    assert result.maps is None and result.scores.shape == (len(test),)


def test_training_images_are_their_own_nearest_neighbour(tiny):
    """A bank member's distance to the bank is 0: the search really uses the bank."""
    _, model, _, train = tiny
    for method in ("knn", "rawknn"):
        result = score_image_set(model, train, method, train=train, sigma=0)
        np.testing.assert_allclose(result.scores, 0.0, atol=1e-3)
    raw = score_image_set(None, train, "rawknn", train=train)  # the floor needs no model
    assert raw.bank_categories == train.categories and not raw.routed.any()


def test_global_and_category_banks_differ_only_in_scope(tiny):
    _, model, test, train = tiny
    per_category = score_image_set(model, test, "rawknn", train=train)
    global_bank = score_image_set(model, test, "rawknn", train=train, bank_scope="global")
    assert global_bank.bank_categories == [None] * len(test)
    assert np.all(global_bank.scores <= per_category.scores + 1e-6)  # a superset is never farther


def test_methods_need_their_inputs(tiny):
    _, model, test, _ = tiny
    with pytest.raises(ValueError, match="needs the normal training images"):
        score_image_set(model, test, "knn")
    with pytest.raises(ValueError, match="needs a model"):
        score_image_set(None, test, "pixel")
    with pytest.raises(ValueError, match="unknown scoring method 'lpips'"):
        score_image_set(model, test, "lpips")


# --------------------------------------------------------------------------- planted defects


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A model trained long enough to separate the demo defects (see the module docstring)."""
    root = tmp_path_factory.mktemp("planted")
    generate_demo_dataset(
        root / "demo",
        DemoSpec(
            size=64,
            seed=1,
            n_train=24,
            n_test_good=6,
            n_test_per_defect=3,
            categories=("carpet", "bottle", "pill"),
        ),
    )
    config = TrainConfig(
        data=str(root / "demo"),
        run=str(root / "run"),
        image_size=32,
        epochs=15,
        batch_size=8,
        model=ModelConfig(base_width=8, depth=3, skips="none", norm="batch"),
        objective="reconstruct",  # the plain autoencoder MIN_AUROC below was measured on
        balance_categories=False,  # (equal-sized categories: only the draw order would change)
        seed=0,
        num_threads=1,
    )
    from core.training.loop import train_one

    threads = torch.get_num_threads()
    try:
        run = train_one(config, progress=False, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return run


# Mean per-category image AUROC measured on this fixture: pixel 0.92, ssim 0.86, feature 0.69,
# knn 0.91, rawknn 0.86, patchz 0.96, ensemble (knn + patchz) 0.98. Bounds sit below with a
# margin; feature distance is the weakest signal on so small a model and only clears chance by
# a little. globalknn (pooled features, issue #29) was added later with the knn-like bound
# 0.75 that it clears; its value on this fixture was not recorded.
MIN_AUROC = {"pixel": 0.8, "ssim": 0.75, "feature": 0.55, "knn": 0.8, "rawknn": 0.75,
             "patchz": 0.85, "globalknn": 0.75, "ensemble": 0.85, "ssimz": 0.85,
             "adaptive": 0.8}  # ssimz measured above 0.99; adaptive .90 (it chose knn)
# finepatch sees only defects of a few pixels that no normal 3 x 3 px patch looks like; the demo
# defects here (colour blobs, scratches and texture damage on 64 px images) are not that kind and
# it measured .51 on them, so its own test plants such defects (tests/core/scoring/test_finepatch.py)
FINE_ONLY = ("finepatch",)


@pytest.mark.parametrize("method", [m for m in PLAIN_METHODS if m not in FINE_ONLY])
def test_planted_defects_score_above_normals(trained_run, method):
    result = score_checkpoint(trained_run, "last", trained_run.config().data, method)
    labels, scores = np.asarray(result.labels), np.asarray(result.image_scores)
    cats = np.asarray(result.categories)
    per_category = [image_auroc(labels[cats == c], scores[cats == c]) for c in sorted(set(cats))]
    assert np.mean(per_category) > MIN_AUROC[method], (method, per_category)
    assert np.median(scores[labels == 1]) > np.median(scores[labels == 0])


# --------------------------------------------------------------------------- score_checkpoint


def test_score_checkpoint_contract_and_cache(tiny_run, demo_root, monkeypatch):
    first = score_checkpoint(tiny_run, 2, demo_root, "knn")
    config, test, _ = _sets(tiny_run)
    assert first.names == [s.name for s in test.samples]
    assert first.categories == test.categories and first.defects == [
        s.defect for s in test.samples
    ]
    np.testing.assert_array_equal(first.labels, test.labels)
    np.testing.assert_array_equal(first.has_mask, test.has_mask)
    assert first.anomaly_maps.shape == (len(test), config.image_size, config.image_size)
    assert first.anomaly_maps.dtype == np.float32
    assert list(tiny_run.cache_dir.glob("epoch_002/bank-*.npz")), (
        "the knn bank is stored per checkpoint"
    )

    def no_recompute(*args, **kwargs):
        raise AssertionError("a cached result was recomputed")

    monkeypatch.setattr(checkpoint_module, "score_image_set_methods", no_recompute)
    again = score_checkpoint(tiny_run, 2, str(demo_root), "knn")
    np.testing.assert_array_equal(again.image_scores, first.image_scores)
    np.testing.assert_array_equal(again.anomaly_maps, first.anomaly_maps)
    assert again.names == first.names


def test_score_checkpoint_validation_split_is_held_out(tiny_run, demo_root):
    val = score_checkpoint(tiny_run, "last", demo_root, "rawknn", split="val")
    config = tiny_run.config()
    expected = reference_samples(config.data, "val", config)
    assert val.names == [s.name for s in expected] and len(expected) > 0
    assert np.all(np.asarray(val.image_scores) > 0)  # validation normals are not in the bank


# --------------------------------------------------------------------------- bad input


def test_missing_epoch_names_available_ones(tiny_run, demo_root):
    with pytest.raises(RunError, match=r"epoch 7 does not exist; available: 1, 2"):
        score_checkpoint(tiny_run, 7, demo_root, "pixel")


def test_categories_the_run_never_saw(tiny_run, tmp_path):
    root = tmp_path / "other"
    generate_demo_dataset(
        root,
        DemoSpec(
            size=32, n_train=2, n_test_good=1, n_test_per_defect=1, categories=("carpet", "screw")
        ),
    )
    with pytest.warns(LeftOutWarning, match=r"of category screw are left out of the scores"):
        only_carpet = score_checkpoint(tiny_run, 2, root, "pixel")  # the categories it knows
    assert set(only_carpet.categories) == {"carpet"}
    unseen = tmp_path / "unseen"
    generate_demo_dataset(
        unseen, DemoSpec(size=32, n_train=2, n_test_good=1, n_test_per_defect=1, categories=("screw",))
    )
    with pytest.raises(UnseenCategoryError, match=r"categories screw were never seen by this run .*--route"):
        score_checkpoint(tiny_run, 2, unseen, "pixel")
    routed = score_checkpoint(tiny_run, 2, root, "knn", unknown_categories="route")
    cats = np.asarray(routed.categories)
    assert np.asarray(routed.routed)[cats == "screw"].all()
    assert not np.asarray(routed.routed)[cats == "carpet"].any()


def test_empty_test_folder_is_named(tiny_run, tmp_path):
    empty = tmp_path / "empty_test"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match="empty_test: folder is empty"):
        score_checkpoint(tiny_run, 2, empty, "pixel")


def test_checkpoint_of_another_architecture(tiny_run, tmp_path):
    clone = tmp_path / "clone"
    shutil.copytree(tiny_run.path, clone, ignore=shutil.ignore_patterns("cache"))
    payload = load_checkpoint(clone / "epoch_002.pt")
    payload["config"]["model"]["base_width"] = 16  # config says one network, weights another
    save_checkpoint(clone / "epoch_002.pt", payload)
    with pytest.raises(
        RunError,
        match=r"epoch_002.pt: its weights do not fit the architecture in its config "
        r"\(.*differently shaped.*choose another epoch",
    ):
        score_checkpoint(Run(clone), 2, tiny_run.config().data, "pixel")


def test_a_run_on_some_categories_scores_only_those(demo_root, tmp_path):
    """A per-category run evaluated on the whole dataset scores its own category, not an error."""
    from core.scoring import score_checkpoint
    from core.training.loop import train_one
    from tests.conftest import tiny_config

    run_dir = tmp_path / "pill_only"
    train_one(tiny_config(demo_root, run_dir, epochs=1, categories=["pill"]), progress=False, log=lambda _: None)
    with pytest.warns(LeftOutWarning, match=r"test images of categories bottle, carpet are left "
                      r"out of the scores: this run was trained on pill only"):
        result = score_checkpoint(Run(run_dir), 1, demo_root, "pixel")
    assert set(result.categories) == {"pill"} and len(result.image_scores) > 0
