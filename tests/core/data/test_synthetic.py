"""Synthetic anomalies: exact masks, never empty, deterministic, sane areas."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.data.synthetic import (
    FORCED_DELTA,
    SYNTHETIC_KINDS,
    cutpaste,
    cutpaste_scar,
    make_synthetic_set,
    perlin_blend,
    perlin_noise,
    texture_damage,
)

KINDS = sorted(SYNTHETIC_KINDS)


def smooth_texture(seed: int, size: int = 48, gray: bool = False) -> np.ndarray:
    """A random smooth colour texture: upsampled low-res noise plus fine grain."""
    rng = np.random.default_rng(seed)
    channels = 1 if gray else 3
    low = rng.uniform(0, 255, size=(size // 6, size // 6, channels)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, -1)
    img = img + rng.normal(0, 6, size=(size, size, channels))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img, 3, axis=-1) if gray else img


def check(image: np.ndarray, out: np.ndarray, mask: np.ndarray) -> None:
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
    assert set(np.unique(mask).tolist()) <= {0, 1}
    np.testing.assert_array_equal(mask.astype(bool), np.any(out != image, axis=-1))
    assert mask.sum() > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("gray", [False, True])
def test_mask_equals_changed_pixels(kind, gray):
    fn = SYNTHETIC_KINDS[kind]
    for seed in range(8):
        image = smooth_texture(seed, size=40 + 8 * (seed % 3), gray=gray)
        before = image.copy()
        out, mask = fn(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(image, before)  # input untouched
        check(image, out, mask)
        if gray:  # a grey input stays grey: no colour tint a detector could key on
            assert np.array_equal(out[..., 0], out[..., 1])
            assert np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_seed_dependent(kind):
    fn = SYNTHETIC_KINDS[kind]
    image = smooth_texture(3)
    a = fn(image, np.random.default_rng(11))
    b = fn(image, np.random.default_rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = fn(image, np.random.default_rng(12))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [0, 128, 255])
def test_never_empty_on_constant_and_near_constant(kind, value):
    fn = SYNTHETIC_KINDS[kind]
    const = np.full((32, 32, 3), value, dtype=np.uint8)
    wobble = np.random.default_rng(value).integers(-1, 2, size=const.shape)
    near = np.clip(const.astype(int) + wobble, 0, 255).astype(np.uint8)
    for seed in range(50):
        for image in (const, near):
            out, mask = fn(image, np.random.default_rng(seed))
            check(image, out, mask)


def test_constant_image_without_jitter_forces_a_visible_change():
    image = np.full((32, 32, 3), 100, dtype=np.uint8)
    out, mask = cutpaste(image, np.random.default_rng(0), color_jitter=0.0)
    check(image, out, mask)
    diff = np.abs(out.astype(int) - image.astype(int))
    assert np.all(diff[mask > 0] == FORCED_DELTA)
    # the forced region is the last pasted patch: within the cut-paste area bounds
    assert mask.mean() <= 0.10 * 1.3


def test_cutpaste_area_bounds():
    for seed in range(20):
        image = smooth_texture(seed, size=64)
        _, mask = cutpaste(image, np.random.default_rng(seed), area=(0.04, 0.08))
        assert 0.04 * 0.4 <= mask.mean() <= 0.08 * 1.3
        _, mask = cutpaste(image, np.random.default_rng(seed), rotate=False, area=(0.04, 0.08))
        assert mask.mean() <= 0.08 * 1.1


def test_scar_is_thin_and_long():
    for seed in range(20):
        image = smooth_texture(seed, size=64)
        _, mask = cutpaste_scar(image, np.random.default_rng(seed))
        ys, xs = np.nonzero(mask)
        extent = max(np.ptp(ys), np.ptp(xs)) + 1
        # at 64 px: width <= 16 * 64 / 256 = 4 px, length <= 16 px; rotation adds < width
        assert extent <= 16 + 4 + 1
        assert mask.sum() <= 4 * 16 * 1.5


@pytest.mark.parametrize("mode", ["shuffle", "blur", "noise"])
def test_texture_damage_modes_and_area(mode):
    for seed in range(15):
        image = smooth_texture(seed, size=64)
        out, mask = texture_damage(image, np.random.default_rng(seed), area=(0.04, 0.08), mode=mode)
        check(image, out, mask)
        assert mask.mean() <= 0.08 * 1.5
        if mode == "noise":
            assert mask.mean() >= 0.04 * 0.5


def test_texture_damage_rejects_unknown_mode():
    with pytest.raises(ValueError):
        texture_damage(smooth_texture(0), np.random.default_rng(0), mode="melt")


def test_perlin_noise_shape_range_and_determinism():
    n = perlin_noise((40, 56), (4, 8), np.random.default_rng(0))
    assert n.shape == (40, 56) and n.dtype == np.float64
    assert np.abs(n).max() <= 1.0 + 1e-9
    assert n.std() > 0.05
    np.testing.assert_array_equal(n, perlin_noise((40, 56), (4, 8), np.random.default_rng(0)))
    # zero on lattice points when the shape is a multiple of res
    assert np.allclose(n[::10, ::7], 0.0)


def test_perlin_blend_region_follows_threshold():
    image = smooth_texture(5, size=64)
    low = [
        perlin_blend(image, np.random.default_rng(s), threshold=0.2)[1].mean() for s in range(10)
    ]
    high = [
        perlin_blend(image, np.random.default_rng(s), threshold=0.6)[1].mean() for s in range(10)
    ]
    assert np.mean(low) > np.mean(high)


def test_make_synthetic_set():
    images = np.stack([smooth_texture(s, size=32) for s in range(6)])
    out, masks, kinds = make_synthetic_set(images, seed=7)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert masks.shape == images.shape[:3] and masks.dtype == np.uint8
    assert kinds == ["cutpaste", "scar", "texture", "perlin", "cutpaste", "scar"]
    for i in range(len(images)):
        check(images[i], out[i], masks[i])
    again = make_synthetic_set(images, seed=7)
    np.testing.assert_array_equal(out, again[0])
    np.testing.assert_array_equal(masks, again[1])
    other = make_synthetic_set(images, seed=8)
    assert not np.array_equal(out, other[0])
    # per-index rng: image i does not depend on the other images
    single, single_mask, _ = make_synthetic_set(images[:1], seed=7)
    np.testing.assert_array_equal(single[0], out[0])
    np.testing.assert_array_equal(single_mask[0], masks[0])
    _, _, only = make_synthetic_set(images[:3], seed=7, kinds=("perlin",))
    assert only == ["perlin"] * 3


def test_make_synthetic_set_validates():
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError):
        make_synthetic_set(images, 0, kinds=("nope",))
    with pytest.raises(ValueError):
        make_synthetic_set(images.astype(np.float32), 0)
    out, masks, kinds = make_synthetic_set(images[:0], 0)
    assert out.shape == (0, 16, 16, 3) and masks.shape == (0, 16, 16) and kinds == []


def test_rejects_bad_images():
    with pytest.raises(ValueError):
        cutpaste(np.zeros((16, 16), dtype=np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError):
        cutpaste(np.zeros((16, 16, 3), dtype=np.float32), np.random.default_rng(0))
