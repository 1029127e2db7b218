"""knn's image-first patch memory bank (SPADE): exact where it searches, compact, bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import core.scoring.patchbank as patchbank_module
from core.scoring.patchbank import PatchBank, patch_knn


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def bank_and_queries():
    rng = np.random.default_rng(0)
    normals = _unit(rng.normal(size=(12, 16, 8)))  # 12 images x 16 patches x 8 dims
    cats = ["a"] * 6 + ["b"] * 6
    bank = PatchBank.build(normals, cats, max_patches=10**6, seed=0)
    queries = _unit(normals[[0, 7]] + 0.05 * rng.normal(size=(2, 16, 8)))
    return normals, cats, bank, queries


def test_a_normal_patch_is_found_at_distance_zero(bank_and_queries):
    normals, cats, bank, _ = bank_and_queries
    dist = patch_knn(normals[[2, 9]], ["a", "b"], bank, k=1, neighbours=3)
    assert dist.shape == (2, 16)
    assert np.abs(dist).max() < 2e-3  # float16 storage: distances to itself are ~0, not exact


def test_with_every_image_retrieved_the_search_is_exhaustive(bank_and_queries):
    normals, cats, bank, queries = bank_and_queries
    dist = patch_knn(queries, ["a", "b"], bank, k=2, neighbours=100)
    for i, cat in enumerate(["a", "b"]):
        rows = np.asarray(bank.vectors, np.float32)[bank.images_of(cat)].reshape(-1, 8)
        exact = torch.cdist(torch.from_numpy(queries[i]), torch.from_numpy(rows))
        expected = exact.topk(2, largest=False).values.mean(dim=1).numpy()
        np.testing.assert_allclose(dist[i], expected, atol=1e-5)


def test_only_the_nearest_images_are_searched(bank_and_queries):
    normals, cats, bank, queries = bank_and_queries
    near = patch_knn(queries, ["a", "b"], bank, neighbours=1)
    wide = patch_knn(queries, ["a", "b"], bank, neighbours=6)
    assert np.all(wide <= near + 1e-6)  # more candidates can only bring a patch closer
    # the query made from image 0 retrieves image 0 itself: its patches are all close
    assert near[0].max() < 0.2


def test_memory_budget_chunks_give_the_same_distances(bank_and_queries, monkeypatch):
    _, _, bank, queries = bank_and_queries
    expected = patch_knn(queries, ["a", None], bank, neighbours=4)
    every = patch_knn(queries, ["a", None], bank, neighbours=0)  # exhaustive: one bank per group
    own = patch_knn(np.asarray(bank.vectors[[1, 8]], np.float32), ["a", "b"], bank, exclude=np.array([1, 8]))
    monkeypatch.setattr(patchbank_module, "DISTANCE_BUDGET_BYTES", 256)  # one row at a time
    np.testing.assert_allclose(patch_knn(queries, ["a", None], bank, neighbours=4), expected,
                               atol=1e-6)
    np.testing.assert_allclose(patch_knn(queries, ["a", None], bank, neighbours=0), every, atol=1e-6)
    np.testing.assert_allclose(patch_knn(np.asarray(bank.vectors[[1, 8]], np.float32), ["a", "b"], bank,
                                         exclude=np.array([1, 8])), own, atol=1e-6)


def test_the_cap_keeps_whole_images_seeded_and_float16(bank_and_queries):
    normals, cats, _, _ = bank_and_queries
    capped = PatchBank.build(normals, cats, max_patches=3 * 16, seed=1)
    assert capped.sizes() == {"a": 48, "b": 48}  # 3 whole images of 16 patches per category
    assert capped.vectors.dtype == np.float16 and capped.vectors.shape == (6, 16, 8)
    again = PatchBank.build(normals, cats, max_patches=3 * 16, seed=1)
    np.testing.assert_array_equal(capped.vectors, again.vectors)
    restored = PatchBank.from_record(capped.to_record())
    np.testing.assert_array_equal(restored.vectors, capped.vectors)
    assert restored.categories == ["a", "b"]


def test_an_unknown_category_is_named(bank_and_queries):
    _, _, bank, queries = bank_and_queries
    with pytest.raises(ValueError, match="no category 'zz'"):
        patch_knn(queries, ["zz", "a"], bank)


def test_a_capped_bank_encodes_only_the_images_it_keeps_and_is_the_bank_of_all(monkeypatch):
    """The images are chosen before encoding (a bank over 100,000 images encodes only its
    cap), and the bank is the one capping every image's vectors gives."""
    import core.scoring.methods as methods
    from core.config import ModelConfig
    from core.data.samples import NORMAL, ImageSet, Sample
    from core.model.unet import UNetAutoencoder
    from core.scoring.features import encoder_vectors
    from core.scoring.options import ScoreOptions

    torch.manual_seed(0)
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=3)).eval()
    images = np.random.default_rng(0).integers(0, 256, (14, 16, 16, 3), np.uint8)
    cats = ["b", "a"] * 7
    train = ImageSet([Sample(Path(f"{i}.png"), c, NORMAL, "good", "train") for i, c in enumerate(cats)],
                     images, np.zeros((14, 16, 16), np.uint8), np.zeros(14, bool))
    options = ScoreOptions(max_bank=2 * 16, seed=3)  # levels 1, 2 at 16 px: 4x4 = 16 patches
    encoded = []
    real = methods.encoder_vectors
    monkeypatch.setattr(methods, "encoder_vectors",
                        lambda model, part, *a, **k: encoded.append(len(part)) or real(model, part, *a, **k))
    bank = methods.build_feature_bank(model, train, options)
    assert sum(encoded) == 4  # two images of each category, not all 14
    everything = PatchBank.build(encoder_vectors(model, images, (1, 2), True), cats, 2 * 16, 3)
    np.testing.assert_array_equal(bank.owner, everything.owner)
    np.testing.assert_allclose(np.float32(bank.vectors), np.float32(everything.vectors), atol=1e-3)
