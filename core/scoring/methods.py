"""`score_image_set`: one scoring method applied to decoded images, with no cache and no disk.

Seven methods, each a per-image score (higher = more anomalous) and, where it has meaning, a
per-pixel map at the images' resolution:

  pixel    squared (or absolute) error between input and reconstruction, smoothed
  ssim     1 - SSIM between input and reconstruction, smoothed
  feature  distance between encoder features of the input and of its reconstruction
  knn      distance of encoder features to a bank of normal training features; with patches
           (default) a map of per-location distances, without a single pooled vector
  rawknn   distance of a raw-pixel thumbnail to the nearest normal thumbnails: the
           no-learning floor; its map is the thumbnail difference to the nearest normal
  seg      the discriminative objective's segmentation network on (input, reconstruction):
           predicted anomaly probability, smoothed (core.model.segmentation)
  patchz   the second no-learning floor: worst same-location patch z-score against the
           normals' per-position patch statistics (core.scoring.patchz)
  ssimz    the ssim map z-scored per location against the same model's residuals on the
           category's training normals (core.scoring.residual)
  globalknn  distance of the image's pooled encoder features (several levels) to those of the
           nearest normals: global and logical anomalies (core.scoring.globalknn)
  finepatch  distance of every 3 x 3 px grey patch at 128 px to a memory bank of the category's
           normal patches: defects of a few pixels that 64 px loses (core.scoring.finepatch)

Defaults (measured on the demo data, see the closing note of issue #3): maps reduced by
their max; feature uses levels 1..depth-1; knn uses patches of levels 1 and 2 with k = 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.data.samples import ImageSet
from core.scoring.data import decoded_at
from core.scoring.features import encoder_vectors, parse_levels, patch_grid
from core.scoring.finepatch import FinePatchBank, fine_grey, finepatch_maps, to_size
from core.scoring.globalknn import METHOD as GLOBAL_METHOD
from core.scoring.globalknn import global_options
from core.scoring.knn import FeatureBank, bank_rows, grouped_knn, thumbnails
from core.scoring.maps import gaussian_smooth, reduce_maps, upsample
from core.scoring.model_pass import PassRequest, model_pass
from core.scoring.options import CHECKPOINT_METHODS, MAP_METHODS, ScoreOptions, check_method
from core.scoring.patchbank import PatchBank, images_per_category, patch_knn
from core.scoring.patchz import SIDE as PATCHZ_SIDE
from core.scoring.patchz import PatchStats, patchz_scores
from core.scoring.residual import MAX_NORMALS, ResidualStats, residual_z
from core.scoring.routing import route_images

KNN_DEFAULT_LEVELS = (1, 2)


def feature_default_levels(depth: int) -> tuple[int, ...]:
    """Levels 1..depth-1: below the stem (which only sees colour) and above the bottleneck
    (too coarse to place a defect)."""
    return tuple(range(1, depth)) or (depth,)


@dataclass
class ScoreResult:
    """One method's output for N images.

    scores: (N,) float64, higher = more anomalous. maps: (N, S, S) float32 at the images'
    resolution, or None when the method has no map. bank_categories: (N,) the bank each image
    was compared with (knn/rawknn; None for the global bank), routed: (N,) bool, True where
    that category came from routing rather than the image's own label. info: method details
    (levels, bank sizes, routing method) for reports.
    """

    method: str
    scores: np.ndarray
    maps: np.ndarray | None
    bank_categories: list[str | None] | None = None
    routed: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _require_model(model, method: str) -> torch.nn.Module:
    if model is None:
        raise ValueError(f"method '{method}' needs a model; only rawknn and patchz work without one")
    return model


def _require_train(train: ImageSet | None, why: str) -> ImageSet:
    if train is None or len(train) == 0:
        raise ValueError(f"{why} needs the normal training images (train=...); none were given")
    return train


def knn_levels(model: torch.nn.Module, options: ScoreOptions) -> tuple[int, ...]:
    return parse_levels(options.levels, model.config.depth, KNN_DEFAULT_LEVELS)


def build_feature_bank(
    model: torch.nn.Module,
    train: ImageSet,
    options: ScoreOptions,
    device: torch.device | str = "cpu",
) -> FeatureBank | PatchBank:
    """knn's memory bank: the encoder vectors of every training normal, per category.

    With options.patch (default) a PatchBank (per-image patch vectors, float16, searched
    image-first; capped at options.max_bank patches per category by whole images); without, a
    FeatureBank of pooled vectors capped at options.max_bank images per category.
    """
    levels = knn_levels(model, options)
    size = train.images.shape[1]
    per_image = patch_grid(size, levels) ** 2 if options.patch else 1
    rows = bank_rows(train.categories, images_per_category(options.max_bank, per_image),
                     options.seed)  # the images the bank keeps: only these are encoded
    vectors = _in_blocks(train.images, rows, lambda part: encoder_vectors(
        model, part, levels, options.patch, device, options.batch_for(size, device)))
    categories = [train.categories[i] for i in rows]
    info = {
        "levels": list(levels),
        "patch": bool(options.patch),
        "image_size": size,
        "grid": patch_grid(size, levels) if options.patch else None,
    }
    if options.patch:
        return PatchBank.build(vectors, categories, options.max_bank, options.seed, info)
    return FeatureBank.build(vectors, categories, options.max_bank, options.seed, "features", info)


BANK_BLOCK = 1024  # bank images read from a (memory-mapped) set at once


def _in_blocks(images: np.ndarray, rows: np.ndarray, encode) -> np.ndarray:
    """encode(images[rows]) computed BANK_BLOCK rows at a time and concatenated, so a bank
    drawn from a large memory-mapped set never holds more than a block of its images."""
    parts = [encode(images[rows[start:start + BANK_BLOCK]])
             for start in range(0, len(rows), BANK_BLOCK)]
    return np.concatenate(parts) if parts else encode(images[:0])


def build_thumbnail_bank(train: ImageSet, options: ScoreOptions) -> FeatureBank:
    """Raw-pixel thumbnails of the training normals, per category (at most max_bank images
    each, chosen by core.scoring.knn.bank_rows before any thumbnail is made)."""
    rows = bank_rows(train.categories, options.max_bank, options.seed)
    vectors = _in_blocks(train.images, rows, lambda part: thumbnails(part, options.thumb_size))
    side = min(options.thumb_size, train.images.shape[1])
    return FeatureBank.build(
        vectors,
        [train.categories[i] for i in rows],
        options.max_bank,
        options.seed,
        "thumbnails",
        {"thumb_size": side},
    )


def bank_groups(
    categories: Sequence[str], bank: FeatureBank | PatchStats, options: ScoreOptions
) -> tuple[list, np.ndarray]:
    """Which bank each image is compared with, and which of them must be routed first.

    Returns (groups (N,) category or None for the global bank, needs_routing (N,) bool).
    An empty category means unlabeled (always routed unless the scope is global); a category
    the bank does not hold is an error unless options.unknown_categories == "route".
    """
    cats = list(categories)
    if options.bank_scope == "global":
        return [None] * len(cats), np.zeros(len(cats), bool)
    known = set(bank.categories)
    unseen = sorted({c for c in cats if c and c not in known})
    if unseen and options.unknown_categories == "error":
        raise ValueError(
            f"categories {', '.join(unseen)} are not among the trained categories "
            f"({', '.join(bank.categories)}); score only trained categories, or pass "
            "unknown_categories='route' to compare each image with its nearest trained category"
        )
    if options.bank_scope == "routed":
        return list(cats), np.ones(len(cats), bool)
    needs = np.array([not c or c not in known for c in cats], bool)
    if needs.any() and options.bank_scope == "category":
        raise ValueError(
            "bank_scope 'category' needs a trained category for every image; "
            f"{int(needs.sum())} image(s) have none; use bank_scope 'auto' or 'routed'"
        )
    return list(cats), needs


def resolve_groups(
    images: ImageSet,
    bank: FeatureBank | PatchStats,
    options: ScoreOptions,
    model,
    train: ImageSet | None,
    device,
) -> tuple[list, np.ndarray, str | None]:
    """bank_groups plus the routing itself; returns (groups, routed mask, routing method)."""
    groups, needs = bank_groups(images.categories, bank, options)
    if not needs.any():
        return groups, needs, None
    reference = _require_train(train, "routing images to a category")
    sel = np.flatnonzero(needs)
    routed = route_images(
        images.images[sel],
        reference.images,
        reference.categories,
        model,
        method=options.routing,
        device=device,
        batch_size=options.batch_for(images.images.shape[1], device),
    )
    for i, category in zip(sel, routed.categories, strict=True):
        groups[i] = category
    return groups, needs, routed.method


def _check_bank_size(bank: FeatureBank | PatchBank, images: ImageSet) -> None:
    built_at = bank.info.get("image_size")
    if built_at is not None and int(built_at) != images.images.shape[1]:
        raise ValueError(
            f"the bank was built from {built_at} px images but these are "
            f"{images.images.shape[1]} px; score at the size the bank was built at"
        )


def patch_distance_maps(distances: np.ndarray, bank: PatchBank, options: ScoreOptions) -> np.ndarray:
    """knn's (N, P) patch distances -> (N, S, S) float32 maps at the bank's image size, smoothed
    like every map (options.sigma)."""
    size, grid = int(bank.info["image_size"]), int(bank.info["grid"])
    grid_maps = torch.from_numpy(distances.reshape(len(distances), grid, grid))
    return gaussian_smooth(upsample(grid_maps, size), options.sigma_for(size)).numpy()


def _knn(
    model, images: ImageSet, train, options: ScoreOptions, device, bank, queries=None
) -> ScoreResult:
    """queries: the images' knn vectors when a model pass already computed them."""
    model = _require_model(model, "knn")
    if bank is None:
        bank = build_feature_bank(model, _require_train(train, "knn"), options, device)
    _check_bank_size(bank, images)
    levels = tuple(bank.info["levels"])
    patch = bool(bank.info["patch"])
    if queries is None:
        queries = encoder_vectors(model, images.images, levels, patch, device,
                                  options.batch_for(images.images.shape[1], device))
    groups, routed, how = resolve_groups(images, bank, options, model, train, device)
    info = {"levels": list(levels), "patch": patch, "bank_sizes": bank.sizes(), "routing": how}
    if not patch:
        distances, _ = grouped_knn(queries, groups, bank, options.k)
        return ScoreResult("knn", distances.astype(np.float64), None, groups, routed, info)
    distances = patch_knn(queries, groups, bank, options.k, options.neighbours)
    info["neighbours"] = int(options.neighbours)
    maps = patch_distance_maps(distances, bank, options)
    return ScoreResult("knn", reduce_maps(maps, options.reduce), maps, groups, routed, info)


def _rawknn(model, images: ImageSet, train, options: ScoreOptions, device, bank) -> ScoreResult:
    if bank is None:
        bank = build_thumbnail_bank(_require_train(train, "rawknn"), options)
    side = int(bank.info["thumb_size"])
    queries = thumbnails(images.images, side)
    groups, routed, how = resolve_groups(images, bank, options, model, train, device)
    distances, nearest = grouped_knn(queries, groups, bank, options.k)
    diff = np.abs(queries - bank.vectors[nearest]).reshape(len(images), 3, side, side).mean(axis=1)
    size = images.images.shape[1]
    maps = gaussian_smooth(upsample(torch.from_numpy(diff), size), options.sigma_for(size)).numpy()
    info = {"thumb_size": side, "bank_sizes": bank.sizes(), "routing": how}
    return ScoreResult(
        "rawknn", distances.astype(np.float64), maps.astype(np.float32), groups, routed, info
    )


def _patchz(model, images: ImageSet, train, options: ScoreOptions, device) -> ScoreResult:
    reference = _require_train(train, "patchz")
    stats = PatchStats.build(decoded_at(reference, PATCHZ_SIDE), reference.categories)
    groups, routed, how = resolve_groups(images, stats, options, model, train, device)
    scores, grids = patchz_scores(decoded_at(images, PATCHZ_SIDE), groups, stats)
    size = images.images.shape[1]
    maps = gaussian_smooth(upsample(torch.from_numpy(grids), size), options.sigma_for(size)).numpy()
    info = {"side": PATCHZ_SIDE, "routing": how,
            "bank_sizes": {c: int(n) for c, n in zip(*np.unique(reference.categories, return_counts=True),
                                                   strict=True)}}
    return ScoreResult("patchz", scores, maps.astype(np.float32), groups, routed, info)


def _ssimz(model, images: ImageSet, train, options: ScoreOptions, device,
           maps: np.ndarray) -> ScoreResult:
    """maps: the images' smoothed ssim maps from the shared model pass."""
    model = _require_model(model, "ssimz")
    reference = _require_train(train, "ssimz")
    rows = bank_rows(reference.categories, MAX_NORMALS, options.seed)
    size = images.images.shape[1]
    request = PassRequest(("ssim",), options.sigma_for(size))
    normal_maps = model_pass(model, reference.images[rows], request, device,
                             options.batch_for(size, device)).maps["ssim"]
    stats = ResidualStats.build(normal_maps, [reference.categories[i] for i in rows])
    groups, routed, how = resolve_groups(images, stats, options, model, train, device)
    scores, zmaps = residual_z(maps, groups, stats)
    info = {"routing": how, "pool": stats.pool,
            "bank_sizes": {str(c): int(n) for c, n in zip(
                *np.unique([reference.categories[i] for i in rows], return_counts=True),
                strict=True)}}
    return ScoreResult("ssimz", scores, zmaps, groups, routed, info)


def _finepatch(model, images: ImageSet, train, options: ScoreOptions, device) -> ScoreResult:
    reference = _require_train(train, "finepatch")
    bank = FinePatchBank.build(fine_grey(reference), reference.categories, options.seed)
    groups, routed, how = resolve_groups(images, bank, options, model, train, device)
    fine = finepatch_maps(fine_grey(images), groups, bank)
    scores = fine.reshape(len(fine), -1).max(axis=1).astype(np.float64) if len(fine) else np.zeros(0)
    info = {"routing": how, "bank_sizes": bank.sizes()}
    return ScoreResult("finepatch", scores, to_size(fine, images.images.shape[1]), groups, routed,
                       info)


def score_image_set(
    model: torch.nn.Module | None,
    images: ImageSet,
    method: str,
    train: ImageSet | None = None,
    device: torch.device | str = "cpu",
    *,
    bank: FeatureBank | PatchBank | None = None,
    **options,
) -> ScoreResult:
    """Scores every image of `images` with `method`; pure (no cache, no files).

    model: the autoencoder (None only for rawknn/patchz without routing; seg needs one
    loaded from a discriminative checkpoint). images: decoded at the
    model's input size. train: normal training images, needed by knn/rawknn to build a bank
    (unless `bank` is given) and to route images without a known category. options: see
    ScoreOptions. Returns a ScoreResult with scores (N,) and maps (N, S, S) or None.
    """
    banks = {method: bank} if bank is not None else None
    return score_image_set_methods(model, images, (method,), train, device, banks=banks,
                                   **options)[method]


def score_image_set_methods(
    model: torch.nn.Module | None,
    images: ImageSet,
    methods: Sequence[str],
    train: ImageSet | None = None,
    device: torch.device | str = "cpu",
    *,
    banks: dict[str, FeatureBank | PatchBank] | None = None,
    **options,
) -> dict[str, ScoreResult]:
    """score_image_set for several methods at once: one model pass per batch serves every
    method that needs the model (core.scoring.model_pass). banks: {method: bank} for knn and
    rawknn, built from `train` where missing. Returns {method: ScoreResult}."""
    for method in methods:
        check_method(method)
        if method in CHECKPOINT_METHODS:
            raise ValueError(
                f"method '{method}' combines other methods' scores calibrated against a run's "
                "normal images; score a checkpoint (score_checkpoint, python -m core score)"
            )
    opts = ScoreOptions.from_kwargs(options)
    banks = dict(banks or {})
    for method, bank in banks.items():
        if bank is not None and bank.kind not in _BANK_KINDS[method]:
            raise ValueError(f"a bank of {bank.kind} cannot be used for method '{method}'")
    if model is not None:
        model = model.to(device).eval()
    outputs = _shared_pass(model, images, methods, opts, banks, device)
    results = {}
    for method in methods:
        if method in MAP_METHODS:
            maps = outputs.maps[method]
            info = {"levels": list(outputs.feature_levels)} if method == "feature" else {}
            results[method] = ScoreResult(method, reduce_maps(maps, opts.reduce), maps, info=info)
        elif method in _TRAIN_SCORERS:
            results[method] = _TRAIN_SCORERS[method](model, images, train, opts, device)
        elif method == "ssimz":
            results[method] = _ssimz(model, images, train, opts, device, outputs.maps["ssim"])
        elif method == "knn":
            results[method] = _knn(model, images, train, opts, device, banks.get("knn"),
                                   queries=outputs.vectors)
        elif method == GLOBAL_METHOD:
            results[method] = dataclasses.replace(_knn(
                model, images, train, global_options(opts, _require_model(model, method).config.depth),
                device, banks.get(method)), method=method)
        else:
            results[method] = _rawknn(model, images, train, opts, device, banks.get("rawknn"))
    return results


_TRAIN_SCORERS = {"patchz": _patchz, "finepatch": _finepatch}  # built from `train` each call
_BANK_KINDS = {"knn": ("features", "patches"), "rawknn": ("thumbnails",),
               GLOBAL_METHOD: ("features",)}


@dataclass
class _Shared:
    maps: dict[str, np.ndarray]
    vectors: np.ndarray | None
    feature_levels: tuple[int, ...]


def _shared_pass(model, images: ImageSet, methods, opts: ScoreOptions, banks, device) -> _Shared:
    """The one model pass for every requested method that needs the model."""
    wanted = tuple(m for m in methods if m in MAP_METHODS)
    if "ssimz" in methods and "ssim" not in wanted:  # ssimz z-scores the ssim map
        wanted += ("ssim",)
    if wanted:
        model = _require_model(model, wanted[0])
    feature_levels: tuple[int, ...] = ()
    if "feature" in wanted:
        depth = model.config.depth
        feature_levels = parse_levels(opts.levels, depth, feature_default_levels(depth))
    knn_vectors: tuple[int, ...] = ()
    patch = opts.patch
    if "knn" in methods and model is not None:
        bank = banks.get("knn")
        knn_vectors = tuple(bank.info["levels"]) if bank is not None else knn_levels(model, opts)
        patch = bool(bank.info["patch"]) if bank is not None else opts.patch
    if not wanted and not knn_vectors:
        return _Shared({}, None, ())
    size = images.images.shape[1]
    request = PassRequest(wanted, opts.sigma_for(size), opts.error, feature_levels,
                          opts.distance, knn_vectors, patch)
    out = model_pass(model, images.images, request, device, opts.batch_for(size, device))
    return _Shared(out.maps, out.vectors, feature_levels)
