"""The users' reconstruction tables on real data: loss mix x objective x skips, per epoch.

    python benchmarks/bench_reconstruction.py [--data ../shared/realdata] [--recipes a,b]
        [--epochs N] [--minutes M] [--out DIR] [--runs RUN...]
        [--score-epochs all|chosen|last|chosen,last]

For each recipe (default: every entry of RECIPES, one at a time, each trained as ONE model on
all categories of --data at 64 px for --epochs epochs, stopped early once --minutes of training
have passed) or for each existing run folder given with --runs (nothing is trained), prints
one row per scored epoch: validation loss, the bottleneck's mean weight std (the users'
collapse signal: 0.014 for their collapsed no-skip U-Net, 0.027 with a VGG loss) and the mean
image AUROC over categories of every reconstruction method (seg too for discriminative runs)
and of the two no-learning floors rawknn and patchz. "chosen" marks the epoch the product
chooses (core.diagnostics.choice). The rows are core.reports.reconstruction's, the table the
Compare page shows for a sweep. Trainings run in a niced subprocess (`python -m core train
--no-follow`), so the budget is the training's own. docs/reconstruction.md holds a measured
table and the command that produced it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from core.reports.reconstruction import ALL_METHODS, EPOCH_CHOICES, reconstruction_rows  # noqa: E402
from core.runs.folder import Run  # noqa: E402

BASE = "0.5*ssim+0.5*l1"
# name -> (loss, objective, skips); depth 4 throughout. The users' loss mixes, then the
# pretrained-free terms of core.model.losses_free on their failing case (no skips at depth 4).
RECIPES: dict[str, tuple[str, str, str]] = {
    "ssim0.8-l1-noskips": ("0.8*ssim+0.2*l1", "reconstruct", "none"),
    "ssim0.5-l1-noskips": (BASE, "reconstruct", "none"),
    "ssim0.1-l1-noskips": ("0.1*ssim+0.9*l1", "reconstruct", "none"),
    "l1-noskips": ("l1", "reconstruct", "none"),
    "l2-noskips": ("l2", "reconstruct", "none"),
    "ssim0.5-l1-skips": (BASE, "reconstruct", "all"),
    "denoise-noskips": (BASE, "denoise", "none"),
    "denoise-skips": (BASE, "denoise", "all"),
    "randperc-denoise-noskips": (BASE + "+1*randperc", "denoise", "none"),
    "grad-denoise-noskips": (BASE + "+0.5*grad", "denoise", "none"),
    "ffl-denoise-noskips": (BASE + "+1*ffl", "denoise", "none"),
    "discriminative-skips": (BASE, "discriminative", "all"),
}


def train(name: str, data: str, out: Path, epochs: int, minutes: float, size: int) -> Run:
    """Trains one recipe in a niced subprocess, stopping it after `minutes` (whole epochs kept)."""
    loss, objective, skips = RECIPES[name]
    run_dir = out / name
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists; remove it or pass another --out")
    command = ["nice", "-n", "5", sys.executable, "-m", "core", "train", "--data", data,
               "--run", str(run_dir), "--epochs", str(epochs), "--image-size", str(size),
               "--loss", loss, "--objective", objective, "--skips", skips, "--depth", "4",
               "--quiet", "--no-follow"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with subprocess.Popen(command, env=env) as process:
        try:
            process.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
            print(f"{name}: stopped after {minutes:g} min of training", flush=True)
    return Run.open(run_dir)


def print_rows(run: Run, data: str, which: str) -> None:
    """One text row per scored epoch of `run` (core.reports.reconstruction, the rule the Compare
    page shows): cached AUROCs are read, the rest computed."""
    # "last" skips the product's choice, which diagnoses every epoch first (minutes per epoch)
    for row in reconstruction_rows([run], data, which):
        marks = (" chosen" if row.chosen else "") + (f" chosen for {row.chosen_for}" if row.chosen_for else "")
        cells = [row.run, f"{row.epoch}{marks}", _fmt(row.val_loss, 4),
                 _fmt(row.bottleneck_std, 4)]
        cells += [_fmt(row.auroc.get(m)) for m in ALL_METHODS]
        print(" | ".join(cells) + (f" | {row.note}" if row.note else ""), flush=True)


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent
                                              / "shared" / "realdata"))
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma list of RECIPES")
    parser.add_argument("--runs", nargs="*", default=[], help="score these run folders instead")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per recipe")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", default="checkpoints/bench_reconstruction")
    parser.add_argument("--score-epochs", default="all", choices=EPOCH_CHOICES)
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data}: no such folder; pass a dataset in MVTec AD layout")
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    header = ["run", "epoch", "val loss", "bottleneck std", *ALL_METHODS]
    print(" | ".join(header), flush=True)
    started = time.perf_counter()
    for item in args.runs or names:  # each recipe is scored as soon as it is trained
        run = Run.open(item) if args.runs else train(item, args.data, Path(args.out), args.epochs,
                                                     args.minutes, args.image_size)
        print_rows(run, args.data, args.score_epochs)
    print(f"({(time.perf_counter() - started) / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
