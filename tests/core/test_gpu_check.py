"""benchmarks/gpu_check.sh is the one prepared script a lent GPU machine runs; its device time is
scarce, so every step of it must already work here. Run tiny on the CPU, as its header says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_gpu_check_runs_every_step_tiny_on_the_cpu(tmp_path):
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", GPU_CHECK_SIZE="32", GPU_CHECK_WIDTH="8",
               GPU_CHECK_DEPTH="2", GPU_CHECK_NTRAIN="4", GPU_CHECK_RANKS="1",
               GPU_CHECK_WORK=str(tmp_path), PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=230)
    summary = done.stdout[done.stdout.rfind("=== summary"):]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert summary.count("PASS") == 6 and "FAIL" not in summary
    assert "rebuilt on the CPU" in done.stdout
