"""Training augmentation with albumentations 2.x, built from `AugmentConfig`.

albumentations 2 ignores unknown or 1.x-style arguments with only a warning, so every
argument here is the 2.x name, and the tests run with warnings as errors and check that each
switch changes the output.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.config import AugmentConfig  # noqa: E402


def build_augmentation(config: AugmentConfig, size: int, seed: int = 0) -> A.Compose | None:
    """None when augmentation is off or every transform has probability 0."""
    if not config.enabled:
        return None
    transforms = []
    if config.resized_crop_p > 0:
        transforms.append(A.RandomResizedCrop(size=(size, size), scale=tuple(config.resized_crop_scale),
                                              p=config.resized_crop_p))
    if config.hflip_p > 0:
        transforms.append(A.HorizontalFlip(p=config.hflip_p))
    if config.vflip_p > 0:
        transforms.append(A.VerticalFlip(p=config.vflip_p))
    if config.rotate90_p > 0:
        transforms.append(A.RandomRotate90(p=config.rotate90_p))
    if config.rotate_limit > 0:
        transforms.append(A.Rotate(limit=config.rotate_limit, border_mode=cv2.BORDER_REFLECT_101, p=1.0))
    if config.color_jitter_p > 0:
        transforms.append(A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02,
                                        p=config.color_jitter_p))
    if config.dropout_p > 0:
        transforms.append(A.CoarseDropout(num_holes_range=tuple(config.dropout_holes),
                                          hole_height_range=tuple(config.dropout_size),
                                          hole_width_range=tuple(config.dropout_size),
                                          fill=0, p=config.dropout_p))
    if not transforms:
        return None
    return A.Compose(transforms, seed=seed)


def augment_batch(pipeline: A.Compose | None, images: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> same shape; the input is never modified."""
    if pipeline is None:
        return images
    return np.stack([pipeline(image=image)["image"] for image in images])
