"""A built-in demo dataset, so ReconScope can be tried end to end without downloading MVTec AD.

Six procedurally drawn categories in the MVTec AD layout: three textures (carpet, grid, wood)
and three objects (bottle, screw, pill). They look very different from each other, so
per-category models and cross-category views have something real to separate, and every defect
is painted onto a known clean image, so its ground-truth mask is exact rather than hand-drawn.

Each image comes from its own generator seeded by (seed, category, split/defect, index): an
image never depends on how many others were drawn or in which order, and a test can redraw the
clean version of any defective image to check its mask.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

DEMO_CATEGORIES: tuple[str, ...] = ("carpet", "grid", "wood", "bottle", "screw", "pill")
README_MARKER = "ReconScope demo data"
MIN_SIZE = 32
# Defect area as a fraction of the image: big enough to see, small enough to be a defect.
MIN_DEFECT_AREA = 0.005
MAX_DEFECT_AREA = 0.08
_MAX_TRIES = 12
TAU = 2.0 * np.pi


@dataclass(frozen=True)
class DemoSpec:
    """One source of defaults for the CLI, the tests and `generate_demo_dataset`."""

    size: int = 128
    seed: int = 0
    n_train: int = 40
    n_test_good: int = 8
    n_test_per_defect: int = 5
    categories: tuple[str, ...] = DEMO_CATEGORIES

    def __post_init__(self) -> None:
        if self.size < MIN_SIZE:
            raise ValueError(f"size must be >= {MIN_SIZE} (defects are not drawable smaller)")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if min(self.n_train, self.n_test_good, self.n_test_per_defect) < 0:
            raise ValueError("image counts must be >= 0")
        unknown = [c for c in self.categories if c not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown demo categories {unknown}; known: {list(REGISTRY)}")


@dataclass
class Scene:
    """A clean image plus what its defects need to be painted where they make sense.

    background: the layer under the texture or object (carpet backing, grid plate, table),
        with the same light and noise, so a "missing" defect reveals what would be there.
    parts: bool masks of named object parts ("object", "head", ...); empty for textures.
    center, angle, dims: the object's pose (px, radians, named lengths in px), so a defect
        can aim at the rim of a bottle or the tip of a screw.
    """

    image: np.ndarray
    background: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    center: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    dims: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.image.shape[0]


Renderer = Callable[[np.random.Generator, int], Scene]
# A defect returns a full painted image (float or uint8) and the region it may change.
DefectFn = Callable[[Scene, np.random.Generator], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- drawing helpers


@lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column grids, shared read-only: every renderer needs them."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, size: int, cells_y: int, cells_x: int = 0):
    """Band-limited noise (about unit variance): organic variation without per-pixel loops."""
    small = rng.standard_normal((cells_y, cells_x or cells_y)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _jitter(rng: np.random.Generator, rgb, amount: float) -> np.ndarray:
    """A per-image colour close to the category's, so normals vary but stay one class."""
    return np.asarray(rgb, np.float32) * rng.uniform(1 - amount, 1 + amount) + rng.normal(
        0, amount * 40, 3
    ).astype(np.float32)


def _shader(rng: np.random.Generator, size: int, noise: float, light: float):
    """Lighting gradient and sensor noise, drawn once and applied to both the image and its
    background layer, so a revealed background matches its surroundings exactly."""
    yy, xx = _coords(size)
    gy, gx = rng.uniform(-light, light, 2)
    gain = rng.uniform(1 - light / 2, 1 + light / 2) * (
        1 + gx * (xx / size - 0.5) + gy * (yy / size - 0.5)
    )
    grain = noise * rng.standard_normal((size, size, 1), np.float32)
    grain = grain + (noise / 3) * rng.standard_normal((size, size, 3), np.float32)
    gain3 = gain[..., None].astype(np.float32)

    def finish(img: np.ndarray) -> np.ndarray:
        return _to_u8(img * gain3 + grain)

    return finish


def _rotated(center, angle: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in an object's frame: u along its axis, v across it."""
    cx, cy = center
    yy, xx = _coords(size)
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    return dx * c + dy * s, -dx * s + dy * c


def _blob(rng: np.random.Generator, size: int, center, radius: float, rough: float = 0.3):
    """An irregular filled polygon: real holes, stains and chips are never perfect ellipses."""
    n = 18
    ang = np.linspace(0, TAU, n, endpoint=False) + rng.uniform(0, TAU / n)
    r = radius * (1 + rough * rng.uniform(-1, 1, n))
    aspect = rng.uniform(0.75, 1.3)
    pts = np.stack([center[0] + r * np.cos(ang) * aspect, center[1] + r * np.sin(ang) / aspect])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.rint(pts.T * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask.astype(bool)


def _stroke(rng, size: int, start, length: float, width: int, angle: float, bend: float = 0.25):
    """A wandering polyline: scratches, cracks and stray threads are never quite straight."""
    n = 8
    heading = angle + np.cumsum(rng.normal(0, bend, n))
    steps = np.stack([np.cos(heading), np.sin(heading)], 1) * (length / n)
    pts = np.vstack([np.asarray(start, np.float64), start + np.cumsum(steps, 0)])
    mask = np.zeros((size, size), np.uint8)
    cv2.polylines(mask, [np.rint(pts * 16).astype(np.int32)], False, 1, width, cv2.LINE_8, 4)
    return mask.astype(bool)


def _pick(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """A random (x, y) inside `allowed`, so a defect lands on the object, not the table."""
    flat = np.flatnonzero(allowed)
    idx = flat[rng.integers(len(flat))]
    return np.array([idx % allowed.shape[1], idx // allowed.shape[1]], np.float64)


def _interior(size: int, margin: float = 0.15) -> np.ndarray:
    """Where texture defects may be centred: away from the border so they are not clipped."""
    m = int(round(size * margin))
    allowed = np.zeros((size, size), bool)
    allowed[m : size - m, m : size - m] = True
    return allowed


def _width(size: int, frac: float, minimum: int = 1) -> int:
    return max(minimum, int(round(size * frac)))


# --------------------------------------------------------------------------- textures


def render_carpet(rng: np.random.Generator, size: int) -> Scene:
    """A basket weave: checkerboard cells of three yarn strands, alternating direction and
    colour, on a dark backing that shows through between strands (and through holes)."""
    yy, xx = _coords(size)
    period = size / rng.uniform(9.0, 10.0)
    wobble = 0.012 * size
    wx = xx + wobble * _smooth_noise(rng, size, 10) + rng.uniform(0, 2 * period)
    wy = yy + wobble * _smooth_noise(rng, size, 10) + rng.uniform(0, 2 * period)
    ci, cj = np.floor(wx / period).astype(np.int64), np.floor(wy / period).astype(np.int64)
    horizontal = (ci + cj) % 2 == 0
    across = np.where(horizontal, wy, wx) / period
    along = np.where(horizontal, wx, wy) / period
    strand = np.sin(np.pi * ((across * 3) % 1.0))
    twist = 0.82 + 0.18 * np.sin(TAU * (along * 2 + across * 3))
    cell = 1 + 0.07 * rng.standard_normal((16, 16)).astype(np.float32)
    shade = strand * twist * cell[ci % 16, cj % 16]
    yarn_a = _jitter(rng, (165, 62, 58), 0.05)
    yarn_b = _jitter(rng, (190, 140, 80), 0.05)
    yarn = np.where(horizontal[..., None], yarn_a, yarn_b) * (0.35 + 0.65 * shade[..., None])
    cover = np.clip(strand * 2.2, 0, 1)[..., None]
    backing = np.empty((size, size, 3), np.float32)
    backing[:] = _jitter(rng, (48, 38, 34), 0.05)
    img = backing * (1 - cover) + yarn * cover
    finish = _shader(rng, size, noise=5.0, light=0.15)
    return Scene(finish(img), finish(backing), center=(size / 2, size / 2))


def render_grid(rng: np.random.Generator, size: int) -> Scene:
    """A woven metal mesh: dark round wires with a highlight, over a brushed light plate."""
    yy, xx = _coords(size)
    plate_rgb = _jitter(rng, (190, 192, 196), 0.03)
    brushed = _smooth_noise(rng, size, size // 2, 4)
    plate = plate_rgb * (1 + 0.03 * brushed[..., None])
    period = size / rng.uniform(7.5, 8.5)
    half = period * 0.13
    u, v = _rotated((size / 2, size / 2), np.deg2rad(rng.uniform(-4, 4)), size)
    u = u + rng.uniform(0, period)
    v = v + rng.uniform(0, period)
    du = np.abs((u / period + 0.5) % 1.0 - 0.5) * period
    dv = np.abs((v / period + 0.5) % 1.0 - 0.5) * period
    # Over-under weave: which wire lies on top flips from crossing to crossing.
    on_top_u = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    alpha_u = np.clip(half - du + 0.5, 0, 1)
    alpha_v = np.clip(half - dv + 0.5, 0, 1)
    use_u = np.where(on_top_u, alpha_u > 0, alpha_v <= 0)
    dist = np.where(use_u, du, dv)
    alpha = np.maximum(alpha_u, alpha_v)[..., None]
    wire = (48 + 70 * np.clip(1 - (dist / half) ** 2, 0, 1))[..., None] * np.float32(
        [1.0, 1.0, 1.08]
    )
    img = plate * (1 - alpha) + wire * alpha
    finish = _shader(rng, size, noise=4.0, light=0.12)
    return Scene(finish(img), finish(plate), center=(size / 2, size / 2))


def render_wood(rng: np.random.Generator, size: int) -> Scene:
    """Vertical grain: growth rings bent by smooth noise and a bow, with fine fibre streaks."""
    yy, xx = _coords(size)
    period = size / rng.uniform(5.0, 7.0)
    bow = rng.uniform(-1.5, 1.5) * ((yy / size - rng.uniform(0.3, 0.7)) ** 2) * size
    warp = 0.05 * size * _smooth_noise(rng, size, 4) + 0.015 * size * _smooth_noise(rng, size, 9)
    ring = (xx + bow + warp) / period + rng.uniform(0, 1)
    late = (0.5 + 0.5 * np.sin(TAU * ring)) ** 3
    fibres = _smooth_noise(rng, size, max(4, size // 24), size)
    tone = np.clip(0.65 * late + 0.12 * fibres + 0.1, 0, 1)[..., None]
    light_rgb = _jitter(rng, (212, 165, 112), 0.04)
    dark_rgb = _jitter(rng, (135, 84, 45), 0.04)
    img = light_rgb * (1 - tone) + dark_rgb * tone
    finish = _shader(rng, size, noise=3.0, light=0.12)
    out = finish(img)
    return Scene(out, out.copy(), center=(size / 2, size / 2))


# --------------------------------------------------------------------------- objects


def _table(rng: np.random.Generator, size: int, rgb, amount: float) -> np.ndarray:
    """A plain surface with a soft vignette, the way objects are photographed on a belt."""
    yy, xx = _coords(size)
    r2 = ((xx / size - 0.5) ** 2 + (yy / size - 0.5) ** 2) * 2
    base = _jitter(rng, rgb, amount) * (1 - 0.2 * r2)[..., None]
    return base * (1 + 0.03 * _smooth_noise(rng, size, 6))[..., None]


def render_bottle(rng: np.random.Generator, size: int) -> Scene:
    """A bottle from above on black: dark opening, bright lip, ringed glass body, bright rim."""
    cx, cy = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    radius = 0.42 * size * rng.uniform(0.97, 1.03)
    yy, xx = _coords(size)
    rho = np.hypot(xx - cx, yy - cy) / radius
    phi = np.arctan2(yy - cy, xx - cx)
    knots = [0.0, 0.18, 0.24, 0.28, 0.31, 0.36, 0.6, 0.86, 0.9, 0.95, 1.0]
    luma = [0.12, 0.16, 0.1, 0.75, 0.95, 0.45, 0.5, 0.62, 0.95, 0.7, 0.4]
    profile = np.interp(rho, knots, luma).astype(np.float32)
    rings = 1 + 0.06 * np.sin(TAU * rho * rng.uniform(11, 13)) * (rho > 0.36)
    glint = 1 + 0.35 * np.cos(phi - rng.uniform(0, TAU)) * np.clip(rho - 0.3, 0, 1)
    glass = _jitter(rng, (150, 140, 120), 0.04)
    body = glass * (profile * rings * glint)[..., None]
    alpha = np.clip((1 - rho) * radius + 0.5, 0, 1)[..., None]
    table = _table(rng, size, (20, 20, 24), 0.05)
    img = table * (1 - alpha) + body * alpha
    finish = _shader(rng, size, noise=3.0, light=0.08)
    parts = {"object": alpha[..., 0] > 0, "body": (rho > 0.38) & (rho < 0.84)}
    return Scene(finish(img), finish(table), parts, center=(cx, cy), dims={"radius": float(radius)})


def render_screw(rng: np.random.Generator, size: int) -> Scene:
    """A screw lying on a light belt in any orientation: head, threaded shaft, pointed tip,
    round-metal shading and a soft shadow."""
    cx, cy = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
    angle = rng.uniform(0, TAU)
    length, half_w = 0.62 * size, 0.058 * size * rng.uniform(0.95, 1.05)
    head_len, head_w, tip_len = 0.1 * size, 0.11 * size, 0.13 * size
    u, v = _rotated((cx, cy), angle, size)
    u0, u1 = -length / 2, length / 2
    pitch = 0.045 * size
    thread = 0.5 + 0.5 * np.sin(TAU * (u + 0.5 * v) / pitch)
    taper = np.clip((u1 - u) / tip_len, 0, 1)
    shaft_w = half_w * taper * (1 - 0.12 * thread)
    in_shaft = (u > u0 + head_len - 1) & (u < u1)
    a_shaft = np.clip(shaft_w - np.abs(v) + 0.5, 0, 1) * in_shaft
    head_edge = np.minimum(head_w - np.abs(v), np.minimum(u - u0, u0 + head_len - u))
    a_head = np.clip(head_edge + 0.5, 0, 1)
    cyl = np.cos(np.clip(v / head_w, -1, 1) * 1.35)
    metal = _jitter(rng, (150, 150, 156), 0.05)
    shaft_rgb = (
        metal * (0.35 + 0.55 * np.cos(np.clip(v / half_w, -1, 1) * 1.3) * thread + 0.1)[..., None]
    )
    head_rgb = metal * (0.3 + 0.75 * cyl)[..., None]
    alpha = np.maximum(a_shaft, a_head)
    shadow = cv2.GaussianBlur(alpha, (0, 0), 0.025 * size)
    shadow = np.roll(shadow, (int(0.02 * size), int(0.02 * size)), axis=(0, 1))
    table = _table(rng, size, (206, 206, 200), 0.04) * (1 - 0.35 * shadow)[..., None]
    obj = np.where((a_head >= a_shaft)[..., None], head_rgb, shaft_rgb)
    img = table * (1 - alpha[..., None]) + obj * alpha[..., None]
    finish = _shader(rng, size, noise=3.0, light=0.1)
    parts = {"object": alpha > 0, "head": a_head > 0, "shaft": a_shaft > 0}
    dims = {"length": length, "half_w": half_w, "head_len": head_len, "tip_len": tip_len}
    return Scene(finish(img), finish(table), parts, (cx, cy), float(angle), dims)


def render_pill(rng: np.random.Generator, size: int) -> Scene:
    """A cream oval pill with red specks on a dark belt, domed shading and a highlight."""
    cx, cy = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    a, b = 0.4 * size * rng.uniform(0.97, 1.03), 0.24 * size * rng.uniform(0.97, 1.03)
    angle = np.deg2rad(rng.uniform(-5, 5))
    u, v = _rotated((cx, cy), angle, size)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1 - q) * b + 0.5, 0, 1)
    dome = 0.72 + 0.28 * np.sqrt(np.clip(1 - q**2, 0, 1))
    hi = np.exp(-(((u + 0.35 * a) / (0.25 * a)) ** 2 + ((v + 0.4 * b) / (0.3 * b)) ** 2))
    cream = _jitter(rng, (236, 228, 204), 0.03)
    pill = cream * dome[..., None] + 25 * hi[..., None]
    # Specks: random points inside the ellipse, grown to the speck radius in one dilation.
    n_specks = int(rng.integers(35, 55) * min(1.0, size / 128))
    r, t = 0.92 * np.sqrt(rng.uniform(0, 1, n_specks)), rng.uniform(0, TAU, n_specks)
    su, sv = r * np.cos(t) * a, r * np.sin(t) * b
    sx = np.clip(np.rint(cx + su * np.cos(angle) - sv * np.sin(angle)), 0, size - 1)
    sy = np.clip(np.rint(cy + su * np.sin(angle) + sv * np.cos(angle)), 0, size - 1)
    specks = np.zeros((size, size), np.uint8)
    specks[sy.astype(int), sx.astype(int)] = 1
    rad = int(round(size * 0.007))  # 0 (single pixels) on small images
    specks = cv2.dilate(specks, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rad + 1,) * 2))
    red = _jitter(rng, (178, 58, 52), 0.06)
    pill = np.where(specks[..., None] > 0, red * dome[..., None], pill)
    table = _table(rng, size, (38, 34, 32), 0.05)
    img = table * (1 - alpha[..., None]) + pill * alpha[..., None]
    finish = _shader(rng, size, noise=3.0, light=0.08)
    parts = {"object": alpha > 0, "inside": q < 0.85}
    dims = {"a": float(a), "b": float(b)}
    return Scene(finish(img), finish(table), parts, (cx, cy), float(angle), dims)


# --------------------------------------------------------------------------- texture defects


def _texture_blob(scene: Scene, rng, radius_frac: float, rough: float = 0.35) -> np.ndarray:
    size = scene.size
    return _blob(rng, size, _pick(rng, _interior(size)), radius_frac * size, rough)


def carpet_hole(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Yarn torn away: the backing shows, darker where the hole goes through."""
    region = _texture_blob(scene, rng, rng.uniform(0.06, 0.09), rough=0.4)
    return scene.background.astype(np.float32) * 0.6, region


def carpet_stain(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A dark brown spill that tints the yarn but keeps the weave visible through it."""
    region = _texture_blob(scene, rng, rng.uniform(0.07, 0.1))
    tint = np.float32([0.55, 0.5, 0.38]) * rng.uniform(0.85, 1.0)
    return scene.image * tint, region


def carpet_thread(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A stray pale thread lying across the weave."""
    size = scene.size
    start = _pick(rng, _interior(size, 0.25))
    region = _stroke(rng, size, start, 0.4 * size, _width(size, 0.022, 2), rng.uniform(0, TAU))
    colour = _jitter(rng, (215, 215, 225), 0.03)
    return np.broadcast_to(colour, scene.image.shape), region


def grid_broken(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Wires cut out: the bare plate shows where the mesh is missing."""
    region = _texture_blob(scene, rng, rng.uniform(0.1, 0.14), rough=0.25)
    return scene.background, region


def grid_bent(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A dent: the mesh is pushed sideways inside a round patch (a smooth local warp)."""
    size = scene.size
    cx, cy = _pick(rng, _interior(size))
    sigma = rng.uniform(0.06, 0.075) * size
    yy, xx = _coords(size)
    bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    push = rng.uniform(0.05, 0.07) * size
    direction = rng.uniform(0, TAU)
    map_x = (xx + push * np.cos(direction) * bump).astype(np.float32)
    map_y = (yy + push * np.sin(direction) * bump).astype(np.float32)
    warped = cv2.remap(scene.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warped, bump > np.exp(-2.0)


def _contamination(scene: Scene, rng, allowed: np.ndarray, radius_frac: float, colours):
    """One to three foreign particles in a colour that stands out from the surface."""
    size = scene.size
    region = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        region |= _blob(rng, size, _pick(rng, allowed), radius_frac * size * rng.uniform(0.7, 1.1))
    colour = _jitter(rng, colours[int(rng.integers(len(colours)))], 0.05)
    speckle = 1 + 0.1 * _smooth_noise(rng, size, 8)[..., None]
    return colour * speckle, region & allowed


def grid_contamination(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rust or dirt particles stuck in the mesh."""
    colours = [(140, 70, 30), (90, 60, 40)]
    return _contamination(scene, rng, _interior(scene.size), 0.055, colours)


def wood_scratch(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A gouge across the grain: lighter, raw fibres where the surface was torn."""
    size = scene.size
    region = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 3))):
        start = _pick(rng, _interior(size, 0.2))
        angle = rng.uniform(-0.6, 0.6) + (0.0 if rng.uniform() < 0.5 else np.pi)
        region |= _stroke(rng, size, start, 0.45 * size, _width(size, 0.02, 2), angle, 0.08)
    return scene.image * np.float32(1.2) + 30, region


def wood_hole(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A worm or nail hole: a near-black pit with a darkened rim."""
    size = scene.size
    center = _pick(rng, _interior(size))
    radius = rng.uniform(0.045, 0.06) * size
    rim = _blob(rng, size, center, radius * 1.45, 0.2)
    pit = _blob(rng, size, center, radius, 0.2)
    painted = np.where(pit[..., None], np.float32([38, 24, 16]), scene.image * np.float32(0.6))
    return painted, rim


def wood_color(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A discoloured patch (water or dye) that shifts the hue but keeps the grain."""
    region = _texture_blob(scene, rng, rng.uniform(0.08, 0.11))
    tint = np.float32([0.7, 0.78, 0.95]) if rng.uniform() < 0.5 else np.float32([1.0, 0.6, 0.5])
    return scene.image * tint, region


# --------------------------------------------------------------------------- object defects


def _rim_chip(scene: Scene, rng, radius_frac: float, depth: float):
    """Glass broken off the rim: the table shows through a jagged notch."""
    cx, cy = scene.center
    radius = scene.dims["radius"]
    phi = rng.uniform(0, TAU)
    at = (cx + depth * radius * np.cos(phi), cy + depth * radius * np.sin(phi))
    region = _blob(rng, scene.size, at, radius_frac * radius, rough=0.45)
    return scene.background, region & scene.parts["object"]


def bottle_broken_large(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    return _rim_chip(scene, rng, rng.uniform(0.3, 0.36), 1.0)


def bottle_broken_small(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    return _rim_chip(scene, rng, rng.uniform(0.16, 0.2), 0.95)


def bottle_contamination(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Debris inside the bottle: dark grit or a pale flake on the glass."""
    allowed = scene.parts["body"]
    return _contamination(scene, rng, allowed, 0.055, [(30, 24, 18), (215, 210, 190)])


def screw_scratch_head(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Bright tool marks across the head, where the plating was scraped off."""
    size = scene.size
    head = scene.parts["head"]
    region = np.zeros((size, size), bool)
    for _ in range(3):
        start = _pick(rng, head)
        angle = scene.angle + np.pi / 2 + rng.uniform(-0.6, 0.6) + np.pi * rng.integers(2)
        region |= _stroke(rng, size, start, 0.14 * size, _width(size, 0.03, 2), angle, 0.1)
    return scene.image * np.float32(0.4) + 150, region & head


def screw_thread_side(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A stretch of thread crushed flat: threads smeared out and darkened."""
    size, d = scene.size, scene.dims
    u, _ = _rotated(scene.center, scene.angle, size)
    span = 0.2 * size
    lo = rng.uniform(-d["length"] / 2 + d["head_len"], d["length"] / 2 - d["tip_len"] - span)
    region = scene.parts["shaft"] & (u > lo) & (u < lo + span)
    k = _width(size, 0.06, 3) | 1
    smeared = cv2.GaussianBlur(scene.image, (k, k), 0)
    return smeared * np.float32(0.7), region


def screw_missing_tip(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """The pointed end snapped off: the belt shows where the tip was."""
    u, _ = _rotated(scene.center, scene.angle, scene.size)
    cut = scene.dims["length"] / 2 - scene.dims["tip_len"] * rng.uniform(1.1, 1.5)
    return scene.background, scene.parts["object"] & (u > cut)


def pill_crack(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A dark fracture line across the coating, sometimes with a branch."""
    size = scene.size
    inside = scene.parts["inside"]
    width = _width(size, 0.025, 2)
    start = _pick(rng, inside)
    angle = scene.angle + np.pi / 2 + rng.uniform(-0.7, 0.7)
    region = _stroke(rng, size, start, 0.4 * size, width, angle, 0.45)
    if rng.uniform() < 0.6:
        region |= _stroke(rng, size, start, 0.2 * size, width, angle + np.pi, 0.45)
    return scene.image * np.float32(0.35), region & inside


def pill_contamination(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Foreign particles pressed into the pill: dark grit or brown residue."""
    colours = [(45, 40, 38), (120, 80, 40)]
    return _contamination(scene, rng, scene.parts["inside"], 0.055, colours)


def pill_color(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """A discoloured patch of coating, pink or yellow instead of cream."""
    region = _blob(rng, scene.size, _pick(rng, scene.parts["inside"]), 0.1 * scene.size, 0.3)
    tint = np.float32([1.0, 0.7, 0.72]) if rng.uniform() < 0.5 else np.float32([1.0, 0.88, 0.45])
    return scene.image * tint, region & scene.parts["object"]


# --------------------------------------------------------------------------- registry

REGISTRY: dict[str, tuple[Renderer, dict[str, DefectFn]]] = {
    "carpet": (
        render_carpet,
        {"hole": carpet_hole, "stain": carpet_stain, "thread": carpet_thread},
    ),
    "grid": (
        render_grid,
        {"broken": grid_broken, "bent": grid_bent, "contamination": grid_contamination},
    ),
    "wood": (render_wood, {"scratch": wood_scratch, "hole": wood_hole, "color": wood_color}),
    "bottle": (
        render_bottle,
        {
            "broken_large": bottle_broken_large,
            "broken_small": bottle_broken_small,
            "contamination": bottle_contamination,
        },
    ),
    "screw": (
        render_screw,
        {
            "scratch_head": screw_scratch_head,
            "thread_side": screw_thread_side,
            "missing_tip": screw_missing_tip,
        },
    ),
    "pill": (
        render_pill,
        {"crack": pill_crack, "contamination": pill_contamination, "color": pill_color},
    ),
}


def defect_names(category: str) -> list[str]:
    return list(_entry(category)[1])


def _entry(category: str) -> tuple[Renderer, dict[str, DefectFn]]:
    if category not in REGISTRY:
        raise KeyError(f"unknown demo category {category!r}; known: {list(REGISTRY)}")
    return REGISTRY[category]


# --------------------------------------------------------------------------- public API


def _key(text: str) -> int:
    """A stable integer for a name (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def sample_rngs(
    seed: int, category: str, group: str, index: int
) -> tuple[np.random.Generator, np.random.Generator]:
    """(clean_rng, defect_rng) for one image; group is "train/good", "test/good", "test/<defect>".

    Two independent streams, so the clean image of a defective sample can be redrawn alone.
    """
    clean, defect = np.random.SeedSequence([seed, _key(category), _key(group), index]).spawn(2)
    return np.random.default_rng(clean), np.random.default_rng(defect)


def render_scene(category: str, rng: np.random.Generator, size: int) -> Scene:
    return _entry(category)[0](rng, size)


def render_clean(category: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A defect-free (H, W, 3) uint8 RGB image of `category`."""
    return render_scene(category, rng, size).image


def apply_defect(
    category: str, defect: str, scene: Scene, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask): `scene.image` with one defect painted on, and a 0/255 mask.

    The mask is computed from the pixels (any channel differs from the clean image), so it is
    exact by construction. A draw that changes too little or too much (a thin stroke on a band
    of the same colour, a blob clipped by the rim) is redrawn from the same generator, which
    keeps the result deterministic.
    """
    defects = _entry(category)[1]
    if defect not in defects:
        raise KeyError(f"unknown defect {defect!r} for {category!r}; known: {list(defects)}")
    clean = scene.image
    for _ in range(_MAX_TRIES):
        painted, region = defects[defect](scene, rng)
        image = np.where(region[..., None], _to_u8(painted), clean)
        changed = (image != clean).any(axis=2)
        if MIN_DEFECT_AREA <= changed.mean() <= MAX_DEFECT_AREA:
            break
    return image, changed.astype(np.uint8) * 255


def demo_sample(
    category: str, group: str, index: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(clean, image, mask) for one file of the dataset; mask is None for good images."""
    clean_rng, defect_rng = sample_rngs(seed, category, group, index)
    scene = render_scene(category, clean_rng, size)
    defect = group.split("/", 1)[1]
    if defect == "good":
        return scene.image, scene.image, None
    image, mask = apply_defect(category, defect, scene, defect_rng)
    return scene.image, image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    if not cv2.imwrite(str(path), data):
        raise OSError(f"could not write {path}")


def _prepare(out: Path, categories: tuple[str, ...]) -> None:
    """Clear categories from an earlier demo run (so counts match); never touch other data."""
    ours = (out / "README.txt").is_file() and (out / "README.txt").read_text(
        encoding="utf-8"
    ).startswith(README_MARKER)
    for category in categories:
        folder = out / category
        if not folder.exists():
            continue
        if not ours:
            raise FileExistsError(f"{folder} exists and is not ReconScope demo data")
        shutil.rmtree(folder)


def _write_category(out: Path, category: str, spec: DemoSpec) -> dict:
    groups = [("train", "good", spec.n_train), ("test", "good", spec.n_test_good)]
    groups += [("test", d, spec.n_test_per_defect) for d in defect_names(category)]
    for split, defect, count in groups:
        for i in range(count):
            _, image, mask = demo_sample(category, f"{split}/{defect}", i, spec.size, spec.seed)
            _write_png(out / category / split / defect / f"{i:03d}.png", image)
            if mask is not None:
                _write_png(out / category / "ground_truth" / defect / f"{i:03d}_mask.png", mask)
    defects = {d: spec.n_test_per_defect for d in defect_names(category)}
    return {"train": spec.n_train, "test_good": spec.n_test_good, "defects": defects}


def _readme(spec: DemoSpec) -> str:
    lines = [
        f"{README_MARKER}: synthetic, procedurally generated images in the MVTec AD layout.",
        "Not MVTec AD and not photographs; for trying ReconScope end to end.",
        f"seed={spec.seed} size={spec.size}",
        f"train {spec.n_train}, test good {spec.n_test_good}, "
        f"{spec.n_test_per_defect} per defect type, per category:",
    ]
    lines += [f"  {c}: {', '.join(defect_names(c))}" for c in spec.categories]
    lines.append(
        "Masks (ground_truth/<defect>/<stem>_mask.png) are 255 exactly where the defect "
        "changed the pixels of the defect-free image."
    )
    return "\n".join(lines) + "\n"


def generate_demo_dataset(out: str | Path, spec: DemoSpec = DemoSpec()) -> dict:
    """Writes the MVTec layout under out and returns a summary dict
    {category: {"train": n, "test_good": n, "defects": {name: n}}}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _prepare(out, spec.categories)
    # The marker goes first, so a run that dies halfway can still be cleared by the next one.
    (out / "README.txt").write_text(_readme(spec), encoding="utf-8")
    return {c: _write_category(out, c, spec) for c in spec.categories}
