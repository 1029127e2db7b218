from __future__ import annotations

import numpy as np
import pytest

from dashboard import visual


def test_colormap_lut_runs_dark_to_bright():
    lut = visual.colormap_lut("inferno")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    brightness = lut.astype(int).sum(1)
    assert brightness[0] < 20 and brightness[-1] > 600
    assert np.all(np.diff(brightness[::32]) > 0)
    with pytest.raises(ValueError, match="unknown colormap"):
        visual.colormap_lut("rainbow")


def test_display_range_ignores_hot_pixels_and_nan():
    maps = np.zeros((4, 10, 10))
    maps[..., :5] = 0.2
    maps[0, 0, 0] = 100.0
    maps[1, 1, 1] = np.nan
    low, high = visual.display_range(maps)
    assert low == 0.0 and high == pytest.approx(0.2)
    assert visual.display_range([np.full((2, 2), 3.0)]) == (0.0, 3.0)
    assert visual.display_range(np.zeros((2, 2))) == (0.0, 1.0)
    assert visual.display_range(np.array([np.nan])) == (0.0, 1.0)
    low, high = visual.display_range(np.array([-2.0, -1.0, 0.0]), upper_percentile=100)
    assert (low, high) == (-2.0, 0.0)


def test_heatmap_rgb_uses_the_shared_range():
    m = np.array([[0.0, 0.5], [1.0, 2.0]])
    rgb = visual.heatmap_rgb(m, 0.0, 1.0)
    lut = visual.colormap_lut()
    assert rgb.shape == (2, 2, 3)
    assert np.array_equal(rgb[0, 0], lut[0])
    assert np.array_equal(rgb[1, 0], lut[255]) and np.array_equal(rgb[1, 1], lut[255])
    assert np.array_equal(rgb[0, 1], lut[128])
    nan_map = np.array([[np.nan, 1.0]])
    assert np.array_equal(visual.heatmap_rgb(nan_map, 0.0, 1.0)[0, 0], lut[0])


def test_as_rgb_uint8_accepts_the_shapes_we_meet():
    chw = np.ones((3, 4, 5), np.float32)
    assert visual.as_rgb_uint8(chw).shape == (4, 5, 3)
    assert visual.as_rgb_uint8(chw).max() == 255
    gray = np.full((4, 5), 7, np.uint8)
    out = visual.as_rgb_uint8(gray)
    assert out.shape == (4, 5, 3) and np.all(out == 7)
    hwc = np.zeros((3, 3, 3), np.uint8)  # ambiguous shape stays channel-last
    assert visual.as_rgb_uint8(hwc) is hwc
    with pytest.raises(ValueError, match="expected an image"):
        visual.as_rgb_uint8(np.zeros((2, 2, 2, 2)))


def test_overlay_opacity_ends_are_image_and_heatmap():
    image = np.full((8, 8, 3), 100, np.uint8)
    m = np.linspace(0, 1, 64).reshape(8, 8)
    assert np.array_equal(visual.overlay_heatmap(image, m, 0.0), image)
    assert np.array_equal(visual.overlay_heatmap(image, m, 1.0, 0.0, 1.0), visual.heatmap_rgb(m, 0.0, 1.0))
    small = visual.overlay_heatmap(image, np.ones((4, 4)), 0.5, 0.0, 1.0)  # map upsampled
    assert small.shape == (8, 8, 3)


def test_blend_and_wipe():
    a = np.zeros((4, 10, 3), np.uint8)
    b = np.full((4, 10, 3), 200, np.uint8)
    assert np.all(visual.blend(a, b, 0.5) == 100)
    assert np.all(visual.blend(a, b, 2.0) == 200)
    w = visual.wipe(a, b, 0.5, line_color=(1, 2, 3))
    assert np.all(w[:, :4] == 0) and np.all(w[:, 6:] == 200)
    assert np.array_equal(w[0, 5], [1, 2, 3])
    assert np.array_equal(visual.wipe(a, b, 0.0), b)
    assert np.array_equal(visual.wipe(a, b, 1.0), a)
    with pytest.raises(ValueError):
        visual.wipe(a, np.zeros((5, 10, 3), np.uint8), 0.5)


def test_mask_outline_is_the_border_only():
    mask = np.zeros((7, 7), np.uint8)
    mask[2:5, 2:5] = 255
    edge = visual.mask_outline(mask)
    assert edge.sum() == 8 and not edge[3, 3] and edge[2, 2]
    assert not visual.mask_outline(np.zeros((3, 3))).any()
    drawn = visual.draw_outline(np.zeros((7, 7, 3), np.uint8), mask, color=(9, 9, 9))
    assert np.all(drawn[2, 2] == 9) and np.all(drawn[3, 3] == 0)


def test_image_grid_layout():
    tiles = [np.full((4, 6, 3), i * 10, np.uint8) for i in range(5)]
    grid = visual.image_grid(tiles, columns=3, gap=1, gap_value=(255, 0, 0))
    assert grid.shape == (2 * 4 + 1, 3 * 6 + 2, 3)
    assert np.all(grid[0, 0] == 0) and np.all(grid[0, 7] == 10) and np.all(grid[5, 0] == 30)
    assert np.array_equal(grid[0, 6], [255, 0, 0])  # gap column
    assert np.array_equal(grid[-1, -1], [255, 0, 0])  # the empty sixth cell
    row = visual.image_row(tiles[:2], gap=0)
    assert row.shape == (4, 12, 3)
    assert visual.image_grid([], columns=2).shape == (1, 1, 3)
    mixed = visual.image_grid([np.zeros((2, 2, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)], 2, gap=0)
    assert mixed.shape == (4, 8, 3)
    with pytest.raises(ValueError):
        visual.image_grid(tiles, columns=0)


def test_resize_and_upscale():
    img = np.arange(4, dtype=np.uint8).reshape(2, 2)
    big = visual.resize_nearest(img, 4, 4)
    assert big.shape == (4, 4) and big[0, 0] == 0 and big[3, 3] == 3 and big[0, 3] == 1
    up = visual.upscale(np.zeros((32, 48, 3), np.uint8), 100)
    assert up.shape == (128, 192, 3)
    same = np.zeros((200, 200, 3), np.uint8)
    assert visual.upscale(same, 100) is same


def test_relative_log10_colours_shrinking_rows():
    table = np.array([[1.0, 0.1, 0.001], [np.nan, 2.0, 20.0], [0.0, -1.0, np.nan]])
    out = visual.relative_log10(table)
    assert np.allclose(out[0], [0.0, -1.0, -3.0])
    assert np.isnan(out[1, 0]) and np.allclose(out[1, 1:], [0.0, 1.0])
    assert np.all(np.isnan(out[2]))
    with pytest.raises(ValueError):
        visual.relative_log10(np.zeros(3))
