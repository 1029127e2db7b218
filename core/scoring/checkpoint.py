"""`score_checkpoint`: any method, any epoch of a run, cached on disk next to the checkpoint.

The first call for a (checkpoint, data, method, options) computes and stores the result via
core.cache; every later call -- another CLI run, a dashboard click -- reads it back. A
retrained or resumed epoch has a new checkpoint fingerprint, so stale results are never read.
knn banks are cached the same way, per checkpoint, and shared by every dataset scored
against that checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.cache import cached
from core.config import TrainConfig
from core.data.samples import ImageSet, Sample
from core.model import UNetAutoencoder
from core.runs import Run, RunError, model_from_checkpoint
from core.scoring.data import (
    SPLITS,
    fingerprint,
    load_samples,
    reference_root,
    reference_samples,
    samples_to_score,
)
from core.scoring.knn import FeatureBank
from core.scoring.methods import build_feature_bank, score_image_set
from core.scoring.options import ROUTED_METHODS, ScoreOptions, check_method

# Maps are stored at half precision (scores are computed before, at full precision): a
# 1000-image test set at 128 px is 33 MB per method and epoch instead of 66 MB.
MAP_STORAGE_DTYPE = np.float16
# Part of every cache key written here: bump it when a change to scoring code changes results,
# so results cached by older code are recomputed instead of served.
SCORING_VERSION = 1


def load_checkpoint_model(
    run: Run, epoch: int | str, device: torch.device | str = "cpu"
) -> tuple[UNetAutoencoder, TrainConfig, int]:
    """(model in eval mode, the checkpoint's own config, the resolved epoch).

    The config comes from inside the checkpoint, so a checkpoint always rebuilds the model that
    wrote it. Any failure names the checkpoint and what to do, in one line.
    """
    payload, config, resolved = _header(run, epoch)
    path = run.checkpoint_path(resolved)
    model = model_from_checkpoint(payload, path)
    return model.to(device).eval(), config, resolved


def trained_categories(config: TrainConfig, data_root: str | Path) -> list[str]:
    """Categories of the run's normal training images (from its data, else data_root)."""
    root = reference_root(config, data_root)
    return sorted({s.category for s in reference_samples(root, "train", config)})


def check_categories(
    samples: list[Sample], trained: list[str], policy: str, where: str | Path, run: Run
) -> None:
    """Refuses test categories the run never trained on (unlabeled images are routed later)."""
    unseen = sorted({s.category for s in samples if s.category and s.category not in trained})
    if unseen and policy == "error":
        raise RunError(
            f"{where}: categories {', '.join(unseen)} were never seen by run {run.path} (trained on "
            f"{', '.join(trained)}); evaluate on data of those categories, train a run that includes "
            "them, or pass unknown_categories='route' (--route) to score them against the nearest "
            "trained category"
        )


def scoring_samples(
    config: TrainConfig, data_root: str | Path, split: str, route_unseen: bool = False
) -> list[Sample]:
    """test: the test split (or bare image folder) of data_root, narrowed to the run's
    categories unless unseen ones are to be routed; train/val: the run's own split."""
    if split not in SPLITS:
        raise ValueError(f"split '{split}': use one of {', '.join(SPLITS)}")
    if split == "test":
        return samples_to_score(data_root, trained=None if route_unseen else config.categories)
    return reference_samples(reference_root(config, data_root), split, config)


def reference_set(config: TrainConfig, data_root: str | Path) -> ImageSet:
    """The run's normal training images (its train split), decoded once per process."""
    root = reference_root(config, data_root)
    return load_samples(reference_samples(root, "train", config), config.image_size)


def checkpoint_bank(
    run: Run,
    epoch: int,
    model: UNetAutoencoder,
    config: TrainConfig,
    data_root: str | Path,
    options: ScoreOptions,
    device,
) -> FeatureBank:
    """The knn bank of this checkpoint, built once and stored in the run's cache."""
    root = reference_root(config, data_root)
    samples = reference_samples(root, "train", config)
    params = {
        "v": SCORING_VERSION,
        "reference": fingerprint(samples),
        "size": config.image_size,
        "levels": options.levels,
        "patch": options.patch,
        "max_bank": options.max_bank,
        "seed": options.seed,
    }

    def compute() -> dict[str, Any]:
        train = load_samples(samples, config.image_size)
        return build_feature_bank(model, train, options, device).to_record()

    return FeatureBank.from_record(cached(run, epoch, "bank", params, compute))


def _needs_reference(
    method: str, categories: list[str], bank: FeatureBank | None, options: ScoreOptions
) -> bool:
    """rawknn and patchz build their banks from the training images; knn needs them only to
    route."""
    if method in ("rawknn", "patchz"):
        return True
    if method != "knn" or options.bank_scope == "global":
        return False
    if bank is None or options.bank_scope == "routed":
        return True
    return any(not c or c not in bank.categories for c in categories)


def _compute(
    run: Run,
    epoch: int,
    data_root,
    method: str,
    split: str,
    options: ScoreOptions,
    device,
    samples: list[Sample],
) -> dict[str, Any]:
    started = time.perf_counter()
    model, config, _ = load_checkpoint_model(run, epoch, device)
    images = load_samples(samples, config.image_size)
    bank = None
    if method == "knn":
        bank = checkpoint_bank(run, epoch, model, config, data_root, options, device)
    train = (
        reference_set(config, data_root)
        if _needs_reference(method, images.categories, bank, options)
        else None
    )
    result = score_image_set(
        model, images, method, train=train, device=device, bank=bank, **_as_kwargs(options)
    )
    record: dict[str, Any] = {
        "method": method,
        "epoch": epoch,
        "split": split,
        "scores": np.asarray(result.scores, np.float64),
        "names": [s.name for s in images.samples],
        "paths": [str(s.path) for s in images.samples],
        "labels": images.labels,
        "categories": images.categories,
        "defects": [s.defect for s in images.samples],
        "has_mask": images.has_mask.astype(bool),
        "bank_categories": result.bank_categories,
        "info": result.info,
        "skipped": [[str(p), why] for p, why in images.skipped],
        "seconds": float(time.perf_counter() - started),
    }
    if result.routed is not None:
        record["routed"] = np.asarray(result.routed, bool)
    if result.maps is not None:
        record["maps"] = np.asarray(result.maps, MAP_STORAGE_DTYPE)
    return record


def _as_kwargs(options: ScoreOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def score_checkpoint(
    run: Run,
    epoch: int | str,
    data_root: str | Path,
    method: str,
    split: str = "test",
    device: torch.device | str = "cpu",
    **options,
) -> dict[str, Any]:
    """Scores of one checkpoint on a dataset, cached per checkpoint.

    split "test": the test images of data_root (a dataset, or a bare folder of images whose
    categories are routed); "val"/"train": the run's own held-out / training normals. Images
    are decoded at the checkpoint's image_size. Returns {"scores" (N,), "maps" (N, S, S)
    when the method has them, "names" (Sample.name), "paths", "labels" (N,), "categories",
    "defects", "has_mask" (N,), "bank_categories", "routed" (N,) for knn/rawknn, "info",
    "epoch", "method", "split", "seconds"}. Maps carry float16 precision (see MAP_STORAGE_DTYPE),
    identical whether computed now or read from the cache.
    """
    check_method(method)
    opts = ScoreOptions.from_kwargs(options)
    _, config, resolved = _header(run, epoch)
    samples = scoring_samples(config, data_root, split, opts.unknown_categories == "route")
    if split == "test":
        trained = trained_categories(config, data_root)
        check_categories(samples, trained, opts.unknown_categories, data_root, run)
    params = {
        "v": SCORING_VERSION,
        "method": method,
        "split": split,
        "data": fingerprint(samples),
        "size": config.image_size,
        "options": opts.cache_params(method),
    }
    if method in ROUTED_METHODS:
        reference = reference_samples(reference_root(config, data_root), "train", config)
        params["reference"] = fingerprint(reference)
    result = cached(
        run,
        resolved,
        f"scores-{method}",
        params,
        lambda: _compute(run, resolved, data_root, method, split, opts, device, samples),
    )
    if "maps" in result:
        result["maps"] = np.asarray(result["maps"], np.float32)
    return result


def _header(run: Run, epoch: int | str) -> tuple[dict[str, Any], TrainConfig, int]:
    """The checkpoint's config without building the model (cheap on a cache hit)."""
    resolved = run.resolve_epoch(epoch)
    try:
        payload = run.load(resolved)
        config = TrainConfig.from_dict(payload["config"])
    except (RunError, ValueError) as err:
        what = (
            str(err)
            if isinstance(err, RunError)
            else f"{run.checkpoint_path(resolved)}: unreadable config ({err})"
        )
        raise RunError(
            f"{what} -- choose another epoch (available: {run.epochs()}) or retrain with "
            "python -m core train"
        ) from err
    return payload, config, resolved
