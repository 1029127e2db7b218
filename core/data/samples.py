"""The records every loader produces and every consumer reads.

A `Sample` says where an image is and what we know about it; an `ImageSet` is a list of
samples decoded once into uint8 arrays, so training and scoring never touch PNGs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NORMAL = 0
ANOMALOUS = 1
UNKNOWN = -1
UNLABELED = "unlabeled"  # the category name reports use for images without one


@dataclass(frozen=True)
class Sample:
    """One image on disk.

    label: NORMAL, ANOMALOUS or UNKNOWN (unlabeled test images of the flat layout).
    defect: "good" for normals, the defect folder name for anomalies, "" when unknown.
    mask_path: ground-truth mask, or None (normals, and defects without masks).
    split: "train", "test" or "val".
    """

    path: Path
    category: str
    label: int
    defect: str
    split: str
    mask_path: Path | None = None

    @property
    def name(self) -> str:
        """Stable id across the app: category/split/defect/stem."""
        return f"{self.category}/{self.split}/{self.defect or 'unlabeled'}/{self.path.stem}"


@dataclass
class ImageSet:
    """Samples decoded and resized once.

    images: (N, S, S, 3) uint8. masks: (N, S, S) uint8 in {0, 1}, all zero where no mask.
    has_mask: (N,) bool, True where a ground-truth mask was read (pixel metrics use only these).
    skipped: (path, reason) for every file that could not be used; the rest still loads.
    mask_problems: (mask path, reason) for every mask that was not used; its image was kept.
    """

    samples: list[Sample]
    images: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    mask_problems: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def categories(self) -> list[str]:
        return [s.category for s in self.samples]

    @property
    def category_names(self) -> list[str]:
        return sorted(set(self.categories))

    def subset(self, indices) -> ImageSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            samples=[self.samples[i] for i in idx],
            images=self.images[idx],
            masks=self.masks[idx],
            has_mask=self.has_mask[idx],
            skipped=list(self.skipped),
            mask_problems=list(self.mask_problems),
        )
