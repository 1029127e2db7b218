"""Decode every image once, at the run's size, into uint8 arrays.

Real data arrives as grayscale, RGBA, palette or 16-bit files of any size, and sometimes a
file is truncated or empty. Each bad file is skipped with a warning naming it, so one broken
PNG never costs the user the rest of the dataset.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data.samples import ANOMALOUS, ImageSet, Sample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class BadImageWarning(UserWarning):
    """A file was skipped; the message names it and says why."""


class MaskWarning(BadImageWarning):
    """A mask was not used (its image was); the message names it and says why."""


class LeftOutWarning(UserWarning):
    """Data is left out (a category, CSV or CSV row, unlabelled images); the message names it,
    says why, and what to do."""


class BadImageError(ValueError):
    """One file cannot be used; `load_image_set` turns this into a skip plus a warning."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


# Full-scale value of each high-bit-depth mode: a pixel is scaled by its format's range, never
# by the image's own min..max (that would stretch a dark or bright defect back to normal).
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _full_scale(img: Image.Image, arr: np.ndarray) -> float:
    """The value that means white, from the pixel format: 65535 for 16-bit files and for 32-bit
    integer files holding 16-bit data (the usual case); for float data 1.0, 255 or 65535,
    whichever range holds the values. Never the image's own maximum."""
    peak = float(np.nanmax(arr)) if arr.size else 0.0
    if img.mode.startswith("I;16") or (img.mode == "I" and peak <= 65535.0):
        return 65535.0
    if img.mode == "I":
        return float(2 ** 32 - 1)
    for full in (1.0, 255.0, 65535.0):  # mode F
        if peak <= full:
            return full
    return float(np.finfo(np.float32).max)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """16-bit and float modes are scaled by their bit depth (full scale -> 255), the same for
    every image of a set, so brightness differences between images survive."""
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("pixel values are NaN or infinite; re-export the image")
        gray = np.clip(arr / _full_scale(img, arr) * 255.0, 0, 255).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


# The most pixels one file may decode to (after JPEG's decode-time downscaling): 400 Mpx is
# 1.2 GB as 8-bit RGB. This replaces PIL's own decompression-bomb limit (179 Mpx), which would
# end a run on one 14000x13000 scan; a larger file is refused by name instead.
MAX_DECODE_PIXELS = 400_000_000
_OPEN_LOCK = threading.Lock()  # PIL's bomb limit is a module global: lifted only while opening


def open_image(path: Path, size: int | None = None) -> Image.Image:
    """The file opened lazily (header only) and checked against MAX_DECODE_PIXELS; a JPEG is
    set to decode at no more than about 2*size px a side (PIL's draft). Raises BadImageError
    naming the file and its size when it is too large to decode. Close it (use `with`)."""
    with _OPEN_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            img = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    if size is not None and img.format == "JPEG":
        img.draft(img.mode, (2 * size, 2 * size))
    width, height = img.size
    if width * height > MAX_DECODE_PIXELS:
        img.close()
        raise BadImageError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} Mpx), more than the "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} Mpx one file may decode to; downscale it (or tile it) "
            "and save it again")
    return img


def upright(img: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation tag applied (phone and camera
    JPEGs store the sensor's rotation there, and labelling tools draw masks on the upright
    view). Loads the pixels."""
    img.load()
    ImageOps.exif_transpose(img, in_place=True)
    return img


def _shrunk(img: Image.Image, size: int) -> Image.Image:
    """An 8-bit image far larger than size x size box-reduced in PIL first, so a huge frame
    never becomes a full-size numpy array; the final resize still happens in read_image."""
    factor = min(img.size) // (2 * size)
    if factor > 1 and img.mode in ("L", "RGB", "RGBA", "LA"):
        return img.reduce(factor)
    return img


def read_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8, upright (EXIF orientation applied); raises BadImageError naming
    the file when it is empty, undecodable or too large (MAX_DECODE_PIXELS)."""
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes)")
        with open_image(path, size) as img:
            rgb = _to_rgb_array(_shrunk(upright(img), size))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
            Image.DecompressionBombError) as err:
        if isinstance(err, BadImageError):
            raise
        raise BadImageError(f"{path}: cannot decode image ({err}); replace or remove it") from err
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(rgb, dtype=np.uint8)


LOSSY_MASK_SUFFIXES = (".jpg", ".jpeg")  # compression noise: a mask pixel counts above half scale


def mask_to_binary(img: Image.Image, lossy: bool = False) -> np.ndarray:
    """(H, W) uint8 in {0, 1}: any non-zero pixel is defect, whatever the encoding.

    0/1, 0/255, 16-bit, palette (index 0 = background) and colour masks (any non-zero
    channel) all read alike; where a mask's alpha varies, its opaque pixels are the defect
    (transparent = background, whatever their colour). JPEG masks
    carry compression noise, so there a pixel counts as defect above half its full scale.
    """
    if img.mode == "P" and "transparency" not in img.info and not lossy:
        return (np.asarray(img) > 0).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "P"):
        arr = np.asarray(img.convert("RGBA"))
        alpha = arr[..., 3]
        if alpha.min() != alpha.max():  # transparency draws the mask: opaque = defect
            return (alpha > 0).astype(np.uint8)
        return _nonzero_channels(arr[..., :3], lossy).astype(np.uint8) * int(alpha.max() > 0)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    return _nonzero_channels(arr, lossy).astype(np.uint8)


def _nonzero_channels(arr: np.ndarray, lossy: bool) -> np.ndarray:
    values = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0)
    if lossy:
        full = 255.0 if values.max(initial=0) <= 255 else 65535.0
        return (values > full / 2).any(axis=-1)
    return (values != 0).any(axis=-1)


def read_mask(path: Path, expected_hw: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) uint8 in {0, 1} (see `mask_to_binary`); resized with nearest so edges stay
    exact. A folder of mask parts (MVTec LOCO: <stem>/000.png, 001.png) is their union.
    Raises BadImageError naming the mask when it cannot be read or its size differs."""
    if path.is_dir():
        parts = [read_mask(p, expected_hw, size) for p in list_images(path)]
        if not parts:
            raise BadImageError(f"{path}: mask folder holds no images; add the mask or remove it")
        return np.maximum.reduce(parts)
    try:
        with open_image(path) as raw:
            img = upright(raw)
            if (img.height, img.width) != expected_hw:
                turned = " (its image is rotated by an EXIF tag: draw the mask on the upright "\
                    "view, as viewers show it)" if (img.width, img.height) == expected_hw else ""
                raise BadImageError(
                    f"{path}: mask is {img.width}x{img.height} but its image is "
                    f"{expected_hw[1]}x{expected_hw[0]} as viewers show it{turned}; fix the mask "
                    "or remove the pair"
                )
            binary = mask_to_binary(img, path.suffix.lower() in LOSSY_MASK_SUFFIXES)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError,
            Image.DecompressionBombError) as err:
        if isinstance(err, BadImageError):
            raise
        raise BadImageError(f"{path}: cannot decode mask ({err}); replace or remove it") from err
    if binary.shape != (size, size):
        small = np.asarray(Image.fromarray(binary).resize((size, size), Image.Resampling.NEAREST))
        if binary.any() and not small.any():  # a defect smaller than a pixel at this size
            area = Image.fromarray(binary * 255).resize((size, size), Image.Resampling.BOX)
            small = (np.asarray(area) > 0).astype(np.uint8)
        binary = small
    return binary


def _image_hw(path: Path) -> tuple[int, int]:
    """(height, width) as viewers show the image (EXIF rotation applied), read from the header."""
    with open_image(path) as img:
        turned = img.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
        return (img.width, img.height) if turned else (img.height, img.width)


ORIENTATION_TAG = 0x0112  # EXIF Orientation; values 5-8 swap width and height
# A defect mask marking more than this share of its image is most likely inverted (defect
# black on white, as some labelling tools save masks).
INVERTED_MASK_SHARE = 0.5


def _decode_one(sample: Sample, size: int):
    """(image, mask or None, mask problem or None): a bad or empty mask costs only the mask."""
    image = read_image(sample.path, size)
    if sample.mask_path is None:
        return image, None, None
    try:
        mask = read_mask(sample.mask_path, _image_hw(sample.path), size)
    except BadImageError as err:
        return image, None, f"{err}; its image {sample.path.name} is kept for image-level metrics"
    if sample.label == ANOMALOUS and not mask.any():
        return image, None, (
            f"{sample.mask_path}: mask of defect image {sample.path.name} is empty (no non-zero "
            "pixel); the image counts at image level only -- fix the mask"
        )
    if sample.label == ANOMALOUS and mask.mean() > INVERTED_MASK_SHARE:
        return image, None, (
            f"{sample.mask_path}: mask of defect image {sample.path.name} marks "
            f"{mask.mean():.0%} of the image, so it is most likely inverted (defect black on "
            "white); the image counts at image level only -- invert the mask (defect = white)"
        )
    return image, mask, None


# Decoding threads: PIL releases the GIL while decoding and resizing, so threads use the cores.
DECODE_WORKERS = max(2, min(8, os.cpu_count() or 1))
DECODE_CHUNK = 256  # samples in flight at once: memory stays flat however many there are

Decoded = tuple[Sample, tuple[np.ndarray, np.ndarray | None, str | None] | None, str | None]


def decode_stream(samples: Sequence[Sample], size: int,
                  workers: int = DECODE_WORKERS) -> Iterator[Decoded]:
    """(sample, (image, mask or None, mask problem or None) or None, error or None) per
    sample, in order. Decoded in parallel threads, DECODE_CHUNK at a time (the next chunk
    decodes while the caller consumes this one), so memory does not grow with the set."""
    def attempt(sample: Sample) -> Decoded:
        try:
            return sample, _decode_one(sample, size), None
        except BadImageError as err:
            return sample, None, str(err)

    samples = list(samples)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = pool.map(attempt, samples[:DECODE_CHUNK])
        for start in range(DECODE_CHUNK, len(samples) + DECODE_CHUNK, DECODE_CHUNK):
            following = pool.map(attempt, samples[start:start + DECODE_CHUNK])
            yield from pending
            pending = following


def accept(item: Decoded, skipped: list[tuple[Path, str]],
           mask_problems: list[tuple[Path, str]]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The one rule for a decoded sample: a bad file is recorded in `skipped` with a
    BadImageWarning and None comes back; a bad mask is recorded in `mask_problems` with a
    MaskWarning and the image comes back without it."""
    sample, decoded, error = item
    if error is not None:
        skipped.append((sample.path, error))
        warnings.warn(f"skipped {error}", BadImageWarning, stacklevel=3)
        return None
    image, mask, problem = decoded
    if problem is not None:
        mask_problems.append((sample.mask_path, problem))
        warnings.warn(problem, MaskWarning, stacklevel=3)
    return image, mask


def load_image_set(samples: Sequence[Sample], size: int, workers: int = DECODE_WORKERS) -> ImageSet:
    """Decodes all samples into memory in parallel threads (core.data.store keeps large sets
    on disk instead).

    A file that cannot be used is skipped with a BadImageWarning naming it; a mask that cannot
    be used (unreadable, wrong size, empty for a defect image) is dropped with a MaskWarning and
    its image stays, so image-level metrics keep every readable image.
    """
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    has_mask: list[bool] = []
    kept: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    mask_problems: list[tuple[Path, str]] = []
    for item in decode_stream(samples, size, workers):
        used = accept(item, skipped, mask_problems)
        if used is None:
            continue
        image, mask = used
        kept.append(item[0])
        images.append(image)
        has_mask.append(mask is not None)
        masks.append(mask if mask is not None else np.zeros((size, size), np.uint8))
    if not kept:
        return ImageSet([], np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.uint8),
                        np.zeros(0, bool), skipped, mask_problems)
    return ImageSet(kept, np.stack(images), np.stack(masks), np.array(has_mask, bool), skipped,
                    mask_problems)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []
