"""globalknn: image-level encoder features beside the patch bank, for global and logical anomalies.

Why: knn with patches asks "is there a patch unlike every normal patch?", so an image made of
normal-looking parts in a wrong arrangement (a missing or extra part, a wrong fill level, a
shifted label) scores as normal. globalknn pools each chosen encoder level over the whole
image (core.scoring.features.pooled_vectors: each level's channel means, L2-normalised, the
levels concatenated with equal weight) and scores an image by its distance to the nearest
normal images' pooled vectors of its category: what the image holds as a whole, not where.
The deep levels see the layout; no pretrained weights are involved (the run's own encoder).

It is knn without patches at GLOBAL_LEVELS, under its own method name so it can be an
ensemble member beside patch knn (ScoreOptions.members); its bank is a FeatureBank of one
vector per training normal, and its calibration reference the leave-one-out distances of the
training normals (core.scoring.reference), like knn's.

Source: the pooled-feature k-NN baseline of N. Cohen and Y. Hoshen, "Sub-Image Anomaly
Detection with Deep Pyramid Correspondences" (SPADE), arXiv:2005.02357, 2020, section 3.1.
"""

from __future__ import annotations

import dataclasses

from core.scoring.options import ScoreOptions

METHOD = "globalknn"
# encoder levels pooled (level 0 = the full-resolution stem, which only sees colour; the
# deepest level of the default depth-4 model is 4)
GLOBAL_LEVELS = "1,2,3,4"


def global_options(options: ScoreOptions, depth: int | None = None) -> ScoreOptions:
    """knn's options for globalknn: pooled vectors (patch=False) of GLOBAL_LEVELS, clipped
    to the levels a model of `depth` has (None: not clipped); k, seed, bank scope and the
    other options are the caller's."""
    levels = GLOBAL_LEVELS
    if depth is not None:
        levels = ",".join(lv for lv in GLOBAL_LEVELS.split(",") if int(lv) <= depth) or "bottleneck"
    return dataclasses.replace(options, patch=False, levels=levels)
