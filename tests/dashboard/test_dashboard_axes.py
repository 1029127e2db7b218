"""Readable chart axes: whole-epoch ticks and full-number log ticks (dashboard.widgets)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import pytest

pytest.importorskip("streamlit")
from dashboard import widgets  # noqa: E402


def test_epoch_axis_ticks_every_epoch_and_no_halves():
    fig = go.Figure(go.Heatmap(z=[[1, 2, 3]], x=[1, 2, 3]))
    widgets.epoch_axis(fig, [3, 1, 2])
    assert list(fig.layout.xaxis.tickvals) == [1, 2, 3]
    many = go.Figure()
    widgets.epoch_axis(many, range(1, 200))
    assert many.layout.xaxis.tickformat == "d" and many.layout.xaxis.tickvals is None


@pytest.mark.parametrize("values", [(0.013, 0.09), (0.0301, 0.0352), (1e-4, 30.0), (0.2, 7.0)])
def test_log_ticks_are_full_numbers_on_a_1_2_5_grid(values):
    ticks, text = widgets.log_ticks(list(values) + [math.nan, -1.0])
    assert len(ticks) >= 2 and ticks == sorted(ticks)
    assert text == [f"{t:g}" for t in ticks]
    assert all(float(t) == v for t, v in zip(text, ticks, strict=True)), "labels are the values, not digits"
    inside = [t for t in ticks if values[0] <= t <= values[1]]
    assert inside or (ticks[0] < values[0] and ticks[-1] > values[1])
    mantissas = {round(t / 10 ** math.floor(math.log10(t)), 3) for t in ticks}
    assert mantissas <= {1.0, 1.5, 2.0, 3.0, 5.0, 7.0}


def test_log_ticks_of_nothing_positive_is_empty():
    assert widgets.log_ticks([0.0, math.nan]) == ([], [])
