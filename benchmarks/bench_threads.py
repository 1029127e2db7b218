"""Sharing the cores: training beside its background evaluator, against training alone then
evaluating, and training beside one busy process, on the demo data and on ../shared/realdata.

    python benchmarks/bench_threads.py                           # the product's recipe
    python benchmarks/bench_threads.py --epochs 2 --size 64 \\
        --realdata-categories cookie,bottle                       # a small check (minutes)
    python benchmarks/bench_threads.py --default-threads          # the same before the budget

Per dataset, each scenario is real `python -m core ...` processes, as a user starts them:
  (a) with evaluator  `train` (its background evaluator scores every epoch as it lands); the
                      wall time runs until the evaluator has scored the last epoch and ended
  (b) train, then eval  `train --no-follow`, then `follow --run R` (the same scoring, every
                      epoch, run afterwards with the cores to itself)
  (c) beside busy     `train --no-follow` with one busy process (a Python spin loop at normal
                      priority) beside it the whole time
images/s is the mean of the epochs' training rates (metrics.jsonl). The issue's bar: (a)
total <= (b) total, and (c) images/s >= 40 % of (b)'s. The processes get the thread budget
(core.training.threads) unless --default-threads, which gives training torch's default thread count
(every core) and OpenMP's default waiting (as before the budget). Needs a quiet machine for
meaningful ratios: the load average before each scenario is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
sys.path.insert(0, str(REPO))

from core.runs.folder import is_alive  # noqa: E402
from core.training.threads import usable_cores  # noqa: E402


@dataclass
class Outcome:
    scenario: str
    images_per_s: float
    train_s: float
    total_s: float
    load: float


def child_env(default_threads: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RECONSCOPE_NO_FOLLOW", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(NO_ALBUMENTATIONS_UPDATE="1", PYTHONPATH=str(REPO))
    if default_threads:
        env["OMP_WAIT_POLICY"] = ""  # set, so the budget leaves OpenMP's own default
    return env


def train(data: str, run: Path, args, follow: bool) -> tuple[float, int | None]:
    """Runs one training job to its end; returns its seconds and its evaluator's pid."""
    command = [sys.executable, "-m", "core", "train", "--data", data, "--run", str(run),
               "--epochs", str(args.epochs), "--image-size", str(args.size), "--quiet",
               *args.train_args.split()]
    if args.categories_of(data):
        command += ["--categories", args.categories_of(data)]
    if args.default_threads:
        command += ["--threads", str(usable_cores())]
    if not follow:
        command.append("--no-follow")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=child_env(args.default_threads),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    print(f"    {done.stdout.splitlines()[0]}", flush=True)
    pid = re.search(r"background evaluator .*\(pid (\d+)", done.stdout)
    return seconds, int(pid.group(1)) if pid else None


def images_per_s(run: Path) -> float:
    rates = [json.loads(line)["images_per_s"] for line in
             (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return sum(rates) / len(rates)


def wait_for_evaluator(run: Path, pid: int, timeout: float = 7200) -> None:
    log = run / "follow.log"
    deadline = time.time() + timeout
    while is_alive(pid) and "followed" not in (log.read_text() if log.is_file() else ""):
        if time.time() > deadline:
            sys.exit(f"{run}: the background evaluator (pid {pid}) did not end")
        time.sleep(0.5)


def with_evaluator(data: str, folder: Path, args) -> Outcome:
    run, load, started = folder / "a", os.getloadavg()[0], time.perf_counter()
    train_s, pid = train(data, run, args, follow=True)
    if pid is None:
        sys.exit(f"{data}: training started no background evaluator (a test set with labels?)")
    wait_for_evaluator(run, pid)
    return Outcome("(a) with evaluator", images_per_s(run), train_s, time.perf_counter() - started,
                   load)


def train_then_evaluate(data: str, folder: Path, args) -> Outcome:
    run, load = folder / "b", os.getloadavg()[0]
    train_s, _ = train(data, run, args, follow=False)
    command = [sys.executable, "-m", "core", "follow", "--run", str(run)]
    if args.default_threads:
        command += ["--threads", str(usable_cores())]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=child_env(args.default_threads),
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    total = train_s + time.perf_counter() - started
    return Outcome("(b) train, then eval", images_per_s(run), train_s, total, load)


def beside_busy(data: str, folder: Path, args) -> Outcome:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        load = os.getloadavg()[0]
        train_s, _ = train(data, folder / "c", args, follow=False)
    finally:
        busy.kill()
        busy.wait()
    return Outcome("(c) beside 1 busy", images_per_s(folder / "c"), train_s, train_s, load)


def report(name: str, outcomes: list[Outcome]) -> None:
    print(f"\n{name}\n| scenario | images/s | training s | total wall s | load before |")
    print("|---|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.scenario} | {o.images_per_s:.1f} | {o.train_s:.0f} | {o.total_s:.0f} | "
              f"{o.load:.1f} |")
    a, b, c = outcomes
    print(f"(a) total / (b) total = {a.total_s / b.total_s:.2f} (goal <= 1); "
          f"(c) images/s / (b) images/s = {c.images_per_s / b.images_per_s:.0%} (goal >= 40 %)",
          flush=True)


def demo_data(folder: Path, size: int) -> str:
    target = folder / "demo"
    subprocess.run([sys.executable, "-m", "core", "demo-data", "--out", str(target),
                    "--size", str(size)], cwd=REPO, env=child_env(False), check=True,
                   capture_output=True)
    return str(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="image size in px")
    parser.add_argument("--train-args", default="", help="more train flags, e.g. '--base-width 16'")
    parser.add_argument("--realdata", type=Path, default=REALDATA)
    parser.add_argument("--realdata-categories", default="",
                        help="comma-separated subset of the real categories (default all)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--default-threads", action="store_true",
                        help="torch's default threads and OpenMP waiting, for comparison")
    args = parser.parse_args()
    args.categories_of = lambda data: args.realdata_categories if data == str(args.realdata) else ""
    folder = Path(tempfile.mkdtemp(prefix="bench_threads_"))
    print(f"{usable_cores()} usable cores; {'default threads' if args.default_threads else 'thread budget'}; "
          f"{args.epochs} epochs at {args.size} px; work in {folder}", flush=True)
    datasets = ([] if args.skip_demo else [("demo data", lambda: demo_data(folder, args.size))])
    if args.realdata.is_dir():
        datasets.append((f"{args.realdata} {args.realdata_categories}".strip(),
                         lambda: str(args.realdata)))
    else:
        print(f"{args.realdata} is absent: real data skipped")
    try:
        for i, (name, make) in enumerate(datasets):
            data, runs = make(), folder / f"runs_{i}"
            outcomes = []
            for scenario in (with_evaluator, train_then_evaluate, beside_busy):
                print(f"  {name}: {scenario.__name__} ...", flush=True)
                outcomes.append(scenario(data, runs, args))
            report(name, outcomes)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
