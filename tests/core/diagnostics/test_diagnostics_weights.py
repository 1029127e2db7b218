"""Weight statistics from checkpoints, the gradient table from metrics.jsonl, run comparison."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.__main__ import main as cli
from core.config import ModelConfig, TrainConfig
from core.diagnostics import (
    compare_runs,
    gradient_table,
    vanishing_gradients,
    weight_histogram,
    weight_stats,
)
from core.diagnostics import weights as weights_module
from core.diagnostics.weights import (
    NEAR_ZERO,
    conv_tensors,
    layer_position,
    tensor_stats,
    weight_std_table,
)
from core.model.unet import UNetAutoencoder
from core.runs.checkpoint import read_payload
from core.runs.folder import Run, RunError, save_checkpoint
from core.training.loop import conv_weights
from tests.conftest import write_run

MODEL = ModelConfig(base_width=4, depth=2)


def save_run(path, states: dict, metrics=(), **overrides) -> Run:
    config = TrainConfig(data=str(path / "no-data"), run=str(path), image_size=32, model=MODEL)
    return write_run(path, config.with_overrides(overrides) if overrides else config, states, metrics)


def scaled(state: dict, factor: float, names=None) -> dict:
    """A copy of state with the conv weights (or only `names`) multiplied by factor."""
    return {k: v * factor if v.ndim == 4 and (names is None or k in names) else v.clone() for k, v in state.items()}


@pytest.fixture
def run(tmp_path) -> Run:
    torch.manual_seed(0)
    state = UNetAutoencoder(MODEL).state_dict()
    return save_run(tmp_path / "run", {1: state, 2: scaled(state, 0.5, {"down.1.1.3.weight"})})


def test_layer_positions_follow_the_unet():
    depth = 3
    assert layer_position("stem.0.weight", depth) == ("encoder", 0)
    assert layer_position("down.0.1.3.weight", depth) == ("encoder", 1)
    assert layer_position("down.2.1.0.weight", depth) == ("bottleneck", 3)
    assert layer_position("squeeze.weight", depth) == ("bottleneck", 3)
    assert layer_position("up.0.up.weight", depth) == ("decoder", 2)
    assert layer_position("up.2.block.3.weight", depth) == ("decoder", 0)
    assert layer_position("head.weight", depth) == ("head", 0)


def test_tensor_stats_by_hand_and_with_nan():
    stats = tensor_stats(torch.tensor([0.0, NEAR_ZERO / 2, -2.0, 2.0]))
    values = np.array([0.0, NEAR_ZERO / 2, -2.0, 2.0])
    assert stats["std"] == pytest.approx(values.std())
    assert stats["mean"] == pytest.approx(values.mean())
    assert stats["abs_mean"] == pytest.approx(np.abs(values).mean())
    assert stats["l2"] == pytest.approx(np.linalg.norm(values))
    assert stats["near_zero_share"] == 0.5 and stats["n"] == 4 and stats["nonfinite"] == 0
    broken = tensor_stats(torch.tensor([1.0, float("nan"), 3.0]))
    assert broken["nonfinite"] == 1 and broken["mean"] == pytest.approx(2.0)


def test_logged_gradient_names_are_the_layers_weight_stats_reads():
    model = UNetAutoencoder(ModelConfig(base_width=4, depth=3, bottleneck_channels=8))
    assert list(conv_weights(model)) == list(conv_tensors(model.state_dict()))


def test_weight_stats_rows_ordered_encoder_to_decoder(run):
    stats = weight_stats(run, 1)
    assert list(stats.columns[:10]) == ["layer", "part", "level", "std", "mean", "abs_mean", "l2",
                                        "near_zero_share", "n", "nonfinite"]
    state = read_payload(run, 1)["model"]
    assert list(stats["layer"]) == [k for k, v in state.items() if v.ndim == 4]
    assert stats["part"].iloc[0] == "encoder" and stats["part"].iloc[-1] == "head"
    assert list(stats.loc[stats["part"] == "bottleneck", "layer"]) == ["down.1.1.0.weight", "down.1.1.3.weight"]
    head = state["head.weight"].double()
    row = stats.set_index("layer").loc["head.weight"]
    assert row["std"] == pytest.approx(float(head.std(unbiased=False)))
    assert row["n"] == head.numel()


def test_weight_stats_are_cached_and_follow_a_rewritten_checkpoint(run, monkeypatch):
    first = weight_stats(run, 2)
    original = weights_module._weight_stats_result

    def fail(*args):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(weights_module, "_weight_stats_result", fail)
    pd.testing.assert_frame_equal(weight_stats(run, 2), first)
    monkeypatch.setattr(weights_module, "_weight_stats_result", original)
    state = read_payload(run, 2)["model"]
    save_checkpoint(run.checkpoint_path(2), {"model": scaled(state, 3.0), "optimizer": {}, "epoch": 2,
                                             "config": read_payload(run, 2)["config"]})
    assert weight_stats(run, 2)["std"].to_numpy() == pytest.approx(3 * first["std"].to_numpy())


def test_weight_histogram_counts_every_weight(run):
    counts, edges = weight_histogram(run, 1, "down.0.1.0.weight", bins=20)
    n = weight_stats(run, 1).set_index("layer").loc["down.0.1.0.weight", "n"]
    assert counts.shape == (20,) and edges.shape == (21,) and counts.sum() == n
    weights = read_payload(run, 1)["model"]["down.0.1.0.weight"]
    assert edges[0] == pytest.approx(float(weights.min())) and edges[-1] == pytest.approx(float(weights.max()))
    with pytest.raises(RunError, match="no convolution named"):
        weight_histogram(run, 1, "nope.weight")


def test_weight_std_table_layer_by_epoch(run):
    table = weight_std_table(run)
    assert list(table.columns) == [1, 2] and table.index[0] == "stem.0.weight"
    changed = table.loc["down.1.1.3.weight"]
    assert changed[2] == pytest.approx(0.5 * changed[1])
    assert table.loc["stem.0.weight", 1] == table.loc["stem.0.weight", 2]


def test_gradient_table_and_vanishing_detection(tmp_path):
    names = ["stem.0.weight", "down.1.1.3.weight", "head.weight"]
    records = [{"epoch": e, "grad_norm": dict(zip(names, norms, strict=True))}
               for e, norms in [(1, [1.0, 0.5, 2.0]), (2, [0.8, 4e-4, 2.0]), (3, [0.7, 0.0, 1e-3])]]
    run = save_run(tmp_path / "g", {}, records)
    table = gradient_table(run)
    assert list(table.index) == names and list(table.columns) == [1, 2, 3]
    assert table.loc["down.1.1.3.weight", 2] == 4e-4
    assert vanishing_gradients(table, 1).empty
    at2 = vanishing_gradients(table, 2)
    assert list(at2["layer"]) == ["down.1.1.3.weight"] and at2["ratio"].iloc[0] == pytest.approx(8e-4)
    at3 = vanishing_gradients(table, 3)
    assert list(at3["layer"]) == ["down.1.1.3.weight", "head.weight"]  # 0 first, then 5e-4
    assert gradient_table(save_run(tmp_path / "empty", {})).empty


def test_compare_runs_lines_layers_up(tmp_path, capsys):
    torch.manual_seed(0)
    state = UNetAutoencoder(MODEL).state_dict()
    curve = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e} for e in (1, 2)]
    run_a = save_run(tmp_path / "a", {1: state}, curve, loss="0.5*ssim+0.5*l1")
    run_b = save_run(tmp_path / "b", {1: scaled(state, 0.1, {"down.1.1.0.weight", "down.1.1.3.weight"})},
                     curve[:1], loss="l2")
    result = compare_runs(run_a, 1, run_b, 1)
    weights = result["weights"].set_index("layer")
    assert list(weights.index) == list(weight_stats(run_a, 1)["layer"])
    assert weights.loc["down.1.1.3.weight", "ratio"] == pytest.approx(0.1)
    assert weights.loc["stem.0.weight", "ratio"] == pytest.approx(1.0)
    by_part = result["by_part"].set_index("part")
    assert by_part.loc["bottleneck", "ratio"] == pytest.approx(0.1)
    losses = result["losses"]
    assert list(losses["epoch"]) == [1, 2] and np.isnan(losses.loc[1, "val_loss_b"])
    assert result["a"]["loss"] == "0.5*ssim+0.5*l1" and result["b"]["loss"] == "l2"
    target = tmp_path / "cmp.json"
    assert cli(["compare", "--run-a", str(run_a.path), "--run-b", str(run_b.path), "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "bottleneck" in out and "loss curves" in out and "l2" in out
    written = json.loads(target.read_text())
    assert written["losses"][1]["val_loss_b"] is None and len(written["weights"]) == len(weights)
