"""Wide tables stay readable at 1280 px (dashboard.widgets.compact_columns): the row's name is
pinned while the table scrolls sideways, numbers are narrow and rounded, headers short."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from dashboard import widgets  # noqa: E402


def summary_like() -> pd.DataFrame:
    return pd.DataFrame({"run": ["loss-l1_skips-all", "tiny"], "epoch": [1, 3], "val_loss": [0.2028541, 0.26],
                         "synthetic_auroc_pixel": [0.5277, None], "real_auroc_knn": [0.818, 0.83],
                         "flags": ["collapsed", ""]})


def test_the_first_column_is_pinned_and_numbers_are_narrow():
    config = widgets.compact_columns(summary_like())
    assert config["run"]["pinned"] is True
    assert all(not config[c].get("pinned") for c in ("epoch", "val_loss", "flags"))
    assert config["val_loss"]["type_config"]["format"] == "%.3f"
    assert config["epoch"]["type_config"]["format"] == "%d"
    for column in ("epoch", "val_loss", "synthetic_auroc_pixel", "real_auroc_knn"):
        assert isinstance(config[column]["width"], int) and 48 <= config[column]["width"] <= 160
    assert config["val_loss"]["width"] < 100, "a number column is as wide as its label, not wider"


def test_headers_are_short_and_keep_the_full_name_as_tooltip():
    config = widgets.compact_columns(summary_like())
    assert config["synthetic_auroc_pixel"]["label"] == "synth. pixel"
    assert config["real_auroc_knn"]["label"] == "real knn"
    assert config["val_loss"]["label"] == "val loss"
    assert config["synthetic_auroc_pixel"]["help"] == "synthetic_auroc_pixel"
    assert config["run"].get("help") is None


def test_with_a_shown_index_no_column_is_pinned():
    config = widgets.compact_columns(summary_like(), pinned=[])
    assert not any(c.get("pinned") for c in config.values())


def test_run_names_as_headers_are_kept_as_they_are():
    table = pd.DataFrame({"loss-l1_skips-all": [0.2], "tiny_run": [0.3]})
    config = widgets.compact_columns(table, pinned=[], relabel=False)
    assert [config[c]["label"] for c in table.columns] == ["loss-l1_skips-all", "tiny_run"]
