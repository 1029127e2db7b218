"""AppTest: the Overview shows the label-free suggestion (epoch and method) and each criterion's
agreement with real AUROC."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from tests.dashboard_support import copy_run, messages, open_app  # noqa: E402


def test_overview_shows_method_suggestion_and_criterion_agreement(tiny_run, tmp_path, monkeypatch):
    root = copy_run(tiny_run.path, tmp_path / "runs")
    at = open_app(root, monkeypatch)
    assert not at.exception, messages(at)
    markdown = " ".join(m.value for m in at.markdown)
    assert "Chosen: epoch" in markdown and " with **" in markdown and "· suggested" in markdown
    assert "Label-free criteria against real AUROC" in markdown
    tables = [d.value for d in at.dataframe]
    agreement = next(t for t in tables if "criterion" in t.columns and "test_separation" in set(t["criterion"]))
    assert {"pixel", "ssim", "knn"} <= set(agreement.columns)
