"""The first-start demo: its defaults and the one launcher that `python -m core demo` and the
dashboard's Get started page both call.

The demo draws the procedural demo dataset (core.data.demo) once and trains one small U-Net
on all six categories in the background (core.training.jobs), so the dashboard shows epochs as they land.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import TrainConfig
from core.data.demo import README_MARKER, DemoSpec, generate_demo_dataset
from core.runs.folder import Run
from core.training.jobs import start_training

DEMO_DATA = "data/demo"
DEMO_RUN = "checkpoints/demo"
# The first-start demo, sized for 2 CPU cores: measured, the first clean reconstructions
# appear about 50 s after launch and all epochs finish in under 2 minutes.
DEMO_SPEC = DemoSpec(size=64, n_train=24)
DEMO_EPOCHS = 8


def demo_data_ready(folder: str | Path) -> bool:
    """True when `folder` holds demo data written with DEMO_SPEC's size (else it is redrawn)."""
    readme = Path(folder) / "README.txt"
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    return text.startswith(README_MARKER) and f"size={DEMO_SPEC.size}" in text


def demo_config(data: str | Path = DEMO_DATA, run: str | Path = DEMO_RUN) -> TrainConfig:
    """The demo run: one small U-Net for all six demo categories (the GPU when there is one).

    It keeps the plain reconstruct objective with BatchNorm and every skip on purpose: a run
    whose skips copy defects is what the dashboard's diagnostics are there to show.
    """
    return TrainConfig(data=str(data), run=str(run), image_size=DEMO_SPEC.size, epochs=DEMO_EPOCHS,
                       batch_size=16, device="auto", objective="reconstruct").with_overrides(
        {"model.base_width": 16, "model.depth": 3, "model.norm": "batch"})


def free_run_path(root: str | Path) -> Path:
    """root/demo, else the first of root/demo-2, root/demo-3, ... that is not a run yet."""
    root = Path(root)
    path, n = root / "demo", 1
    while (path / "config.json").exists():
        n += 1
        path = root / f"demo-{n}"
    return path


@dataclass(frozen=True)
class DemoLaunch:
    """What launch_demo did. state: "started" (a job was launched, `pid`), "training" (the
    run was training already, `pid` is that job's) or "done" (the run has every demo epoch);
    categories_written: demo categories drawn now (0 when the data was there)."""

    run: Run
    state: str
    pid: int | None
    categories_written: int


def launch_demo(data: str | Path = DEMO_DATA, run: str | Path = DEMO_RUN,
                epochs: int | None = None) -> DemoLaunch:
    """Draws the demo data into `data` unless it is there, then starts (or resumes) the demo
    training job on `run` in the background, unless it is training or finished already.
    Raises FileExistsError when `data` holds other files, RunError when the run cannot train."""
    written = 0
    if not demo_data_ready(data):
        written = len(generate_demo_dataset(data, DEMO_SPEC))
    target = Run(Path(run))
    if target.is_training():
        return DemoLaunch(target, "training", target.status().get("pid"), written)
    config = demo_config(data, run)
    if epochs:
        config = config.with_overrides({"epochs": epochs})
    done = target.epochs()
    if done and done[-1] >= config.epochs:
        return DemoLaunch(target, "done", None, written)
    pid = start_training(config, resume=bool(done))
    return DemoLaunch(target, "started", pid, written)
