"""The reading side of gradient health: per-layer gradient norms that training logged.

core.training.loop writes, per finished epoch, "grad_norm": {conv weight name: mean gradient L2 norm
over the epoch's steps} into metrics.jsonl. Here that becomes a layer x epoch table, and a
layer whose gradient fell by orders of magnitude from its early value is reported as vanishing
(the SSIM-loss failure where the deep layers stop receiving any signal).
"""

from __future__ import annotations

import math

import pandas as pd

from core.runs.folder import Run

# A layer is "vanishing" at an epoch when its gradient norm is below this fraction of its early
# value. Healthy training moves gradient norms by 1-2 orders of magnitude as the loss falls;
# three orders means the layer's updates no longer change its output in any visible way.
VANISHING_FACTOR = 1e-3


def gradient_table(run: Run) -> pd.DataFrame:
    """Index = layer (encoder -> decoder), columns = epoch, values = mean gradient norm.

    Empty when the run logged no gradient norms (runs trained before they were recorded).
    """
    columns: dict[int, dict[str, float]] = {}
    for record in run.metrics():
        norms = record.get("grad_norm")
        if isinstance(norms, dict) and norms:
            columns[int(record["epoch"])] = {k: float(v) for k, v in norms.items() if v is not None}
    if not columns:
        return pd.DataFrame()
    order = list(dict.fromkeys(name for norms in columns.values() for name in norms))
    table = pd.DataFrame(columns).reindex(order)
    table.index.name = "layer"
    table.columns.name = "epoch"
    return table


def vanishing_gradients(table: pd.DataFrame, epoch: int, factor: float = VANISHING_FACTOR) -> pd.DataFrame:
    """Layers whose gradient norm at `epoch` fell below `factor` x their early value.

    table: gradient_table(run). The early value is the layer's first finite logged norm (epoch
    1 for a normal run). A layer at exactly zero is vanishing whatever its history: nothing
    reaches it. Returns columns layer, early, now, ratio (now / early), sorted worst first.
    """
    empty = pd.DataFrame(columns=["layer", "early", "now", "ratio"])
    if table.empty or epoch not in table.columns:
        return empty
    rows = []
    for layer, series in table.iterrows():
        history = series[[c for c in table.columns if c <= epoch]].dropna()
        now = series.get(epoch)
        if history.empty or now is None or not math.isfinite(now):
            continue
        early = float(history.iloc[0])
        ratio = now / early if early > 0 else (1.0 if now > 0 else 0.0)
        if now == 0 or ratio < factor:
            rows.append({"layer": layer, "early": early, "now": float(now), "ratio": float(ratio)})
    if not rows:
        return empty
    return pd.DataFrame(rows).sort_values("ratio", kind="stable").reset_index(drop=True)
