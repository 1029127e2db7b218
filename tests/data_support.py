"""What the data test modules share: the decoded test split of a dataset folder, without a run."""

from __future__ import annotations

from pathlib import Path

from core.data.images import load_image_set
from core.data.layouts import discover_samples
from core.data.samples import ImageSet


def load_test_data(root: Path, size: int) -> ImageSet:
    """The decoded test split (what core.scoring.testset builds on once a run is known)."""
    return load_image_set([s for s in discover_samples(root) if s.split == "test"], size)
