"""Scoring: every anomaly score of issue #3 for any checkpoint, side by side.

    score_image_set(model, images, method, train=None, device="cpu", **options)   pure
    score_checkpoint(run, epoch, data_root, method, split="test", **options)      cached

Modules, one job each: options (the knobs), maps (reconstruction-based maps), features
(encoder vectors), knn (banks and the search), methods (the five methods), data (what is
scored, decoded once), checkpoint (runs, epochs and the on-disk cache).
"""

from __future__ import annotations

from core.scoring.checkpoint import load_checkpoint_model, score_checkpoint
from core.scoring.knn import FeatureBank, knn_search
from core.scoring.methods import (
    ScoreResult,
    build_feature_bank,
    build_thumbnail_bank,
    score_image_set,
)
from core.scoring.options import MAP_METHODS, METHODS, ScoreOptions, parse_methods

__all__ = [
    "MAP_METHODS",
    "METHODS",
    "FeatureBank",
    "ScoreOptions",
    "ScoreResult",
    "build_feature_bank",
    "build_thumbnail_bank",
    "knn_search",
    "load_checkpoint_model",
    "parse_methods",
    "score_checkpoint",
    "score_image_set",
]
