"""Encoder features, K-Means purity / ARI / confused pairs, and the 2-D maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.diagnostics import (
    cluster_features,
    embed_2d,
    encoder_features,
    feature_clusters,
    feature_embedding,
)
from core.diagnostics.features import balanced_quota
from core.model.unet import UNetAutoencoder
from core.runs.folder import Run, save_checkpoint
from tests.conftest import tiny_config


def blobs(n_per: int, names=("a", "b", "c"), dims: int = 16, seed: int = 0, spread: float = 20.0):
    """Gaussian blobs far apart (spread standard deviations): separable by construction."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, spread, size=(len(names), dims))
    features = np.concatenate([c + rng.normal(size=(n_per, dims)) for c in centers]).astype(np.float32)
    return features, [name for name in names for _ in range(n_per)]


def test_separable_blobs_have_purity_one_and_no_confused_pairs():
    features, categories = blobs(40)
    result = cluster_features(features, categories)
    assert result.k == 3 and result.purity == 1.0 and result.ari == pytest.approx(1.0)
    assert result.confused_pairs == []
    assert sorted(result.cluster_table["majority"]) == ["a", "b", "c"]
    assert (result.cluster_table["purity"] == 1.0).all() and result.cluster_table["size"].sum() == 120


def test_shuffled_labels_are_near_chance():
    features, categories = blobs(40)
    shuffled = list(np.random.default_rng(1).permutation(categories))
    result = cluster_features(features, shuffled)
    assert result.purity < 0.5  # chance is 1/3 plus sampling noise
    assert abs(result.ari) < 0.1
    assert len(result.confused_pairs) == 3


def test_two_categories_in_one_blob_are_the_confused_pair():
    features, categories = blobs(40, names=("leather", "wood", "screw"))
    features[40:80] = features[:40] + np.random.default_rng(2).normal(scale=0.1, size=(40, 16))
    result = cluster_features(features, categories)
    (a, b, share), *rest = result.confused_pairs
    assert (a, b) == ("leather", "wood") and share > 0.3
    assert all("screw" not in pair[:2] for pair in rest)


def test_dead_encoder_features_cluster_without_warnings():
    categories = ["a"] * 10 + ["b"] * 20
    result = cluster_features(np.ones((30, 8), np.float32), categories)
    assert result.purity == pytest.approx(20 / 30) and result.ari == pytest.approx(0.0)


def test_pca_map_is_instant_and_deterministic():
    features, _ = blobs(20)
    coords = embed_2d(features, method="pca")
    assert coords.shape == (60, 2) and coords.dtype == np.float32
    assert np.array_equal(coords, embed_2d(features, method="pca"))
    with pytest.raises(ValueError, match="umap or pca"):
        embed_2d(features, method="tsne")
    dead = np.ones((30, 8), np.float32)  # umap and PCA would divide by zero variance
    assert not embed_2d(dead, method="umap").any() and not embed_2d(dead, method="pca").any()


def test_umap_map_keeps_separable_categories_apart():
    features, categories = blobs(40, dims=64)
    coords = embed_2d(features, method="umap", seed=0)
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    assert cluster_features(coords, categories).purity == 1.0


def test_balanced_quota_shares_and_redistributes():
    assert balanced_quota({"a": 100, "b": 100, "c": 100}, 30) == {"a": 10, "b": 10, "c": 10}
    assert balanced_quota({"a": 2, "b": 100, "c": 100}, 30) == {"a": 2, "b": 14, "c": 14}
    assert balanced_quota({"a": 3, "b": 4}, 100) == {"a": 3, "b": 4}


@pytest.fixture
def run(tmp_path, demo_root) -> Run:
    """An untrained checkpoint: feature extraction and caching do not care about training."""
    folder = tmp_path / "run"
    folder.mkdir()
    config = tiny_config(demo_root, folder, **{"model.depth": 2})
    config.save(folder / "config.json")
    torch.manual_seed(0)
    save_checkpoint(folder / "epoch_001.pt", {"model": UNetAutoencoder(config.model).state_dict(),
                                              "optimizer": {}, "epoch": 1, "config": config.to_dict()})
    return Run(folder)


def test_encoder_features_levels_splits_and_caps(run):
    widths = UNetAutoencoder(run.config().model).widths  # [8, 16, 32]
    found = encoder_features(run, 1)
    assert found.features.shape[1] == widths[-1] and found.features.dtype == np.float32
    assert set(found.splits) >= {"train", "test"} and set(found.category_names) == {"carpet", "bottle", "pill"}
    assert len(found.names) == len(set(found.names)) == len(found.features) == len(found.labels)
    assert set(found.labels.tolist()) == {0, 1}
    assert encoder_features(run, 1, level="all").features.shape[1] == sum(widths)
    assert encoder_features(run, 1, level=0).features.shape[1] == widths[0]
    capped = encoder_features(run, 1, max_points=9, splits=("test",))
    assert len(capped.features) == 9 and set(capped.splits) == {"test"}
    assert np.bincount(capped.category_ids).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="level 5 out of range"):
        encoder_features(run, 1, level=5)


def test_feature_clusters_and_embedding_are_cached_per_checkpoint(run, monkeypatch):
    result = feature_clusters(run, 1)
    found = encoder_features(run, 1)
    assert len(result.assignments) == len(found.features) and result.k == 3
    assert 0 < result.purity <= 1
    coords = feature_embedding(run, 1, method="pca")
    assert coords.shape == (len(found.features), 2)
    import core.diagnostics.features as features_module

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(features_module, "cluster_features", fail)
    monkeypatch.setattr(features_module, "embed_2d", fail)
    again = feature_clusters(run, 1)
    assert np.array_equal(again.assignments, result.assignments) and again.purity == result.purity
    assert again.confused_pairs == result.confused_pairs
    assert np.array_equal(feature_embedding(run, 1, method="pca"), coords)
