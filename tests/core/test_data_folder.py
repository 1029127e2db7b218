"""The one rule for which data folder a run reads (core.scoring.data.run_data_root) and its one
exception type, DataFolderMissing, used by scoring, diagnostics and compare alike."""

from __future__ import annotations

import pytest

from core.config import TrainConfig
from core.diagnostics.probe import probe_signature
from core.reports.compare import _data_root
from core.scoring.data import DataFolderMissing, run_data_root
from tests.core.test_runs import _run


def test_the_given_folder_wins_else_the_runs_own(tmp_path):
    own, given = tmp_path / "own", tmp_path / "given"
    own.mkdir()
    given.mkdir()
    config = TrainConfig(data=str(own))
    assert run_data_root(config) == own
    assert run_data_root(config, "  ") == own  # a blank sidebar field is no folder
    assert run_data_root(config, str(given)) == given


def test_a_missing_folder_names_it_and_where_it_came_from(tmp_path):
    config = TrainConfig(data=str(tmp_path / "gone"))
    with pytest.raises(DataFolderMissing, match=r"gone \(from the run's config.*--data"):
        run_data_root(config)
    with pytest.raises(DataFolderMissing, match=r"typo \(from the sidebar\)"):
        run_data_root(config, tmp_path / "typo", "the sidebar")


def test_diagnostics_and_compare_follow_the_same_rule(tmp_path):
    run = _run(tmp_path)
    TrainConfig(run=str(run.path), data=str(tmp_path / "gone")).save(run.path / "config.json")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataFolderMissing, match=r"gone \(from the run's config"):
        probe_signature(run, None, 4, 0)
    assert _data_root(run, None) is None
    assert _data_root(run, tmp_path / "elsewhere") == tmp_path / "elsewhere"
    assert _data_root(run, tmp_path / "typo") is None
