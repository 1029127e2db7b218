"""Scoring throughput on CPU: images/s per method at 128 px, kNN search time, peak memory.

    python benchmarks/bench_scoring.py [--size 128] [--images 48] [--threads 1]

Uses the demo data (written to a temporary folder) and a demo-sized model (the default
ModelConfig: base width 16, depth 4). Weights are freshly initialised: speed does not depend
on training. Bank building (knn: encoding every training image; rawknn: thumbnails) is timed
separately from scoring, because banks are built once per checkpoint and then reused.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import ModelConfig  # noqa: E402
from core.data.demo import DemoSpec, generate_demo_dataset  # noqa: E402
from core.data.images import load_image_set  # noqa: E402
from core.data.layouts import discover_samples  # noqa: E402
from core.model.unet import UNetAutoencoder  # noqa: E402
from core.scoring import (  # noqa: E402
    METHODS,
    ScoreOptions,
    build_feature_bank,
    knn_search,
    score_image_set,
    score_image_set_methods,
)
from core.scoring.methods import build_thumbnail_bank  # noqa: E402
from core.scoring.options import CHECKPOINT_METHODS, SEGMENTER_METHODS  # noqa: E402


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats: int = 1):
    """(result of the last call, best wall time in seconds over `repeats` calls)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return result, best


def load_demo(size: int, n_images: int, folder: Path):
    generate_demo_dataset(
        folder,
        DemoSpec(
            size=size,
            seed=0,
            n_train=20,
            n_test_good=4,
            n_test_per_defect=2,
            categories=("carpet", "bottle", "pill"),
        ),
    )
    samples = discover_samples(folder)
    train = load_image_set([s for s in samples if s.split == "train"], size)
    test = load_image_set([s for s in samples if s.split == "test"], size)
    reps = int(np.ceil(n_images / len(test)))
    return train, test.subset(np.tile(np.arange(len(test)), reps)[:n_images])


def bench_methods(model, train, test) -> None:
    options = ScoreOptions()
    banks = {}
    bank, seconds = timed(lambda: build_feature_bank(model, train, options))
    banks["knn"] = bank
    print(
        f"knn bank: {len(train)} training images -> {sum(bank.sizes().values())} patch vectors "
        f"of {bank.vectors.shape[-1]} dims in {seconds:.2f} s"
    )
    bank, seconds = timed(lambda: build_thumbnail_bank(train, options))
    banks["rawknn"] = bank
    print(
        f"rawknn bank: {len(bank.vectors)} thumbnails of {bank.vectors.shape[1]} values in {seconds:.3f} s"
    )
    print(
        f"\n{'method':8s} {'images/s':>9s} {'s total':>8s}   ({len(test)} images at {test.images.shape[1]} px)"
    )
    # what a bare image set can be scored with by a model without a segmentation network
    methods = [m for m in METHODS if m not in SEGMENTER_METHODS + CHECKPOINT_METHODS]
    for method in methods:
        score_image_set(
            model, test.subset(range(4)), method, train=train, bank=banks.get(method)
        )  # warm-up
        _, seconds = timed(
            lambda m=method: score_image_set(model, test, m, train=train, bank=banks.get(m)),
            repeats=2,
        )
        print(f"{method:8s} {len(test) / seconds:9.1f} {seconds:8.2f}")
    _, seconds = timed(
        lambda: score_image_set_methods(model, test, methods, train=train, banks=banks), repeats=2
    )
    print(f"{'all, one pass':14s} {len(test) / seconds:9.1f} {seconds:8.2f}")


def bench_knn_search() -> None:
    rng = np.random.default_rng(0)
    print(
        "\nkNN search, bank of 10,000 entries (k = 1, exact distances for the chosen neighbours):"
    )
    for dim, n_queries, what in (
        (96, 16 * 1024, "patch vectors, 16 images x 32x32 patches"),
        (3072, 1000, "32 px thumbnails, 1000 images"),
    ):
        bank = rng.normal(size=(10_000, dim)).astype(np.float32)
        queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
        knn_search(queries[:100], bank, 1)  # warm-up
        _, seconds = timed(lambda b=bank, q=queries: knn_search(q, b, 1), repeats=2)
        print(
            f"  D={dim:5d}, {n_queries:6d} queries ({what}): {seconds:.3f} s, "
            f"{n_queries / seconds:,.0f} queries/s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=48, help="test images scored per method")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU")
    with tempfile.TemporaryDirectory() as tmp:
        train, test = load_demo(args.size, args.images, Path(tmp) / "demo")
    model = UNetAutoencoder(ModelConfig()).eval()
    print(
        f"model: default ModelConfig, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters; "
        f"{len(train)} training normals"
    )
    print(f"peak memory after loading: {peak_memory_mb():.0f} MB")
    bench_methods(model, train, test)
    print(f"peak memory after scoring: {peak_memory_mb():.0f} MB")
    bench_knn_search()
    print(f"\npeak memory (max RSS): {peak_memory_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
