"""Encoder features per image: what the model "thinks" an image is, one vector per image.

Why global-average pooling: K-Means and UMAP need one fixed-length vector per image, and the
channel means of an encoder level say which patterns the image contains regardless of where.
If the encoder learned anything, images of one category land close together; a dead encoder
maps everything to about the same point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.data.images import load_image_set
from core.data.layouts import discover_samples
from core.data.samples import Sample
from core.diagnostics.clustering import ClusterResult, cluster_features, embed_2d
from core.model.unet import parse_levels
from core.runs.cache import cached
from core.runs.checkpoint import open_checkpoint
from core.runs.finite import require_finite
from core.runs.folder import Run
from core.scoring.data import run_data_root
from core.scoring.features import encoder_vectors

MAX_POINTS = 20_000
LOAD_CHUNK = 256  # images decoded at a time: 20,000 MVTec images never sit in memory at once


@dataclass
class FeatureResult:
    """features (N, D) float32; per point its category, sample name, split ("train", "val" or
    "test") and image label (0 normal, 1 anomalous, -1 unknown); level: what was pooled."""

    features: np.ndarray
    categories: list[str]
    names: list[str]
    splits: list[str]
    labels: np.ndarray
    level: str = "bottleneck"

    @property
    def category_names(self) -> list[str]:
        return sorted(set(self.categories))

    @property
    def category_ids(self) -> np.ndarray:
        """(N,) int index into category_names."""
        index = {name: i for i, name in enumerate(self.category_names)}
        return np.array([index[c] for c in self.categories], dtype=np.int64)


def level_indices(level: str | int, depth: int) -> list[int]:
    """Which encoder levels to pool: "bottleneck" -> [depth], "all" -> [0..depth], int -> [int]
    (core.model.unet.parse_levels with the words diagnostics accept)."""
    return list(parse_levels(level, depth, words=("bottleneck", "all"), what="level"))


def pooled_features(model: torch.nn.Module, images: np.ndarray, levels: Sequence[int],
                    batch_size: int = 64) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, sum of the levels' widths) float32 channel means, levels in
    order (core.scoring.features.encoder_vectors, pooled and not normalised)."""
    return encoder_vectors(model, images, levels, patch=False, batch_size=batch_size,
                           normalise=False)


def balanced_quota(counts: dict[str, int], cap: int) -> dict[str, int]:
    """How many points to take per group: equal shares up to `cap` in total; a group with fewer
    points than its share gives the rest to the others. {group: available} -> {group: taken}."""
    taken = dict.fromkeys(counts, 0)
    remaining = max(0, int(cap))
    open_groups = [g for g in sorted(counts) if counts[g] > 0]
    while remaining > 0 and open_groups:
        share = max(1, remaining // len(open_groups))
        for group in list(open_groups):
            take = min(share, counts[group] - taken[group], remaining)
            taken[group] += take
            remaining -= take
            if taken[group] == counts[group]:
                open_groups.remove(group)
            if remaining == 0:
                break
    return taken


def sample_per_category(samples: list[Sample], max_points: int, seed: int) -> list[Sample]:
    """At most max_points samples, balanced over categories, drawn with a seeded generator."""
    by_category: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: str(s.path)):
        by_category.setdefault(sample.category, []).append(sample)
    quota = balanced_quota({c: len(v) for c, v in by_category.items()}, max_points)
    rng = np.random.default_rng(seed)
    chosen = []
    for category in sorted(by_category):
        pool = by_category[category]
        picked = np.sort(rng.choice(len(pool), size=quota[category], replace=False))
        chosen += [pool[i] for i in picked]
    return chosen


def feature_samples(config, root: Path, splits: Sequence[str]) -> list[Sample]:
    """The images the feature maps show: the run's training normals ("train", with its
    validation images) as the run categorised them, and the test set ("test") with each image
    under the category it is scored under (its own, or routed: core.scoring.testset)."""
    from core.scoring.testset import build_test_set

    wanted = set(splits) | ({"val"} if "train" in splits else set())
    samples = [s for s in discover_samples(root, config.layout, config.categories or None,
                                           config.category_file or None)
               if s.split in wanted and s.split != "test"]
    if "test" in wanted:
        samples += build_test_set(config, root, "route").samples
    return samples


def _feature_result(run: Run, epoch: int, root: Path, level, max_points: int, splits: tuple[str, ...],
                    seed: int) -> dict:
    config = run.config()
    samples = sample_per_category(feature_samples(config, root, splits), max_points, seed)
    model = open_checkpoint(run, epoch).model()
    levels = level_indices(level, config.model.depth)
    features, kept = [], []
    for start in range(0, len(samples), LOAD_CHUNK):
        images = load_image_set(samples[start:start + LOAD_CHUNK], config.image_size)
        features.append(pooled_features(model, images.images, levels))
        kept += images.samples
    return {"features": np.concatenate(features) if features else np.zeros((0, 0), np.float32),
            "categories": [s.category for s in kept], "names": [s.name for s in kept],
            "splits": [s.split for s in kept], "labels": np.array([s.label for s in kept], dtype=np.int64)}


def encoder_features(run: Run, epoch: int, data_root: str | Path | None = None,
                     level: str | int = "bottleneck", max_points: int = MAX_POINTS,
                     splits: Sequence[str] = ("train", "test"), seed: int = 0) -> FeatureResult:
    """Pooled encoder features of the run's images at one checkpoint, cached per checkpoint.

    level: "bottleneck", a level number (0 = full resolution) or "all" (every level's channel
    means concatenated). splits: which images; "train" includes validation images. At most
    max_points images, balanced over categories and drawn with `seed`.
    """
    root = run_data_root(run.config(), data_root)
    splits = tuple(sorted(splits))
    level_indices(level, run.config().model.depth)  # a bad level fails before any work
    params = {"data": str(root.resolve()), "level": str(level), "max_points": int(max_points),
              "splits": list(splits), "seed": int(seed)}
    result = cached(run, epoch, "encoder_features", params,
                    lambda: _feature_result(run, epoch, root, level, int(max_points), splits, int(seed)))
    return FeatureResult(features=np.asarray(result["features"], dtype=np.float32),
                         categories=list(result["categories"]), names=list(result["names"]),
                         splits=list(result["splits"]), labels=np.asarray(result["labels"], dtype=np.int64),
                         level=str(level))


def _cluster_params(root: Path, level, max_points: int, seed: int) -> dict:
    return {"data": str(root.resolve()), "level": str(level), "max_points": int(max_points), "seed": int(seed)}


def feature_clusters(run: Run, epoch: int, data_root: str | Path | None = None, level: str | int = "bottleneck",
                     k: int | None = None, max_points: int = MAX_POINTS, seed: int = 0) -> ClusterResult:
    """cluster_features of the checkpoint's encoder features (train and test), cached per checkpoint."""
    root = run_data_root(run.config(), data_root)

    def compute() -> dict:
        found = encoder_features(run, epoch, root, level, max_points, seed=seed)
        require_finite(found.features, "encoder feature values", epoch, run.path)
        result = cluster_features(found.features, found.categories, k=k, seed=seed)
        table = result.cluster_table
        return {"assignments": result.assignments, "purity": result.purity, "ari": result.ari, "k": result.k,
                "confused_pairs": [list(p) for p in result.confused_pairs],
                "table_cluster": table["cluster"].to_numpy(np.int64), "table_size": table["size"].to_numpy(np.int64),
                "table_majority": list(table["majority"]), "table_purity": table["purity"].to_numpy(np.float64)}

    params = {**_cluster_params(root, level, max_points, seed), "k": k}
    stored = cached(run, epoch, "feature_clusters", params, compute)
    table = pd.DataFrame({"cluster": np.asarray(stored["table_cluster"]), "size": np.asarray(stored["table_size"]),
                          "majority": list(stored["table_majority"]), "purity": np.asarray(stored["table_purity"])})
    return ClusterResult(assignments=np.asarray(stored["assignments"], np.int64), purity=float(stored["purity"]),
                         cluster_table=table, ari=float(stored["ari"]),
                         confused_pairs=[(str(a), str(b), float(s)) for a, b, s in stored["confused_pairs"]],
                         k=int(stored["k"]))


def feature_embedding(run: Run, epoch: int, data_root: str | Path | None = None, level: str | int = "bottleneck",
                      method: str = "umap", max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """embed_2d of the checkpoint's encoder features: (N, 2) float32 in encoder_features' order."""
    root = run_data_root(run.config(), data_root)

    def compute() -> dict:
        found = encoder_features(run, epoch, root, level, max_points, seed=seed)
        require_finite(found.features, "encoder feature values", epoch, run.path)
        return {"coords": embed_2d(found.features, method=method, seed=seed)}

    params = {**_cluster_params(root, level, max_points, seed), "method": method}
    return np.asarray(cached(run, epoch, "feature_embedding", params, compute)["coords"], np.float32)
