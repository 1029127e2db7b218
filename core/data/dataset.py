"""From a dataset folder to decoded train / validation / test image sets.

Validation images are normal images the model never trains on: a `val/` folder when the
dataset has one, else a seeded per-category share of the training normals, so every category
is represented in validation loss and synthetic AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.layouts import DatasetLayoutError, discover_samples
from core.data.samples import ImageSet, Sample
from core.data.store import decoded_set


@dataclass
class TrainingData:
    train: ImageSet
    val: ImageSet


def split_validation(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Per category: val/ folder if present, else `fraction` of train (at least one when the
    category has 4+ images, never all of them: at least one image always trains). A category
    with fewer than 4 images, or fraction 0, holds out none (no validation loss or threshold)."""
    train, val = [], []
    for category in sorted({s.category for s in samples}):
        own = [s for s in samples if s.category == category]
        given_val = [s for s in own if s.split == "val"]
        pool = [s for s in own if s.split == "train"]
        if given_val:
            train += pool
            val += given_val
            continue
        n_val = int(round(len(pool) * fraction)) if fraction > 0 else 0
        if fraction > 0 and n_val == 0 and len(pool) >= 4:
            n_val = 1
        n_val = min(n_val, max(0, len(pool) - 1))  # at least one image always trains
        rng = np.random.default_rng([seed, sum(map(ord, category))])
        order = rng.permutation(len(pool))
        val += [pool[i] for i in sorted(order[:n_val])]
        train += [pool[i] for i in sorted(order[n_val:])]
    return train, val


def load_training_data(root: str | Path, size: int, layout: str = "auto",
                       categories: Sequence[str] | None = None, val_fraction: float = 0.1,
                       seed: int = 0, category_file: str | Path | None = None,
                       progress: bool = False) -> TrainingData:
    """The training and validation normals, decoded at `size` through the decoded-image store
    (core.data.store: decoded once per machine, memory-mapped when large). Raises
    DatasetLayoutError when no training image can be read."""
    samples = [s for s in discover_samples(root, layout, categories, category_file)
               if s.split in ("train", "val")]
    train_samples, val_samples = split_validation(samples, val_fraction, seed)
    train = decoded_set(train_samples, size, progress)
    if len(train) == 0:
        raise DatasetLayoutError(f"{root}: none of the {len(train_samples)} training images could be read")
    return TrainingData(train=train, val=decoded_set(val_samples, size, progress))
