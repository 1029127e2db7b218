"""Non-finite numbers (NaN, inf) are refused where they would reach a user, with the epoch named.

A model whose training diverged holds NaN weights, and every score it gives is NaN. Shown as a
number ("AUPRO -0.480"), written into a submission ("nan") or fed to K-Means, such a value is a
silent wrong result or a crash far from its cause. The checks here turn it into one sentence
that names the epoch and says what to do; the `nan` health flag of `diagnose` reports the same
epoch as unhealthy instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.runs.folder import RunError

if TYPE_CHECKING:
    from core.scoring.results import MethodScores

ADVICE = ("pick an earlier epoch (python -m core diagnose --run RUN --epoch all shows which are "
          "healthy), or retrain with a lower --lr, checked input images or another --loss")


class NonFiniteError(RunError, FloatingPointError):
    """Numbers that should be finite are NaN or inf; the message names the epoch and the fix."""


def nonfinite_count(values: Any) -> int:
    """How many entries of an array-like (or of every array in a dict) are NaN or inf."""
    if isinstance(values, Mapping):
        return sum(nonfinite_count(v) for v in values.values())
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().float().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "fc":
        return 0
    return int(array.size - np.isfinite(array).sum())


def training_diverged(epoch: int, loss: float, lr: float, run_path: Path | str) -> NonFiniteError:
    """The error a training job raises when an epoch's loss is NaN/inf (its checkpoint is kept
    so `diagnose` can show it)."""
    earlier = f"epochs 1..{epoch - 1} are kept and usable" if epoch > 1 else "no earlier epoch exists"
    return NonFiniteError(
        f"{run_path}: training loss became {loss} (NaN/inf) at epoch {epoch}; its weights give no "
        f"usable scores ({earlier}); lower --lr (now {lr:g}), check the input images, or change "
        f"--loss, then train a new run (or delete epoch_{epoch:03d}.pt and --resume)"
    )


def require_finite(values: Any, what: str, epoch: int | None, where: Path | str) -> None:
    """Raises NonFiniteError naming `what` (e.g. "knn scores") and the epoch when any value is
    NaN or inf; returns silently otherwise. values: an array-like or a dict of them."""
    bad = nonfinite_count(values)
    if bad == 0:
        return
    at = f" of epoch {epoch}" if epoch is not None else ""
    raise NonFiniteError(
        f"{where}: {bad} {what}{at} are NaN or inf (the model's weights or outputs diverged); "
        f"nothing is shown or written from them -- {ADVICE}"
    )


def require_finite_scores(result: MethodScores, run_path: Path | str) -> None:
    """A score_checkpoint result: its image scores and anomaly maps must be finite."""
    method, epoch = result.method, result.epoch
    require_finite(result.image_scores, f"{method} image scores".strip(), epoch, run_path)
    if result.anomaly_maps is not None:
        require_finite(result.anomaly_maps, f"{method} anomaly-map values".strip(), epoch,
                       run_path)
