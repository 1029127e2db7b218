"""Evaluating one epoch with every method, against scoring it with rawknn alone, in one run.

    python benchmarks/bench_evaluation.py RUN [--epoch last] [--repeats 2] [--data DIR]

Each measurement is a fresh `python -m core ...` process (imports included, as a user runs
it) with the run's score cache emptied first, so nothing is read back: what is timed is the
work of scoring. Two states of the decoded-image cache (core.scoring.data) are measured:
"decoded on disk" (a data folder scored before: images read back, not decoded) and "first
time" (an empty cache: every image is decoded and resized, as on a new data folder). The
commands alternate, so a busy machine slows them alike, and the ratio of medians is the
figure: issue #15 asks that every method cost at most 2.5x rawknn.

  rawknn     python -m core score --run RUN --epoch E --method rawknn
  all, fast  python -m core evaluate --run RUN --epoch E --method all --fast   (image AUROC)
  all        python -m core evaluate --run RUN --epoch E --method all          (+ pixel AUROC,
             AUPRO, thresholds, routing accuracy)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], run: Path, decoded: Path | None) -> float:
    """Seconds of one command with the run's score cache emptied; decoded: the decoded-image
    cache folder to use (None: an empty one, removed afterwards)."""
    shutil.rmtree(run / "cache", ignore_errors=True)  # cold: nothing cached for this run
    fresh = Path(tempfile.mkdtemp(prefix="decoded_")) if decoded is None else None
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "RECONSCOPE_NO_FOLLOW": "1",
           "RECONSCOPE_CACHE": str(fresh or decoded)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if fresh is not None:
        shutil.rmtree(fresh, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--epoch", default="last")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default=None, help="test data (default: the run's data)")
    args = parser.parse_args()
    base = [sys.executable, "-m", "core"]
    where = ["--run", str(args.run), "--epoch", str(args.epoch)]
    where += ["--data", args.data] if args.data else []
    commands = {
        "rawknn": base + ["score", *where, "--method", "rawknn"],
        "all, fast": base + ["evaluate", *where, "--method", "all", "--fast"],
        "all": base + ["evaluate", *where, "--method", "all"],
    }
    decoded = Path(tempfile.mkdtemp(prefix="decoded_kept_"))
    timed(commands["rawknn"], args.run, decoded)  # decodes the images once (kept on disk)
    states = {"decoded on disk": decoded, "first time (decoding included)": None}
    times = {(state, name): [] for state in states for name in commands}
    for _ in range(args.repeats):
        for state, folder in states.items():
            for name, command in commands.items():
                times[state, name].append(timed(command, args.run, folder))
    shutil.rmtree(decoded, ignore_errors=True)
    print(f"run {args.run} epoch {args.epoch}, {args.repeats} repeats, median seconds:")
    for state in states:
        rawknn = statistics.median(times[state, "rawknn"])
        print(f" {state}:")
        for name in commands:
            values = times[state, name]
            median = statistics.median(values)
            print(f"  {name:10s} {median:6.1f} s  ({median / rawknn:4.2f}x rawknn)  "
                  f"[{', '.join(f'{v:.1f}' for v in values)}]")


if __name__ == "__main__":
    main()
