"""How fast are the diagnostics? Targets from issue #4:

* diagnose one checkpoint of the demo model (weight statistics + probe reconstructions +
  flags), uncached: < 2 s on CPU;
* K-Means + UMAP on 20,000 x 256 features: < 60 s on 2 cores;
* PCA: instant.

    python benchmarks/bench_diagnostics.py                 # builds demo data + a 1-epoch demo run
    python benchmarks/bench_diagnostics.py --run checkpoints/demo --epoch last

UMAP is timed twice in this process: the first call includes compiling umap's numba code (paid
once per process), the second is what every further map costs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def demo_run(workdir: Path):
    """The demo model exactly as `python -m core train` builds it, trained for one epoch."""
    from core.config import TrainConfig
    from core.data.demo import DemoSpec, generate_demo_dataset
    from core.training.loop import train_one

    generate_demo_dataset(workdir / "demo", DemoSpec())
    config = TrainConfig(data=str(workdir / "demo"), run=str(workdir / "run"), epochs=1)
    return train_one(config, progress=False, log=lambda _: None)


def bench_checkpoint(run, epoch: int, repeats: int) -> dict[str, float]:
    """Uncached diagnosis of one checkpoint: every cache entry and the in-process probe dropped."""
    from core.diagnostics import diagnose_epoch, probe
    from core.diagnostics.health import _init_std

    times, with_clusters = [], []
    for _ in range(repeats):
        shutil.rmtree(run.cache_dir, ignore_errors=True)
        probe._probe.cache_clear()
        _init_std.cache_clear()
        seconds, result = timed(diagnose_epoch, run, epoch, cluster=False)
        times.append(seconds)
        shutil.rmtree(run.cache_dir, ignore_errors=True)
        probe._probe.cache_clear()
        with_clusters.append(timed(diagnose_epoch, run, epoch, cluster=True)[0])
    cached = timed(diagnose_epoch, run, epoch, cluster=True)[0]
    flags = [f["name"] for f in result["health"]["flags"]]
    print(f"checkpoint {run.path.name} epoch {epoch}: {int(result['health']['numbers']['n_images'])} probe "
          f"images, {len(result['weights']['layers'])} layers, flags {flags or 'none'}")
    return {"diagnose_uncached_s": statistics.median(times), "diagnose_with_clustering_s": statistics.median(with_clusters),
            "diagnose_cached_s": cached}


def clustered_features(n: int, dims: int, k: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Random but clustered: k Gaussian blobs whose centres overlap a little."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 0.25, size=(k, dims))  # about 4 noise std apart: some points overlap
    labels = rng.integers(0, k, n)
    features = (centers[labels] + rng.normal(size=(n, dims))).astype(np.float32)
    return features, [f"category_{i:02d}" for i in labels]


def bench_features(n: int, dims: int, k: int) -> dict[str, float]:
    from core.diagnostics import cluster_features, embed_2d

    features, categories = clustered_features(n, dims, k)
    kmeans_s, clusters = timed(cluster_features, features, categories)
    umap_first_s, coords = timed(embed_2d, features, method="umap")
    umap_again_s, _ = timed(embed_2d, features, method="umap")
    pca_s, _ = timed(embed_2d, features, method="pca")
    umap_purity = cluster_features(coords, categories).purity
    print(f"features {n} x {dims}, {k} categories: K-Means purity {clusters.purity:.3f}, "
          f"ARI {clusters.ari:.3f}; purity of K-Means on the UMAP map {umap_purity:.3f}")
    return {"kmeans_s": kmeans_s, "umap_first_call_s": umap_first_s, "umap_s": umap_again_s,
            "kmeans_plus_umap_first_call_s": kmeans_s + umap_first_s, "pca_s": pca_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an existing run (default: build demo data and train 1 epoch)")
    parser.add_argument("--epoch", default="last")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--k", type=int, default=15, help="clusters (MVTec AD has 15 categories)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    import torch

    from core.runs.folder import Run

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}")
    numbers: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run = Run.open(args.run)
        else:
            train_s, run = timed(demo_run, Path(tmp))
            print(f"built demo data and trained 1 epoch in {train_s:.1f}s")
        numbers.update(bench_checkpoint(run, run.resolve_epoch(args.epoch), args.repeats))
    numbers.update(bench_features(args.points, args.dims, args.k))
    width = max(map(len, numbers))
    for name, value in numbers.items():
        print(f"{name:<{width}}  {value:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
