"""`score_checkpoint`: any method, any epoch of a run, cached on disk next to the checkpoint.

The first call for a (checkpoint, data, method, options) computes and stores the result via
core.cache; every later call -- another CLI run, a dashboard click -- reads it back. A
retrained or resumed epoch has a new checkpoint fingerprint, so stale results are never read.
knn banks are cached the same way, per checkpoint, and shared by every dataset scored
against that checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.accel import for_inference
from core.cache import cached, checkpoint_stamp, load_cached, store_cached
from core.config import TrainConfig
from core.data.samples import ImageSet, Sample
from core.finite import require_finite_scores
from core.model import UNetAutoencoder
from core.runs import Run, RunError, model_from_checkpoint
from core.scoring.calibration import (
    CALIBRATIONS,
    MIN_REFERENCE,
    CalibrationError,
    fit_calibration,
)
from core.scoring.data import (
    SPLITS,
    fingerprint,
    load_samples,
    reference_root,
    reference_samples,
)
from core.scoring.ensemble import combine, ensemble_reference
from core.scoring.globalknn import METHOD as GLOBAL_METHOD
from core.scoring.globalknn import global_options
from core.scoring.knn import FeatureBank, bank_rows
from core.scoring.methods import build_feature_bank, score_image_set_methods
from core.scoring.options import (
    CHECKPOINT_METHODS,
    DEFAULT_METHOD,
    FALLBACK_METHOD,
    ROUTED_METHODS,
    ScoreOptions,
    check_method,
    ensemble_members,
)
from core.scoring.patchbank import PatchBank
from core.scoring.reference import LEAVE_ONE_OUT_METHODS, ReferenceScores, leave_one_out_scores
from core.scoring.results import MAP_STORAGE_DTYPE, MethodScores
from core.scoring.testset import TestSet, build_test_set

# Part of every cache key written here: bump it when a change to scoring code changes results,
# so results cached by older code are recomputed instead of served.
SCORING_VERSION = 3  # 2: typed records, image-first patch knn; 3: banks record kept images


def load_checkpoint_model(
    run: Run, epoch: int | str, device: torch.device | str = "cpu"
) -> tuple[UNetAutoencoder, TrainConfig, int]:
    """(model in eval mode, the checkpoint's own config, the resolved epoch).

    The config comes from inside the checkpoint, so a checkpoint always rebuilds the model that
    wrote it. Any failure names the checkpoint and what to do, in one line.
    """
    payload, config, resolved = _header(run, epoch)
    path = run.checkpoint_path(resolved)
    model = for_inference(model_from_checkpoint(payload, path).to(device).eval())
    return model, config, resolved


def trained_categories(config: TrainConfig, data_root: str | Path) -> list[str]:
    """Categories of the run's normal training images (from its data, else data_root)."""
    root = reference_root(config, data_root)
    return sorted({s.category for s in reference_samples(root, "train", config)})


def scoring_samples(config: TrainConfig, data_root: str | Path, split: str) -> list[Sample]:
    """The run's own normals: "train" or held-out "val" (at most REFERENCE_MAX_NORMALS per
    category, a seeded sample), split exactly as training split them.
    (The test split is a TestSet: see core.scoring.testset.)"""
    if split not in SPLITS:
        raise ValueError(f"split '{split}': use one of {', '.join(SPLITS)}")
    if split == "test":
        raise ValueError("the test split is built by core.scoring.testset.build_test_set")
    chosen = reference_samples(reference_root(config, data_root), split, config)
    if split == "val":  # calibration and the ensemble's statistics: bounded on huge sets
        chosen = [chosen[i] for i in np.sort(bank_rows([s.category for s in chosen],
                                                       REFERENCE_MAX_NORMALS, config.seed))]
    return chosen


# Held-out normals scored per category for calibration and the ensemble's member statistics
# (a median and a spread): more than a thousand add nothing measurable and cost a scoring pass
# over 10 % of a huge set. Smaller validation splits are used whole.
REFERENCE_MAX_NORMALS = 1000


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
) -> FeatureBank | PatchBank:
    """The knn bank of this checkpoint, built once and stored in the run's cache (a PatchBank
    keeps float16 vectors: 24 KB per 64 px training image at the default width)."""
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

    record = cached(run, epoch, "bank", params, compute)
    return (PatchBank if record["kind"] == "patches" else FeatureBank).from_record(record)


def _needs_reference(
    method: str, categories: list[str], bank: FeatureBank | PatchBank | None, options: ScoreOptions
) -> bool:
    """rawknn and patchz build their banks from the training images; knn needs them only to
    route."""
    if method in ("rawknn", "patchz"):
        return True
    if method not in ("knn", GLOBAL_METHOD) or options.bank_scope == "global":
        return False
    if bank is None or options.bank_scope == "routed":
        return True
    return any(not c or c not in bank.categories for c in categories)


def _compute(
    run: Run,
    epoch: int,
    data_root,
    methods: tuple[str, ...],
    split: str,
    options: ScoreOptions,
    device,
    images: ImageSet,
) -> dict[str, MethodScores]:
    """Every method of `methods` on `images`, one model pass for all (score_image_set_methods)."""
    started = time.perf_counter()
    model, config, _ = load_checkpoint_model(run, epoch, device)
    banks = {}
    if "knn" in methods:
        banks["knn"] = checkpoint_bank(run, epoch, model, config, data_root, options, device)
    if GLOBAL_METHOD in methods:
        banks[GLOBAL_METHOD] = checkpoint_bank(run, epoch, model, config, data_root,
                                               global_options(options, config.model.depth), device)
    train = (
        reference_set(config, data_root)
        if any(_needs_reference(m, images.categories, banks.get(m), options) for m in methods)
        else None
    )
    results = score_image_set_methods(
        model, images, methods, train=train, device=device, banks=banks, **_as_kwargs(options)
    )
    seconds = float(time.perf_counter() - started)
    return {m: _scores(images, r, epoch, split, seconds) for m, r in results.items()}


def _scores(images: ImageSet, result, epoch: int, split: str, seconds: float) -> MethodScores:
    scores = MethodScores(
        method=result.method,
        epoch=epoch,
        split=split,
        image_scores=np.asarray(result.scores, np.float64),
        anomaly_maps=None
        if result.maps is None
        else np.asarray(np.asarray(result.maps, MAP_STORAGE_DTYPE), np.float32),
        names=[s.name for s in images.samples],
        paths=[str(s.path) for s in images.samples],
        labels=np.asarray(images.labels),
        categories=list(images.categories),
        defects=[s.defect for s in images.samples],
        has_mask=images.has_mask.astype(bool),
        bank_categories=result.bank_categories,
        info=dict(result.info),
        skipped=[[str(p), why] for p, why in images.skipped],
        seconds=seconds,
    )
    if isinstance(images, TestSet):  # categories were decided once, by the test set
        scores.routed = np.asarray(images.routed, bool)
        scores.routing_confidence = np.asarray(images.routing_confidence, np.float64)
        scores.category_source = list(images.category_source)
        if images.routed.any():
            scores.info = {**scores.info, "routing": "thumbnail"}
    elif result.routed is not None:
        scores.routed = np.asarray(result.routed, bool)
    return scores


def _as_kwargs(options: ScoreOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


def score_checkpoint(
    run: Run,
    epoch: int | str,
    data_root: str | Path,
    method: str,
    split: str = "test",
    device: torch.device | str = "cpu",
    calibration: str = "none",
    cached_only: bool = False,
    **options,
) -> MethodScores | None:
    """Scores of one checkpoint on a dataset by one method, cached per checkpoint
    (score_checkpoint_methods for several methods in one pass; same cache).

    cached_only: None on a cache miss instead of computing, for views that show what was
    already evaluated. calibration (test split only): "none" = raw scores; "normals" =
    per-category z-scores against the category's reference normals (calibration_reference:
    leave-one-out training normals and held-out ones; core.scoring.calibration), so one
    ranking over mixed categories is fair; then image_scores are calibrated and raw_scores
    keeps the raw ones. When calibration is impossible (fewer than MIN_REFERENCE reference
    normals in a category) image_scores stay raw and `calibration` says why.

    split "test": the test images of data_root (a dataset, or a bare folder of images whose
    categories are routed); "val"/"train": the run's own held-out / training normals. Images
    are decoded at the checkpoint's image_size. Returns a MethodScores (core.scoring.results);
    maps carry float16 precision, identical whether computed now or read from the cache.
    """
    return score_checkpoint_methods(
        run, epoch, data_root, (method,), split, device, calibration, cached_only, **options
    )[method]


def score_checkpoint_methods(
    run: Run,
    epoch: int | str,
    data_root: str | Path,
    methods: tuple[str, ...] | list[str],
    split: str = "test",
    device: torch.device | str = "cpu",
    calibration: str = "none",
    cached_only: bool = False,
    maps: bool = True,
    **options,
) -> dict[str, MethodScores | None]:
    """score_checkpoint for several methods: cached ones are read, the others computed
    together in one model pass per batch, each stored under its own cache entry.
    maps=False: results read from the cache come without anomaly maps (AUROC tables need
    none). Returns {method: MethodScores} (None for a miss when cached_only)."""
    methods = tuple(dict.fromkeys(check_method(m) for m in methods))
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration '{calibration}': use one of {', '.join(CALIBRATIONS)}")
    opts = ScoreOptions.from_kwargs(options)
    if "ensemble" in methods:
        return _with_ensemble(run, epoch, data_root, methods, split, device, calibration,
                              cached_only, opts, options, maps)
    config, resolved = _checkpoint_header(run, epoch)
    if split == "test":
        images = build_test_set(config, data_root, opts.unknown_categories)
        samples = images.samples
    else:
        samples = scoring_samples(config, data_root, split)
        images = None
    stamps = _DataStamps(samples, config, data_root)
    keys = {m: _cache_params(m, split, stamps, config, opts) for m in methods}
    results: dict[str, MethodScores | None] = {}
    for m in methods:
        record = load_cached(run, resolved, f"scores-{m}", keys[m],
                             skip=() if maps else ("anomaly_maps",))
        results[m] = None if record is None else MethodScores.from_record(record)
    missing = tuple(m for m in methods if results[m] is None)
    if missing and not cached_only:
        if images is None:
            images = load_samples(samples, config.image_size)
        computed = _compute(run, resolved, data_root, missing, split, opts, device, images)
        for m, scores in computed.items():
            store_cached(run, resolved, f"scores-{m}", keys[m], scores.to_record())
            results[m] = scores
    for m, scores in results.items():
        if scores is None:
            continue
        require_finite_scores(scores, run.path)  # a diverged epoch is refused, never shown
        if calibration == "normals" and split == "test":
            results[m] = _calibrated(run, resolved, data_root, config, scores, device, options)
    return results


def _with_ensemble(run, epoch, data_root, methods, split, device, calibration, cached_only,
                   opts: ScoreOptions, options, maps: bool = True
                   ) -> dict[str, MethodScores | None]:
    """score_checkpoint_methods where `methods` holds "ensemble": its members are scored with
    the rest (one pass) and on the held-out normals, then combined (core.scoring.ensemble)."""
    members = ensemble_members(opts.members)
    plain = tuple(m for m in methods if m != "ensemble")
    wanted = tuple(dict.fromkeys(plain + members))
    raw = score_checkpoint_methods(run, epoch, data_root, wanted, split, device, "none",
                                   cached_only, maps, **options)
    config, resolved = _checkpoint_header(run, epoch)
    reference = {m: calibration_reference(run, resolved, data_root, m, device, cached_only,
                                          **options) for m in members}
    results: dict[str, MethodScores | None] = {m: raw[m] for m in plain}
    missing = any(raw[m] is None for m in members) or (cached_only and None in reference.values())
    results["ensemble"] = None if missing else combine({m: raw[m] for m in members}, reference)
    if calibration == "normals" and split == "test":
        for m, scores in results.items():
            if scores is not None:
                results[m] = _calibrated(run, resolved, data_root, config, scores, device, options)
    return {m: results[m] for m in methods}


def can_calibrate(config: TrainConfig, data_root: str | Path, method: str = DEFAULT_METHOD,
                  members: str = "knn,patchz") -> bool:
    """Whether `method` can be calibrated on this run (core.scoring.calibration): every trained
    category holds MIN_REFERENCE reference normals (held-out ones, plus the training normals for
    the methods with leave-one-out scores; an ensemble needs it for every member)."""
    val = Counter(s.category for s in scoring_samples(config, data_root, "val"))
    train = Counter(s.category for s in reference_samples(reference_root(config, data_root),
                                                          "train", config))
    methods = ensemble_members(members) if method == "ensemble" else (method,)
    for name in methods:
        counts = val + train if name in LEAVE_ONE_OUT_METHODS else val
        if any(counts[c] < MIN_REFERENCE for c in train):
            return False
    return True


def resolve_method(
    method: str | None, run: Run, epoch: int | str, data_root: str | Path
) -> tuple[str, str | None]:
    """(the method to score with, a sentence when the default could not be used).

    `method` when given; else DEFAULT_METHOD, or FALLBACK_METHOD when the default is an
    ensemble and the run's normals are too few to calibrate its members (can_calibrate)."""
    if method:
        return check_method(method), None
    if DEFAULT_METHOD not in CHECKPOINT_METHODS or can_calibrate(checkpoint_config(run, epoch),
                                                                   data_root):
        return DEFAULT_METHOD, None
    return FALLBACK_METHOD, (
        f"scoring with {FALLBACK_METHOD}: the default {DEFAULT_METHOD} calibrates its members "
        f"against at least {MIN_REFERENCE} normals per category and this run has fewer (add "
        f"normal training images, or a val/good folder)"
    )


class _DataStamps:
    """Fingerprints of the scored images and of the training normals, each taken once per
    call (a fingerprint stats every file) however many methods share it."""

    def __init__(self, samples, config: TrainConfig, data_root) -> None:
        self.samples, self.config, self.data_root = samples, config, data_root
        self._data: str | None = None
        self._reference: str | None = None

    @property
    def data(self) -> str:
        if self._data is None:
            self._data = fingerprint(self.samples)
        return self._data

    @property
    def reference(self) -> str:
        if self._reference is None:
            root = reference_root(self.config, self.data_root)
            self._reference = fingerprint(reference_samples(root, "train", self.config))
        return self._reference


def _cache_params(method, split, stamps: _DataStamps, config, opts: ScoreOptions) -> dict:
    params = {
        "v": SCORING_VERSION,
        "method": method,
        "split": split,
        "data": stamps.data,
        "size": config.image_size,
        "options": opts.cache_params(method),
    }
    if method in ROUTED_METHODS:
        params["reference"] = stamps.reference
    return params


def _calibrated(run, epoch, data_root, config, scores: MethodScores, device, options):
    return calibrate_result(
        scores, calibration_reference(run, epoch, data_root, scores.method, device, **options)
    )


def calibration_reference(
    run: Run,
    epoch: int | str,
    data_root: str | Path,
    method: str,
    device: torch.device | str = "cpu",
    cached_only: bool = False,
    **options,
) -> ReferenceScores | None:
    """The normal scores `method` is calibrated with on this checkpoint (core.scoring.reference):
    leave-one-out scores of the training normals (knn, rawknn, patchz; cached like scores)
    followed by the held-out normals' scores; for an ensemble its members' references combined.
    None only when cached_only and something is not cached."""
    opts = ScoreOptions.from_kwargs(options)
    config, resolved = _checkpoint_header(run, epoch)
    if method == "ensemble":
        refs = {m: calibration_reference(run, resolved, data_root, m, device, cached_only,
                                         **options) for m in ensemble_members(opts.members)}
        return None if None in refs.values() else ensemble_reference(refs)
    parts = []
    if method in LEAVE_ONE_OUT_METHODS:
        parts.append(_leave_one_out(run, resolved, data_root, method, config, opts, device,
                                    cached_only))
    if scoring_samples(config, data_root, "val"):
        val = score_checkpoint(run, resolved, data_root, method, "val", device,
                               cached_only=cached_only, **options)
        parts.append(None if val is None else ReferenceScores(
            np.asarray(val.image_scores, np.float64), list(val.categories), list(val.paths),
            np.ones(len(val), bool)))
    return None if None in parts else ReferenceScores.join(parts)


def _leave_one_out(run: Run, epoch: int, data_root, method: str, config: TrainConfig,
                   opts: ScoreOptions, device, cached_only: bool) -> ReferenceScores | None:
    samples = reference_samples(reference_root(config, data_root), "train", config)
    params = {"v": SCORING_VERSION, "method": method, "reference": fingerprint(samples),
              "size": config.image_size, "options": opts.cache_params(method)}

    def compute() -> dict[str, Any]:
        train = load_samples(samples, config.image_size)
        bank = None
        if method in ("knn", GLOBAL_METHOD):
            model = load_checkpoint_model(run, epoch, device)[0]
            bank_opts = opts if method == "knn" else global_options(opts, config.model.depth)
            bank = checkpoint_bank(run, epoch, model, config, data_root, bank_opts, device)
        return {"scores": leave_one_out_scores(method, train, opts, bank),
                "categories": list(train.categories),
                "names": [str(s.path) for s in train.samples]}

    kind = f"loo-{method}"
    record = load_cached(run, epoch, kind, params) if cached_only else cached(
        run, epoch, kind, params, compute)
    if record is None:
        return None
    scores = np.asarray(record["scores"], np.float64)
    return ReferenceScores(scores, list(record["categories"]), list(record["names"]),
                           np.zeros(len(scores), bool))


def calibrate_result(test: MethodScores, reference: ReferenceScores | MethodScores | None
                     ) -> MethodScores:
    """A copy of a test result with per-category calibrated image_scores against `reference`
    (calibration_reference's, or a result on held-out normals; None: there are none). When it
    is too small (core.scoring.calibration), the copy keeps the raw scores and says why."""
    if isinstance(reference, MethodScores):
        reference = ReferenceScores(np.asarray(reference.image_scores, np.float64),
                                    list(reference.categories), list(reference.paths),
                                    np.ones(len(reference), bool))
    what = "held-out validation normals" if reference is None else reference.describe()
    try:
        fitted = (
            fit_calibration([], [], what) if reference is None
            else fit_calibration(reference.scores, reference.categories, what)
        )
    except CalibrationError as err:
        return dataclasses.replace(test, calibration=f"none (raw scores): {err}")
    return dataclasses.replace(
        test,
        image_scores=fitted.apply(test.image_scores, test.categories),
        raw_scores=np.asarray(test.image_scores, np.float64),
        calibration=fitted.describe(),
    )


_CONFIGS: dict[tuple[str, int, int], TrainConfig] = {}  # checkpoint_stamp -> its config


def checkpoint_config(run: Run, epoch: int | str) -> TrainConfig:
    """The config stored inside the checkpoint: the one source of a checkpoint's settings.
    Remembered per checkpoint_stamp (file, size, mtime), so a page reading cached scores of many
    methods loads each checkpoint once, and a rewritten checkpoint is read again."""
    return _checkpoint_header(run, epoch)[0]


def _checkpoint_header(run: Run, epoch: int | str) -> tuple[TrainConfig, int]:
    resolved = run.resolve_epoch(epoch)
    path = run.checkpoint_path(resolved)
    try:
        key = checkpoint_stamp(path.resolve())
    except RunError:
        key = None
    if key is None or key not in _CONFIGS:
        config = _header(run, resolved)[1]
        if key is not None:
            if len(_CONFIGS) > 256:
                _CONFIGS.clear()
            _CONFIGS[key] = config
        return config, resolved
    return _CONFIGS[key], resolved


def _header(run: Run, epoch: int | str) -> tuple[dict[str, Any], TrainConfig, int]:
    """The checkpoint's config without building the model (cheap on a cache hit)."""
    resolved = run.resolve_epoch(epoch)
    try:
        payload = run.load(resolved)
        config = TrainConfig.from_saved(payload["config"], run.checkpoint_path(resolved),
                                        payload.get("version"))
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
