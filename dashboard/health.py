"""Health of every epoch (core.diagnostics.diagnose_run) as the sidebar's marks and the pages'
sentences: pinned, best by validation loss, suggested, unhealthy, damaged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

import core.diagnostics
from core.diagnostics.choice import PINNED, choose_epoch
from core.diagnostics.results import RunDiagnosis
from core.runs.folder import Run, RunError
from dashboard.fingerprints import damaged_epochs, run_fingerprint

# run path -> (run fingerprint, diagnose_run result); process-wide like st.cache_data, so the
# marks appear in every session once any page computed them.
_DIAGNOSES: dict[str, tuple[tuple, RunDiagnosis]] = {}


@st.cache_data(max_entries=8, show_spinner=False)
def _diagnosis(fingerprint: tuple, data_root: str | None, _run: Run) -> RunDiagnosis:
    # Without clustering: health flags and the label-free suggestion, a few seconds per epoch
    # the first time (cached on disk per checkpoint afterwards).
    return core.diagnostics.diagnose_run(_run, data_root=data_root, cluster=False)


def diagnosis(run: Run, data_root: Path | None) -> RunDiagnosis:
    """core.diagnostics.diagnose_run for every epoch, remembered for the sidebar's marks."""
    key = run_fingerprint(run)
    result = _diagnosis(key, str(data_root) if data_root else None, run)
    if len(_DIAGNOSES) > 64:
        _DIAGNOSES.clear()
    _DIAGNOSES[str(run.path)] = (key, result)
    return result


def known_diagnosis(run: Run, stale_ok: bool = False) -> RunDiagnosis | None:
    """The diagnosis computed earlier (by any session of this process), if the run has not
    changed since (stale_ok: also when epochs were added since, as while it trains); the
    sidebar uses it for its marks without ever waiting for a new one."""
    entry = _DIAGNOSES.get(str(run.path))
    if not entry:
        return None
    key, result = entry
    if stale_ok:
        return result
    try:
        return result if key == run_fingerprint(run) else None
    except RunError:
        return None


def health_by_epoch(diag: RunDiagnosis | None) -> dict[int, dict[str, Any]]:
    """epoch -> its timeline row of a diagnose_run result, with "details": the report's flags
    (core.diagnostics.health.HealthFlag). Empty without a diagnosis."""
    if diag is None:
        return {}
    out = {}
    for row in diag.timeline:
        report = diag.report(int(row["epoch"]))
        out[int(row["epoch"])] = {**row, "details": list(report.flags) if report else []}
    return out


def ranking_of(diag: RunDiagnosis | None):
    """The diagnosis' label-free epoch ranking (core EpochRanking), or None."""
    return None if diag is None else diag.ranking


def epoch_marks(run: Run, epochs: Sequence[int], diag: RunDiagnosis | None = None
                ) -> dict[int, list[str]]:
    """epoch -> short marks for the picker: the chosen epoch (core.diagnostics.choice, by its
    rule), the lowest validation loss where it differs, health, damaged, a checkpoint copied in
    from another run."""
    marks: dict[int, list[str]] = {e: [] for e in epochs}
    choice = choose_epoch(run, diag)
    if choice.epoch in marks:
        marks[choice.epoch].append("★ pinned" if choice.rule == PINNED else f"☆ chosen ({choice.rule})")
    best = choice.best_val_epoch
    if best in marks and best != choice.epoch:
        marks[best].append("✓ lowest val loss")
    for epoch, entry in health_by_epoch(diag).items():
        if epoch in marks and not entry.get("healthy", True):
            marks[epoch].append("⚠ " + _worst_flag(entry))
    for epoch in damaged_epochs(run):
        if epoch in marks:
            marks[epoch].append("✗ damaged")
    for epoch in run.foreign_epochs():  # headers only, remembered per file version
        if epoch in marks:
            marks[epoch].append("⇄ other run")
    return marks


def _worst_flag(entry: dict[str, Any]) -> str:
    names = [str(n) for n in (entry.get("errors") or entry.get("flags") or []) if n]
    return names[0].replace("_", " ") if names else "unhealthy"


def flag_sentences(entry: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, severity, sentence) of every flag of a health_by_epoch entry."""
    out = []
    for flag in entry.get("details") or []:
        out.append((flag.name, flag.severity, flag.sentence))
    return out
