"""Detection quality of each training recipe: ONE model for all categories of a dataset.

    python benchmarks/bench_detection.py DATA... [--minutes M] [--recipes a,b] [--image-size S]
        [--max-epochs N] [--out DIR] [--threads T]

For every DATA folder and every recipe, trains one model on all its categories within about
M minutes (the first epoch is timed, then as many epochs as fit, capped by --max-epochs),
evaluates the last epoch with every scoring method plus both no-learning floors (rawknn,
patchz), and prints image AUROC per category, the mean over categories and the pooled
AUROC (all images in one ranking). Numbers depend on the machine only through how many
epochs fit in the budget; the run folders under --out are kept for the dashboard.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from core.config import TrainConfig  # noqa: E402
from core.evaluation.evaluate import EpochEvaluation, evaluate_epoch  # noqa: E402
from core.model.unet import resolve_device  # noqa: E402
from core.runs.folder import Run  # noqa: E402

# name -> TrainConfig overrides; each differs from the previous default in one idea
RECIPES: dict[str, dict] = {
    "reconstruct-skips": {"objective": "reconstruct", "model.skips": "all", "model.norm": "batch"},
    "reconstruct-noskips": {"objective": "reconstruct", "model.skips": "none", "model.norm": "batch"},
    "denoise": {"objective": "denoise", "model.skips": "all", "model.norm": "instance"},
    "discriminative": {"objective": "discriminative", "model.skips": "all", "model.norm": "instance"},
}


def train_within(config: TrainConfig, minutes: float, max_epochs: int) -> tuple[Run, int, float]:
    """Trains epoch 1, then resumes to as many epochs as the budget allows.
    Returns (run, epochs trained, seconds)."""
    from core.training.loop import train_one

    started = time.perf_counter()
    run = train_one(config.with_overrides({"epochs": 1}), progress=False, log=lambda _: None)
    first = time.perf_counter() - started
    epochs = int(max(1, min(max_epochs, (minutes * 60) // max(first, 1e-6))))
    if epochs > 1:
        train_one(config.with_overrides({"epochs": epochs}), resume=True, progress=False,
                  log=lambda _: None)
    return run, epochs, time.perf_counter() - started


def report(name: str, result: EpochEvaluation, epochs: int, seconds: float) -> list[str]:
    """Text rows: one per method, categories then mean and pooled."""
    image = result.image_auroc
    columns = list(next(iter(image.values())))
    lines = [f"\n{name}: {epochs} epochs in {seconds / 60:.1f} min; image AUROC "
             "(mean = mean of categories, overall = all images pooled)",
             f"{'method':10s}" + "".join(f"{c[:14]:>15s}" for c in columns)]
    for method, row in image.items():
        cells = "".join(f"{'-' if row[c] is None else f'{row[c]:.3f}':>15s}" for c in columns)
        lines.append(f"{method:10s}{cells}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="dataset folders (MVTec layout, any depth)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per recipe")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma list of recipes")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", default="checkpoints/bench_detection")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    for data in args.data:
        for name in names:
            run_dir = Path(args.out) / f"{Path(data).name}-{name}-{args.image_size}px"
            if run_dir.exists():
                parser.error(f"{run_dir} exists; remove it or pass another --out")
            config = TrainConfig(data=data, run=str(run_dir), image_size=args.image_size,
                                 num_threads=args.threads, device=args.device).with_overrides(
                RECIPES[name])
            run, epochs, seconds = train_within(config, args.minutes, args.max_epochs)
            result = evaluate_epoch(run, "last", data, "all", pixel=False, thresholds=False,
                                    routing=False, device=resolve_device(args.device))
            print("\n".join(report(f"{data} / {name}", result, epochs, seconds)), flush=True)


if __name__ == "__main__":
    main()
