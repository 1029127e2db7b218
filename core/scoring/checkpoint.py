"""`score_checkpoint`: any method, any epoch of a run, cached on disk next to the checkpoint.

The first call for a (checkpoint, data, method, options) computes and stores the result via
core.runs.cache; every later call -- another CLI run, a dashboard click -- reads it back. A
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

from core.config import TrainConfig
from core.data.samples import ImageSet
from core.runs.cache import cached, load_cached, store_cached
from core.runs.finite import require_finite_scores
from core.runs.folder import Run
from core.scoring.adaptive import MEMBERS as ADAPTIVE_MEMBERS
from core.scoring.adaptive import METHOD as ADAPTIVE
from core.scoring.adaptive import adaptive_reference, combine_adaptive
from core.scoring.calibration import (
    CALIBRATIONS,
    MIN_REFERENCE,
    CalibrationError,
    fit_calibration,
)
from core.scoring.context import ScoringContext
from core.scoring.data import (
    load_samples,
    reference_root,
    reference_samples,
)
from core.scoring.ensemble import combine, ensemble_reference
from core.scoring.globalknn import METHOD as GLOBAL_METHOD
from core.scoring.globalknn import global_options
from core.scoring.knn import FeatureBank
from core.scoring.methods import build_feature_bank, score_image_set_methods
from core.scoring.options import (
    CHECKPOINT_METHODS,
    DEFAULT_METHOD,
    FALLBACK_METHOD,
    MODEL_FREE_METHODS,
    ROUTED_METHODS,
    ScoreOptions,
    check_method,
    ensemble_members,
)
from core.scoring.patchbank import PatchBank
from core.scoring.reference import (
    LEAVE_ONE_OUT_METHODS,
    ReferenceScores,
    as_reference,
    leave_one_out_scores,
)
from core.scoring.results import MAP_STORAGE_DTYPE, MethodScores
from core.scoring.testset import TestSet

# Part of every cache key written here: bump it when a change to scoring code changes results,
# so results cached by older code are recomputed instead of served.
SCORING_VERSION = 4  # 2: typed records, image-first patch knn; 3: banks record kept images; 4: patchz at 128 px


def trained_categories(config: TrainConfig, data_root: str | Path) -> list[str]:
    """Categories of the run's normal training images (from its data, else data_root)."""
    root = reference_root(config, data_root)
    return sorted({s.category for s in reference_samples(root, "train", config)})


def reference_set(config: TrainConfig, data_root: str | Path) -> ImageSet:
    """The run's normal training images (its train split), decoded once per process."""
    root = reference_root(config, data_root)
    return load_samples(reference_samples(root, "train", config), config.image_size)


def checkpoint_bank(context: ScoringContext, options: ScoreOptions | None = None
                    ) -> FeatureBank | PatchBank:
    """The knn bank of this checkpoint, built once and stored in the run's cache (a PatchBank
    keeps float16 vectors: 24 KB per 64 px training image at the default width). options: the
    bank's own (globalknn pools other levels), default the context's."""
    options = options or context.options
    config = context.config
    params = {
        "v": SCORING_VERSION,
        "reference": context.train_fingerprint,
        "size": config.image_size,
        "levels": options.levels,
        "patch": options.patch,
        "max_bank": options.max_bank,
        "seed": options.seed,
    }

    def compute() -> dict[str, Any]:
        return build_feature_bank(context.model, context.reference_set, options,
                                  context.device).to_record()

    record = cached(context.run, context.epoch, "bank", params, compute)
    return (PatchBank if record["kind"] == "patches" else FeatureBank).from_record(record)


def _needs_reference(
    method: str, categories: list[str], bank: FeatureBank | PatchBank | None, options: ScoreOptions
) -> bool:
    """rawknn, patchz, ssimz and finepatch build their banks from the training images; knn needs
    them only to route."""
    if method in ("rawknn", "patchz", "ssimz", "finepatch"):
        return True
    if method not in ("knn", GLOBAL_METHOD) or options.bank_scope == "global":
        return False
    if bank is None or options.bank_scope == "routed":
        return True
    return any(not c or c not in bank.categories for c in categories)


def _compute(context: ScoringContext, methods: tuple[str, ...], split: str,
             images: ImageSet) -> dict[str, MethodScores]:
    """Every method of `methods` on `images`, one model pass for all (score_image_set_methods)."""
    started = time.perf_counter()
    options = context.options
    banks = {}
    if "knn" in methods:
        banks["knn"] = checkpoint_bank(context)
    if GLOBAL_METHOD in methods:
        banks[GLOBAL_METHOD] = checkpoint_bank(
            context, global_options(options, context.config.model.depth))
    train = (
        context.reference_set
        if any(_needs_reference(m, images.categories, banks.get(m), options) for m in methods)
        else None
    )
    results = score_image_set_methods(
        context.model, images, methods, train=train, device=context.device, banks=banks,
        **_as_kwargs(options)
    )
    seconds = float(time.perf_counter() - started)
    return {m: _scores(images, r, context.epoch, split, seconds) for m, r in results.items()}


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
    are decoded at the checkpoint's image_size. options: ScoreOptions fields. Returns a
    MethodScores (core.scoring.results); maps carry float16 precision, identical whether
    computed now or read from the cache.
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
    none). options: ScoreOptions fields, checked here once. Returns {method: MethodScores}
    (None for a miss when cached_only)."""
    methods = tuple(dict.fromkeys(check_method(m) for m in methods))
    _check_calibration(calibration)
    context = ScoringContext(run, epoch, data_root, ScoreOptions.from_kwargs(options), device)
    return score_methods(context, methods, split, calibration, cached_only, maps)


def _check_calibration(calibration: str) -> None:
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration '{calibration}': use one of {', '.join(CALIBRATIONS)}")


def score_methods(context: ScoringContext, methods: tuple[str, ...], split: str = "test",
                  calibration: str = "none", cached_only: bool = False, maps: bool = True
                  ) -> dict[str, MethodScores | None]:
    """score_checkpoint_methods under a context built by the caller (core.evaluation.evaluate builds one
    per evaluation). The ensemble's members are scored with the rest (one pass) and combined
    afterwards with their references on the held-out normals (core.scoring.ensemble)."""
    methods = tuple(dict.fromkeys(check_method(m) for m in methods))
    _check_calibration(calibration)
    members = ensemble_members(context.options.members) if "ensemble" in methods else ()
    chooses = ADAPTIVE_MEMBERS if ADAPTIVE in methods else ()
    plain = tuple(m for m in methods if m not in CHECKPOINT_METHODS)
    raw = _raw_scores(context, tuple(dict.fromkeys(plain + members + chooses)), split, cached_only,
                      maps)
    results: dict[str, MethodScores | None] = {m: raw[m] for m in plain}
    if chooses:
        reference = {m: calibration_reference(context, m, cached_only) for m in chooses}
        test = raw if split == "test" else _raw_scores(context, chooses, "test", cached_only, False)
        missing = None in reference.values() or any(
            raw[m] is None or test[m] is None for m in chooses)
        results[ADAPTIVE] = None if missing else combine_adaptive(
            {m: raw[m] for m in chooses}, reference, {m: test[m] for m in chooses})
    if members:
        reference = {m: calibration_reference(context, m, cached_only) for m in members}
        missing = any(raw[m] is None for m in members) or (
            cached_only and None in reference.values())
        results["ensemble"] = None if missing else combine({m: raw[m] for m in members}, reference)
    if calibration == "normals" and split == "test":
        for m, scores in results.items():
            if scores is not None:
                results[m] = calibrate_result(scores, calibration_reference(context, m))
    return {m: results[m] for m in methods}


def _raw_scores(context: ScoringContext, methods: tuple[str, ...], split: str,
                cached_only: bool, maps: bool) -> dict[str, MethodScores | None]:
    """Uncalibrated scores of plain methods: kept by the context, else read from the run's
    cache, else (unless cached_only) computed together and stored."""
    results: dict[str, MethodScores | None] = {}
    keys = {}
    for m in methods:
        kept = context.scored.get((split, m, True))
        if kept is None and not maps:
            kept = context.scored.get((split, m, False))
        if kept is not None:
            results[m] = kept
            continue
        keys[m] = _cache_params(m, split, context)
        record = load_cached(context.run, cache_epoch(m, context.epoch), f"scores-{m}", keys[m],
                             skip=() if maps else ("anomaly_maps",))
        results[m] = None if record is None else dataclasses.replace(
            MethodScores.from_record(record), epoch=context.epoch)  # a model-free entry: any epoch
    missing = tuple(m for m in methods if results[m] is None)
    if missing and not cached_only:
        images = (context.test_set if split == "test"
                  else load_samples(context.samples(split), context.config.image_size))
        for m, scores in _compute(context, missing, split, images).items():
            store_cached(context.run, cache_epoch(m, context.epoch), f"scores-{m}", keys[m],
                         scores.to_record())
            results[m] = scores
    for m, scores in results.items():
        if scores is None:
            continue
        require_finite_scores(scores, context.run.path)  # a diverged epoch is refused, never shown
        context.scored[(split, m, maps or scores.anomaly_maps is not None)] = scores
    return results


def can_calibrate(context: ScoringContext, method: str = DEFAULT_METHOD,
                  members: str = "knn,patchz") -> bool:
    """Whether `method` can be calibrated on this run (core.scoring.calibration): every trained
    category holds MIN_REFERENCE reference normals (held-out ones, plus the training normals for
    the methods with leave-one-out scores; an ensemble needs it for every member)."""
    val = Counter(s.category for s in context.val_samples)
    train = Counter(s.category for s in context.train_samples)
    methods = (ensemble_members(members) if method == "ensemble"
               else ADAPTIVE_MEMBERS if method == ADAPTIVE else (method,))
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
    if DEFAULT_METHOD not in CHECKPOINT_METHODS or can_calibrate(
            ScoringContext(run, epoch, data_root)):
        return DEFAULT_METHOD, None
    return FALLBACK_METHOD, (
        f"scoring with {FALLBACK_METHOD}: the default {DEFAULT_METHOD} calibrates its members "
        f"against at least {MIN_REFERENCE} normals per category and this run has fewer (add "
        f"normal training images, or a val/good folder)"
    )


def cache_epoch(method: str, epoch: int) -> int | None:
    """The epoch a method's cached results are kept under: None (one entry for every epoch of
    the run) for MODEL_FREE_METHODS, whose scores never read the model."""
    return None if method in MODEL_FREE_METHODS else epoch


def _cache_params(method: str, split: str, context: ScoringContext) -> dict:
    """The cache key of one method's scores: what was scored, at which size, with which
    options (and, for routed methods, against which training normals)."""
    params = {
        "v": SCORING_VERSION,
        "method": method,
        "split": split,
        "data": context.fingerprint(split),
        "size": context.config.image_size,
        "options": context.options.cache_params(method),
    }
    if method in ROUTED_METHODS:
        params["reference"] = context.train_fingerprint
    return params


def calibration_reference(context: ScoringContext, method: str, cached_only: bool = False
                          ) -> ReferenceScores | None:
    """The normal scores `method` is calibrated with on this checkpoint (core.scoring.reference):
    leave-one-out scores of the training normals (knn, rawknn, patchz; cached like scores)
    followed by the held-out normals' scores; for an ensemble its members' references combined.
    None only when cached_only and something is not cached. Kept by the context."""
    if method in context.references:
        return context.references[method]
    if method == "ensemble":
        refs = {m: calibration_reference(context, m, cached_only)
                for m in ensemble_members(context.options.members)}
        found = None if None in refs.values() else ensemble_reference(refs)
    elif method == ADAPTIVE:
        refs = {m: calibration_reference(context, m, cached_only) for m in ADAPTIVE_MEMBERS}
        tests = _raw_scores(context, ADAPTIVE_MEMBERS, "test", cached_only, maps=False)
        found = (None if None in refs.values() or None in tests.values()
                 else adaptive_reference(tests, refs))
    else:
        parts = []
        if method in LEAVE_ONE_OUT_METHODS:
            parts.append(_leave_one_out(context, method, cached_only))
        if context.val_samples:
            val = _raw_scores(context, (method,), "val", cached_only, maps=False)[method]
            parts.append(None if val is None else as_reference(val))
        found = None if None in parts else ReferenceScores.join(parts)
    if found is not None:
        context.references[method] = found
    return found


def checkpoint_reference(run: Run, epoch: int | str, data_root: str | Path, method: str,
                         device: torch.device | str = "cpu", cached_only: bool = False,
                         **options) -> ReferenceScores | None:
    """calibration_reference of one checkpoint, for a caller without a context (a page that
    draws one method's reference). options: ScoreOptions fields."""
    context = ScoringContext(run, epoch, data_root, ScoreOptions.from_kwargs(options), device)
    return calibration_reference(context, method, cached_only)


def _leave_one_out(context: ScoringContext, method: str, cached_only: bool
                   ) -> ReferenceScores | None:
    config, opts = context.config, context.options
    params = {"v": SCORING_VERSION, "method": method, "reference": context.train_fingerprint,
              "size": config.image_size, "options": opts.cache_params(method)}

    def compute() -> dict[str, Any]:
        train = context.reference_set
        bank = None
        if method in ("knn", GLOBAL_METHOD):
            bank = checkpoint_bank(context, opts if method == "knn"
                                   else global_options(opts, config.model.depth))
        return {"scores": leave_one_out_scores(method, train, opts, bank),
                "categories": list(train.categories),
                "names": [str(s.path) for s in train.samples]}

    kind = f"loo-{method}"
    run, epoch = context.run, cache_epoch(method, context.epoch)
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
    is too small (core.scoring.calibration), the copy keeps the raw scores and says why.
    adaptive's scores are kept as they are (core.scoring.adaptive: calibrated already)."""
    if test.method == ADAPTIVE:  # its members' calibrated scores already: calibrating again
        # would shrink each category's spread a second time
        return dataclasses.replace(
            test, raw_scores=np.asarray(test.image_scores, np.float64),
            calibration="per-category z-scores of the chosen member against its reference "
                        "normals (adaptive's own scores)")
    if reference is not None:
        reference = as_reference(reference)
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
