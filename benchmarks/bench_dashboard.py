"""Dashboard latency: epoch switching on Reconstructions and loading Features, via AppTest.

    python benchmarks/bench_dashboard.py [--work DIR] [--points 20000] [--skip-features]

Builds what it needs once under --work (default benchmarks/results/work, git-ignored):
a 128 px demo set and a 3-epoch run for Reconstructions; a ~20,000-image 32 px demo set and a
1-epoch run for Features. Then it times full script runs of the app as the server would do
them (AppTest runs the same script, without the browser's drawing time):

* Reconstructions, 16 images at 128 px: switching to an epoch not seen before ("uncached":
  nothing in Streamlit's caches, nothing on disk for that epoch) and back to one seen before
  ("cached"). Targets: < 3 s uncached, < 0.5 s cached on CPU.
* The first-start demo (--demo): what "Start the demo" does (demo data, then a training job
  in its own process), timed until each epoch is saved, with core's health check telling the
  first epoch that is not collapsed. Target: recognisable reconstructions within ~3 minutes.
* Features with 20,000 points: the first load computes features, clusters and the UMAP map
  (minutes, once); then a new session loads it from core's disk cache ("cached on disk") and
  a rerun from Streamlit's cache. Target: < 3 s once cached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "dashboard" / "app.py")


def build_run(data: Path, run: Path, size: int, epochs: int, n_train: int, base_width: int, depth: int,
              categories: tuple[str, ...] | None = None) -> None:
    from core.config import ModelConfig, TrainConfig
    from core.data.demo import DEMO_CATEGORIES, DemoSpec, generate_demo_dataset
    from core.runs.folder import Run
    from core.training.loop import train_one

    if Run(run).epochs() and len(Run(run).epochs()) >= epochs:
        return
    if not (data / "README.txt").is_file():
        started = time.perf_counter()
        generate_demo_dataset(data, DemoSpec(size=size, n_train=n_train, categories=categories or DEMO_CATEGORIES))
        print(f"  wrote demo data {data} in {time.perf_counter() - started:.0f}s", flush=True)
    config = TrainConfig(data=str(data), run=str(run), image_size=size, epochs=epochs, batch_size=32,
                         model=ModelConfig(base_width=base_width, depth=depth), device="cpu", synthetic_val=False)
    started = time.perf_counter()
    train_one(config, progress=False, log=lambda _: None)
    print(f"  trained {run} in {time.perf_counter() - started:.0f}s", flush=True)


def app_test(root: Path, page: str, session: dict | None = None):
    from streamlit.testing.v1 import AppTest

    os.environ["RECONSCOPE_CHECKPOINTS"] = str(root)
    at = AppTest.from_file(APP, default_timeout=3600)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"views/{page}.py").run()
    problems = [e.value for e in [*at.exception, *at.error]]
    if problems:
        raise RuntimeError(f"{page}: {problems}")
    return at


def epoch_slider(at):
    return [s for s in at.sidebar.select_slider if s.label == "Epoch"][0]


def timed_run(at, action) -> float:
    started = time.perf_counter()
    action()
    at.run()
    elapsed = time.perf_counter() - started
    problems = [e.value for e in [*at.exception, *at.error]]
    if problems:
        raise RuntimeError(str(problems))
    return elapsed


def bench_reconstructions(work: Path) -> dict[str, float]:
    root = work / "runs128"
    build_run(work / "demo128", root / "recon128", size=128, epochs=3, n_train=8, base_width=16, depth=4)
    at = app_test(root, "reconstructions", {"rec_per_page": 16})
    shown = len([img for element in at.get("image") for img in element.proto.imgs])
    epochs = [int(str(o).split()[0]) for o in epoch_slider(at).options]
    start = epoch_slider(at).value
    others = [e for e in epochs if e != start]
    uncached = [timed_run(at, lambda e=e: epoch_slider(at).set_value(e)) for e in others]
    cached = []
    for _ in range(3):
        for e in [start, *others]:
            cached.append(timed_run(at, lambda e=e: epoch_slider(at).set_value(e)))
    return {"images shown": shown, "uncached switch s (median)": statistics.median(uncached),
            "uncached switch s (max)": max(uncached), "cached switch s (median)": statistics.median(cached),
            "cached switch s (max)": max(cached)}


def bench_features(work: Path, points: int) -> dict[str, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    root = work / "runs20k"
    per_category = max(1, points // 6)
    build_run(work / "demo20k", root / "features20k", size=32, epochs=1, n_train=per_category, base_width=8,
              depth=3)
    os.environ["RECONSCOPE_CHECKPOINTS"] = str(root)
    at = AppTest.from_file(APP, default_timeout=3600)
    at.session_state["feat_points"] = 20000 if points >= 20000 else points
    at.run()  # the default page (Overview), not timed
    at.switch_page("views/features.py")
    first = timed_run(at, lambda: None)  # computes features, clusters and UMAP unless on disk
    n = next(int(c.value.split()[0]) for c in at.caption if "images (train and test)" in c.value)
    st.cache_data.clear()  # as in a new server process: only core's disk cache is warm
    st.cache_resource.clear()
    disk = timed_run(at, lambda: None)
    rerun = [timed_run(at, lambda: None) for _ in range(3)]
    return {"points": n, "first load in this process s": first, "load from disk cache s": disk,
            "rerun with Streamlit cache s (median)": statistics.median(rerun)}


def bench_demo(work: Path) -> dict[str, float]:
    from core.data.demo import generate_demo_dataset
    from core.diagnostics import reconstruction_health
    from core.runs.folder import Run
    from core.training.demo_job import DEMO_SPEC, demo_config
    from core.training.jobs import start_training, wait_for

    data, run_dir = work / "demo-first-start" / "data", work / "demo-first-start" / "runs" / "demo"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir.parent)
    started = time.perf_counter()
    generate_demo_dataset(data, DEMO_SPEC)
    out: dict[str, float] = {"demo data written s": time.perf_counter() - started}
    start_training(demo_config(data, run_dir))
    run, seen, first_ok = Run(run_dir), set(), None
    while True:
        for epoch in run.epochs():
            if epoch in seen:
                continue
            seen.add(epoch)
            at = time.perf_counter() - started
            out[f"epoch {epoch} saved at s"] = at
            if first_ok is None and not reconstruction_health(run, epoch).flag("collapsed"):
                first_ok = epoch
                out["first non-collapsed epoch"] = epoch
                out["first non-collapsed at s"] = at
        if not run.is_training():
            break
        time.sleep(1)
    wait_for(run, timeout=30)
    out["state"] = run.status().get("state")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "results" / "work")
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--skip-reconstructions", action="store_true")
    parser.add_argument("--demo", action="store_true", help="time the first-start demo instead")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import torch

    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}", flush=True)
    results = {}
    if args.demo:
        print("First-start demo:", flush=True)
        results["demo"] = bench_demo(args.work)
        args.skip_reconstructions = args.skip_features = True
    if not args.skip_reconstructions:
        print("Reconstructions (128 px, 16 images):", flush=True)
        results["reconstructions"] = bench_reconstructions(args.work)
    if not args.skip_features:
        print(f"Features ({args.points} points):", flush=True)
        results["features"] = bench_features(args.work, args.points)
    for section, numbers in results.items():
        print(section)
        for name, value in numbers.items():
            print(f"  {name:36s} {value:.3f}" if isinstance(value, float) else f"  {name:36s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
