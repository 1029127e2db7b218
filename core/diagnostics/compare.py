"""Two runs side by side: per-layer weight std at chosen epochs, and both loss curves.

Why: the question is usually "did changing X fix it?" -- e.g. an L1+SSIM model against an L2
model, where the bottleneck std of one fell towards zero and the other's did not. Layers are
matched by name, so runs of the same architecture line up row by row; layers only one run has
show NaN on the other side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.diagnostics.weights import weight_stats
from core.runs.folder import Run


def _describe(run: Run, epoch: int) -> dict[str, Any]:
    config = run.config()
    return {"name": run.name, "path": str(run.path), "epoch": int(epoch), "loss": config.loss,
            "skips": config.model.skips, "depth": config.model.depth, "base_width": config.model.base_width}


def loss_curves(run: Run) -> pd.DataFrame:
    """epoch, train_loss, val_loss as logged (NaN where an epoch has no value)."""
    rows = [{"epoch": int(m["epoch"]), "train_loss": m.get("train_loss"), "val_loss": m.get("val_loss")}
            for m in run.metrics()]
    frame = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss"])
    return frame.astype({"train_loss": float, "val_loss": float})


def compare_runs(run_a: Run, epoch_a: int, run_b: Run, epoch_b: int) -> dict[str, Any]:
    """Per-layer weight std side by side and both runs' loss curves.

    Returns {"a", "b": run descriptions (name, path, epoch, loss, skips, ...),
    "weights": DataFrame layer, part, level, std_a, std_b, ratio (b / a) in a's layer order,
    "by_part": DataFrame part, std_a, std_b, ratio (mean std per part),
    "losses": DataFrame epoch, train_loss_a, val_loss_a, train_loss_b, val_loss_b}.
    """
    a = weight_stats(run_a, epoch_a)[["layer", "part", "level", "std"]].rename(columns={"std": "std_a"})
    b = weight_stats(run_b, epoch_b)[["layer", "part", "level", "std"]].rename(columns={"std": "std_b"})
    weights = a.merge(b, on="layer", how="outer", sort=False, suffixes=("", "_b"))
    weights["part"] = weights["part"].fillna(weights.pop("part_b"))
    weights["level"] = weights["level"].fillna(weights.pop("level_b")).astype(int)
    order = {name: i for i, name in enumerate(list(a["layer"]) + [n for n in b["layer"] if n not in set(a["layer"])])}
    weights = weights.sort_values("layer", key=lambda s: s.map(order)).reset_index(drop=True)
    weights["ratio"] = weights["std_b"] / weights["std_a"].replace(0.0, np.nan)
    by_part = weights.groupby("part", sort=False)[["std_a", "std_b"]].mean().reset_index()
    by_part["ratio"] = by_part["std_b"] / by_part["std_a"].replace(0.0, np.nan)
    losses = loss_curves(run_a).merge(loss_curves(run_b), on="epoch", how="outer", suffixes=("_a", "_b"))
    return {"a": _describe(run_a, epoch_a), "b": _describe(run_b, epoch_b),
            "weights": weights[["layer", "part", "level", "std_a", "std_b", "ratio"]], "by_part": by_part,
            "losses": losses.sort_values("epoch").reset_index(drop=True)}
