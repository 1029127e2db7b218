"""Scoring: every anomaly score of issue #3 for any checkpoint, side by side.

    score_image_set(model, images, method, train=None, device="cpu", **options)   pure
    score_image_set_methods(model, images, methods, ...)      pure, one model pass for all
    score_checkpoint(run, epoch, data_root, method, split="test", **options)      cached
    score_checkpoint_methods(run, epoch, data_root, methods, ...)   cached, one model pass

Modules, one job each: options (the knobs), maps (reconstruction-based maps), model_pass (one
forward pass per batch for every method), features (encoder vectors), knn (banks and the
search), patchbank (knn's image-first patch memory bank, SPADE), methods (the methods),
results (MethodScores, the typed result), data (what is
scored, decoded once), testset (the one test set: categories, routing), calibration
(per-category z-scores), routing, checkpoint (runs, epochs and the on-disk cache).
"""

# Attributes load on first use (PEP 562): importing one submodule never runs this
# package's other modules, so no import circle passes through this file.
from __future__ import annotations

from core import lazy_exports

_EXPORTS = {
    "FeatureBank": "core.scoring.knn",
    "MethodScores": "core.scoring.results",
    "PatchBank": "core.scoring.patchbank",
    "MAP_METHODS": "core.scoring.options",
    "METHODS": "core.scoring.options",
    "ScoreOptions": "core.scoring.options",
    "ScoreResult": "core.scoring.methods",
    "build_feature_bank": "core.scoring.methods",
    "build_thumbnail_bank": "core.scoring.methods",
    "knn_search": "core.scoring.knn",
    "parse_methods": "core.scoring.options",
    "score_checkpoint": "core.scoring.checkpoint",
    "score_checkpoint_methods": "core.scoring.checkpoint",
    "score_image_set": "core.scoring.methods",
    "score_image_set_methods": "core.scoring.methods",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
