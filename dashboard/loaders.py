"""The cached loaders pages read through: models, the test set, reconstructions, scores and
image-AUROC evaluations.

Models and the decoded test set go to `st.cache_resource` (shared, read-only); arrays and
results go to `st.cache_data`, each keyed by the checkpoint's fingerprint
(dashboard.fingerprints), so a retrained or resumed epoch is never served stale. The heavy
results themselves are cached on disk by core (core.runs.cache), so a new dashboard process starts
warm. A checkpoint that fails to load is noted as damaged for the sidebar's marks.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st

import core.evaluation.evaluate
import core.runs.finite
import core.scoring
from core.runs.checkpoint import Checkpoint, open_checkpoint
from core.runs.folder import Run, RunError
from core.scoring.results import MethodScores
from dashboard.fingerprints import checkpoint_fingerprint, note_damaged


def _stamp(checkpoint: Checkpoint) -> tuple[str, int, int]:
    return checkpoint.stamp


@st.cache_resource(max_entries=16, show_spinner=False, hash_funcs={Checkpoint: _stamp})
def _model(checkpoint: Checkpoint):
    return checkpoint.model()


def model(run: Run, epoch: int):
    """The epoch's model on the CPU in eval mode (shared, read-only: never train it)."""
    if epoch not in run.epochs():
        raise RunError(f"{run.path}: epoch {epoch} does not exist")
    try:
        return _model(open_checkpoint(run, epoch))
    except RunError:
        note_damaged(run, epoch)
        raise


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


def align(result: MethodScores, test) -> np.ndarray:
    """A score_checkpoint result's image scores in the order of `test.samples`; NaN for
    images the result does not contain."""
    position = {name: i for i, name in enumerate(result.names)}
    values = np.asarray(result.image_scores, np.float64)
    return np.array([values[position[s.name]] if s.name in position else np.nan for s in test.samples])


@st.cache_data(max_entries=64, show_spinner=False)
def _reconstructions(fingerprint: tuple, data_key: tuple, indices: tuple[int, ...],
                     _run: Run, _epoch: int, _images: np.ndarray) -> np.ndarray:
    from core.model.tensors import reconstruct, to_uint8

    if not indices:
        return np.zeros((0, 1, 1, 3), np.uint8)
    outputs = reconstruct(model(_run, _epoch), _images[list(indices)])
    core.runs.finite.require_finite(outputs, "reconstructed pixel values", _epoch, _run.path)
    return to_uint8(outputs)


def reconstructions(run: Run, epoch: int, data_root: Path, indices: Sequence[int]) -> np.ndarray:
    """(n, H, W, 3) uint8 reconstructions of test images `indices` by `epoch`'s model."""
    test = test_set(run, data_root)
    data_key = (str(data_root), test.images.shape, tuple(test.samples[i].name for i in indices))
    return _reconstructions(checkpoint_fingerprint(run, epoch), data_key,
                            tuple(int(i) for i in indices), run, epoch, test.images)


@st.cache_data(max_entries=128, show_spinner=False)
def _subset_maps(fingerprint: tuple, data_key: tuple, indices: tuple[int, ...], method: str,
                 _run: Run, _epoch: int, _data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    images = test_set(_run, _data_root).subset(list(indices))
    result = core.scoring.score_image_set(model(_run, _epoch), images, method)
    core.runs.finite.require_finite(result.scores, f"{method} image scores", _epoch, _run.path)
    if result.maps is not None:
        core.runs.finite.require_finite(result.maps, f"{method} anomaly-map values", _epoch, _run.path)
    return np.asarray(result.scores, np.float64), np.asarray(result.maps, np.float32)


def subset_maps(run: Run, epoch: int, data_root: Path, indices: Sequence[int], method: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), maps (n, S, S)) of a few test images by core.scoring.score_image_set:
    the numbers score_checkpoint gives for the same images, without scoring the whole set."""
    images = test_set(run, data_root)
    data_key = (str(data_root), images.images.shape, tuple(images.samples[i].name for i in indices))
    return _subset_maps(checkpoint_fingerprint(run, epoch), data_key, tuple(int(i) for i in indices), method,
                        run, epoch, data_root)


def _noting_damage(run: Run, epoch: int, load):
    """load(), noting the epoch as damaged when its checkpoint is there but cannot be used."""
    try:
        return load()
    except RunError:
        if run.checkpoint_path(epoch).is_file():
            note_damaged(run, epoch)
        raise


@st.cache_data(max_entries=32, show_spinner=False)
def _scores(fingerprint: tuple, data_root: str, method: str, split: str,
            calibration: str, _run: Run, _epoch: int) -> MethodScores:
    return core.scoring.score_checkpoint(_run, _epoch, data_root, method, split=split,
                                         calibration=calibration)


def scores(run: Run, epoch: int, data_root: Path, method: str, split: str = "test",
           calibration: str = "none") -> MethodScores:
    """core.scoring.score_checkpoint, held in memory too (its disk cache is the slow path).
    calibration "normals": per-category calibrated scores (test split), "none": raw."""
    return _noting_damage(run, epoch, lambda: _scores(
        checkpoint_fingerprint(run, epoch), str(data_root), method, split, calibration, run, epoch))


_EVALUATIONS: OrderedDict[tuple, core.evaluation.evaluate.EpochEvaluation] = OrderedDict()
MAX_EVALUATIONS = 256  # (checkpoint, data, methods) image-AUROC evaluations kept in memory


def image_aurocs(run: Run, epoch: int, data_root: Path | str, methods: Sequence[str],
                 cached_only: bool = False) -> core.evaluation.evaluate.EpochEvaluation | None:
    """core.evaluation.evaluate.evaluate_epoch without pixel metrics, thresholds or routing (image AUROC
    per method and category), held in memory too; what the Overview and Scores pages show.
    cached_only: None instead of computing when the run's cache lacks a score it needs.
    An evaluation read from the disk cache is kept as it is (one read, never two)."""
    key = (checkpoint_fingerprint(run, epoch), str(data_root), tuple(methods))
    if key in _EVALUATIONS:
        _EVALUATIONS.move_to_end(key)
        return _EVALUATIONS[key]
    found = _noting_damage(run, epoch, lambda: core.evaluation.evaluate.evaluate_epoch(
        run, epoch, data_root, methods, pixel=False, thresholds=False, routing=False,
        cached_only=cached_only))
    if found is None:
        return None
    _EVALUATIONS[key] = found
    while len(_EVALUATIONS) > MAX_EVALUATIONS:
        _EVALUATIONS.popitem(last=False)
    return found


def scoring_methods() -> list[str]:
    return list(core.scoring.METHODS)


def map_methods() -> list[str]:
    """Methods that give a per-pixel map (what the reconstruction heatmaps show)."""
    return list(core.scoring.MAP_METHODS)
