"""AppTest of the sidebar's storage popover and of exporting twice from the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("streamlit")

from core.runs.checkpoint import read_payload
from core.runs.folder import Run  # noqa: E402
from core.runs.storage import kept_by_request, plan_prune  # noqa: E402
from tests.dashboard_support import copy_run, messages, open_app  # noqa: E402


@pytest.fixture
def legacy_root(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run as written before the storage policy (epoch 1 keeps its state)."""
    root = copy_run(tiny_run.path, tmp_path / "runs")
    run = Run(root / "tiny")
    payload = read_payload(run, 1)
    payload["optimizer"] = read_payload(run, 2)["optimizer"]
    torch.save(payload, run.checkpoint_path(1))
    (run.path / "pinned.json").unlink(missing_ok=True)
    return root


def test_storage_popover_frees_what_prune_would(legacy_root, monkeypatch):
    run = Run(legacy_root / "tiny")
    if run.best_by_val_loss() == 1:  # the best epoch keeps its state; make 2 the best
        records = [dict(m, val_loss=0.0 if m["epoch"] == 2 else 1.0) for m in run.metrics()]
        (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [e.epoch for e in plan_prune(run).to_free] == [1]
    size_before = run.checkpoint_path(1).stat().st_size
    at = open_app(legacy_root, monkeypatch, "weights")
    free = [b for b in at.sidebar.button if b.label.startswith("Free about")]
    assert free and "(epochs 1)" in free[0].label, messages(at)
    free[0].click().run()
    assert not at.exception and not at.error, messages(at)
    assert "optimizer" not in torch.load(run.checkpoint_path(1), weights_only=True)
    assert run.checkpoint_path(1).stat().st_size < size_before and not plan_prune(run).to_free
    assert not [b for b in at.sidebar.button if b.label.startswith("Free about")]


def test_keep_toggle_writes_keep_json(legacy_root, monkeypatch):
    at = open_app(legacy_root, monkeypatch, "weights")
    epoch = [s for s in at.sidebar.select_slider if s.label == "Epoch"][0].value
    at.sidebar.checkbox(key=f"sidebar_storage_keep_{epoch}").check().run()
    assert not at.exception, messages(at)
    assert kept_by_request(Run(legacy_root / "tiny")) == [epoch]


def test_exporting_twice_keeps_both_exports(tiny_run, demo_root, tmp_path, monkeypatch):
    root = copy_run(tiny_run.path, tmp_path / "runs")
    at = open_app(root, monkeypatch, "scores")
    shown = [s for s in at.sidebar.select_slider if s.label == "Epoch"][0].value  # the chosen epoch
    at.sidebar.text_input(key="sidebar_export_test").input("").run()
    for _ in range(2):
        at.sidebar.button(key="sidebar_export_button").click().run()
        assert not at.exception and not at.error, messages(at)
    folders = sorted((root / "tiny" / "exports").iterdir())
    assert [f.name.split("-")[-1] for f in folders][1:] == ["2"] and len(folders) == 2
    for folder in folders:
        assert {"model.pt", "card.json", "config.json"} <= {p.name for p in folder.iterdir()}
        assert json.loads((folder / "card.json").read_text())["epoch"] == shown
