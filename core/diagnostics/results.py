"""Typed diagnosis results: what diagnose_epoch and diagnose_run return.

Callers read attributes; `to_dict` is the JSON form (`diagnose --json`), with NaN as null.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.diagnostics.health import HealthReport
from core.diagnostics.ranking import EpochRanking, Suggestion
from core.runs.folder import jsonable


@dataclass(frozen=True)
class EpochDiagnosis:
    """One checkpoint's diagnosis.

    health: its HealthReport (flags with evidence); weights: weight_summary (per-layer weight
    statistics and the mean std per part); gradients: {"grad_norm": {layer: norm},
    "grad_ratio_deep_shallow"} as training logged them; metrics: the epoch's other logged
    numbers (losses, synthetic AUROC); clustering: purity, ARI and confused pairs of the encoder
    features ({"skipped": why} when they could not be computed), None when not asked."""

    run: str
    epoch: int
    health: HealthReport
    weights: dict[str, Any]
    gradients: dict[str, Any]
    metrics: dict[str, Any]
    clustering: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"run": self.run, "epoch": self.epoch, "health": self.health.to_dict(),
                         "weights": self.weights, "gradients": self.gradients,
                         "metrics": self.metrics, "clustering": self.clustering})


@dataclass(frozen=True)
class RunDiagnosis:
    """A run's health over its epochs and the epoch (and method) to use.

    timeline: one row per diagnosed epoch (core.diagnostics.timeline.timeline_row: verdict, flag
    names, key numbers, logged metrics); reports: each epoch's HealthReport, in the same order;
    collapse_starts: the epoch where collapse starts, or None; suggestion: the label-free
    ranking's when it ran, else the health-only one; ranking: the EpochRanking, or None when it
    was not asked for or the test set could not be scored; notes: what could not be checked."""

    run: str
    timeline: list[dict[str, Any]]
    reports: list[HealthReport]
    collapse_starts: int | None
    suggestion: Suggestion
    notes: list[str] = field(default_factory=list)
    ranking: EpochRanking | None = None

    @property
    def epochs(self) -> list[int]:
        return [report.epoch for report in self.reports]

    def report(self, epoch: int) -> HealthReport | None:
        """The HealthReport of `epoch`, or None when it was not diagnosed."""
        return next((r for r in self.reports if r.epoch == epoch), None)

    def row(self, epoch: int) -> dict[str, Any] | None:
        """The timeline row of `epoch`, or None when it was not diagnosed."""
        return next((r for r in self.timeline if r["epoch"] == epoch), None)

    def to_dict(self) -> dict[str, Any]:
        out = {"run": self.run, "timeline": self.timeline,
               "reports": [r.to_dict() for r in self.reports],
               "collapse_starts": self.collapse_starts, "suggestion": asdict(self.suggestion),
               "notes": list(self.notes)}
        if self.ranking is not None:
            out["ranking"] = self.ranking.to_dict()
        return jsonable(out)
