"""Decode every image once, at the run's size, into uint8 arrays.

Real data arrives as grayscale, RGBA, palette or 16-bit files of any size, and sometimes a
file is truncated or empty. Each bad file is skipped with a warning naming it, so one broken
PNG never costs the user the rest of the dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.samples import ImageSet, Sample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class BadImageWarning(UserWarning):
    """A file was skipped; the message names it and says why."""


class BadImageError(ValueError):
    """One file cannot be used; `load_image_set` turns this into a skip plus a warning."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """16-bit and float modes are rescaled to 8 bits by their actual range, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        gray = ((arr - lo) * scale).round().astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8; raises BadImageError naming the file."""
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            rgb = _to_rgb_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, BadImageError):
            raise
        raise BadImageError(f"{path}: cannot decode image ({err}); replace or remove it") from err
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def read_mask(path: Path, expected_hw: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) uint8 in {0, 1}; resized with nearest so edges stay exact."""
    try:
        with Image.open(path) as img:
            img.load()
            if (img.height, img.width) != expected_hw:
                raise BadImageError(
                    f"{path}: mask is {img.width}x{img.height} but its image is "
                    f"{expected_hw[1]}x{expected_hw[0]}; fix the mask or remove the pair"
                )
            arr = np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadImageError(f"{path}: cannot decode mask ({err}); replace or remove it") from err
    binary = (arr > 127).astype(np.uint8)
    if binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.Resampling.NEAREST))
    return binary


def _image_hw(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.height, img.width


def _decode_one(sample: Sample, size: int):
    image = read_image(sample.path, size)
    mask = None
    if sample.mask_path is not None:
        mask = read_mask(sample.mask_path, _image_hw(sample.path), size)
    return image, mask


def load_image_set(samples: Sequence[Sample], size: int, workers: int = 4) -> ImageSet:
    """Decodes all samples in parallel threads (PIL releases the GIL while decoding)."""
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    has_mask: list[bool] = []
    kept: list[Sample] = []
    skipped: list[tuple[Path, str]] = []

    def attempt(sample: Sample):
        try:
            return sample, _decode_one(sample, size), None
        except BadImageError as err:
            return sample, None, str(err)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(attempt, samples))
    for sample, decoded, error in results:
        if error is not None:
            skipped.append((sample.path, error))
            warnings.warn(f"skipped {error}", BadImageWarning, stacklevel=2)
            continue
        image, mask = decoded
        kept.append(sample)
        images.append(image)
        has_mask.append(mask is not None)
        masks.append(mask if mask is not None else np.zeros((size, size), np.uint8))
    if not kept:
        return ImageSet([], np.zeros((0, size, size, 3), np.uint8), np.zeros((0, size, size), np.uint8),
                        np.zeros(0, bool), skipped)
    return ImageSet(kept, np.stack(images), np.stack(masks), np.array(has_mask, bool), skipped)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def find_mask(candidates: Iterable[Path]) -> Path | None:
    for path in candidates:
        if path.is_file():
            return path
    return None
