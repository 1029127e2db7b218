"""What the user picked (shared by every page) and the cached loaders pages read through.

The selection lives in `st.session_state`: app.py draws the sidebar pickers once per rerun
and stores a `Selection`; pages call `selection()` and ask it for what they need
(`need_run`, `need_epoch`, `data_root`), which raises `NotReady` with a sentence to show
when something is missing.

Caching: models go to `st.cache_resource` keyed by (checkpoint path, size, mtime), so a
retrained or resumed epoch is never served stale; arrays and frames go to `st.cache_data`
with the same fingerprint in their key. The heavy results themselves are cached on disk by
core (core.cache), so a new dashboard process starts warm.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

import core.diagnostics
import core.finite
import core.scoring
from core.runs import Run, RunError, list_runs

ENV_CHECKPOINTS = "RECONSCOPE_CHECKPOINTS"
ENV_DATA = "RECONSCOPE_DATA"
KEY_SELECTION = "rs_selection"
KEY_DAMAGED = "rs_damaged_epochs"
# run path -> (run fingerprint, diagnose_run result); process-wide like st.cache_data, so the
# marks appear in every session once any page computed them.
_DIAGNOSES: dict[str, tuple[tuple, dict[str, Any]]] = {}


class NotReady(Exception):
    """Something the page needs is not there yet (no run, no epoch); shown as st.info."""


class DataFolderMissing(Exception):
    """The test images cannot be found; the message names the folder and what to do."""


def default_checkpoints_root() -> Path:
    return Path(os.environ.get(ENV_CHECKPOINTS) or "checkpoints").expanduser()


def default_data_root() -> Path:
    """Where the demo data is written and where the train form points by default."""
    return Path(os.environ.get(ENV_DATA) or "data/demo").expanduser()


def discover_runs(roots: Sequence[Path]) -> list[Run]:
    """Runs under each root (the default one and any folder the user added), de-duplicated."""
    seen: dict[Path, Run] = {}
    for root in roots:
        for run in list_runs(root):
            seen.setdefault(run.path.resolve(), run)
    return list(seen.values())


@dataclass(frozen=True)
class Selection:
    roots: tuple[Path, ...] = ()
    runs: tuple[Run, ...] = ()
    run: Run | None = None
    epochs: tuple[int, ...] = ()
    epoch: int | None = None
    data_override: str = ""
    marks: dict[int, list[str]] = field(default_factory=dict)

    def need_run(self) -> Run:
        if self.run is None:
            where = ", ".join(str(r) for r in self.roots) or "checkpoints/"
            raise NotReady(f"No runs found under {where}. Start the demo on **Get started**, "
                           "train one on **Train**, or add a runs folder in the sidebar.")
        return self.run

    def need_epoch(self) -> int:
        run = self.need_run()
        if self.epoch is None:
            raise NotReady(f"Run **{run.name}** has no finished epoch yet. Epochs appear here as "
                           "they are saved; the **Train** page shows the job's progress.")
        return self.epoch

    def data_root(self) -> Path:
        """The sidebar's data folder, else the run's (core's one rule); raises when absent."""
        from core.scoring.data import DataFolderMissing as Missing
        from core.scoring.data import run_data_root

        run = self.need_run()
        try:
            return run_data_root(run.config(), self.data_override, "the sidebar")
        except Missing as err:
            raise DataFolderMissing(f"{err}. Set it under **Data folder** in the sidebar.") from err


def selection() -> Selection:
    return st.session_state.get(KEY_SELECTION) or Selection(roots=(default_checkpoints_root(),))


def set_selection(value: Selection) -> None:
    st.session_state[KEY_SELECTION] = value


KEY_EPOCHS = "rs_epoch_choice"
KEY_NONCE = "rs_epoch_nonce"


def chosen_epoch(run: Run) -> int | None:
    """The epoch the user chose for this run in this session (by the picker or a button);
    None until they choose, so the picker follows the best epoch of a run that is training."""
    return st.session_state.get(KEY_EPOCHS, {}).get(str(run.path))


def remember_epoch(run: Run, epoch: int) -> None:
    st.session_state.setdefault(KEY_EPOCHS, {})[str(run.path)] = int(epoch)


def epoch_widget_key(run: Run, following: int | None = None) -> str:
    """The picker's widget key. It changes when a button moves the picker and, until the user
    picks an epoch, when the epoch it follows changes, so the widget is redrawn at that epoch:
    Streamlit keeps a widget's value by its key and ignores a new default."""
    nonce = st.session_state.get(KEY_NONCE, {}).get(str(run.path), 0)
    return f"rs_epoch::{run.path}::{nonce}::{'chosen' if following is None else f'follow{following}'}"


def go_to_epoch(run: Run, epoch: int) -> None:
    """Callback for buttons on pages ("show epoch 7"): moves the sidebar's picker."""
    remember_epoch(run, epoch)
    nonces = st.session_state.setdefault(KEY_NONCE, {})
    nonces[str(run.path)] = nonces.get(str(run.path), 0) + 1


# --------------------------------------------------------------------------- fingerprints


def checkpoint_fingerprint(run: Run, epoch: int) -> tuple[str, int, int]:
    """(path, size, mtime_ns): the key every per-epoch cache entry carries."""
    path = run.checkpoint_path(epoch)
    try:
        stat = path.stat()
    except OSError as err:
        raise RunError(f"{path}: checkpoint is gone (deleted or renamed while open)") from err
    return str(path), stat.st_size, stat.st_mtime_ns


def run_fingerprint(run: Run) -> tuple[Any, ...]:
    """Changes whenever an epoch is added, replaced or removed, or metrics are appended."""
    metrics = run.path / "metrics.jsonl"
    stamp = metrics.stat().st_mtime_ns if metrics.is_file() else 0
    return (str(run.path), stamp, tuple(checkpoint_fingerprint(run, e) for e in run.epochs()))


def note_damaged(run: Run, epoch: int) -> None:
    damaged = st.session_state.setdefault(KEY_DAMAGED, {})
    damaged[(str(run.path), epoch)] = checkpoint_fingerprint(run, epoch)


def damaged_epochs(run: Run) -> set[int]:
    """Epochs whose checkpoint failed to load in this session (and was not rewritten since)."""
    damaged = st.session_state.get(KEY_DAMAGED, {})
    out = set()
    for (path, epoch), stamp in damaged.items():
        if path == str(run.path) and run.checkpoint_path(epoch).is_file():
            try:
                if checkpoint_fingerprint(run, epoch) == stamp:
                    out.add(epoch)
            except RunError:
                continue
    return out


# --------------------------------------------------------------------------- models


@st.cache_resource(max_entries=16, show_spinner=False)
def _model(path: str, size: int, mtime_ns: int):
    from core.runs import load_checkpoint, model_from_checkpoint

    return model_from_checkpoint(load_checkpoint(Path(path)), path)


def model(run: Run, epoch: int):
    """The epoch's model on the CPU in eval mode (shared, read-only: never train it)."""
    if epoch not in run.epochs():
        raise RunError(f"{run.path}: epoch {epoch} does not exist")
    try:
        return _model(*checkpoint_fingerprint(run, epoch))
    except RunError:
        note_damaged(run, epoch)
        raise


# --------------------------------------------------------------------------- data


def _folder_stamp(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(max_entries=4, ttl=900, show_spinner="Reading test images…")
def _test_set(root: str, config_json: str, stamp: int):
    from core.config import TrainConfig
    from core.scoring.testset import build_test_set

    return build_test_set(TrainConfig.from_dict(json.loads(config_json)), root)


def test_set(run: Run, data_root: Path):
    """core's TestSet of the run on data_root: the images every page and every score use,
    each with the category it is scored under (its own, or routed with a confidence).
    Decoded once per process (read-only). Scores carry sample names; `align` puts them in
    this set's order."""
    config = run.config()
    return _test_set(str(data_root), json.dumps(config.to_dict(), sort_keys=True),
                     _folder_stamp(data_root))


def align(result: dict[str, Any], test, key: str = "scores") -> np.ndarray:
    """result[key] (per sample of a score_checkpoint result) in the order of `test.samples`;
    NaN for images the result does not contain."""
    position = {name: i for i, name in enumerate(result["names"])}
    values = np.asarray(result[key], np.float64)
    return np.array([values[position[s.name]] if s.name in position else np.nan for s in test.samples])


@st.cache_data(max_entries=64, show_spinner=False)
def _reconstructions(fingerprint: tuple[str, int, int], data_key: tuple, indices: tuple[int, ...],
                     _run: Run, _epoch: int, _images: np.ndarray) -> np.ndarray:
    from core.tensors import reconstruct, to_uint8

    if not indices:
        return np.zeros((0, 1, 1, 3), np.uint8)
    outputs = reconstruct(model(_run, _epoch), _images[list(indices)])
    core.finite.require_finite(outputs, "reconstructed pixel values", _epoch, _run.path)
    return to_uint8(outputs)


def reconstructions(run: Run, epoch: int, data_root: Path, indices: Sequence[int]) -> np.ndarray:
    """(n, H, W, 3) uint8 reconstructions of test images `indices` by `epoch`'s model."""
    test = test_set(run, data_root)
    data_key = (str(data_root), test.images.shape, tuple(test.samples[i].name for i in indices))
    return _reconstructions(checkpoint_fingerprint(run, epoch), data_key,
                            tuple(int(i) for i in indices), run, epoch, test.images)


# --------------------------------------------------------------------------- scores


@st.cache_data(max_entries=128, show_spinner=False)
def _subset_maps(fingerprint: tuple[str, int, int], data_key: tuple, indices: tuple[int, ...], method: str,
                 _run: Run, _epoch: int, _data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    scoring = core.scoring
    images = test_set(_run, _data_root).subset(list(indices))
    result = scoring.score_image_set(model(_run, _epoch), images, method)
    core.finite.require_finite_scores(
        {"method": method, "epoch": _epoch, "scores": result.scores, "maps": result.maps}, _run.path)
    return np.asarray(result.scores, np.float64), np.asarray(result.maps, np.float32)


def subset_maps(run: Run, epoch: int, data_root: Path, indices: Sequence[int], method: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), maps (n, S, S)) of a few test images by core.scoring.score_image_set:
    the numbers score_checkpoint gives for the same images, without scoring the whole set."""
    images = test_set(run, data_root)
    data_key = (str(data_root), images.images.shape, tuple(images.samples[i].name for i in indices))
    return _subset_maps(checkpoint_fingerprint(run, epoch), data_key, tuple(int(i) for i in indices), method,
                        run, epoch, data_root)


@st.cache_data(max_entries=32, show_spinner=False)
def _scores(fingerprint: tuple[str, int, int], data_root: str, method: str, split: str,
            calibration: str, _run: Run, _epoch: int) -> dict[str, Any]:
    scoring = core.scoring
    return scoring.score_checkpoint(_run, _epoch, data_root, method, split=split,
                                    calibration=calibration)


def scores(run: Run, epoch: int, data_root: Path, method: str, split: str = "test",
           calibration: str = "none") -> dict[str, Any]:
    """core.scoring.score_checkpoint, held in memory too (its disk cache is the slow path).
    calibration "normals": per-category calibrated scores (test split), "none": raw."""
    try:
        return _scores(checkpoint_fingerprint(run, epoch), str(data_root), method, split,
                       calibration, run, epoch)
    except RunError:
        if run.checkpoint_path(epoch).is_file():
            note_damaged(run, epoch)
        raise


def scoring_methods() -> list[str]:
    return list(core.scoring.METHODS)


def map_methods() -> list[str]:
    """Methods that give a per-pixel map (what the reconstruction heatmaps show)."""
    return list(core.scoring.MAP_METHODS)


# --------------------------------------------------------------------------- diagnostics


@st.cache_data(max_entries=8, show_spinner=False)
def _diagnosis(fingerprint: tuple, data_root: str | None, _run: Run) -> dict[str, Any]:
    # Without clustering: health flags and the label-free suggestion, a few seconds per epoch
    # the first time (cached on disk per checkpoint afterwards).
    return core.diagnostics.diagnose_run(_run, data_root=data_root, cluster=False)


def diagnosis(run: Run, data_root: Path | None) -> dict[str, Any]:
    """core.diagnostics.diagnose_run for every epoch, remembered for the sidebar's marks."""
    key = run_fingerprint(run)
    result = _diagnosis(key, str(data_root) if data_root else None, run)
    if len(_DIAGNOSES) > 64:
        _DIAGNOSES.clear()
    _DIAGNOSES[str(run.path)] = (key, result)
    return result


def known_diagnosis(run: Run) -> dict[str, Any] | None:
    """The diagnosis computed earlier (by any session of this process), if the run has not
    changed since; the sidebar uses it for its marks without ever waiting for a new one."""
    entry = _DIAGNOSES.get(str(run.path))
    if not entry:
        return None
    key, result = entry
    try:
        return result if key == run_fingerprint(run) else None
    except RunError:
        return None


def health_by_epoch(diag: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """epoch -> its timeline row of a diagnose_run result, with "details": the report's flags
    (name, severity, sentence, evidence). Empty without a diagnosis."""
    if not diag:
        return {}
    reports = {int(r["epoch"]): r for r in diag.get("reports") or [] if isinstance(r, dict) and "epoch" in r}
    out = {}
    for row in diag.get("timeline") or []:
        if isinstance(row, dict) and "epoch" in row:
            epoch = int(row["epoch"])
            out[epoch] = {**row, "details": (reports.get(epoch) or {}).get("flags") or []}
    return out


def ranking_of(diag: dict[str, Any] | None):
    """The diagnosis' label-free epoch ranking as a typed core EpochRanking, or None."""
    from core.diagnostics.ranking import EpochRanking

    record = (diag or {}).get("ranking")
    return EpochRanking.from_dict(record) if record else None


def epoch_marks(run: Run, epochs: Sequence[int], diag: dict[str, Any] | None = None
                ) -> dict[int, list[str]]:
    """epoch -> short marks for the picker: pinned, best by validation loss, health, damaged."""
    marks: dict[int, list[str]] = {e: [] for e in epochs}
    pinned = (run.pinned() or {}).get("epoch")
    if pinned in marks:
        marks[pinned].append("★ pinned")
    best = run.best_by_val_loss()
    if best in marks:
        marks[best].append("✓ best val")
    suggested = ((diag or {}).get("suggestion") or {}).get("epoch")
    if suggested in marks and suggested != best:
        marks[suggested].append("☆ suggested")
    for epoch, entry in health_by_epoch(diag).items():
        if epoch in marks and not entry.get("healthy", True):
            marks[epoch].append("⚠ " + _worst_flag(entry))
    for epoch in damaged_epochs(run):
        if epoch in marks:
            marks[epoch].append("✗ damaged")
    return marks


def _worst_flag(entry: dict[str, Any]) -> str:
    names = [str(n) for n in (entry.get("errors") or entry.get("flags") or []) if n]
    return names[0].replace("_", " ") if names else "unhealthy"


def flag_sentences(entry: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, severity, sentence) of every flag of a health_by_epoch entry."""
    out = []
    for flag in entry.get("details") or []:
        if isinstance(flag, dict):
            out.append((str(flag.get("name", "")), str(flag.get("severity", "warning")), str(flag.get("sentence", ""))))
    return out
