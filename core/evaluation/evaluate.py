"""Every score of a checkpoint side by side, and the epoch table that tests how epochs are chosen.

Why: validation AUROC on synthetic anomalies can read 1.0 while the real AUROC is 0.5, and
pixel error can carry no signal where feature distances do. `evaluate_epoch` puts all methods
(always including the no-learning floor rawknn) next to each other for one checkpoint;
`evaluate_run` lines epochs up against validation loss and synthetic AUROC, so a user sees
whether either would have picked the epoch that is best on real defects.

Everything returned is JSON-able: undefined metrics (one class only, no masks) are None.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data.samples import NORMAL, UNLABELED
from core.data.snapshot import data_snapshot
from core.evaluation.metrics import (
    auroc_undefined_reason,
    evaluation_table,
    f1_max,
    image_auroc,
    pixel_metrics,
)
from core.evaluation.notes import evaluation_notes
from core.evaluation.thresholds import threshold_reports
from core.runs.cache import cached
from core.runs.folder import Run, jsonable
from core.scoring import METHODS, parse_methods
from core.scoring.checkpoint import (
    SCORING_VERSION,
    calibrate_result,
    calibration_reference,
    can_calibrate,
    score_methods,
)
from core.scoring.context import ScoringContext
from core.scoring.options import (
    CHECKPOINT_METHODS,
    FLOOR_METHODS,
    SEGMENTER_METHODS,
    ScoreOptions,
)
from core.scoring.results import MethodScores
from core.scoring.routing import route_images, routing_accuracy


def with_floor(methods: Sequence[str]) -> tuple[str, ...]:
    """The methods asked for plus rawknn and patchz, the no-learning floors every table shows."""
    methods = tuple(methods)
    return methods + tuple(f for f in FLOOR_METHODS if f not in methods)


def available_methods(context: ScoringContext, methods: Sequence[str]) -> tuple[str, ...]:
    """`methods` without what the checkpoint cannot give when every method was asked for
    ("all"): seg without a segmentation network, ensemble without enough held-out normals
    to calibrate with. Asking for either by name on such a run stays an error that says why."""
    methods = tuple(methods)
    if methods != METHODS:
        return methods
    if not context.checkpoint.holds_segmenter:
        methods = tuple(m for m in methods if m not in SEGMENTER_METHODS)
    if not can_calibrate(context):
        methods = tuple(m for m in methods if m not in CHECKPOINT_METHODS)
    return methods


def pixel_report(test: MethodScores, masks: np.ndarray) -> dict[str, Any]:
    """Pixel AUROC and AUPRO overall and per category (images with masks, plus normals)."""
    labels = np.asarray(test.labels)
    has_mask = np.asarray(test.has_mask, bool)
    maps = np.asarray(test.anomaly_maps, np.float32)
    cats = np.asarray(test.categories, dtype=object)
    report = dict(pixel_metrics(masks, maps, has_mask, labels))
    report["per_category"] = {
        c or UNLABELED: pixel_metrics(
            masks[cats == c], maps[cats == c], has_mask[cats == c], labels[cats == c]
        )
        for c in sorted(set(cats.tolist()))
    }
    report["n_masked"] = int(has_mask.sum())
    return report


def routing_report(context: ScoringContext) -> dict[str, Any] | None:
    """Routing accuracy on test images whose category is known, by features and by thumbnails;
    None when no test image has a known category. Kept in the run's cache per checkpoint and
    data (it encodes every test and training image), so a second evaluate reads it back."""
    config, test, device = context.config, context.test_set, context.device
    known = np.array([s == "dataset" for s in test.category_source], bool)
    if not known.any():
        return None
    params = {
        "v": SCORING_VERSION,
        "data": context.fingerprint("test"),
        "reference": context.train_fingerprint,
        "size": config.image_size,
        "unknown_categories": context.options.unknown_categories,
    }

    def compute() -> dict[str, Any]:
        train = context.reference_set
        images = test.images[known]
        truth = [c for c, k in zip(test.categories, known, strict=True) if k]
        report = {}
        for how, net in (("features", context.model), ("thumbnail", None)):
            routed = route_images(
                images, train.images, train.categories, net, method=how, device=device,
                batch_size=ScoreOptions().batch_for(config.image_size, device),
            )
            report[how] = routing_accuracy(truth, routed.categories)
        return report

    return cached(context.run, context.epoch, "routing", params, compute)


def _image_aurocs(table: pd.DataFrame, categories: list[str]) -> tuple[dict, dict]:
    """Split evaluation_table rows into per-category (+ mean, overall) and per-defect AUROCs."""
    main = list(categories) + ["mean", "overall"]
    image, defect = {}, {}
    for method, row in table.iterrows():
        image[method] = {c: row[c] for c in main}
        defect[method] = {c: row[c] for c in table.columns if c not in main}
    return image, defect


def _counts(test: MethodScores) -> dict[str, dict[str, int]]:
    labels = np.asarray(test.labels)
    cats = np.asarray(test.categories, dtype=object)
    return {
        c or UNLABELED: {
            "normal": int(np.sum((cats == c) & (labels == NORMAL))),
            "anomalous": int(np.sum((cats == c) & (labels > 0))),
            "unlabeled": int(np.sum((cats == c) & (labels < 0))),
        }
        for c in sorted(set(cats.tolist()))
    }


@dataclass
class EpochEvaluation:
    """Every metric of one checkpoint on one test set, every method side by side.

    methods: the methods, floors included. counts: {category: {"normal", "anomalous",
    "unlabeled"}}. image_auroc: {method: {category, "mean" (of categories), "overall" (pooled
    raw), "overall_calibrated"}}; defect_auroc: {method: {"category/defect": image AUROC}};
    f1_max: {method: {"f1", "threshold"}}; calibration: {method: how scores were calibrated};
    seconds: {method: compute time, shared by the methods of one model pass}; test_set: the
    TestSet summary; pixel: {method: {"pixel_auroc", "aupro", "per_category"}} (methods with
    anomaly maps) or None when not asked; thresholds: {method: {category: report}}
    (core.evaluation.thresholds) or None; routing: routing accuracy by features and thumbnails, or None;
    notes: a sentence per undefined metric. Undefined metrics are None (JSON null).
    """

    run: str
    epoch: int
    data: str
    methods: list[str]
    counts: dict[str, dict[str, int]]
    image_auroc: dict[str, dict[str, float | None]]
    defect_auroc: dict[str, dict[str, float | None]]
    f1_max: dict[str, dict[str, float | None]]
    calibration: dict[str, str | None]
    seconds: dict[str, float | None]
    test_set: str
    pixel: dict[str, Any] | None = None
    thresholds: dict[str, Any] | None = None
    routing: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what `evaluate --json` writes (None fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def mean_auroc(self, method: str) -> float | None:
        """The mean of the per-category image AUROCs of `method` (None when undefined)."""
        return self.image_auroc[method]["mean"]


def evaluate_epoch(
    run: Run,
    epoch: int | str,
    data_root: str | Path,
    methods: Sequence[str] = METHODS,
    device="cpu",
    pixel: bool = True,
    thresholds: bool = True,
    routing: bool = True,
    cached_only: bool = False,
    **options,
) -> EpochEvaluation | None:
    """All metrics of one checkpoint on data_root's test split, every method side by side.

    rawknn and patchz are always added: a table without the no-learning floors cannot say
    whether the autoencoder learned anything useful. "all" leaves seg out for checkpoints
    without a segmentation network.

    pixel, thresholds, routing: compute those reports too (pixel metrics need masks).
    cached_only: None unless every score it needs is in the run's cache already (nothing is
    computed), for pages that draw what is known at once. Returns an EpochEvaluation.
    """
    with data_snapshot():  # the data files are listed and stat-ed once for all of it
        context = ScoringContext(run, epoch, data_root, ScoreOptions.from_kwargs(options), device)
        return _evaluate_epoch(context, parse_methods(methods), pixel, thresholds, routing,
                               cached_only)


def _evaluate_epoch(context: ScoringContext, methods: tuple[str, ...], pixel: bool,
                    thresholds: bool, routing: bool, cached_only: bool) -> EpochEvaluation | None:
    methods = with_floor(available_methods(context, methods))
    # one model pass for every method on the held-out normals (the calibration reference and
    # the percentile threshold's), one on the test images; the held-out normals first, so the
    # ensemble finds its members' reference scores computed with the rest
    has_val = bool(context.val_samples)  # none with <4 training images or --val-fraction 0
    vals = (
        score_methods(context, methods, "val", cached_only=cached_only, maps=False)
        if has_val
        else dict.fromkeys(methods)
    )
    results = score_methods(context, methods, cached_only=cached_only, maps=pixel)
    if any(r is None for r in results.values()) or (has_val and None in vals.values()):
        return None  # cached_only, and not everything is cached
    first = results[methods[0]]
    named = [c or UNLABELED for c in first.categories]
    table = evaluation_table(
        named, first.labels, {m: r.image_scores for m, r in results.items()}, first.defects
    )
    image, defect = _image_aurocs(table, sorted(set(named)))
    references = {m: calibration_reference(context, m, cached_only) for m in methods}
    if None in references.values():
        return None  # cached_only, and a leave-one-out reference is not cached
    calibration = {}
    for m, r in results.items():
        calibrated = calibrate_result(r, references[m])
        calibration[m] = calibrated.calibration
        image[m]["overall_calibrated"] = (
            image_auroc(r.labels, calibrated.image_scores) if calibrated.calibrated else None
        )
    out: dict[str, Any] = {
        "run": str(context.run.path),
        "epoch": context.epoch,
        "data": str(context.data_root),
        "methods": list(methods),
        "counts": _counts(first),
        "image_auroc": image,
        "defect_auroc": defect,
        "seconds": {m: r.seconds for m, r in results.items()},
        "calibration": calibration,
        "test_set": context.test_set.summary(),
    }
    out["f1_max"] = {}
    both_classes = auroc_undefined_reason(first.labels) is None  # else F1 is trivial or nan
    for m, r in results.items():
        f1, threshold = f1_max(r.labels, r.image_scores) if both_classes else (None, None)
        out["f1_max"][m] = {"f1": f1, "threshold": threshold}
    if pixel:
        masks = _test_masks(context, first.names)
        out["pixel"] = {
            m: pixel_report(r, masks) for m, r in results.items() if r.anomaly_maps is not None
        }
    if thresholds:
        out["thresholds"] = {m: threshold_reports(r, vals[m], references[m])
                             for m, r in results.items()}
    if routing:
        out["routing"] = routing_report(context)
    out["notes"] = evaluation_notes(out)
    return EpochEvaluation(**jsonable(out))


def _test_masks(context: ScoringContext, names: list[str]) -> np.ndarray:
    """Ground-truth masks in the order of the cached scores (same sample list, same size)."""
    test = context.test_set
    if test.names != list(names):
        raise RuntimeError(
            f"{context.data_root}: the test images changed while evaluating; run evaluate again"
        )
    return test.masks


def _synthetic(record: dict[str, Any], method: str) -> float | None:
    value = (record.get("synthetic_auroc") or {}).get(method)
    return None if value is None else float(value)


def run_table(
    run: Run, evaluations: Sequence[EpochEvaluation], epochs: Sequence[int] = ()
) -> pd.DataFrame:
    """One row per evaluated epoch: epoch, train_loss, val_loss, loss_<term> (each term of the
    training objective: l1, ssim, focal ...), synthetic_auroc_<m> (as logged during training)
    and real_auroc_<m> (mean of per-category test AUROCs); plus a row of logged numbers only
    for each of `epochs` without an evaluation."""
    logged = {int(r.get("epoch", 0)): r for r in run.metrics()}
    by_epoch = {int(ev.epoch): ev for ev in evaluations}
    chosen = list(by_epoch) + [int(e) for e in epochs if int(e) not in by_epoch]
    rows = []
    for epoch in chosen:
        ev = by_epoch.get(epoch)
        record = logged.get(epoch, {})
        row = {
            "epoch": epoch,
            "train_loss": record.get("train_loss"),
            "val_loss": record.get("val_loss"),
        }
        for name, value in (record.get("loss_terms") or {}).items():  # the objective's terms
            row[f"loss_{name}"] = value
        logged_methods = record.get("synthetic_auroc") or {}
        for method in sorted(logged_methods, key=lambda m: METHODS.index(m) if m in METHODS else 99):
            row[f"synthetic_auroc_{method}"] = _synthetic(record, method)
        for method in [] if ev is None else ev.methods:
            row[f"real_auroc_{method}"] = ev.mean_auroc(method)
        rows.append(row)
    return (
        pd.DataFrame(rows).astype({"epoch": int}).set_index("epoch", drop=False).rename_axis(None)
    )


def evaluate_run(
    run: Run,
    epochs: Sequence[int] | str,
    data_root: str | Path,
    methods: Sequence[str] = METHODS,
    device="cpu",
    **options,
) -> pd.DataFrame:
    """The epoch table (see run_table) for `epochs` ("all" or a list); image AUROC only, so
    it stays cheap enough for every epoch of a long run."""
    chosen = run.epochs() if epochs == "all" else [run.resolve_epoch(e) for e in epochs]
    evaluations = [
        evaluate_epoch(
            run,
            e,
            data_root,
            methods,
            device=device,
            pixel=False,
            thresholds=False,
            routing=False,
            **options,
        )
        for e in chosen
    ]
    return run_table(run, evaluations)


def criterion_picks(table: pd.DataFrame) -> dict[str, Any]:
    """Which epoch each criterion would pick, and the real AUROC each method gets there.

    Criteria: lowest val_loss, highest synthetic AUROC (pixel, ssim), and -- the oracle a
    user cannot have without labels -- the highest real AUROC of each learned method (the
    floors rawknn and patchz score every epoch alike).
    """
    real = [c for c in table.columns if c.startswith("real_auroc_")]
    criteria = {"lowest val_loss": ("val_loss", "min")}
    criteria.update(
        {
            f"best synthetic {c.removeprefix('synthetic_auroc_')}": (c, "max")
            for c in table.columns
            if c.startswith("synthetic_auroc_")
        }
    )
    criteria.update(  # not for the no-learning floors: the same at every epoch, no best one
        {f"best real {c.removeprefix('real_auroc_')} (oracle)": (c, "max") for c in real
         if c.removeprefix("real_auroc_") not in FLOOR_METHODS}
    )
    picks = {}
    for name, (column, how) in criteria.items():
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            epoch = int(table.loc[values.idxmin() if how == "min" else values.idxmax(), "epoch"])
            picks[name] = {
                "epoch": epoch,
                **{c.removeprefix("real_"): _value(table, epoch, c) for c in real},
            }
    return jsonable(picks)


def _value(table: pd.DataFrame, epoch: int, column: str) -> float | None:
    value = table.loc[table["epoch"] == epoch, column].iloc[0]
    return None if value is None or pd.isna(value) else float(value)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_epoch_table(result: EpochEvaluation) -> str:
    """Method x category image AUROC (plus pixel AUROC / AUPRO and F1-max) as text."""
    methods = result.methods
    first = result.image_auroc[methods[0]]
    columns = list(first)
    extra = ["pixel_auroc", "aupro", "f1_max"]
    header = ["method"] + columns + extra
    rows = []
    for m in methods:
        px = (result.pixel or {}).get(m, {})
        rows.append(
            [m]
            + [_fmt(result.image_auroc[m][c]) for c in columns]
            + [_fmt(px.get("pixel_auroc")), _fmt(px.get("aupro")), _fmt(result.f1_max[m]["f1"])]
        )
    lines = [
        f"run {result.run} epoch {result.epoch} on {result.data}: image AUROC per category "
        "(mean = mean of categories, overall = all images pooled, overall_calibrated = pooled "
        "after per-category calibration against held-out normals)",
        _grid(header, rows),
    ]
    if result.test_set:
        lines.insert(0, f"test set: {result.test_set}")
    lines += [f"note: {note}" for note in result.notes]
    routing = result.routing
    if routing:
        lines.append(
            "routing accuracy: "
            + ", ".join(f"{k} {_fmt(v['accuracy'])}" for k, v in routing.items())
        )
    return "\n".join(lines)


def format_run_table(table: pd.DataFrame) -> str:
    """The epoch table plus one line per selection criterion: what it picks and what that costs."""
    columns = list(table.columns)
    rows = [
        [
            _fmt(
                None if pd.isna(v) else (float(v) if c != "epoch" else int(v)),
                4 if "loss" in c else 3,
            )
            for c, v in zip(columns, row, strict=True)
        ]
        for row in table.itertuples(index=False)
    ]
    lines = [_grid(columns, rows), "", "epoch each criterion picks -> real AUROC there:"]
    for name, pick in criterion_picks(table).items():
        reals = ", ".join(
            f"{k.removeprefix('auroc_')} {_fmt(v)}" for k, v in pick.items() if k != "epoch"
        )
        lines.append(f"  {name:32s} epoch {pick['epoch']:>3}: {reals}")
    return "\n".join(lines)


def format_table(result: EpochEvaluation | pd.DataFrame) -> str:
    """Text for either an evaluate_epoch result or an evaluate_run table."""
    if isinstance(result, pd.DataFrame):
        return format_run_table(result)
    return format_epoch_table(result)


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
        for i, h in enumerate(header)
    ]
    line = "  ".join(
        str(h).rjust(w) if i else str(h).ljust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    body = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([line, "-" * len(line), *body])
