"""How fast a finished run's Overview opens once the follower has filled its cache.

    python benchmarks/bench_overview.py RUN [--work DIR]

Copies RUN (checkpoints, metrics, config; not its cache) into a fresh checkpoints folder under
--work, lets `python -m core follow` evaluate every epoch as it does beside a training job,
then opens the dashboard's first page (the Overview of that run) with Streamlit's AppTest, each
in a new process:

  cold      the process imports streamlit, torch and core itself (a server's first page)
  first     imports done before the clock starts (a running server's first visitor)
  second    a second session in the same process (Streamlit's caches warm)

Target (issue #15): under 3 s from cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import os, sys, time
cold = sys.argv[1] == "cold"
if not cold:
    import torch, plotly, pandas, streamlit  # noqa: F401  (a running server has these)
    import core.evaluation.evaluate, core.diagnostics, core.scoring.checkpoint, dashboard.state  # noqa
started = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[2], default_timeout=600)
at.run()
first = time.perf_counter() - started
problems = len(at.exception) + len(at.error)
started = time.perf_counter()
again = AppTest.from_file(sys.argv[2], default_timeout=600)
again.run()
print(f"{first:.2f} {time.perf_counter() - started:.2f} {problems}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_overview_"))
    target = work / "checkpoints" / args.run.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(args.run, target, ignore=shutil.ignore_patterns("cache", "*.lock"))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "RECONSCOPE_NO_FOLLOW": "1",
           "RECONSCOPE_CHECKPOINTS": str(target.parent)}
    subprocess.run([sys.executable, "-m", "core", "follow", "--run", str(target)], cwd=REPO,
                   env=env, check=True, capture_output=True)
    app = str(REPO / "dashboard" / "app.py")
    for mode in ("cold", "first"):
        done = subprocess.run([sys.executable, "-c", PROBE, mode, app], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        first, second, problems = done.stdout.split()[-3:]
        label = "cold (imports included)" if mode == "cold" else "first (imports done)"
        print(f"Overview of {args.run.name}: {label:24s} {float(first):5.1f} s; "
              f"second session {float(second):4.1f} s; errors/exceptions on the page: {problems}")


if __name__ == "__main__":
    main()
