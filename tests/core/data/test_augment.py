"""Each augmentation switch must really change the images (albumentations 2 ignores bad args)."""

import numpy as np
import pytest

from core.config import AugmentConfig
from core.data.augment import augment_batch, build_augmentation


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 32, 32, 3), np.uint8)
    return np.repeat(base, 8, axis=0)


OFF = dict(hflip_p=0.0, vflip_p=0.0, rotate90_p=0.0, rotate_limit=0.0, resized_crop_p=0.0,
           dropout_p=0.0, color_jitter_p=0.0)


@pytest.mark.parametrize("switch, check", [
    ({"hflip_p": 1.0}, lambda x, y: np.array_equal(y, x[:, :, ::-1])),
    ({"vflip_p": 1.0}, lambda x, y: np.array_equal(y, x[:, ::-1])),
    ({"rotate90_p": 1.0}, lambda x, y: not np.array_equal(y, x)),
    ({"rotate_limit": 30.0}, lambda x, y: not np.array_equal(y, x)),
    ({"resized_crop_p": 1.0, "resized_crop_scale": (0.3, 0.5)}, lambda x, y: not np.array_equal(y, x)),
    ({"dropout_p": 1.0}, lambda x, y: ((y == 0).all(axis=-1) & ~(x == 0).all(axis=-1)).sum() > 10),
    ({"color_jitter_p": 1.0}, lambda x, y: not np.array_equal(y, x)),
])
def test_each_switch_takes_effect(batch, switch, check):
    config = AugmentConfig(**{**OFF, **switch})
    out = augment_batch(build_augmentation(config, 32, seed=0), batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert check(batch, out)


def test_off_means_untouched(batch):
    assert build_augmentation(AugmentConfig(enabled=False), 32) is None
    assert build_augmentation(AugmentConfig(**OFF), 32) is None
    assert augment_batch(None, batch) is batch


def test_seeded_and_input_not_modified(batch):
    config = AugmentConfig(hflip_p=0.5, rotate_limit=20, dropout_p=0.5)
    original = batch.copy()
    a = augment_batch(build_augmentation(config, 32, seed=3), batch)
    b = augment_batch(build_augmentation(config, 32, seed=3), batch)
    c = augment_batch(build_augmentation(config, 32, seed=4), batch)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(batch, original)
