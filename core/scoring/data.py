"""Which images a checkpoint is scored on, decoded once per process.

Two sources:

* the images to score: the test split of a dataset (MVTec or flat layout), or a bare folder
  of images (a Kaggle test folder: no labels, no categories, routed later);
* the reference: the run's own normal training images, split into train and validation
  exactly as training split them (same val_fraction and seed), so banks are built from
  images the model trained on and validation normals never enter a bank.

Decoding is the slow part of scoring a large set, and the dashboard asks for the same set
again and again, so decoded sets are kept on disk (core.data.store) and in an LRU cache keyed
by (the exact sample list, size). A changed file list is a different key; an edited image under the same name and
timestamp is not noticed -- call `clear_image_cache()` after editing images in place.
The cached ImageSet objects are shared: treat them as read-only.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import TrainConfig
from core.data.dataset import split_validation
from core.data.images import IMAGE_EXTENSIONS, LeftOutWarning, list_images
from core.data.layouts import DatasetLayoutError, discover_samples
from core.data.samples import UNKNOWN, ImageSet, Sample
from core.data.store import (  # noqa: F401 -- re-exported: callers import them from here
    DECODED_VERSION,
    decoded_cache_dir,
    decoded_set,
    fingerprint,
)

SPLITS = ("test", "val", "train")
IMAGE_CACHE_SIZE = 4  # test, validation and training sets of one run, plus one more


def is_bare_folder(root: Path) -> bool:
    """A folder of images with no dataset structure (no train/ folder, images at the top)."""
    return bool(list_images(root)) and not (root / "train").is_dir()


def bare_samples(root: Path) -> list[Sample]:
    """Unlabeled test samples with an empty category: routing assigns one later."""
    return [Sample(path, "", UNKNOWN, "", "test") for path in list_images(root)]


def samples_to_score(
    root: str | Path,
    layout: str = "auto",
    categories: Sequence[str] | None = None,
    trained: Sequence[str] | None = None,
) -> list[Sample]:
    """The test samples of a dataset, or every image of a bare folder; never empty.

    trained: the run's categories. When the dataset holds some of them, only those are kept,
    so a per-category run (or a run on a subset) can be evaluated on the full dataset; when it
    holds none, every sample is returned and the caller refuses the unseen categories. What
    is left out is named in one LeftOutWarning (see `select_test_samples`).
    """
    return select_test_samples(root, layout, categories, trained).samples


@dataclass(frozen=True)
class LeftOut:
    """Test images of one category that are not scored: count, and why ("untrained": the run
    did not train on the category; "no training images": the data holds none for it)."""

    category: str
    count: int
    reason: str


@dataclass(frozen=True)
class TestSelection:
    """The test samples to score and the categories left out of them."""

    samples: list[Sample]
    left_out: tuple[LeftOut, ...] = ()

    def left_out_clause(self) -> str:
        """A short clause for a summary line ("" when nothing is left out)."""
        if not self.left_out:
            return ""
        n = sum(item.count for item in self.left_out)
        names = _listed([item.category for item in self.left_out])
        return f"{n} test images of {names} left out (no model of that category in this run)"


UNTRAINED, NO_TRAINING_IMAGES = "untrained", "no training images"
LISTED_NAMES = 5  # categories named in a sentence before "and N more"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES])
    more = f" and {len(names) - LISTED_NAMES} more" if len(names) > LISTED_NAMES else ""
    return f"categor{'y' if len(names) == 1 else 'ies'} {shown}{more}"


def select_test_samples(
    root: str | Path,
    layout: str = "auto",
    categories: Sequence[str] | None = None,
    trained: Sequence[str] | None = None,
) -> TestSelection:
    """`samples_to_score` with what it leaves out. Test images of categories the run did not
    train on are named in one LeftOutWarning with the way out (--route, or a run that
    includes them); categories without any training images are named by the dataset reader
    (core.data.layouts), so they are only counted here."""
    root = Path(root).expanduser()
    samples = _test_samples(root, layout, categories)
    known = set(trained or ())
    if not known or not any(s.category in known for s in samples):
        return TestSelection(samples)
    kept = [s for s in samples if not s.category or s.category in known]
    counts: dict[str, int] = {}
    for s in samples:
        if s.category and s.category not in known:
            counts[s.category] = counts.get(s.category, 0) + 1
    trainable = _trainable_categories(root, layout, categories)
    left_out = tuple(LeftOut(c, n, UNTRAINED if c in trainable else NO_TRAINING_IMAGES)
                     for c, n in sorted(counts.items()))
    untrained = [item for item in left_out if item.reason == UNTRAINED]
    if untrained:
        warnings.warn(
            f"{root}: {sum(i.count for i in untrained)} test images of "
            f"{_listed([i.category for i in untrained])} are left out of the scores: this run "
            f"was trained on {', '.join(sorted(known))} only -- score them with a run that "
            "includes them, or pass --route to score them against the nearest trained category",
            LeftOutWarning, stacklevel=3)
    return TestSelection(kept, left_out)


def _trainable_categories(root: Path, layout: str, categories: Sequence[str] | None) -> set[str]:
    """Categories of `root` with normal training images (train or val split)."""
    return {s.category for s in discover_samples(root, layout, categories) if s.split != "test"}


def _test_samples(
    root: str | Path, layout: str = "auto", categories: Sequence[str] | None = None
) -> list[Sample]:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{root}: folder does not exist; pass an existing dataset or image folder"
        )
    if is_bare_folder(root):
        return bare_samples(root)
    if not any(root.iterdir()):
        raise DatasetLayoutError(
            f"{root}: folder is empty; put test images ({', '.join(IMAGE_EXTENSIONS)}) "
            "in it or point at a dataset with <category>/test/ folders"
        )
    samples = [s for s in discover_samples(root, layout, categories) if s.split == "test"]
    if not samples:
        raise DatasetLayoutError(
            f"{root}: no test images; expected <category>/test/<good|defect>/*.png, "
            "test/*.png, or a folder of images"
        )
    return samples


def reference_samples(root: str | Path, split: str, config: TrainConfig) -> list[Sample]:
    """Normal training ("train") or held-out validation ("val") samples, split as training did."""
    if split not in ("train", "val"):
        raise ValueError(f"reference split must be train or val, got '{split}'")
    samples = [
        s
        for s in discover_samples(
            root, config.layout, config.categories or None, config.category_file or None
        )
        if s.split in ("train", "val")
    ]
    train, val = split_validation(samples, config.val_fraction, config.seed)
    chosen = train if split == "train" else val
    if split == "train" and not chosen:
        raise DatasetLayoutError(f"{root}: no normal training images")
    return chosen


def reference_root(config: TrainConfig, data_root: str | Path) -> Path:
    """The run's training data when it is still readable, else `data_root`.

    Banks must describe what the model trained on, so config.data wins; a moved dataset
    falls back to the folder being scored.
    """
    candidates = [Path(config.data).expanduser(), Path(data_root).expanduser()]
    errors = []
    for root in candidates:
        try:
            discover_samples(
                root, config.layout, config.categories or None, config.category_file or None
            )
            return root
        except DatasetLayoutError as err:
            errors.append(str(err))
    raise DatasetLayoutError(
        f"the run's normal training images are needed (for knn, rawknn, routing, thresholds) but "
        f"neither {candidates[0]} (the run's data) nor {candidates[1]} holds them ({'; '.join(errors)}); "
        "restore the training data or pass --data pointing at it"
    )


class DataFolderMissing(DatasetLayoutError):
    """The data folder a run should read does not exist; the message names it and its origin."""


def run_data_root(config: TrainConfig, override: str | Path | None = None,
                  override_origin: str = "--data") -> Path:
    """The one rule for which data folder a run reads: the folder the user gave (a CLI --data,
    the dashboard's sidebar), else the data the run trained on (its config). Raises
    DataFolderMissing naming the folder and where it came from when it does not exist."""
    if override is not None and str(override).strip():
        folder, origin = Path(str(override).strip()).expanduser(), override_origin
    else:
        folder, origin = Path(config.data).expanduser(), "the run's config (the data it trained on)"
    if not folder.is_dir():
        raise DataFolderMissing(
            f"the data folder {folder} (from {origin}) does not exist; pass the folder that "
            "holds the images (--data on the command line, Data folder in the dashboard's sidebar)"
        )
    return folder


@functools.lru_cache(maxsize=IMAGE_CACHE_SIZE)
def _decode(samples: tuple[Sample, ...], size: int) -> ImageSet:
    """Decoded once per process, and once per machine (core.data.store: keyed by every file's
    name, size and mtime and the side; large sets memory-mapped)."""
    return decoded_set(samples, size, progress=True)


def load_samples(samples: Sequence[Sample], size: int) -> ImageSet:
    """Decoded at `size`, once per process for the same sample list (shared: do not modify)."""
    images = _decode(tuple(samples), int(size))
    if len(images) == 0:
        where = samples[0].path.parent if samples else "the given folder"
        raise DatasetLayoutError(
            f"{where}: none of the {len(samples)} images could be decoded; "
            "see the warnings naming each file"
        )
    return images


def decoded_at(images: ImageSet, size: int) -> np.ndarray:
    """uint8 (N, size, size, 3): the set's images decoded again at `size` from their files
    (cached like every decoded set), for scores that read finer detail than the model's image
    size (patchz, finepatch). Images without a file (built in memory), or a file that changed
    since, keep their pixels at the size they have: the caller resizes those."""
    pixels = images.images
    files = [Path(s.path) for s in images.samples]
    if pixels.shape[1] != size and files and all(f.is_file() for f in files):
        again = load_samples(images.samples, size)
        if len(again) == len(images):
            return again.images
    return pixels


def clear_image_cache() -> None:
    _decode.cache_clear()
