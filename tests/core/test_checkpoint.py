"""One checkpoint object per version of an epoch's file (core.runs.checkpoint): the resolved epoch,
the config stored inside it (the authoritative one), what it holds, read once per version."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import torch

import core.runs.checkpoint
from core.config import TrainConfig
from core.model.segmentation import SEG_KEY
from core.model.unet import UNetAutoencoder
from core.runs.checkpoint import open_checkpoint
from core.runs.folder import Run, RunError, save_checkpoint
from tests.core.test_runs import _run


def _real(run: Run, epoch: int, image_size: int = 32, **extra) -> None:
    config = TrainConfig(run=str(run.path), image_size=image_size)
    model = UNetAutoencoder(config.model)
    save_checkpoint(run.checkpoint_path(epoch),
                    {"model": model.state_dict(), "config": config.to_dict(), **extra})


def test_opened_once_per_version_and_read_again_when_the_file_changes(tmp_path):
    run = _run(tmp_path, epochs=(1, 2), val_losses={1: 0.2, 2: 0.3})
    with mock.patch.object(core.runs.checkpoint, "read_payload", wraps=core.runs.checkpoint.read_payload) as read:
        first = open_checkpoint(run, "best")
        assert open_checkpoint(run, 1) is first and read.call_count == 1
        assert (first.epoch, first.path) == (1, run.checkpoint_path(1))
        assert first.stamp[1] == run.checkpoint_path(1).stat().st_size
        stat = run.checkpoint_path(1).stat()
        _real(run, 1, image_size=48, optimizer={"state": {}})  # retrained: a new file version
        os.utime(run.checkpoint_path(1), ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        again = open_checkpoint(run, 1)
    assert read.call_count == 2 and again is not first
    assert again.config.image_size == 48 and again.holds_optimizer and not first.holds_optimizer


def test_the_config_inside_the_checkpoint_wins_over_config_json(tmp_path):
    run = _run(tmp_path)
    _real(run, 1, image_size=48)  # config.json says the default 64
    checkpoint = open_checkpoint(run, "last")
    assert run.config().image_size == 64 and checkpoint.config.image_size == 48
    model = checkpoint.model()
    assert isinstance(model, UNetAutoencoder) and not model.training


def test_what_it_holds(tmp_path):
    run = _run(tmp_path)
    _real(run, 1, optimizer={"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": []})
    _real(run, 2, **{SEG_KEY: {}})
    assert open_checkpoint(run, 1).holds_optimizer and not open_checkpoint(run, 1).holds_segmenter
    assert open_checkpoint(run, 2).holds_segmenter and not open_checkpoint(run, 2).holds_optimizer


def test_a_missing_or_damaged_epoch_is_one_sentence(tmp_path):
    run = _run(tmp_path, epochs=(1,))
    with pytest.raises(RunError, match=r"epoch 4 does not exist; available: 1"):
        open_checkpoint(run, 4)
    run.checkpoint_path(2).write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"epoch_002\.pt: checkpoint is damaged.*choose another epoch"):
        open_checkpoint(run, 2)
