"""Detection quality over several sets and seeds: ONE model for all categories, one table.

    python benchmarks/bench_detection.py DATA... [--seeds 0,1] [--epochs N | --minutes M]
        [--recipes a,b] [--methods all] [--variant NAME=METHOD:key=value;key=value ...]
        [--runs RUN...] [--image-size S] [--out DIR] [--rounds B]

For every recipe and seed, trains one model on all categories of each DATA folder (MVTec
layout at any depth: ../shared holds six categories and gets one model), scores the last
epoch's test images with every method (plus both no-learning floors, rawknn and patchz, and
any --variant: a method with other options, e.g. ens3=ensemble:members=knn,patchz,rawknn),
and prints ONE table per recipe over all sets and seeds: per set the image AUROC averaged
over the seeds, its 95% bootstrap interval over test images, and the method's rank on that
set; then the mean over sets with its interval and the mean rank (core.evaluation.auroc_table). The
closing lines compare the default score with the floors: its mean minus rawknn's mean, and
every set where it is not above both floors.

--runs scores runs already trained (one per seed, same data) instead of training; a run
folder under --out that already holds the asked epochs is reused, so a second call with other
--variant options trains nothing. --epochs fixes the epochs; without it each run trains as
many as fit in --minutes (the first epoch is timed, capped by --max-epochs).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402

from core.config import TrainConfig  # noqa: E402
from core.evaluation.auroc_table import MEAN, MethodRow, SeedScores, auroc_table, format_auroc_table  # noqa: E402
from core.evaluation.evaluate import available_methods, with_floor  # noqa: E402
from core.model.unet import resolve_device  # noqa: E402
from core.runs.folder import Run  # noqa: E402
from core.scoring import METHODS, parse_methods  # noqa: E402
from core.scoring.checkpoint import resolve_method, score_checkpoint_methods  # noqa: E402
from core.scoring.context import ScoringContext  # noqa: E402
from core.scoring.options import FLOOR_METHODS  # noqa: E402

# name -> TrainConfig overrides; "default" is TrainConfig as shipped, the others each differ
# from the previous default in one idea
RECIPES: dict[str, dict] = {
    "default": {},
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


def trained_run(config: TrainConfig, args: argparse.Namespace) -> Run:
    """The run of `config`: reused when its folder holds args.epochs epochs already."""
    from core.training.loop import train_one

    run = Run(config.run)
    if args.epochs and run.epochs() and max(run.epochs()) >= args.epochs:
        print(f"{config.run}: reusing its {max(run.epochs())} epochs", flush=True)
        return run
    started = time.perf_counter()
    if args.epochs:
        run = train_one(config.with_overrides({"epochs": args.epochs}), resume=run.path.exists(),
                        progress=False, log=lambda _: None)
        epochs = args.epochs
    else:
        run, epochs, _ = train_within(config, args.minutes, args.max_epochs)
    print(f"{config.run}: {epochs} epochs in {(time.perf_counter() - started) / 60:.1f} min",
          flush=True)
    return run


def parse_variant(text: str) -> tuple[str, str, dict]:
    """'ens3=ensemble:members=knn,patchz,rawknn;k=3' -> ('ens3', 'ensemble', {...}); option
    values that read as integers or floats become numbers, true/false booleans."""
    name, _, rest = text.partition("=")
    method, _, opts = rest.partition(":")
    if not name or method not in METHODS:
        raise ValueError(f"--variant '{text}': write NAME=METHOD[:key=value;key=value], METHOD "
                         f"one of {', '.join(METHODS)}")
    options = {}
    for part in filter(None, opts.split(";")):
        key, _, value = part.partition("=")
        options[key.strip()] = _value(value.strip())
    return name, method, options


def _value(text: str):
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def seed_scores(run: Run, data: str, methods: tuple[str, ...], variants, device) -> SeedScores:
    """Every method's and variant's raw image scores of the run's last epoch on data's test
    set (the ensemble's are its calibrated mean, as `score` gives them)."""
    epoch = run.resolve_epoch("last")
    chosen = with_floor(available_methods(ScoringContext(run, epoch, data), parse_methods(methods)))
    results = score_checkpoint_methods(run, epoch, data, chosen, device=device, maps=False)
    scores = {m: r.image_scores for m, r in results.items()}
    first = results[chosen[0]]
    for name, method, options in variants:
        scores[name] = score_checkpoint_methods(run, epoch, data, (method,), device=device,
                                                maps=False, **options)[method].image_scores
    return SeedScores(np.asarray(first.labels), np.asarray(first.categories), scores)


def joined(parts: list[SeedScores]) -> SeedScores:
    """One seed's scores over several data folders (their categories side by side)."""
    methods = [m for m in parts[0].scores if all(m in p.scores for p in parts)]
    return SeedScores(np.concatenate([p.labels for p in parts]),
                      np.concatenate([p.categories for p in parts]),
                      {m: np.concatenate([p.scores[m] for p in parts]) for m in methods})


def verdict(rows: list[MethodRow], default: str) -> list[str]:
    """The default score against the floors, in sentences."""
    by = {r.method: r for r in rows}
    if default not in by or not all(f in by for f in FLOOR_METHODS):
        return [f"(the default '{default}' or a floor was not scored)"]
    mean = by[default].aurocs[MEAN].estimate
    lines = [f"default '{default}': mean {mean:.3f}; minus rawknn's mean "
             f"{by['rawknn'].aurocs[MEAN].estimate:.3f} = {mean - by['rawknn'].aurocs[MEAN].estimate:+.3f}"]
    below = [f"{name} ({row.aurocs[name].estimate:.3f} vs {floor} {by[floor].aurocs[name].estimate:.3f})"
             for name in by[default].rank for floor in FLOOR_METHODS
             for row in [by[default]] if row.aurocs[name].estimate <= by[floor].aurocs[name].estimate]
    lines.append("above both floors on every set" if not below
                 else "NOT above a floor on: " + "; ".join(below))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="dataset folders (MVTec layout, any depth)")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per run (0: --minutes)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--recipes", default="default", help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--methods", default="all", help="scoring methods (floors always added)")
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=METHOD[:key=value;...], a method with other scoring options")
    parser.add_argument("--runs", nargs="*", default=[],
                        help="score these trained runs (one per seed) instead of training")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--out", default="checkpoints/bench_detection")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    if args.runs and len(args.data) != 1:
        parser.error("--runs scores runs trained on one data folder; pass exactly one DATA")
    try:
        variants = [parse_variant(v) for v in args.variant]
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as err:
        parser.error(str(err))
    device = resolve_device(args.device)
    for name in names if not args.runs else ["(given runs)"]:
        per_seed = []
        for index, seed in enumerate(seeds if not args.runs else args.runs):
            parts = []
            for data in args.data:
                if args.runs:
                    run = Run(seed)
                else:
                    folder = Path(args.out) / f"{Path(data).name}-{name}-{args.image_size}px-s{seed}"
                    config = TrainConfig(data=data, run=str(folder), image_size=args.image_size,
                                         seed=seed, num_threads=args.threads,
                                         device=args.device).with_overrides(RECIPES[name])
                    run = trained_run(config, args)
                parts.append(seed_scores(run, data, args.methods, variants, device))
            per_seed.append(joined(parts))
            print(f"{name}: run {index + 1} of {len(seeds if not args.runs else args.runs)} scored",
                  flush=True)
        rows = auroc_table(per_seed, rounds=args.rounds)
        default, _ = resolve_method(None, Run(args.runs[0]) if args.runs else run, "last",
                                    args.data[0])
        print(f"\n{name}: image AUROC over {len(per_seed)} run(s), {', '.join(args.data)}; "
              f"per set the mean over runs [95% bootstrap interval over test images] #rank")
        print(format_auroc_table(rows, floors=FLOOR_METHODS))
        print("\n".join(verdict(rows, default)), flush=True)


if __name__ == "__main__":
    main()
