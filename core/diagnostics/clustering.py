"""Does the encoder tell the categories apart? K-Means against the true categories, and 2-D maps.

Pure functions on feature arrays (scikit-learn and umap-learn do the work). Features are
standardised per dimension first, so that the few channels with the largest activations (they
grow with depth and differ between levels when all levels are concatenated) do not decide the
clustering alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

UMAP_NEIGHBORS = 15
# UMAP runs on the first 50 principal components, as umap-learn's docs advise for
# high-dimensional data: the neighbour graph is then computed exactly by scikit-learn in seconds
# and umap skips compiling its approximate-neighbour search (most of its first-call cost).
UMAP_PCA_DIMS = 50
UMAP_MAX_FIT = 20_000  # above this, fit on a seeded sample and place the rest (see _umap_2d)
UMAP_PLACE_NEIGHBORS = 5
# Optimisation epochs: umap's default is 200 above 10,000 points and 500 below; clustered
# feature maps settle well before that, and 100 keeps 20,000 points under a minute on 2 cores.
UMAP_EPOCHS_LARGE = 100
UMAP_EPOCHS_SMALL = 200


@dataclass
class ClusterResult:
    """K-Means clusters of N points against their categories.

    assignments (N,) cluster index; purity: share of points in their cluster's majority
    category; cluster_table: cluster, size, majority, purity (one row per cluster);
    ari: adjusted Rand index against the categories (1 perfect, ~0 chance);
    confused_pairs: (category a, category b, share) sorted by share, see confused_pairs().
    """

    assignments: np.ndarray
    purity: float
    cluster_table: pd.DataFrame
    ari: float
    confused_pairs: list[tuple[str, str, float]]
    k: int = 0

    def to_dict(self) -> dict:
        """JSON-able summary (no per-point arrays)."""
        return {"k": self.k, "purity": self.purity, "ari": self.ari,
                "confused_pairs": [list(p) for p in self.confused_pairs],
                "clusters": self.cluster_table.to_dict(orient="records")}


def standardized(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per dimension (constant dimensions stay 0), float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    return StandardScaler().fit_transform(x) if len(x) else x


def cluster_table(assignments: np.ndarray, categories: Sequence[str]) -> pd.DataFrame:
    """One row per cluster: cluster, size, majority (category), purity (majority share)."""
    frame = pd.DataFrame({"cluster": np.asarray(assignments), "category": list(categories)})
    rows = []
    for cluster, members in frame.groupby("cluster", sort=True):
        counts = members["category"].value_counts()
        top = sorted(counts[counts == counts.max()].index)[0]  # ties: alphabetical, reproducible
        rows.append({"cluster": int(cluster), "size": int(len(members)), "majority": top,
                     "purity": float(counts[top] / len(members))})
    return pd.DataFrame(rows, columns=["cluster", "size", "majority", "purity"])


def confused_pairs(assignments: np.ndarray, categories: Sequence[str],
                   table: pd.DataFrame) -> list[tuple[str, str, float]]:
    """Category pairs the clustering mixes up, most confused first.

    share(a, b) = (points of a in clusters whose majority is b + points of b in clusters whose
    majority is a) / (points of a + points of b). 0 when the clustering keeps them apart,
    about 0.5 when it cannot tell them apart at all. Only pairs with share > 0 are listed.
    """
    majority = dict(zip(table["cluster"], table["majority"], strict=True))
    owner = np.array([majority[int(c)] for c in assignments], dtype=object)
    cats = np.asarray(list(categories), dtype=object)
    names = sorted(set(cats))
    sizes = {name: int((cats == name).sum()) for name in names}
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            mixed = int(((cats == a) & (owner == b)).sum() + ((cats == b) & (owner == a)).sum())
            if mixed:
                pairs.append((a, b, mixed / (sizes[a] + sizes[b])))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def cluster_features(features: np.ndarray, categories: Sequence[str], k: int | None = None,
                     seed: int = 0) -> ClusterResult:
    """K-Means with k = number of categories (or the given k) on standardised features.

    features (N, D); categories (N,) names. Purity 1.0 means every cluster holds one category;
    with k clusters a structureless encoder scores about the largest category's share.
    """
    categories = list(categories)
    x = standardized(features)
    if len(x) != len(categories):
        raise ValueError(f"{len(x)} feature rows but {len(categories)} categories")
    if len(x) == 0:
        raise ValueError("no features to cluster")
    k = int(k or len(set(categories)))
    k = max(1, min(k, len(x)))
    with warnings.catch_warnings():
        # identical features (a dead encoder) make fewer distinct clusters than k: that is the
        # finding itself, shown by the purity, not a problem to warn about
        warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
        assignments = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    table = cluster_table(assignments, categories)
    purity = float((table["size"] * table["purity"]).sum() / len(x))
    return ClusterResult(assignments=assignments.astype(np.int64), purity=purity, cluster_table=table,
                         ari=float(adjusted_rand_score(categories, assignments)),
                         confused_pairs=confused_pairs(assignments, categories, table), k=k)


def _pca_2d(x: np.ndarray, seed: int) -> np.ndarray:
    out = np.zeros((len(x), 2), np.float32)
    n = min(2, x.shape[1], len(x))
    if n:
        out[:, :n] = PCA(n_components=n, random_state=seed).fit_transform(x)
    return out


def _umap_2d(x: np.ndarray, seed: int) -> np.ndarray:
    """UMAP of up to UMAP_MAX_FIT points; a larger set is fitted on a seeded sample of that
    many, and every other point is placed at the mean position of its UMAP_PLACE_NEIGHBORS
    nearest sampled points (in the same PCA space), so 100,000 points cost about as much as
    UMAP_MAX_FIT. torch's thread count is kept: numba may change it."""
    import torch

    threads = torch.get_num_threads()
    try:
        if len(x) <= UMAP_MAX_FIT:
            return _umap_fit(x, seed)
        dims = min(UMAP_PCA_DIMS, x.shape[1])
        reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < x.shape[1] else x
        sample = np.sort(np.random.default_rng(seed).choice(len(x), UMAP_MAX_FIT, replace=False))
        out = np.empty((len(x), 2), np.float32)
        out[sample] = _umap_fit(reduced[sample], seed)
        rest = np.setdiff1d(np.arange(len(x)), sample)
        _, nearest = NearestNeighbors(n_neighbors=UMAP_PLACE_NEIGHBORS).fit(
            reduced[sample]).kneighbors(reduced[rest])
        out[rest] = out[sample][nearest].mean(axis=1)
        return out
    finally:
        torch.set_num_threads(threads)


def _umap_fit(x: np.ndarray, seed: int) -> np.ndarray:
    with warnings.catch_warnings():
        # umap-learn warns on import that its optional TensorFlow part is unavailable
        warnings.filterwarnings("ignore", message="Tensorflow not installed", category=ImportWarning)
        import umap
    dims = min(UMAP_PCA_DIMS, x.shape[1], len(x))
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims < x.shape[1] else x
    neighbors = min(UMAP_NEIGHBORS, len(x) - 1)
    distances, indices = NearestNeighbors(n_neighbors=neighbors).fit(reduced).kneighbors(reduced)
    epochs = UMAP_EPOCHS_LARGE if len(x) > 10_000 else UMAP_EPOCHS_SMALL
    model = umap.UMAP(n_neighbors=neighbors, n_components=2, random_state=seed, n_epochs=epochs,
                      init="pca", low_memory=True,
                      precomputed_knn=(indices.astype(np.int64), distances.astype(np.float32)))
    with warnings.catch_warnings():
        # a fixed seed makes umap single-threaded (it says so), and a precomputed neighbour
        # graph has no search index for transform() (unused here): both are intended
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return model.fit_transform(reduced.astype(np.float32)).astype(np.float32)


def embed_2d(features: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) float32 map for plotting.

    method "pca": the first two principal components, instant. "umap": umap-learn on the
    standardised features, deterministic for a seed (the first call in a process also compiles
    umap's numba code, 10-30 s). Below 4 points, where no neighbour graph exists, it is PCA;
    identical features (a dead encoder) all map to the origin.
    """
    if method not in ("umap", "pca"):
        raise ValueError(f"method '{method}': use umap or pca")
    x = standardized(features)
    if not np.any(x.std(axis=0) > 0):  # one point repeated (a dead encoder): nothing to lay out
        return np.zeros((len(x), 2), np.float32)
    if method == "pca" or len(x) < 4:
        return _pca_2d(x, seed)
    return _umap_2d(x, seed)
