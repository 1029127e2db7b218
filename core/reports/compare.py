"""Many runs side by side: the one source of the numbers `python -m core compare` prints and the
dashboard's Compare page shows.

Why: users learn most from comparisons -- four loss mixes by five epochs of validation loss,
U-Net depth by skip connections, which categories each run's encoder confuses. `compare_many`
gathers per run and epoch: validation loss, synthetic AUROC (as training logged it), real AUROC
(only from results already cached by evaluate / the Scores page: nothing is scored here) and
health flags; and per run at its chosen epoch (pinned, else the suggested one, else the lowest
validation loss, else the last): the deepest layers' weight std, K-Means purity and the most
confused category pairs. `best_run` picks by a criterion; `reconstruct_across` puts one test
image's reconstruction by every run side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.data.samples import UNLABELED
from core.diagnostics.choice import choose_epoch
from core.runs.folder import Run, RunError

if TYPE_CHECKING:
    from core.diagnostics.results import RunDiagnosis

FLOOR = "rawknn"  # the no-learning baseline: shown, never what makes a run "best"
TOP_PAIRS = 3


@dataclass
class RunSummary:
    """One run at its chosen epoch.

    label: unique short name (a sweep member's name, else the run folder's name);
    epoch_source: the rule that chose the epoch (core.diagnostics.choice: pinned | suggested |
    lowest validation loss | last); epoch_reason: its sentence; epoch_method: the suggestion's
    score method; settings: loss, depth, skips, image
    size, epochs; val_loss / synthetic_auroc / real_auroc ({method: AUROC}) / flags at the
    chosen epoch; deep_std: {layer: weight std} of the bottleneck convolutions;
    reconstruction_epoch: the epoch chosen for the reconstruction score
    (core.reports.reconstruction.RECONSTRUCTION_SCORE; None without a diagnosis);
    purity: K-Means purity of bottleneck features (None when not computed); confused_pairs:
    (category a, category b, share) most confused first; notes: what could not be computed.
    """

    label: str
    path: str
    epoch: int | None
    epoch_source: str
    settings: dict[str, Any]
    epoch_reason: str = ""
    epoch_method: str | None = None
    reconstruction_epoch: int | None = None

    @property
    def chosen_by(self) -> str:
        """'suggested for knn', 'pinned', ...: the rule that chose the epoch, as every surface says it."""
        method = f" for {self.epoch_method}" if self.epoch_method and self.epoch_source == "suggested" else ""
        return self.epoch_source + method
    val_loss: float | None = None
    synthetic_auroc: dict[str, float] = field(default_factory=dict)
    real_auroc: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    deep_std: dict[str, float] = field(default_factory=dict)
    purity: float | None = None
    confused_pairs: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def deep_std_mean(self) -> float | None:
        values = [v for v in self.deep_std.values() if _finite(v)]
        return float(np.mean(values)) if values else None


@dataclass
class Comparison:
    """runs: one RunSummary per run, in the order given; epochs: one row per (run, epoch) with
    columns run, epoch, val_loss, synthetic_auroc_<method>..., real_auroc_<method>..., flags
    (comma-joined health flag names, "" when healthy or not checked)."""

    runs: list[RunSummary]
    epochs: pd.DataFrame

    def val_loss_table(self) -> pd.DataFrame:
        """epoch x run validation loss (NaN where a run has no such epoch)."""
        return self.metric_table("val_loss")

    def metric_table(self, column: str) -> pd.DataFrame:
        """epoch x run of one epochs column (runs in the given order)."""
        labels = [r.label for r in self.runs]
        if self.epochs.empty or column not in self.epochs:
            return pd.DataFrame(columns=labels, dtype=float)
        table = self.epochs.pivot(index="epoch", columns="run", values=column).reindex(columns=labels)
        return table.fillna("") if column == "flags" else table.astype(float)

    def flags_table(self) -> pd.DataFrame:
        """epoch x run health flag names ("" healthy, not checked, or no such epoch)."""
        return self.metric_table("flags")

    def summary(self) -> pd.DataFrame:
        """One row per run at its chosen epoch: the numbers the tables and `best_run` use."""
        rows = []
        for r in self.runs:
            row = {"run": r.label, "epoch": r.epoch, "chosen by": r.chosen_by, **r.settings,
                   "val_loss": r.val_loss}
            row.update({f"synthetic_auroc_{m}": v for m, v in r.synthetic_auroc.items()})
            row.update({f"real_auroc_{m}": v for m, v in r.real_auroc.items()})
            row.update({"flags": ", ".join(r.flags), "deep_std": r.deep_std_mean, "purity": r.purity,
                        "most_confused": confused_text(r.confused_pairs)})
            rows.append(row)
        frame = pd.DataFrame(rows)
        return frame[metric_order(list(frame.columns), tail=("flags", "deep_std", "purity", "most_confused"))]


def metric_order(columns: list[str], tail: Sequence[str] = ("flags",)) -> list[str]:
    """Columns with synthetic_auroc_* then real_auroc_* (methods in core.scoring's order) after
    the others and before `tail`."""
    from core.scoring import METHODS

    def rank(column: str) -> int:
        method = column.split("_auroc_", 1)[-1]
        return METHODS.index(method) if method in METHODS else len(METHODS)

    metrics = [c for c in columns if c.startswith(("synthetic_auroc_", "real_auroc_"))]
    metrics.sort(key=lambda c: (c.startswith("real_"), rank(c), c))
    head = [c for c in columns if c not in metrics and c not in tail]
    return head + metrics + [c for c in tail if c in columns]


def confused_text(pairs: Sequence[tuple[str, str, float]], top: int = TOP_PAIRS) -> str:
    """'grid~carpet 0.50, wood~carpet 0.25' (the `top` most confused pairs)."""
    return ", ".join(f"{a}~{b} {share:.2f}" for a, b, share in list(pairs)[:top])


# --------------------------------------------------------------------------- which runs


def expand_runs(items: Sequence[str | Path]) -> list[Run]:
    """Run folders as given; a sweep folder (sweep.json) stands for its members in plan order,
    any other folder without config.json for the runs below it. Raises RunError for a folder
    that holds no run."""
    from core.runs.folder import list_runs
    from core.training.sweep import is_sweep, load_plan

    runs: list[Run] = []
    for item in items:
        path = Path(item).expanduser()
        if is_sweep(path):
            found = [r for r in load_plan(path).runs() if (r.path / "config.json").is_file()]
        elif (path / "config.json").is_file():
            found = [Run(path)]
        else:
            found = list_runs(path) if path.is_dir() else []
        if not found:
            raise RunError(f"{path}: no runs here (no config.json, no sweep.json); train one first")
        runs += [r for r in found if r.path not in {x.path for x in runs}]
    return runs


def labels_for(runs: Sequence[Run]) -> list[str]:
    """Folder names, prefixed with the parent's name where two runs share a name."""
    names = [r.name for r in runs]
    return [f"{r.path.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def training_data(run: Run) -> tuple[str, tuple[str, ...]]:
    """(data folder, sorted categories) the run was trained on, as its config.json records them;
    two runs are comparable on validation loss, AUROC and reconstructions only when these match.
    Raises RunError when config.json cannot be read."""
    config = run.config()
    return str(Path(config.data).expanduser().resolve()), tuple(sorted(config.categories))


def data_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs grouped by training_data, groups in order of their first run; a run whose
    config cannot be read is a group of its own."""
    groups: dict[Any, list[Run]] = {}
    for run in runs:
        try:
            key: Any = training_data(run)
        except RunError:
            key = ("unreadable", str(run.path))
        groups.setdefault(key, []).append(run)
    return list(groups.values())


# --------------------------------------------------------------------------- per run


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def cached_real_auroc(run: Run, epoch: int, data_root: str | Path, methods: Sequence[str]) -> dict[str, float]:
    """Mean per-category image AUROC per method, from scores already cached for this checkpoint
    and data (evaluate, the Scores page); methods never scored are left out, nothing is computed.
    The same number as core.evaluation.evaluate's real_auroc_<method>."""
    from core.evaluation.metrics import evaluation_table
    from core.runs.cache import has_entries
    from core.scoring import score_checkpoint
    from core.scoring.checkpoint import cache_epoch

    out = {}
    for method in methods:
        if not has_entries(run, cache_epoch(method, epoch), f"scores-{method}"):
            continue  # never scored: skip without reading the checkpoint
        try:
            result = score_checkpoint(run, epoch, data_root, method, cached_only=True)
        except (ValueError, FileNotFoundError, RuntimeError):
            return out  # data missing or unusable: no real AUROC for this run
        if result is None:
            continue
        named = [c or UNLABELED for c in result.categories]
        table = evaluation_table(named, result.labels, {method: result.image_scores})
        value = table.loc[method, "mean"]
        if _finite(value):
            out[method] = float(value)
    return out


def _diagnosis(run: Run, data_root: Path | None, health: bool) -> RunDiagnosis | None:
    """diagnose_run for the comparison (None when health is not checked)."""
    from core.data.snapshot import data_snapshot
    from core.diagnostics import diagnose_run

    if not health:
        return None
    with data_snapshot():
        # the Overview's suggestion (the label-free ranking, which no flag rules out) whenever
        # the scores it ranks by are cached -- the follower caches them as epochs land -- so a
        # run never shows two different "suggested" epochs; comparing never computes scores
        ranked = _ranking_cached(run, data_root)
        diag = diagnose_run(run, data_root=data_root, cluster=False, rank=ranked)
    if not ranked:
        diag.notes.append(
            "suggested epoch from health flags only: the label-free ranking needs every epoch "
            "scored (open the run's Overview, or python -m core evaluate --epoch all --fast)")
    return diag


def _ranking_cached(run: Run, data_root: Path | None) -> bool:
    """Whether every epoch's test and held-out scores of the ranked methods are cached. A method
    that cannot be scored at all (the ranking leaves it out with a note, e.g. an ensemble without
    held-out normals) needs no cache entry."""
    from core.diagnostics.timeline import ranked_methods
    from core.scoring.checkpoint import score_checkpoint_methods
    from core.scoring.data import run_data_root

    try:
        root = run_data_root(run.config(), data_root)
    except (ValueError, OSError):
        return False

    def cached(epoch: int, method: str, split: str) -> bool:
        try:
            found = score_checkpoint_methods(run, epoch, root, (method,), split, cached_only=True,
                                             maps=False)
        except (ValueError, RuntimeError, RunError, OSError):
            return True  # not scorable: the ranking leaves it out too
        return found[method] is not None

    return all(cached(epoch, method, split) for epoch in run.epochs() for method in ranked_methods(run)
               for split in ("test", "val"))


def _epoch_rows(run: Run, label: str, timeline: list[dict[str, Any]], data_root: Path | None,
                methods: Sequence[str]) -> list[dict[str, Any]]:
    by_epoch = {int(row["epoch"]): row for row in timeline}
    logged = {int(m.get("epoch", 0)): m for m in run.metrics()}
    rows = []
    for epoch in run.epochs():
        record = logged.get(epoch, {})
        row: dict[str, Any] = {"run": label, "epoch": epoch, "val_loss": record.get("val_loss")}
        row.update({f"synthetic_auroc_{m}": v for m, v in (record.get("synthetic_auroc") or {}).items()})
        if data_root is not None:
            row.update({f"real_auroc_{m}": v for m, v in cached_real_auroc(run, epoch, data_root, methods).items()})
        row["flags"] = ", ".join((by_epoch.get(epoch) or {}).get("flags") or [])
        rows.append(row)
    return rows


def _data_root(run: Run, override: str | Path | None) -> Path | None:
    """run_data_root (the one rule), or None when the run's folder is missing."""
    from core.scoring.data import run_data_root

    try:
        return run_data_root(run.config(), override)
    except ValueError:  # DataFolderMissing, or a run without a readable config.json
        return None


def _deep_std(run: Run, epoch: int) -> dict[str, float]:
    from core.diagnostics.weights import bottleneck_weight_std

    return bottleneck_weight_std(run, epoch)


def _clusters(summary: RunSummary, run: Run, data_root: Path | None) -> None:
    from core.diagnostics import feature_clusters
    from core.scoring.data import DataFolderMissing

    if data_root is None or summary.epoch is None:
        summary.notes.append("purity not computed: the run's data folder is missing")
        return
    try:
        result = feature_clusters(run, summary.epoch, data_root)
    except (DataFolderMissing, ValueError) as err:
        summary.notes.append(f"purity not computed: {err}")
        return
    summary.purity, summary.confused_pairs = result.purity, list(result.confused_pairs)


def _settings(run: Run) -> dict[str, Any]:
    try:
        config = run.config()
    except (RunError, ValueError) as err:
        return {"config": f"unreadable ({err})"}
    return {"loss": config.loss, "depth": config.model.depth, "skips": config.model.skips,
            "image_size": config.image_size, "epochs": config.epochs}


def summarize_run(run: Run, label: str, data_root: str | Path | None = None, health: bool = True,
                  cluster: bool = True, methods: Sequence[str] | None = None
                  ) -> tuple[RunSummary, list[dict[str, Any]]]:
    """(RunSummary at the chosen epoch, one epochs row per saved epoch) of one run."""
    from core.reports.reconstruction import RECONSTRUCTION_SCORE
    from core.scoring import METHODS

    root = _data_root(run, data_root)
    diag = _diagnosis(run, root, health)
    choice = choose_epoch(run, diag)
    epoch = choice.epoch
    own = choose_epoch(run, diag, RECONSTRUCTION_SCORE).epoch if diag is not None else None
    rows = _epoch_rows(run, label, diag.timeline if diag else [], root, methods or METHODS)
    summary = RunSummary(label=label, path=str(run.path), epoch=epoch, epoch_source=choice.rule,
                         settings=_settings(run), epoch_reason=choice.reason, epoch_method=choice.method,
                         notes=list(diag.notes) if diag else ["health not checked"],
                         reconstruction_epoch=own)
    at = next((row for row in rows if row["epoch"] == epoch), None)
    if at is not None:
        summary.val_loss = float(at["val_loss"]) if _finite(at.get("val_loss")) else None
        summary.synthetic_auroc = {k.removeprefix("synthetic_auroc_"): float(v) for k, v in at.items()
                                   if k.startswith("synthetic_auroc_") and _finite(v)}
        summary.real_auroc = {k.removeprefix("real_auroc_"): float(v) for k, v in at.items()
                              if k.startswith("real_auroc_") and _finite(v)}
        summary.flags = [f for f in str(at["flags"]).split(", ") if f]
        summary.deep_std = _deep_std(run, epoch)
        if cluster:
            _clusters(summary, run, root)
    return summary, rows


def compare_many(runs: Sequence[Run], data_root: str | Path | None = None, health: bool = True,
                 cluster: bool = True, methods: Sequence[str] | None = None) -> Comparison:
    """Every run summarized (see RunSummary) and the long epochs table (see Comparison).

    data_root: test data for real AUROC, health checks and purity; default each run's own
    config.data. health=False skips the health flags (and the suggested epoch); cluster=False
    skips purity and confused pairs. Everything read is cached per checkpoint (core.runs.cache).
    A damaged run is summarized with a note instead of failing the whole comparison.
    """
    summaries, rows = [], []
    for run, label in zip(runs, labels_for(runs), strict=True):
        try:
            summary, epoch_rows = summarize_run(run, label, data_root, health, cluster, methods)
        except (RunError, ValueError) as err:  # damaged checkpoint, unreadable config
            summary, epoch_rows = RunSummary(label, str(run.path), None, "unreadable", _settings(run),
                                             notes=[str(err)]), []
        summaries.append(summary)
        rows += epoch_rows
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["run", "epoch", "val_loss", "flags"])
    frame = frame[metric_order(list(frame.columns))]
    frame["flags"] = frame["flags"].fillna("")
    return Comparison(summaries, frame.reset_index(drop=True))


# --------------------------------------------------------------------------- the best run


def _best_method(values: dict[str, float]) -> float | None:
    usable = [v for m, v in values.items() if m != FLOOR and _finite(v)]
    return max(usable) if usable else None


# name -> (value of a run, higher is better)
CRITERIA: dict[str, tuple[Callable[[RunSummary], float | None], bool]] = {
    "lowest validation loss": (lambda r: r.val_loss, False),
    "highest synthetic AUROC": (lambda r: _best_method(r.synthetic_auroc), True),
    "highest real AUROC": (lambda r: _best_method(r.real_auroc), True),
    "highest purity": (lambda r: r.purity, True),
}


def best_run(comparison: Comparison, criterion: str, healthy_only: bool = True) -> RunSummary | None:
    """The run whose chosen epoch is best by `criterion` (a CRITERIA name; real and synthetic
    AUROC use the run's best method, never the rawknn floor). Runs whose chosen epoch has a
    health flag are passed over while a flag-free run has a value. None when no run has one."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion '{criterion}': use one of {', '.join(CRITERIA)}")
    value_of, higher = CRITERIA[criterion]
    scored = [(value_of(r), r) for r in comparison.runs if r.epoch is not None and _finite(value_of(r))]
    if healthy_only and any(not r.flags for _, r in scored):
        scored = [(v, r) for v, r in scored if not r.flags]
    if not scored:
        return None
    return (max if higher else min)(scored, key=lambda item: item[0])[1]


def best_run_sentence(comparison: Comparison, criterion: str) -> str:
    """The best run by `criterion` in one sentence that says which epoch the value is from:
    every run is compared at its chosen epoch (core.diagnostics.choice), not at the epoch the
    criterion alone would pick."""
    best = best_run(comparison, criterion)
    if best is None:
        return f"no run has a value for {criterion}" + (
            " (python -m core evaluate caches it)" if "real" in criterion else "")
    value = CRITERIA[criterion][0](best)
    return (f"{best.label}: {criterion.removeprefix('lowest ').removeprefix('highest ')} {value:.4g} at its "
            f"chosen epoch {best.epoch} ({best.chosen_by}); runs are compared at their chosen "
            "epochs, not at the epoch this criterion alone would pick")


# --------------------------------------------------------------------------- one image, every run


@dataclass
class ReconstructionTile:
    """One run's reconstruction of the chosen test image: label, epoch, input and output
    (H, W, 3) uint8 at the run's own image size; note says why it is missing."""

    label: str
    epoch: int | None
    image: np.ndarray | None = None
    reconstruction: np.ndarray | None = None
    note: str = ""


def list_test_images(data_root: str | Path) -> list[str]:
    """Names (Sample.name) of the test images under data_root, sorted."""
    from core.data.layouts import discover_samples

    return sorted(s.name for s in discover_samples(data_root) if s.split == "test")


def reconstruct_across(comparison: Comparison, data_root: str | Path, name: str) -> list[ReconstructionTile]:
    """The test image `name` reconstructed by every run at its chosen epoch."""
    from core.data.images import load_image_set
    from core.data.layouts import discover_samples
    from core.model.tensors import reconstruct, to_uint8
    from core.runs.checkpoint import open_checkpoint

    matches = [s for s in discover_samples(data_root) if s.split == "test" and s.name == name]
    if not matches:
        raise ValueError(f"{data_root}: no test image named '{name}'")
    tiles = []
    for summary in comparison.runs:
        tile = ReconstructionTile(summary.label, summary.epoch)
        if summary.epoch is None:
            tile.note = "no epoch"
        else:
            try:
                run = Run(Path(summary.path))
                loaded = load_image_set(matches[:1], run.config().image_size)
                tile.image = loaded.images[0]
                tile.reconstruction = to_uint8(reconstruct(open_checkpoint(run, summary.epoch).model(), loaded.images))[0]
            except (RunError, ValueError) as err:
                tile.note = str(err)
        tiles.append(tile)
    return tiles


# --------------------------------------------------------------------------- text


COUNT_COLUMNS = ("epoch", "epochs", "depth", "image_size")  # whole numbers, even when pandas
# made the column float (a run without a value leaves NaN in it)


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if digits == 0:
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def _text(frame: pd.DataFrame, digits: dict[str, int] | None = None) -> list[str]:
    digits = digits or {}
    shown = frame.copy().astype(object)
    for column in shown.columns:
        default = 0 if str(column) in COUNT_COLUMNS else (
            4 if "loss" in str(column) or "std" in str(column) else 3)
        shown[column] = [_cell(v, digits.get(str(column), default)) for v in frame[column]]
    return shown.to_string(index=False).splitlines()


def format_comparison(comparison: Comparison, criterion: str | None = None) -> str:
    """The tables `python -m core compare` prints (the Compare page shows the same numbers)."""
    lines = ["runs at their chosen epoch:"]
    lines += ["  " + line for line in _text(comparison.summary())]
    table = comparison.val_loss_table().reset_index()
    lines += ["", "validation loss per epoch (epoch x run):"]
    lines += ["  " + line for line in _text(table, {"epoch": 0})] if not table.empty else ["  none logged"]
    flags = comparison.flags_table().reset_index()
    lines += ["", "health flags per epoch (epoch x run):"]
    lines += ["  " + line for line in _text(flags, {"epoch": 0})] if not flags.empty else ["  none"]
    lines += ["", "per epoch (synthetic AUROC as logged, real AUROC where evaluate has cached it):"]
    lines += ["  " + line for line in _text(comparison.epochs, {"epoch": 0})]
    lines += ["", "deepest layers' weight std at the chosen epoch:"]
    for r in comparison.runs:
        layers = ", ".join(f"{k} {v:.4f}" for k, v in r.deep_std.items()) or "-"
        lines.append(f"  {r.label}: {layers}")
    for name in ([criterion] if criterion else list(CRITERIA)):
        lines.append(f"best by {name}: {best_run_sentence(comparison, name)}")
    notes = [f"  {r.label}: {n}" for r in comparison.runs for n in r.notes]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))
