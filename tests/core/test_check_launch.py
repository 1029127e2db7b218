"""core.training.trainability.check_launch: what a launcher (the Train page's Start buttons) refuses
before it creates a run folder."""

from __future__ import annotations

import pytest

from core.data.layouts import DatasetLayoutError
from core.training.trainability import UntrainableConfigError, check_launch
from tests.conftest import tiny_config


def test_counts_the_training_images_of_a_good_folder(demo_root, tmp_path):
    assert check_launch(tiny_config(demo_root, tmp_path / "run")) == 30  # 3 categories x 10


def test_refuses_a_missing_folder_by_name(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no-such-folder.*does not exist"):
        check_launch(tiny_config(tmp_path / "no-such-folder", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_refuses_a_folder_without_training_images(tmp_path):
    (tmp_path / "data" / "test").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="data"):
        check_launch(tiny_config(tmp_path / "data", tmp_path / "run"))


def test_refuses_settings_that_cannot_train(demo_root, tmp_path):
    config = tiny_config(demo_root, tmp_path / "run", **{"model.depth": 5, "model.norm": "batch", "batch_size": 1})
    with pytest.raises(UntrainableConfigError, match="batch norm"):
        check_launch(config)
