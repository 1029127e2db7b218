"""Pure numpy helpers that turn arrays into pictures: heatmap colouring, overlays, grids.

Everything here takes and returns plain arrays (uint8 RGB images are (H, W, 3)); nothing
computes a score or a statistic that is shown as a number. The dashboard uses these to draw
reconstructions and error maps; they are small enough to test exhaustively.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Anchor colours of perceptually ordered maps (sampled from matplotlib's definitions), so error
# maps read "dark = fine, bright = wrong" without a matplotlib dependency.
_ANCHORS = {
    "inferno": [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                (245, 125, 21), (250, 193, 39), (252, 255, 164)],
    "viridis": [(68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142), (31, 161, 135),
                (74, 194, 109), (159, 218, 58), (253, 231, 37)],
    "gray": [(0, 0, 0), (255, 255, 255)],
}
COLORMAPS = tuple(_ANCHORS)


def colormap_lut(name: str = "inferno", n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table interpolated linearly between the map's anchor colours."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; known: {', '.join(COLORMAPS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    xs = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, n)
    lut = np.stack([np.interp(t, xs, anchors[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def display_range(maps: np.ndarray | Sequence[np.ndarray], upper_percentile: float = 99.5
                  ) -> tuple[float, float]:
    """(low, high) colour range shared by a set of maps, so images can be compared by eye.

    low is 0 for non-negative maps (an error of 0 stays black), else the minimum; high is a
    high percentile rather than the maximum, so one hot pixel does not wash the rest out.
    Non-finite values are ignored; an empty or constant set gives (low, low + 1).
    """
    values = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps]) \
        if isinstance(maps, (list, tuple)) else np.asarray(maps, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low = 0.0 if values.min() >= 0 else float(values.min())
    high = float(np.percentile(values, upper_percentile))
    if not high > low:
        high = float(values.max())
    if not high > low:
        high = low + 1.0
    return low, high


def normalize_map(error_map: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) values -> float32 in [0, 1] over [low, high]; non-finite values become 0."""
    m = np.asarray(error_map, dtype=np.float64)
    span = high - low if high > low else 1.0
    out = np.clip((m - low) / span, 0.0, 1.0)
    out[~np.isfinite(out)] = 0.0
    return out.astype(np.float32)


def heatmap_rgb(error_map: np.ndarray, low: float | None = None, high: float | None = None,
                colormap: str = "inferno") -> np.ndarray:
    """(H, W) map -> (H, W, 3) uint8 colours; the range defaults to `display_range` of the map."""
    if low is None or high is None:
        auto_low, auto_high = display_range(error_map)
        low = auto_low if low is None else low
        high = auto_high if high is None else high
    index = np.rint(normalize_map(error_map, low, high) * 255).astype(np.int64)
    return colormap_lut(colormap)[index]


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W) or (H, W, C): maps keep their blocky truth."""
    img = np.asarray(image)
    rows = np.minimum((np.arange(height) * img.shape[0]) // height, img.shape[0] - 1)
    cols = np.minimum((np.arange(width) * img.shape[1]) // width, img.shape[1] - 1)
    return img[rows][:, cols]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any image array -> (H, W, 3) uint8.

    Accepts uint8 (H, W), (H, W, 1|3); float in [0, 1] as (H, W, C) or channel-first (C, H, W).
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(np.nan_to_num(img.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (H, W), (H, W, 1|3) or (1|3, H, W), got {img.shape}")
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def overlay_heatmap(image: np.ndarray, error_map: np.ndarray, opacity: float = 0.5,
                    low: float | None = None, high: float | None = None,
                    colormap: str = "inferno") -> np.ndarray:
    """The image with the coloured map laid over it, (H, W, 3) uint8.

    opacity 0 shows the image, 1 the heatmap. The map is resized (nearest) to the image when
    their sizes differ.
    """
    base = as_rgb_uint8(image)
    m = np.asarray(error_map)
    if m.shape[:2] != base.shape[:2]:
        m = resize_nearest(m, base.shape[0], base.shape[1])
    heat = heatmap_rgb(m, low, high, colormap)
    return blend(base, heat, opacity)


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1 - t) * a + t * b for two same-shaped uint8 images, t clipped to [0, 1]."""
    a8, b8 = as_rgb_uint8(a), as_rgb_uint8(b)
    if a8.shape != b8.shape:
        raise ValueError(f"cannot blend images of shapes {a8.shape} and {b8.shape}")
    t = float(np.clip(t, 0.0, 1.0))
    mixed = a8.astype(np.float32) * (1.0 - t) + b8.astype(np.float32) * t
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def wipe(before: np.ndarray, after: np.ndarray, position: float,
         line_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Before/after comparison: `before` left of the cut, `after` right of it, with a thin line.

    position in [0, 1] is the cut as a fraction of the width (0 = all `after`).
    """
    a8, b8 = as_rgb_uint8(before), as_rgb_uint8(after)
    if a8.shape != b8.shape:
        raise ValueError(f"cannot compare images of shapes {a8.shape} and {b8.shape}")
    width = a8.shape[1]
    cut = int(round(float(np.clip(position, 0.0, 1.0)) * width))
    out = b8.copy()
    out[:, :cut] = a8[:, :cut]
    if 0 < cut < width:
        out[:, max(0, cut - 1):cut + 1] = line_color
    return out


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of a mask that touch a pixel outside it (4-neighbourhood)."""
    m = np.asarray(mask) > 0
    if not m.any():
        return np.zeros_like(m)
    padded = np.pad(m, 1, mode="constant", constant_values=False)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return m & ~inner


def draw_outline(image: np.ndarray, mask: np.ndarray,
                 color: tuple[int, int, int] = (0, 230, 118)) -> np.ndarray:
    """The image with the mask's outline drawn in `color` (ground truth on top of an input)."""
    out = as_rgb_uint8(image).copy()
    edge = mask_outline(mask)
    if edge.shape != out.shape[:2]:
        edge = mask_outline(resize_nearest(np.asarray(mask) > 0, out.shape[0], out.shape[1]))
    out[edge] = color
    return out


def image_row(images: Sequence[np.ndarray], gap: int = 2,
              gap_value: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Images of the same height side by side with `gap` pixels between them."""
    return image_grid(images, columns=max(1, len(images)), gap=gap, gap_value=gap_value)


def image_grid(images: Sequence[np.ndarray], columns: int, gap: int = 2,
               gap_value: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Images into one (rows x columns) picture; every cell has the size of the largest image.

    Smaller images are placed top-left in their cell; empty cells are `gap_value`. Returns a
    (1, 1, 3) picture for an empty list.
    """
    tiles = [as_rgb_uint8(img) for img in images]
    fill = np.asarray(gap_value, dtype=np.uint8)
    if not tiles:
        return np.full((1, 1, 3), fill, dtype=np.uint8)
    if columns < 1:
        raise ValueError("columns must be at least 1")
    cell_h = max(t.shape[0] for t in tiles)
    cell_w = max(t.shape[1] for t in tiles)
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    height = rows * cell_h + (rows - 1) * gap
    width = columns * cell_w + (columns - 1) * gap
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = fill
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = r * (cell_h + gap), c * (cell_w + gap)
        out[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return out


def upscale(image: np.ndarray, min_side: int) -> np.ndarray:
    """Integer nearest-neighbour upscaling until the shorter side is at least min_side.

    Small (32-64 px) images otherwise get smoothed by the browser, which hides the pixels an
    error map points at.
    """
    img = as_rgb_uint8(image)
    factor = max(1, -(-min_side // max(1, min(img.shape[:2]))))
    if factor == 1:
        return img
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def relative_log10(values: np.ndarray) -> np.ndarray:
    """Colour values for a (rows, columns) table of positive numbers: log10 of each entry over
    its row's first finite entry, so a row that shrinks over the columns turns negative.

    Meant for colouring only (e.g. a layer x epoch heatmap where vanishing layers should stand
    out whatever their absolute scale); the numbers shown stay the table's own. Entries that are
    not finite and positive, and rows without such a first entry, give NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"expected a 2-D table, got shape {v.shape}")
    valid = np.isfinite(v) & (v > 0)
    out = np.full(v.shape, np.nan)
    for r in range(v.shape[0]):
        first = np.flatnonzero(valid[r])
        if first.size:
            out[r, valid[r]] = np.log10(v[r, valid[r]] / v[r, first[0]])
    return out
