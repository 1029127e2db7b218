"""Synthetic anomalies, for validating a detector on data that has no labelled defects.

A reconstruction model trained on normals only needs *some* anomalous images to choose an
epoch, a threshold or a score; when the dataset has none, we fabricate them from the normals
themselves. Every generator here has the same contract:

    fn(image, rng, **params) -> (anomalous, mask)

image: (H, W, 3) uint8. anomalous: (H, W, 3) uint8, a new array. mask: (H, W) uint8 in {0, 1}.

Two guarantees matter for honest pixel metrics:

* The mask is nonzero EXACTLY where some channel of the output differs from the input. A
  paste that copies identical pixels (repeating texture, flat background, a grey image) marks
  nothing there, so a detector is never asked to find a change that does not exist.
* The anomaly is never empty. Each generator retries with fresh random parameters (drawn from
  the same `rng`, so results stay deterministic for a seed); if after `MAX_TRIES` attempts still
  nothing changed -- e.g. a perfectly constant image, where cut-paste without colour jitter,
  blur, or self-blending cannot alter a single value -- the region of the last attempt is
  forced to change by shifting every channel by `FORCED_DELTA` grey levels (up for dark pixels,
  down for bright ones). That is the documented behaviour on constant images.

Nothing here draws from outside the image: no external texture set, no files, no network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

MAX_TRIES = 10
FORCED_DELTA = 48
DAMAGE_MODES = ("shuffle", "blur", "noise")

Attempt = Callable[[], tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- helpers


def _check_image(image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("image must be a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
    return int(image.shape[0]), int(image.shape[1])


def _changed(image: np.ndarray, out: np.ndarray) -> np.ndarray:
    """(H, W) bool: any channel differs."""
    return np.any(out != image, axis=-1)


def _force_change(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Shift every channel inside `region` by FORCED_DELTA, away from the nearer bound."""
    img = image.astype(np.int16)
    shifted = np.where(img < 128, img + FORCED_DELTA, img - FORCED_DELTA)
    return np.where(region[..., None], shifted, img).astype(np.uint8)


def _fallback_region(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    side = max(1, min(h, w) // 8)
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    region = np.zeros((h, w), dtype=bool)
    region[y : y + side, x : x + side] = True
    return region


def _nonempty(image: np.ndarray, rng: np.random.Generator, attempt: Attempt):
    """Run `attempt` until it changes a pixel; force a change after MAX_TRIES failures.

    attempt() -> (out (H, W, 3) uint8, region (H, W) bool): region is where it wrote.
    Returns (out, mask) with mask == any-channel difference, uint8 {0, 1}, never empty.
    """
    last_region = None
    for _ in range(MAX_TRIES):
        out, region = attempt()
        changed = _changed(image, out)
        if changed.any():
            return out, changed.astype(np.uint8)
        if region.any():
            last_region = region
    if last_region is None:
        last_region = _fallback_region(image.shape[0], image.shape[1], rng)
    out = _force_change(image, last_region)
    return out, _changed(image, out).astype(np.uint8)


def _log_uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    lo, hi = float(bounds[0]), float(bounds[1])
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _rect_size(h, w, rng, area, aspect) -> tuple[int, int]:
    """Patch (height, width) covering a fraction `area` of the image with h/w ratio `aspect`."""
    pixels = rng.uniform(area[0], area[1]) * h * w
    ratio = _log_uniform(rng, aspect)
    ph = int(np.clip(round(np.sqrt(pixels * ratio)), 1, h))
    pw = int(np.clip(round(np.sqrt(pixels / ratio)), 1, w))
    return ph, pw


def _is_gray(image: np.ndarray) -> bool:
    """All channels equal: a grey image stored as RGB (many MVTec categories)."""
    return bool(
        np.array_equal(image[..., 0], image[..., 1])
        and np.array_equal(image[..., 0], image[..., 2])
    )


def _color_jitter(
    patch: np.ndarray, rng: np.random.Generator, strength: float, gray: bool
) -> np.ndarray:
    """Saturation, contrast, brightness and per-channel gain, each within +-strength.

    gray: use one gain for all channels, so a grey image never gets an unnatural tint.
    """
    if strength <= 0:
        return patch
    p = patch.astype(np.float32)
    s, c, b = rng.uniform(-strength, strength, size=3)
    gains = 1.0 + rng.uniform(-strength, strength, size=3).astype(np.float32)
    if gray:
        gains[:] = gains[0]
    lum = p.mean(axis=-1, keepdims=True)
    p = lum + (1.0 + s) * (p - lum)
    mean = p.mean()
    p = (p - mean) * (1.0 + c) + mean
    p = p * gains + b * 255.0
    return np.clip(np.rint(p), 0, 255).astype(np.uint8)


def _rotate(patch: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (h, w, 3) patch by `angle` degrees into its bounding box.

    Returns (rotated (H', W', 3) uint8, footprint (H', W') bool): where the patch landed.
    """
    h, w = patch.shape[:2]
    rad = np.deg2rad(angle)
    cos, sin = abs(np.cos(rad)), abs(np.sin(rad))
    nw = max(1, int(np.ceil(h * sin + w * cos)))
    nh = max(1, int(np.ceil(h * cos + w * sin)))
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle), 1.0)
    m[0, 2] += nw / 2.0 - w / 2.0
    m[1, 2] += nh / 2.0 - h / 2.0
    rotated = cv2.warpAffine(
        np.ascontiguousarray(patch),
        m,
        (nw, nh),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    ones = np.ones((h, w), dtype=np.uint8)
    foot = cv2.warpAffine(
        ones, m, (nw, nh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    if not foot.any():  # a sub-pixel patch can vanish; keep it unrotated instead
        return patch, np.ones((h, w), dtype=bool)
    return rotated, foot > 0


def _paste(image, rng, patch, foot):
    """Paste `patch` where `foot` is True at a random position that keeps it inside."""
    h, w = image.shape[:2]
    ph, pw = foot.shape
    if ph > h or pw > w:  # centre-crop a rotated box that outgrew the image
        y0, x0 = max(0, (ph - h) // 2), max(0, (pw - w) // 2)
        patch, foot = patch[y0 : y0 + h, x0 : x0 + w], foot[y0 : y0 + h, x0 : x0 + w]
        ph, pw = foot.shape
    y = int(rng.integers(0, h - ph + 1))
    x = int(rng.integers(0, w - pw + 1))
    region = np.zeros((h, w), dtype=bool)
    region[y : y + ph, x : x + pw] = foot
    canvas = np.zeros_like(image)
    canvas[y : y + ph, x : x + pw] = patch
    return np.where(region[..., None], canvas, image), region


def _cut_paste_once(image, rng, ph, pw, angle, color_jitter, gray):
    h, w = image.shape[:2]
    y = int(rng.integers(0, h - ph + 1))
    x = int(rng.integers(0, w - pw + 1))
    patch = _color_jitter(image[y : y + ph, x : x + pw], rng, color_jitter, gray)
    if angle:
        patch, foot = _rotate(patch, angle)
    else:
        foot = np.ones((ph, pw), dtype=bool)
    return _paste(image, rng, patch, foot)


# --------------------------------------------------------------------------- cut-paste


def cutpaste(
    image: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.10),
    aspect: tuple[float, float] = (0.3, 3.3),
    rotate: bool = True,
    color_jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste (Li et al. 2021): a rectangle of the image, pasted somewhere else.

    Why: a local discontinuity made of in-distribution texture is the hardest kind of defect
    for a reconstruction model, which tends to reproduce anything that looks familiar.
    area: patch area as a fraction of H*W (before rotation). aspect: height/width range,
    sampled log-uniformly. rotate: random angle in [-45, 45) degrees. color_jitter: strength
    of saturation/contrast/brightness/per-channel-gain changes (0 disables).
    image (H, W, 3) uint8 -> (out (H, W, 3) uint8, mask (H, W) uint8 {0, 1}).
    """
    h, w = _check_image(image)
    gray = _is_gray(image)

    def attempt():
        ph, pw = _rect_size(h, w, rng, area, aspect)
        angle = float(rng.uniform(-45.0, 45.0)) if rotate else 0.0
        return _cut_paste_once(image, rng, ph, pw, angle, color_jitter, gray)

    return _nonempty(image, rng, attempt)


def cutpaste_scar(
    image: np.ndarray,
    rng: np.random.Generator,
    width: tuple[float, float] = (2.0, 16.0),
    length: tuple[float, float] = (0.10, 0.25),
    angle: tuple[float, float] = (-90.0, 90.0),
    color_jitter: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste-scar: a thin, long patch pasted at a random angle (scratch-like defects).

    width: pixels at a 256-px image, scaled by min(H, W) / 256 (at least 1 px).
    length: fraction of min(H, W) (at least 2 px). angle: degrees, uniform.
    image (H, W, 3) uint8 -> (out (H, W, 3) uint8, mask (H, W) uint8 {0, 1}).
    """
    h, w = _check_image(image)
    gray = _is_gray(image)
    side = min(h, w)

    def attempt():
        pw = max(1, int(round(rng.uniform(*width) * side / 256.0)))
        ph = int(np.clip(round(rng.uniform(*length) * side), 2, h))
        pw = min(pw, w)
        theta = float(rng.uniform(*angle))
        return _cut_paste_once(image, rng, ph, pw, theta, color_jitter, gray)

    return _nonempty(image, rng, attempt)


# --------------------------------------------------------------------------- texture damage


def _rect_region(h, w, rng, pixels) -> np.ndarray:
    ratio = _log_uniform(rng, (0.5, 2.0))
    rh = int(np.clip(round(np.sqrt(pixels * ratio)), 1, h))
    rw = int(np.clip(round(np.sqrt(pixels / ratio)), 1, w))
    y = int(rng.integers(0, h - rh + 1))
    x = int(rng.integers(0, w - rw + 1))
    region = np.zeros((h, w), dtype=bool)
    region[y : y + rh, x : x + rw] = True
    return region


def _blob_region(h, w, rng, pixels) -> np.ndarray:
    """A star-shaped blob: an ellipse whose radius wobbles with a few random harmonics."""
    ratio = _log_uniform(rng, (0.5, 2.0))
    ry = np.sqrt(pixels * ratio / np.pi)
    rx = np.sqrt(pixels / ratio / np.pi)
    amps = rng.uniform(0.0, 0.15, size=3)
    phases = rng.uniform(0.0, 2 * np.pi, size=3)
    reach = 1.0 + amps.sum()
    cy = rng.uniform(min(ry * reach, h / 2), max(h - ry * reach, h / 2))
    cx = rng.uniform(min(rx * reach, w / 2), max(w - rx * reach, w / 2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = (yy + 0.5 - cy) / ry, (xx + 0.5 - cx) / rx
    theta = np.arctan2(dy, dx)
    k = np.arange(2, 5)[:, None, None]
    radius = 1.0 + np.sum(amps[:, None, None] * np.cos(k * theta + phases[:, None, None]), axis=0)
    region = np.hypot(dy, dx) <= radius
    if not region.any():
        region[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))] = True
    return region


def _shuffled_texture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image re-tiled from its own square patches drawn at random (with replacement)."""
    h, w = image.shape[:2]
    p = max(2, min(h, w) // 8)
    gh, gw = -(-h // p), -(-w // p)
    padded = np.pad(image, ((0, gh * p - h), (0, gw * p - w), (0, 0)), mode="reflect")
    tiles = padded.reshape(gh, p, gw, p, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, p, p, 3)
    # draw tiles only from fully inside the image so padding never shows up
    inner = np.arange(gh * gw).reshape(gh, gw)[: max(1, h // p), : max(1, w // p)].ravel()
    pick = tiles[rng.choice(inner, size=gh * gw)]
    out = pick.reshape(gh, gw, p, p, 3).transpose(0, 2, 1, 3, 4).reshape(gh * p, gw * p, 3)
    return out[:h, :w]


def _damaged(image: np.ndarray, rng: np.random.Generator, mode: str) -> np.ndarray:
    """Whole-image damaged version; the caller keeps it only inside the region."""
    h, w = image.shape[:2]
    if mode == "shuffle":
        return _shuffled_texture(image, rng)
    if mode == "blur":
        sigma = max(1.0, rng.uniform(0.02, 0.06) * min(h, w))
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    sigma = rng.uniform(15.0, 50.0)
    shape = (h, w, 1) if _is_gray(image) else image.shape  # grey stays grey
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, size=shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def texture_damage(
    image: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.10),
    mode: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A region whose texture is destroyed: re-tiled from the image, blurred, or noisy.

    Why: reconstruction models are often evaluated on texture categories where a defect is a
    local change of statistics rather than an object; these three cover the common cases.
    area: region area as a fraction of H*W; the region is a rectangle or a wobbly blob (coin
    flip). mode: 'shuffle' | 'blur' | 'noise', None = random choice (drawn once per call).
    image (H, W, 3) uint8 -> (out (H, W, 3) uint8, mask (H, W) uint8 {0, 1}).
    """
    h, w = _check_image(image)
    if mode is None:
        mode = str(rng.choice(DAMAGE_MODES))
    if mode not in DAMAGE_MODES:
        raise ValueError(f"mode must be one of {DAMAGE_MODES} or None, got {mode!r}")

    def attempt():
        pixels = rng.uniform(area[0], area[1]) * h * w
        shape = _rect_region if rng.random() < 0.5 else _blob_region
        region = shape(h, w, rng, pixels)
        return np.where(region[..., None], _damaged(image, rng, mode), image), region

    return _nonempty(image, rng, attempt)


# --------------------------------------------------------------------------- Perlin blend


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(
    shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """2-D gradient (Perlin) noise, vectorised; no loops over pixels.

    shape: (H, W) output size. res: (ry, rx) number of lattice cells along each axis (need not
    divide the shape). Random unit gradients sit on an (ry+1, rx+1) lattice; each pixel mixes
    the four corner dot products with the quintic fade. Returns (H, W) float64 in about
    [-1, 1] (scaled by sqrt(2)), zero on lattice points.
    """
    h, w = int(shape[0]), int(shape[1])
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(h) * (ry / h)
    x = np.arange(w) * (rx / w)
    yi, xi = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = (y - yi)[:, None], (x - xi)[None, :]
    yi, xi = yi[:, None], xi[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grads[yi + dy, xi + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - v) + corner(0, 1) * v
    bottom = corner(1, 0) * (1 - v) + corner(1, 1) * v
    return np.sqrt(2.0) * (top * (1 - u) + bottom * u)


def _self_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same image, rolled by a large random shift, maybe flipped and rotated."""
    h, w = image.shape[:2]
    src = np.roll(
        image,
        (int(rng.integers(h // 4, 3 * h // 4 + 1)), int(rng.integers(w // 4, 3 * w // 4 + 1))),
        axis=(0, 1),
    )
    if rng.random() < 0.5:
        src = src[:, ::-1]
    if rng.random() < 0.5:
        src = src[::-1]
    if h == w:
        src = np.rot90(src, k=int(rng.integers(0, 4)))
    return np.ascontiguousarray(src)


def perlin_blend(
    image: np.ndarray,
    rng: np.random.Generator,
    threshold: float = 0.5,
    beta: tuple[float, float] = (0.2, 0.8),
    source: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """DRAEM-style anomaly (Zavrtanik et al. 2021) built from the image itself.

    Why: thresholded Perlin noise gives irregular, multi-scale defect shapes; blending in a
    shifted/flipped/rotated copy of the SAME image keeps colours in-distribution (no outside
    texture set is needed or used). Lattice resolution per axis is 2**k with cells of at
    least 8 px (DRAEM's range at 256 px), the two axes at most 4x apart so shapes stay
    blob-like rather than streaks. Inside noise > threshold: out = (1 - b) * image + b * source, b ~ U(beta).
    source: another normal image of the same shape to blend in instead (it is shifted,
    flipped and rotated the same way); None = the image itself.
    image (H, W, 3) uint8 -> (out (H, W, 3) uint8, mask (H, W) uint8 {0, 1}).
    """
    h, w = _check_image(image)
    base = image if source is None else _same_shape(source, image)
    max_pow = int(np.clip(np.floor(np.log2(max(1, min(h, w) // 8))), 0, 6))

    def attempt():
        py = int(rng.integers(0, max_pow + 1))
        px = int(np.clip(py + rng.integers(-2, 3), 0, max_pow))
        res = (2**py, 2**px)
        region = perlin_noise((h, w), res, rng) > threshold
        shifted = _self_source(base, rng)
        b = rng.uniform(beta[0], beta[1])
        mixed = (1.0 - b) * image.astype(np.float32) + b * shifted.astype(np.float32)
        mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return np.where(region[..., None], mixed, image), region

    return _nonempty(image, rng, attempt)


def _same_shape(source: np.ndarray, image: np.ndarray) -> np.ndarray:
    if source.shape != image.shape or source.dtype != np.uint8:
        raise ValueError(f"source must be a uint8 image of shape {image.shape}, got "
                         f"{source.shape} {source.dtype}")
    return source


def panel(
    image: np.ndarray,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.08, 0.3),
    beta: tuple[float, float] = (0.5, 1.0),
    source: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A large panel-shaped anomaly (OmniAL, Zhao 2023): a big axis-aligned rectangle whose
    content is replaced by a blend with another normal image at another place (or, without a
    source, by the image's own re-tiled texture).

    Why: OmniAL's ablation credits large panels with most of its gain (86.7 -> 94.1 image
    AUROC) over small patches: a reconstruction network must then rebuild whole regions from
    context instead of copying them. area: fraction of H*W; beta: blend weight of the
    replacement. image (H, W, 3) uint8 -> (out (H, W, 3) uint8, mask (H, W) uint8 {0, 1}).
    """
    h, w = _check_image(image)

    def attempt():
        region = _rect_region(h, w, rng, rng.uniform(area[0], area[1]) * h * w)
        other = _shuffled_texture(image, rng) if source is None else _self_source(
            _same_shape(source, image), rng)
        b = rng.uniform(beta[0], beta[1])
        mixed = (1.0 - b) * image.astype(np.float32) + b * other.astype(np.float32)
        mixed = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return np.where(region[..., None], mixed, image), region

    return _nonempty(image, rng, attempt)


# --------------------------------------------------------------------------- sets

SYNTHETIC_KINDS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "cutpaste": cutpaste,
    "scar": cutpaste_scar,
    "texture": texture_damage,
    "perlin": perlin_blend,
    "panel": panel,
}
BLENDING_KINDS = ("perlin", "panel")  # accept source=another normal image to blend in


def make_synthetic_set(
    images: np.ndarray,
    seed: int,
    kinds: Sequence[str] = ("cutpaste", "scar", "texture", "perlin"),
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One synthetic anomaly per image, cycling through `kinds`, identical for a seed.

    Why: a fixed anomalous validation set lets epochs be compared on the same defects. Image i
    uses kind kinds[i % len(kinds)] and rng np.random.default_rng([seed, i]), so a subset or a
    reordering of kinds changes only the affected images. seed: a non-negative int.
    images (N, H, W, 3) uint8 -> (images_out (N, H, W, 3) uint8, masks (N, H, W) uint8 {0, 1},
    kinds_used list[str] of length N).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    kinds = list(kinds)
    if not kinds:
        raise ValueError("kinds must not be empty")
    unknown = [k for k in kinds if k not in SYNTHETIC_KINDS]
    if unknown:
        raise ValueError(f"unknown synthetic kinds {unknown}; known: {sorted(SYNTHETIC_KINDS)}")
    out = np.empty_like(images)
    masks = np.zeros(images.shape[:3], dtype=np.uint8)
    used: list[str] = []
    for i in range(images.shape[0]):
        kind = kinds[i % len(kinds)]
        rng = np.random.default_rng([int(seed), i])
        out[i], masks[i] = SYNTHETIC_KINDS[kind](images[i], rng)
        used.append(kind)
    return out, masks, used
