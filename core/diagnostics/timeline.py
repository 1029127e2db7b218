"""One checkpoint's full diagnosis, a run's health timeline, and the epoch to use.

diagnose_epoch and diagnose_run return typed results (core.diagnostics.results: EpochDiagnosis,
RunDiagnosis, whose to_dict is the CLI's JSON); every expensive part underneath is cached per
checkpoint, so the dashboard shows them without recomputing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.data.snapshot import data_snapshot
from core.diagnostics.features import MAX_POINTS, feature_clusters
from core.diagnostics.health import HealthReport, reconstruction_health, weight_health
from core.diagnostics.ranking import EpochRanking, Suggestion
from core.diagnostics.results import EpochDiagnosis, RunDiagnosis
from core.diagnostics.weights import weight_stats
from core.runs.finite import NonFiniteError
from core.runs.folder import Run, RunError, jsonable
from core.scoring.data import DataFolderMissing

# How much each kind of evidence counts when choosing among healthy epochs. Real AUROC (only
# with evaluate=True: it reads test labels) measures the goal itself; synthetic AUROC measures
# it on fabricated defects; validation loss only says normals are reconstructed well, which a
# model that copies everything also achieves; purity says the encoder tells categories apart.
SUGGESTION_WEIGHTS = {"real_auroc": 3.0, "synthetic_auroc": 2.0, "val_loss": 1.0, "purity": 0.5}
# Subtracted per warning flag (blurry, dead layers that are not fatal): between two epochs with
# equal metrics, prefer the one with fewer problems; small enough never to outweigh a metric.
WARNING_PENALTY = 0.05
# What the label-free ranking scores per epoch: the methods training's follower and the Overview
# already score (core.training.follow.OVERVIEW_METHODS), so their cache entries are shared: the
# learned scores (ssimz: the reconstruction score that beats the floors once trained long enough,
# docs/reconstruction.md) and the product's default score (core.scoring.options.DEFAULT_METHOD),
# so the suggestion can pick the epoch for the score a user exports by default, and each of
# them has its own pick (`--epoch chosen --method M`).
RANKED_METHODS = ("pixel", "ssim", "ssimz", "knn", "ensemble", "adaptive")
FLOOR_METHODS = ("rawknn", "patchz")  # no-learning baselines: constant across epochs, never a reason


def epoch_health(run: Run, epoch: int, data_root: str | Path | None = None) -> HealthReport:
    """reconstruction_health, or the image-free checks with a note when the data is missing."""
    try:
        return reconstruction_health(run, epoch, data_root)
    except DataFolderMissing as err:
        return weight_health(run, epoch, note=f"reconstruction checks skipped: {err}")


def weight_summary(run: Run, epoch: int) -> dict[str, Any]:
    """Per-layer weight statistics plus the mean std per part (encoder, bottleneck, ...)."""
    stats = weight_stats(run, epoch)
    by_part = stats.groupby("part", sort=False)["std"].mean()
    smallest = stats.loc[stats["std"].idxmin()] if stats["std"].notna().any() else None
    return {"by_part": {str(k): float(v) for k, v in by_part.items()},
            "smallest_std": None if smallest is None else {"layer": smallest["layer"], "std": float(smallest["std"])},
            "layers": stats.to_dict(orient="records")}


def _clustering(run: Run, epoch: int, data_root, level, k, max_points: int) -> dict[str, Any]:
    try:
        result = feature_clusters(run, epoch, data_root, level=level, k=k, max_points=max_points)
    except DataFolderMissing as err:
        return {"skipped": str(err)}
    except NonFiniteError:  # a diverged epoch: the nan health flag already says so
        return {"skipped": "encoder features are NaN/inf (see the nan flag)"}
    return {"level": str(level), "n_points": int(len(result.assignments)), **result.to_dict()}


def _logged(run: Run) -> dict[int, dict[str, Any]]:
    return {int(m.get("epoch", 0)): m for m in run.metrics()}


def diagnose_epoch(run: Run, epoch: int, data_root: str | Path | None = None, cluster: bool = True,
                   level: str | int = "bottleneck", k: int | None = None,
                   max_points: int = MAX_POINTS) -> EpochDiagnosis:
    """Health (flags with evidence), weight summary, gradient record and clustering of one epoch
    (core.diagnostics.results.EpochDiagnosis)."""
    record = _logged(run).get(epoch, {})
    return EpochDiagnosis(
        run=str(run.path), epoch=epoch,
        health=epoch_health(run, epoch, data_root),
        weights=jsonable(weight_summary(run, epoch)),
        gradients=jsonable({"grad_norm": record.get("grad_norm") or {},
                            "grad_ratio_deep_shallow": record.get("grad_ratio_deep_shallow")}),
        metrics=jsonable({k: v for k, v in record.items()
                          if k not in ("grad_norm", "grad_ratio_deep_shallow")}),
        clustering=jsonable(_clustering(run, epoch, data_root, level, k, max_points))
        if cluster else None,
    )


def _metric_columns(record: dict[str, Any]) -> dict[str, Any]:
    row = {"train_loss": record.get("train_loss"), "val_loss": record.get("val_loss")}
    for method, value in (record.get("synthetic_auroc") or {}).items():
        row[f"synthetic_auroc_{method}"] = value
    row.update({k: v for k, v in record.items() if k.startswith("real_auroc_")})
    return row


def timeline_row(report: HealthReport, record: dict[str, Any], bottleneck_std: float | None) -> dict[str, Any]:
    """One epoch of the timeline: health verdict, flag names, key numbers and logged metrics."""
    numbers = report.numbers
    row = {"epoch": report.epoch, "healthy": report.healthy,
           "flags": [f.name for f in report.flags], "unusable": report.unusable,
           "errors": [f.name for f in report.flags if f.severity == "error"],
           "warnings": [f.name for f in report.flags if f.severity == "warning"]}
    for key in ("input_dependence", "image_spread_ratio", "hf_ratio", "defect_error_ratio", "output_mean",
                "normal_error"):
        row[key] = numbers.get(key)
    if report.copy is not None:
        row["defect_localisation_auc"] = report.copy.real_localisation.estimate
        row["pasted_kept_share"] = report.copy.kept_share.estimate
    row["bottleneck_std"] = bottleneck_std
    row["grad_ratio_deep_shallow"] = record.get("grad_ratio_deep_shallow")
    row.update(_metric_columns(record))
    return row


def collapse_start(rows: Sequence[dict[str, Any]]) -> int | None:
    """The epoch where collapse starts, or None.

    Every model starts out "collapsed" (an untrained net gives the same output for any input),
    so a leading stretch of collapsed epochs that ends before the last epoch is warm-up, not a
    collapse. Otherwise: the first collapsed epoch after a non-collapsed one, or the first
    epoch when the run never left the collapsed state.
    """
    collapsed = [("collapsed" in r["flags"], r["epoch"]) for r in rows]
    if not collapsed:
        return None
    if all(flag for flag, _ in collapsed):
        return collapsed[0][1]
    seen_healthy = False
    for flag, epoch in collapsed:
        if not flag:
            seen_healthy = True
        elif seen_healthy:
            return epoch
    return None


def _value(row: dict[str, Any], metric: str) -> tuple[float | None, str]:
    """(value, label) of a suggestion metric in a row; higher is better except val_loss."""
    if metric in ("real_auroc", "synthetic_auroc"):
        found = {k.removeprefix(f"{metric}_"): v for k, v in row.items()
                 if k.startswith(f"{metric}_") and _finite(v) and k.removeprefix(f"{metric}_") not in FLOOR_METHODS}
        if not found:
            return None, ""
        method = max(found, key=found.get)
        return float(found[method]), f"{metric.replace('_', ' ')} ({method})"
    value = row.get(metric)
    return (float(value), metric.replace("_", " ")) if _finite(value) else (None, "")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _normalised(values: dict[int, float], lower_is_better: bool) -> dict[int, float]:
    """Min-max scaled to [0, 1] with 1 = best; all equal -> all 1."""
    low, high = min(values.values()), max(values.values())
    if high - low < 1e-12:
        return dict.fromkeys(values, 1.0)
    return {e: ((high - v) if lower_is_better else (v - low)) / (high - low) for e, v in values.items()}


def suggest_epoch(rows: Sequence[dict[str, Any]]) -> Suggestion:
    """The healthy epoch with the best weighted evidence, and the reasons in plain words.

    Only epochs without error flags are candidates. Each metric logged for any candidate is
    min-max scaled over the candidates (missing = worst) and weighted by SUGGESTION_WEIGHTS;
    each warning flag costs WARNING_PENALTY; ties go to the later epoch. Without any metric,
    the latest healthy epoch with the fewest warnings is suggested.
    """
    candidates = [r for r in rows if r["healthy"]]
    excluded = [f"{r['epoch']} ({', '.join(r['errors'])})" for r in rows if not r["healthy"]]
    if not candidates:
        return Suggestion(None, reasons=["no healthy epoch: every epoch has an error flag: "
                                         + "; ".join(excluded)])
    scores = {r["epoch"]: -WARNING_PENALTY * len(r["warnings"]) for r in candidates}
    used, details = 0.0, []
    for metric, weight in SUGGESTION_WEIGHTS.items():
        values = {r["epoch"]: _value(r, metric) for r in candidates}
        present = {e: v for e, (v, _) in values.items() if v is not None}
        if not present:
            continue
        scaled = _normalised(present, lower_is_better=metric == "val_loss")
        for epoch in scores:
            scores[epoch] += weight * scaled.get(epoch, 0.0)
        used += weight
        details.append((metric, values, present))
    best = max(scores, key=lambda e: (round(scores[e], 12), e))
    reasons = ["healthy: no error flags" + (f" (excluded epochs {'; '.join(excluded)})" if excluded else "")]
    for metric, values, present in details:
        value, label = values[best]
        top = min(present.values()) if metric == "val_loss" else max(present.values())
        top_epoch = best if present.get(best) == top else next(e for e, v in present.items() if v == top)
        shown = "-" if value is None else f"{value:.4g}"
        reasons.append(f"{label or metric.replace('_', ' ')} {shown} (best among healthy epochs: {top:.4g} at epoch {top_epoch})")
    if not details:
        reasons.append("no validation metrics were logged: the latest healthy epoch with the fewest warnings")
    warnings_here = next(r["warnings"] for r in candidates if r["epoch"] == best)
    if warnings_here:
        reasons.append("warnings: " + ", ".join(warnings_here))
    score = scores[best] / used if used else None
    return Suggestion(int(best), reasons=reasons, score=score)


def real_auroc_by_epoch(run: Run, epochs: Sequence[int], data_root) -> tuple[dict[int, dict[str, float]], str]:
    """real_auroc_<method> per epoch from core.evaluation.evaluate (reads test labels), and a note.

    Optional: a missing module or test set gives no values and says why, never an error.
    """
    try:
        from core.evaluation.evaluate import evaluate_run
    except ImportError as err:
        return {}, f"real AUROC unavailable: {err}"
    try:
        table = evaluate_run(run, list(epochs), data_root, methods=("pixel", "ssim"))
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        return {}, f"real AUROC unavailable: {err}"
    columns = [c for c in table.columns if str(c).startswith("real_auroc_")]
    values = {int(row["epoch"]): {c: row[c] for c in columns if _finite(row[c])} for _, row in table.iterrows()}
    return values, "real AUROC from core.evaluation.evaluate (test labels) is part of the suggestion"


def ranked_methods(run: Run) -> tuple[str, ...]:
    """RANKED_METHODS, plus seg for a run trained with the discriminative objective."""
    return RANKED_METHODS + (("seg",) if run.config().objective == "discriminative" else ())


def epoch_ranking(run: Run, epochs: Sequence[int], data_root, reports: Sequence[HealthReport],
                  methods: Sequence[str] | None = None, blind: bool = False) -> tuple[EpochRanking | None, str]:
    """core.diagnostics.ranking.rank_run over the diagnosed epochs (methods: ranked_methods by
    default), with each epoch's unusable methods from its flags; (None, why) when the test set
    cannot be scored."""
    from core.diagnostics.ranking import rank_run
    from core.scoring.data import run_data_root

    unusable = {r.epoch: r.unusable for r in reports}
    methods = ranked_methods(run) if methods is None else methods
    try:
        root = run_data_root(run.config(), data_root)
        return rank_run(run, epochs, root, methods, unusable, blind), ""
    except (ValueError, FileNotFoundError, RuntimeError, RunError) as err:
        return None, f"label-free epoch ranking unavailable: {err}"


def diagnose_run(run: Run, epochs: Sequence[int] | None = None, data_root: str | Path | None = None,
                 cluster: bool = True, evaluate: bool = False, level: str | int = "bottleneck",
                 max_points: int = MAX_POINTS, rank: bool = True, blind: bool = False) -> RunDiagnosis:
    """Health timeline over epochs, where collapse starts, and the suggested epoch
    (core.diagnostics.results.RunDiagnosis).

    timeline: timeline_row per epoch (+ purity, ari); notes: what could not be checked, damaged
    epochs left out. evaluate=True adds real AUROC per epoch from core.evaluation.evaluate to the timeline
    (slow; with rank=False it weighs into the health-only suggestion). rank=True (default) adds
    the ranking (label-free criteria, their agreement with real AUROC where the test set has
    labels) and the suggestion becomes the ranking's: an epoch and a method, never a method a
    flag rules out at that epoch. Without a scorable test set the health-only suggestion
    (suggest_epoch) stays. blind=True: the ranking ignores test labels
    (core.diagnostics.ranking.rank_run).
    """
    with data_snapshot():  # one look at the data files for every epoch (core.data.snapshot)
        return _diagnose_run(run, epochs, data_root, cluster, evaluate, level, max_points, rank, blind)


def _diagnose_run(run, epochs, data_root, cluster, evaluate, level, max_points, rank, blind=False
                  ) -> RunDiagnosis:
    epochs = list(run.epochs() if epochs is None else epochs)
    logged = _logged(run)
    rows, reports, notes = [], [], []
    for epoch in epochs:
        try:
            report = epoch_health(run, epoch, data_root)
        except RunError as err:  # a damaged checkpoint is named and left out, the rest still shows
            notes.append(f"epoch {epoch} left out: {err}")
            continue
        stats = weight_stats(run, epoch)
        bottleneck = stats.loc[stats["part"] == "bottleneck", "std"]
        row = timeline_row(report, logged.get(epoch, {}), float(bottleneck.mean()) if len(bottleneck) else None)
        if cluster:
            clustering = _clustering(run, epoch, data_root, level, None, max_points)
            row["purity"], row["ari"] = clustering.get("purity"), clustering.get("ari")
        rows.append(row)
        reports.append(report)
        notes += [n for n in report.notes if n not in notes]
    if evaluate and rows:
        diagnosed = [row["epoch"] for row in rows]
        real, note = real_auroc_by_epoch(run, diagnosed, data_root if data_root is not None else run.config().data)
        notes.append(note)
        for row in rows:
            row.update(real.get(row["epoch"], {}))
    suggestion, ranking = suggest_epoch(rows), None
    if rank and rows:
        ranking, why = epoch_ranking(run, [row["epoch"] for row in rows], data_root, reports, blind=blind)
        if ranking is None:
            notes.append(why)
        else:
            suggestion = ranking.suggestion
            notes += [n for n in ranking.notes if n not in notes]
    return RunDiagnosis(str(run.path), jsonable(rows), reports, collapse_start(rows), suggestion,
                        notes, ranking)
