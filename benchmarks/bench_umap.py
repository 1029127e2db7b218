"""UMAP and K-Means at 20,000 and 100,000 points (core.diagnostics.clustering).

    python benchmarks/bench_umap.py [--sizes 20000,100000] [--dims 256]

Clustered synthetic features (8 Gaussian blobs); prints seconds per step and the K-Means
purity against the blobs, so a subsampling rule that breaks the map shows up as low purity.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from core.diagnostics.clustering import cluster_features, embed_2d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--dims", type=int, default=256)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embed_2d(rng.normal(size=(200, 16)).astype(np.float32), "umap")  # numba compiles once
    for n in (int(v) for v in args.sizes.split(",")):
        labels = rng.integers(0, 8, n)
        centres = rng.normal(scale=4.0, size=(8, args.dims))
        x = (centres[labels] + rng.normal(size=(n, args.dims))).astype(np.float32)
        started = time.perf_counter()
        result = cluster_features(x, [f"c{i}" for i in labels], k=8)
        kmeans_s = time.perf_counter() - started
        started = time.perf_counter()
        points = embed_2d(x, "umap")
        umap_s = time.perf_counter() - started
        print(f"{n:>7} points x {args.dims}: K-Means {kmeans_s:.1f} s (purity {result.purity:.3f}), "
              f"UMAP {umap_s:.1f} s, map {points.shape}")


if __name__ == "__main__":
    main()
