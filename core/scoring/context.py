"""What scoring one checkpoint on one data folder reads, each thing found once.

A `ScoringContext` is built once per evaluation (core.evaluation.evaluate.evaluate_epoch) or per scoring
call (core.scoring.checkpoint.score_checkpoint) and passed down: the checkpoint (its config is
the one authoritative config), the test set, the run's training and held-out normals, their
fingerprints, the model and the decoded training images, and the options. Everything is
computed on first use and kept for the life of the context, so one evaluation discovers the
held-out normals once, builds the test set once and rebuilds the model at most once.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import TrainConfig
from core.data.samples import ImageSet, Sample
from core.model.accel import for_inference
from core.model.unet import UNetAutoencoder
from core.runs.checkpoint import Checkpoint, open_checkpoint
from core.runs.folder import Run
from core.scoring.data import (
    SPLITS,
    fingerprint,
    load_samples,
    reference_root,
    reference_samples,
)
from core.scoring.knn import bank_rows
from core.scoring.options import ScoreOptions
from core.scoring.testset import TestSet, build_test_set

# Held-out normals scored per category for calibration and the ensemble's member statistics
# (a median and a spread): more than a thousand add nothing measurable and cost a scoring pass
# over 10 % of a huge set. Smaller validation splits are used whole.
REFERENCE_MAX_NORMALS = 1000


class ScoringContext:
    """One checkpoint of `run` scored on `data_root` with `options` on `device`.

    checkpoint: core.runs.checkpoint.Checkpoint (epoch resolved; config from inside the file).
    Lazily, once each: test_set (TestSet of data_root), train_samples (the run's normal
    training images, split as training split them), val_samples (its held-out normals, at most
    REFERENCE_MAX_NORMALS per category), their fingerprints, model (eval mode, channels_last
    for inference) and reference_set (the training normals decoded). `scored` and `references`
    hold results computed under this context: {(split, method, with maps): MethodScores} and
    {method: ReferenceScores} (core.scoring.checkpoint fills them).
    """

    def __init__(self, run: Run, epoch: int | str, data_root: str | Path,
                 options: ScoreOptions | None = None, device: torch.device | str = "cpu") -> None:
        self.run = run
        self.checkpoint: Checkpoint = open_checkpoint(run, epoch)
        self.data_root = data_root
        self.options = options or ScoreOptions()
        self.device = device
        self.scored: dict[tuple[str, str, bool], Any] = {}
        self.references: dict[str, Any] = {}
        self._fingerprints: dict[str, str] = {}

    @property
    def epoch(self) -> int:
        return self.checkpoint.epoch

    @property
    def config(self) -> TrainConfig:
        return self.checkpoint.config

    @cached_property
    def reference_root(self) -> Path:
        return reference_root(self.config, self.data_root)

    @cached_property
    def train_samples(self) -> list[Sample]:
        return reference_samples(self.reference_root, "train", self.config)

    @cached_property
    def val_samples(self) -> list[Sample]:
        return scoring_samples(self.config, self.data_root, "val")

    @cached_property
    def test_set(self) -> TestSet:
        return build_test_set(self.config, self.data_root, self.options.unknown_categories)

    def samples(self, split: str) -> list[Sample]:
        """The samples of "test", "val" or "train"."""
        if split not in SPLITS:
            raise ValueError(f"split '{split}': use one of {', '.join(SPLITS)}")
        if split == "test":
            return self.test_set.samples
        return self.val_samples if split == "val" else self.train_samples

    def fingerprint(self, split: str) -> str:
        """core.scoring.data.fingerprint of a split's samples, taken once (it stats every file)
        however many methods share it."""
        if split not in self._fingerprints:
            self._fingerprints[split] = fingerprint(self.samples(split))
        return self._fingerprints[split]

    @property
    def train_fingerprint(self) -> str:
        return self.fingerprint("train")

    @cached_property
    def model(self) -> UNetAutoencoder:
        return for_inference(self.checkpoint.model(self.device))

    @cached_property
    def reference_set(self) -> ImageSet:
        """The run's normal training images decoded at its image size (once per process)."""
        return load_samples(self.train_samples, self.config.image_size)


def scoring_samples(config: TrainConfig, data_root: str | Path, split: str) -> list[Sample]:
    """The run's own normals: "train" or held-out "val" (at most REFERENCE_MAX_NORMALS per
    category, a seeded sample), split exactly as training split them.
    (The test split is a TestSet: see core.scoring.testset.)"""
    if split not in SPLITS:
        raise ValueError(f"split '{split}': use one of {', '.join(SPLITS)}")
    if split == "test":
        raise ValueError("the test split is built by core.scoring.testset.build_test_set")
    chosen = reference_samples(reference_root(config, data_root), split, config)
    if split == "val":  # calibration and the ensemble's statistics: bounded on huge sets
        chosen = [chosen[i] for i in np.sort(bank_rows([s.category for s in chosen],
                                                       REFERENCE_MAX_NORMALS, config.seed))]
    return chosen
