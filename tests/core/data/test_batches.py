"""Augmented batches: the prefetch thread keeps the old seeded stream; worker processes give
batches that do not depend on how many workers made them."""

import numpy as np
import pytest

from core.runs.checkpoint import load_checkpoint
from core.config import AugmentConfig
from core.data.augment import augment_batch, build_augmentation
from core.data.batches import AugmentedBatches

AUGMENT = AugmentConfig(hflip_p=0.5, rotate90_p=0.5, dropout_p=1.0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)


BATCHES = [np.array([3, 1, 4, 0]), np.array([5, 9, 2, 6]), np.array([11, 7, 8, 10])]


def test_prefetch_thread_draws_the_single_pipeline_in_batch_order(images):
    expected_pipeline = build_augmentation(AUGMENT, 32, seed=7)
    expected = [augment_batch(expected_pipeline, images[b]) for b in BATCHES]
    with AugmentedBatches(images, BATCHES, build_augmentation(AUGMENT, 32, seed=7), workers=0) as stream:
        got = list(stream)
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    assert not np.array_equal(got[0], images[BATCHES[0]])  # it did augment


def test_worker_processes_give_the_same_batches_for_any_worker_count(images):
    def run(workers):
        with AugmentedBatches(images, BATCHES, build_augmentation(AUGMENT, 32, seed=7), workers, seed=7) as s:
            return list(s)

    one, two = run(1), run(2)
    assert len(two) == 3 and all(b.dtype == np.uint8 and b.shape == (4, 32, 32, 3) for b in two)
    assert all(np.array_equal(a, b) for a, b in zip(one, two, strict=True))
    assert not np.array_equal(two[0], images[BATCHES[0]])


def test_no_augmentation_passes_images_through(images):
    with AugmentedBatches(images, BATCHES, None, workers=1) as stream:
        assert all(np.array_equal(a, images[b]) for a, b in zip(stream, BATCHES, strict=True))
    with pytest.raises(ValueError, match="workers"):
        AugmentedBatches(images, BATCHES, None, workers=-1)


def test_training_with_worker_processes_does_not_depend_on_their_number(demo_root, tmp_path):
    from core.training.loop import train_one
    from tests.conftest import tiny_config

    weights = []
    for workers in (1, 2):
        config = tiny_config(demo_root, tmp_path / f"w{workers}", epochs=1, categories=["pill"],
                             workers=workers, **{"augment.dropout_p": 1.0})
        run = train_one(config, progress=False, log=lambda _: None)
        weights.append(load_checkpoint(run.checkpoint_path(1))["model"])
    assert all(np.array_equal(weights[0][k].numpy(), weights[1][k].numpy()) for k in weights[0])


def test_a_memory_mapped_set_reaches_the_workers_as_its_file_and_gives_the_same_batches(images, tmp_path):
    images.tofile(tmp_path / "images.u8")
    mapped = np.memmap(tmp_path / "images.u8", np.uint8, "r", shape=images.shape)

    def run(source):
        with AugmentedBatches(source, BATCHES, build_augmentation(AUGMENT, 32, seed=7), 1, seed=7) as s:
            return list(s)

    assert all(np.array_equal(a, b) for a, b in zip(run(mapped), run(images), strict=True))
