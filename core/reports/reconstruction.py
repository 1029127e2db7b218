"""The users' reconstruction table: does any reconstruction score beat the floors, and did the
deep layers collapse? One row per run and epoch.

Why: users of a U-Net autoencoder tabulate loss mix x objective x skips by epoch, watching the
validation loss and the bottleneck's weight std (their collapsed no-skip U-Net: 0.014), and ask
whether a reconstruction score (pixel, ssim, feature, ssimz; seg for discriminative runs) beats
what needs no learning at all (rawknn, patchz). `reconstruction_rows` is the one rule for that
table: the Compare page draws it from a sweep and benchmarks/bench_reconstruction.py prints it.
AUROCs are read from the run's cache where evaluate, the Scores/Overview pages or the training
follower stored the scores; `cached_only=False` computes the rest (one model pass per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from core.data.samples import UNLABELED
from core.diagnostics.evidence import RECONSTRUCTION_METHODS
from core.runs.folder import Run, RunError
from core.scoring.options import FLOOR_METHODS, SEGMENTER_METHODS

# which epochs of each run get a row
EPOCH_CHOICES = ("chosen", "last", "chosen,last", "all")
ALL_METHODS = RECONSTRUCTION_METHODS + SEGMENTER_METHODS + FLOOR_METHODS  # the column order
# the reconstruction score whose own chosen epoch (`--epoch chosen --method ssimz`) also gets a
# row: the one that beats the floors once trained long enough (docs/reconstruction.md)
RECONSTRUCTION_SCORE = "ssimz"
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what was just done)


@dataclass(frozen=True)
class ReconstructionRow:
    """One run at one epoch.

    run: the run's label; path: its folder; loss / objective / skips / depth: its recipe
    (config.json); chosen: whether `epoch` is the epoch the product chooses; chosen_for: the
    reconstruction score (RECONSTRUCTION_SCORE) when `epoch` is the one chosen for it, else "";
    val_loss: the
    logged validation loss (the run's own loss mix: compare within a run only); bottleneck_std:
    mean weight std of the bottleneck convolutions; auroc: {method: mean per-category image
    AUROC} for the methods whose scores were found (None: undefined, e.g. one class only);
    missing: the run's methods not scored yet (only with cached_only); note: why the row has no
    numbers (damaged checkpoint, missing data), else "".
    """

    run: str
    path: str
    loss: str
    objective: str
    skips: str
    depth: int | None
    epoch: int | None
    chosen: bool = False
    chosen_for: str = ""
    val_loss: float | None = None
    bottleneck_std: float | None = None
    auroc: dict[str, float | None] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    note: str = ""


def table_methods(run: Run) -> tuple[str, ...]:
    """The run's columns: every reconstruction method, seg when the run was trained with the
    discriminative objective (it holds a segmentation network), and the floors."""
    seg = SEGMENTER_METHODS if run.config().objective == "discriminative" else ()
    return RECONSTRUCTION_METHODS + seg + FLOOR_METHODS


def row_epochs(run: Run, which: str, chosen: int | None, also: Sequence[int | None] = ()) -> list[int]:
    """The epochs of `run` that get a row for `which` (one of EPOCH_CHOICES), ascending; with
    "chosen", also the epochs in `also` (chosen for one score)."""
    if which not in EPOCH_CHOICES:
        raise ValueError(f"epochs '{which}': use one of {', '.join(EPOCH_CHOICES)}")
    saved = run.epochs()
    if not saved:
        return []
    if which == "all":
        return list(saved)
    wanted = {saved[-1]} if "last" in which else set()
    if "chosen" in which:
        wanted |= {int(e) for e in (chosen, *also) if e is not None}
    return sorted(wanted)


def mean_image_aurocs(run: Run, epoch: int, data_root: str | Path, methods: Sequence[str],
                      cached_only: bool = False) -> dict[str, float | None]:
    """{method: mean of the per-category image AUROCs} on data_root's test split: the number
    evaluate prints as each method's "mean" (core.evaluation.metrics.evaluation_table).
    cached_only: methods whose scores are not in the run's cache are left out (nothing is
    computed); else they are computed together in one model pass and cached. None: undefined.
    Raises RunError (damaged checkpoint) or ValueError (data folder unusable)."""
    from core.evaluation.metrics import evaluation_table
    from core.scoring.checkpoint import score_checkpoint_methods

    found = score_checkpoint_methods(run, epoch, data_root, tuple(methods), "test",
                                     cached_only=cached_only, maps=False)
    out: dict[str, float | None] = {}
    for method, result in found.items():
        if result is None:
            continue
        named = [c or UNLABELED for c in result.categories]
        value = evaluation_table(named, result.labels, {method: result.image_scores}).loc[method, "mean"]
        out[method] = float(value) if value is not None and math.isfinite(float(value)) else None
    return out


def _chosen_epoch(run: Run, data_root: Path, method: str | None = None) -> int:
    from core.diagnostics.choice import resolve_epoch

    return resolve_epoch(run, "chosen", data_root, method)[0]


def _recipe(run: Run, label: str) -> dict:
    config = run.config()
    return {"run": label, "path": str(run.path), "loss": config.loss, "objective": config.objective,
            "skips": str(config.model.skips), "depth": config.model.depth}


def run_rows(run: Run, label: str, data_root: str | Path | None = None, epochs: str = "chosen",
             chosen: int | None = None, cached_only: bool = False,
             step: Callable[[str], None] | None = None, own: int | None = None
             ) -> list[ReconstructionRow]:
    """The rows of one run (see reconstruction_rows); step(text) is called after each epoch;
    own: the epoch chosen for RECONSTRUCTION_SCORE when the caller knows it.
    A run whose config, checkpoint or data cannot be read gets one row with a note."""
    from core.diagnostics.weights import bottleneck_weight_std
    from core.scoring.data import run_data_root

    try:
        recipe = _recipe(run, label)
        root = run_data_root(run.config(), data_root)
        methods = table_methods(run)
        if chosen is None and "chosen" in epochs and run.epochs():
            chosen, own = _chosen_epoch(run, root), _chosen_epoch(run, root, RECONSTRUCTION_SCORE)
    except (RunError, ValueError, OSError) as err:
        return [ReconstructionRow(label, str(run.path), "", "", "", None, None, note=str(err))]
    logged = {int(m["epoch"]): m.get("val_loss") for m in run.metrics() if "epoch" in m}
    rows = []
    for epoch in row_epochs(run, epochs, chosen, (own,)):
        row = ReconstructionRow(**recipe, epoch=epoch, chosen=epoch == chosen,
                                chosen_for=RECONSTRUCTION_SCORE if epoch == own else "",
                                val_loss=_number(logged.get(epoch)))
        try:
            stds = bottleneck_weight_std(run, epoch).values()
            auroc = mean_image_aurocs(run, epoch, root, methods, cached_only)
        except (RunError, ValueError, OSError) as err:
            rows.append(replace(row, note=str(err)))
        else:
            std = sum(stds) / len(stds) if stds else None
            rows.append(replace(row, bottleneck_std=_number(std), auroc=auroc,
                                missing=tuple(m for m in methods if m not in auroc)))
        if step is not None:
            step(f"{label} epoch {epoch}")
    return rows


def reconstruction_rows(runs: Sequence[Run], data_root: str | Path | None = None,
                        epochs: str = "chosen", chosen: Mapping[str, int | None] | None = None,
                        labels: Sequence[str] | None = None, cached_only: bool = False,
                        progress: Progress | None = None,
                        chosen_for: Mapping[str, int | None] | None = None) -> list[ReconstructionRow]:
    """One ReconstructionRow per run and epoch, runs in the given order.

    data_root: the test data (default: each run's own config.data); epochs: one of
    EPOCH_CHOICES ("chosen": the epoch the product chooses, core.diagnostics.choice); chosen:
    {run path: epoch} already chosen by the caller (the Compare page's), else it is resolved
    here, which diagnoses every epoch (minutes per epoch on real data); labels: one per run
    (default: the folder names); chosen_for: {run path: epoch chosen for
    RECONSTRUCTION_SCORE}, which gets a row too (resolved here for a run without `chosen`);
    cached_only: AUROCs only from the run's cache, the rest named in `missing`. progress(done, total, text) after each run and epoch.
    """
    from core.reports.compare import labels_for

    labels = list(labels) if labels is not None else labels_for(runs)
    chosen = dict(chosen or {})
    chosen_for = dict(chosen_for or {})
    plans = [(run, label, chosen.get(str(run.path))) for run, label in zip(runs, labels, strict=True)]
    total = sum(len(run.epochs()) if epochs == "all" else 2 if epochs == "chosen,last" else 1
                for run, _, _ in plans)
    done = 0

    def step(text: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total, text)

    rows: list[ReconstructionRow] = []
    for run, label, picked in plans:
        rows += run_rows(run, label, data_root, epochs, picked, cached_only, step,
                         chosen_for.get(str(run.path)))
    return rows


def rows_frame(rows: Sequence[ReconstructionRow]) -> pd.DataFrame:
    """The rows as a table: run, loss, objective, skips, depth, epoch, chosen, val_loss,
    bottleneck_std, one column per method (ALL_METHODS order; seg only when a run has it;
    NaN where not scored or undefined), note."""
    methods = [m for m in ALL_METHODS
               if m not in SEGMENTER_METHODS or any(m in r.auroc or m in r.missing for r in rows)]
    records = []
    for r in rows:
        record = {"run": r.run, "loss": r.loss, "objective": r.objective, "skips": r.skips,
                  "depth": r.depth, "epoch": r.epoch, "chosen": r.chosen, "chosen_for": r.chosen_for,
                  "val_loss": r.val_loss,
                  "bottleneck_std": r.bottleneck_std}
        record.update({m: r.auroc.get(m) for m in methods})
        record["note"] = r.note
        records.append(record)
    columns = ["run", "loss", "objective", "skips", "depth", "epoch", "chosen", "chosen_for", "val_loss",
               "bottleneck_std", *methods, "note"]
    frame = pd.DataFrame(records, columns=columns)
    for column in ["val_loss", "bottleneck_std", *methods]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
