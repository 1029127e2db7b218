"""The Features page at 100,000 points (issue #15): the map holds every point, once, and the
K-Means colouring and cluster table come with it. The encoder's features are replaced by a
synthetic 100,000-image set (encoding that many images is a benchmark's job, not a test's)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

pytest.importorskip("streamlit")

import core.diagnostics.features as features  # noqa: E402
from tests.dashboard_support import copy_run, messages, open_app  # noqa: E402

POINTS = 100_000


def synthetic_features(run, epoch, root, level, max_points, splits, seed) -> dict:
    rng = np.random.default_rng(seed)
    n = min(POINTS, max_points)
    categories = np.array(["bottle", "cookie", "tile", "wood"])[np.arange(n) % 4]
    centres = rng.normal(scale=5.0, size=(4, 8))
    x = centres[np.arange(n) % 4] + rng.normal(size=(n, 8))
    return {"features": x.astype(np.float32), "categories": categories.tolist(),
            "names": [f"img_{i:06d}.png" for i in range(n)],
            "splits": ["train" if i % 5 else "test" for i in range(n)],
            "labels": np.zeros(n, np.int64)}


def _values(data) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64)}."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
    return np.asarray(data)


def plotted_points(at) -> list[int]:
    chart = at.get("plotly_chart")[0]
    figure = json.loads(chart.proto.spec)
    return [int(i) for trace in figure["data"] for i in _values(trace.get("customdata", []))]


def test_features_page_draws_100000_points(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_feature_result", synthetic_features)
    root = copy_run(tiny_run.path, tmp_path)
    at = open_app(root, monkeypatch)
    at.session_state["feat_points"] = POINTS
    at.session_state["feat_color"] = "K-Means cluster"
    at.switch_page("views/features.py").run()
    assert not at.exception and not at.error, messages(at)
    assert sorted(plotted_points(at)) == list(range(POINTS))  # every point, each once
    assert any(f"{POINTS:,} images" in c.value for c in at.caption)
    purity = [m for m in at.metric if m.label == "cluster purity"]
    assert purity and float(purity[0].value) > 0.9  # four well-separated categories
