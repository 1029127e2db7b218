"""Weight statistics per convolution, read from checkpoints alone (no data, no forward pass).

Why: a layer that stops learning shows it in its weights first. Weight decay pulls the
convolutions in front of a normalisation layer towards zero when their gradient vanishes, so a
std shrinking epoch after epoch is the earliest, cheapest sign of a dead layer; all of it is
readable from the saved `state_dict` in milliseconds and cached per checkpoint.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from core.config import TrainConfig
from core.model.unet import UNetAutoencoder
from core.runs.cache import cached
from core.runs.checkpoint import open_checkpoint
from core.runs.folder import Run, RunError

# |w| below this counts as "near zero". PyTorch's default init draws U(-b, b) with
# b = 1/sqrt(fan_in), so for the widest layers we build (fan_in = 3*3*1024) b is about 0.01 and
# about 10% of fresh weights fall below 1e-3; a share far above that means weights decayed.
NEAR_ZERO = 1e-3
STAT_COLUMNS = ("std", "mean", "abs_mean", "l2", "near_zero_share", "n", "nonfinite")


def layer_position(name: str, depth: int) -> tuple[str, int]:
    """Where a parameter sits in the U-Net: (part, level).

    part: "encoder" | "bottleneck" | "decoder" | "head" | "other". level: resolution level,
    0 = full resolution, `depth` = bottleneck; decoder block up.{j} outputs level depth-1-j.
    """
    if name.startswith("stem."):
        return "encoder", 0
    if match := re.match(r"down\.(\d+)\.", name):
        level = int(match.group(1)) + 1
        return ("bottleneck" if level == depth else "encoder"), level
    if name.startswith(("squeeze.", "unsqueeze.")):
        return "bottleneck", depth
    if match := re.match(r"up\.(\d+)\.", name):
        return "decoder", depth - 1 - int(match.group(1))
    if name.startswith("head."):
        return "head", 0
    return "other", -1


def conv_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every convolution weight (4-D tensor) in registration order, i.e. encoder -> decoder.

    The same selection as core.training.loop.conv_weights, but on a state_dict, so gradient norms
    logged in metrics.jsonl and weight statistics name the same layers.
    """
    return {name: t for name, t in state_dict.items() if name.endswith("weight") and t.ndim == 4}


def tensor_stats(weights: torch.Tensor) -> dict[str, float]:
    """Summary of one weight tensor (any shape), in float64 over its finite values.

    nonfinite counts NaN/inf entries; every other number ignores them, so one NaN does not hide
    what the rest of the layer looks like.
    """
    flat = weights.detach().reshape(-1).double()
    finite = torch.isfinite(flat)
    values = flat[finite]
    n_finite = int(values.numel())
    if n_finite == 0:
        nan = float("nan")
        return {"std": nan, "mean": nan, "abs_mean": nan, "l2": nan, "near_zero_share": nan,
                "n": int(flat.numel()), "nonfinite": int(flat.numel())}
    return {
        "std": float(values.std(unbiased=False)),
        "mean": float(values.mean()),
        "abs_mean": float(values.abs().mean()),
        "l2": float(values.norm()),
        "near_zero_share": float((values.abs() < NEAR_ZERO).double().mean()),
        "n": int(flat.numel()),
        "nonfinite": int(flat.numel() - n_finite),
    }


def _weight_stats_result(run: Run, epoch: int) -> dict:
    payload = open_checkpoint(run, epoch).payload()
    depth = int(payload["config"].get("model", {}).get("depth", 4))
    tensors = conv_tensors(payload["model"])
    rows = {name: tensor_stats(t) for name, t in tensors.items()}
    result: dict = {"layer": list(rows), "part": [], "level": []}
    for name in rows:
        part, level = layer_position(name, depth)
        result["part"].append(part)
        result["level"].append(level)
    for column in STAT_COLUMNS:
        dtype = np.int64 if column in ("n", "nonfinite") else np.float64
        result[column] = np.array([row[column] for row in rows.values()], dtype=dtype)
    return result


def weight_stats(run: Run, epoch: int) -> pd.DataFrame:
    """One row per convolution of the checkpoint, ordered encoder -> decoder.

    Columns: layer, part, level, std, mean, abs_mean, l2, near_zero_share (|w| < NEAR_ZERO),
    n (weights), nonfinite (NaN/inf weights). Cached per checkpoint.
    """
    result = cached(run, epoch, "weight_stats", {"near_zero": NEAR_ZERO}, lambda: _weight_stats_result(run, epoch))
    frame = pd.DataFrame({"layer": list(result["layer"]), "part": list(result["part"]),
                          "level": [int(v) for v in result["level"]]})
    for column in STAT_COLUMNS:
        frame[column] = np.asarray(result[column])
    return frame


def bottleneck_weight_std(run: Run, epoch: int) -> dict[str, float]:
    """{layer: weight std} of the bottleneck's convolutions (the deepest level's when the model
    names no bottleneck): the collapse signal of a U-Net without skips, whose deep layers shrink
    when nothing forces information through them. Cached per checkpoint (weight_stats)."""
    stats = weight_stats(run, epoch)
    deepest = stats[stats["part"] == "bottleneck"]
    if deepest.empty:
        deepest = stats[stats["level"] == stats["level"].max()]
    return {str(k): float(v) for k, v in zip(deepest["layer"], deepest["std"], strict=True)}


def _histogram_result(run: Run, epoch: int, bins: int) -> dict:
    tensors = conv_tensors(open_checkpoint(run, epoch).payload()["model"])
    counts = np.zeros((len(tensors), bins), dtype=np.int64)
    edges = np.zeros((len(tensors), bins + 1), dtype=np.float64)
    for i, weights in enumerate(tensors.values()):
        values = weights.detach().reshape(-1).double().numpy()
        values = values[np.isfinite(values)]
        counts[i], edges[i] = np.histogram(values, bins=bins) if values.size else (0, np.linspace(0, 1, bins + 1))
    return {"layers": list(tensors), "counts": counts, "edges": edges}


def weight_histogram(run: Run, epoch: int, layer: str, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of one layer's finite weights: (counts (bins,), edges (bins + 1,)).

    Every layer's histogram is computed and cached in one pass, so clicking through layers in
    the dashboard reads the checkpoint once.
    """
    result = cached(run, epoch, "weight_histograms", {"bins": int(bins)},
                    lambda: _histogram_result(run, epoch, int(bins)))
    layers = list(result["layers"])
    if layer not in layers:
        raise RunError(f"{run.path} epoch {epoch}: no convolution named '{layer}'; "
                       f"layers: {', '.join(layers)}")
    index = layers.index(layer)
    return np.asarray(result["counts"][index]), np.asarray(result["edges"][index])


def weight_std_table(run: Run, epochs: list[int] | None = None) -> pd.DataFrame:
    """Layer x epoch table of weight std (index = layer, encoder -> decoder; columns = epochs).

    A column per checkpoint; layers missing from an epoch (architecture changed) are NaN.
    """
    epochs = list(run.epochs() if epochs is None else epochs)
    columns = {epoch: weight_stats(run, epoch).set_index("layer")["std"] for epoch in epochs}
    if not columns:
        return pd.DataFrame()
    table = pd.DataFrame(columns)
    order = list(dict.fromkeys(name for series in columns.values() for name in series.index))
    table = table.reindex(order)
    table.index.name = "layer"
    table.columns.name = "epoch"
    return table


def init_weight_std(config: TrainConfig) -> pd.Series:
    """Per-layer weight std of a model at initialisation (index = layer).

    Training never saves epoch 0, so we rebuild the model from the run's config with the run's
    seed, inside a forked RNG so the caller's random state is untouched. Used as the "early
    value" a dead layer's std has fallen from, because a layer can already shrink in epoch 1.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = UNetAutoencoder(config.model)
    tensors = conv_tensors(model.state_dict())
    return pd.Series({name: float(t.double().std(unbiased=False)) for name, t in tensors.items()}, name="std")
