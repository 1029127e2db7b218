"""The fixed probe set every epoch of a run is judged on.

Why a fixed set: health numbers are compared across epochs, so every epoch must see exactly the
same images. Per category we take a few normal images the model never trained on and a few
anomalous images with exact masks: the dataset's own defects when its test set has masks, else
synthetic anomalies (core.data.synthetic) made from those normals, so identity copying can
always be measured.
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np

from core.data.dataset import split_validation
from core.data.images import load_image_set
from core.data.layouts import discover_samples
from core.data.samples import ANOMALOUS, NORMAL, ImageSet, Sample
from core.data.synthetic import make_synthetic_set
from core.runs.folder import Run
from core.scoring.data import run_data_root

PROBE_PER_CATEGORY = 4
PROBE_VERSION = 1  # part of every cache key built on the probe: bump when the selection changes


def _pick(samples: list[Sample], count: int, rng: np.random.Generator) -> list[Sample]:
    """`count` samples drawn without replacement, in path order so the set reads naturally."""
    ordered = sorted(samples, key=lambda s: str(s.path))
    if len(ordered) <= count:
        return ordered
    chosen = sorted(rng.choice(len(ordered), size=count, replace=False))
    return [ordered[i] for i in chosen]


def _normal_pool(category: str, val: list[Sample], test: list[Sample], train: list[Sample]) -> list[Sample]:
    """Normals the model never trained on (validation, then test/good); training images only
    when the category has no unseen normal at all."""
    unseen = [s for s in val + test if s.category == category and s.label == NORMAL]
    return unseen or [s for s in train if s.category == category]


def choose_probe_samples(samples: list[Sample], per_category: int, seed: int, val_fraction: float,
                         split_seed: int) -> tuple[list[Sample], list[Sample]]:
    """(normals, masked defects) per category from a dataset's samples.

    Validation normals are split exactly as training split them (same fraction and seed), so
    they are images the model never trained on.
    """
    trainable = [s for s in samples if s.split in ("train", "val")]
    train, val = split_validation(trainable, val_fraction, split_seed)
    test = [s for s in samples if s.split == "test"]
    normals, defects = [], []
    for category in sorted({s.category for s in samples}):
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        normals += _pick(_normal_pool(category, val, test, train), per_category, rng)
        masked = [s for s in test if s.category == category and s.label == ANOMALOUS and s.mask_path]
        defects += _pick(masked, per_category, rng)
    return normals, defects


def _with_synthetic(loaded: ImageSet, seed: int) -> ImageSet:
    """Adds synthetic anomalies (with exact masks) for categories that have no masked defect."""
    has_defect = {s.category for s, m in zip(loaded.samples, loaded.has_mask, strict=True)
                  if s.label == ANOMALOUS and m}
    parts = [loaded]
    for category in sorted(set(loaded.categories) - has_defect):
        idx = [i for i, s in enumerate(loaded.samples) if s.category == category and s.label == NORMAL]
        if not idx:
            continue
        images, masks, kinds = make_synthetic_set(loaded.images[idx], seed=seed)
        samples = [Sample(path=loaded.samples[i].path, category=category, label=ANOMALOUS,
                          defect=f"synthetic_{kind}", split="probe") for i, kind in zip(idx, kinds, strict=True)]
        parts.append(ImageSet(samples, images, masks, np.ones(len(idx), bool)))
    return ImageSet(samples=[s for p in parts for s in p.samples],
                    images=np.concatenate([p.images for p in parts]),
                    masks=np.concatenate([p.masks for p in parts]),
                    has_mask=np.concatenate([p.has_mask for p in parts]),
                    skipped=list(loaded.skipped))


@functools.lru_cache(maxsize=8)
def _probe(root: str, config_json: str, per_category: int, seed: int) -> ImageSet:
    config = json.loads(config_json)
    samples = discover_samples(root, config["layout"], config["categories"] or None,
                               config.get("category_file") or None)
    normals, defects = choose_probe_samples(samples, per_category, seed, config["val_fraction"], config["seed"])
    return _with_synthetic(load_image_set(normals + defects, config["image_size"]), seed)


def probe_set(run: Run, data_root: str | Path | None = None, per_category: int = PROBE_PER_CATEGORY,
              seed: int = 0) -> ImageSet:
    """Normals and masked anomalies, `per_category` each per category, at the run's image size.

    images (N, S, S, 3) uint8; masks (N, S, S) {0, 1}; has_mask True for every anomaly. Real
    defects keep their sample; synthetic ones have split "probe" and defect "synthetic_<kind>".
    The same run, data and seed always give the same set; it is decoded once per process and
    each call gets its own copy of the arrays.
    Raises DataFolderMissing (core.scoring.data) naming the folder when the dataset is not there.
    """
    root = run_data_root(run.config(), data_root)
    config = run.config()
    key = json.dumps({"layout": config.layout, "categories": list(config.categories),
                      "category_file": config.category_file, "val_fraction": config.val_fraction,
                      "seed": config.seed, "image_size": config.image_size}, sort_keys=True)
    probe = _probe(str(root.resolve()), key, int(per_category), int(seed))
    return probe.subset(np.arange(len(probe)))


def probe_signature(run: Run, data_root: str | Path | None, per_category: int, seed: int) -> dict:
    """What makes a probe set: part of every cache key that depends on it."""
    return {"data": str(run_data_root(run.config(), data_root).resolve()), "per_category": int(per_category),
            "seed": int(seed), "version": PROBE_VERSION}
