"""Which epoch-selection rule to trust: regret in real image AUROC over labelled runs.

    python benchmarks/bench_epoch_choice.py [--data ../shared/realdata] [--work /tmp/epoch_choice]
        [--image-size 64] [--runs default,noskips,...]

Trains (once; a finished run in --work is reused) one model per recipe below on every category of
--data, scores every epoch with every learned method, and compares the rules that pick an epoch:

  chosen                 core.diagnostics.choice.choose_epoch on a diagnosis that does NOT read the
                         test labels (diagnose_run(blind=True)): what a user without labels gets
  lowest val loss        the epoch with the lowest validation loss (`--epoch best`)
  last                   the last epoch
  best synthetic AUROC   the highest synthetic AUROC logged by training (for the method when it was
                         logged for it, else the mean over the logged methods)

For each run the method is the one the chosen rule picks with its epoch (the product default when
it picks none); regret = that method's real AUROC (mean of per-category image AUROCs) at its best
epoch minus at the rule's epoch. Prints a row per run and the mean and worst regret per rule.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

RECIPES = {  # name: (TrainConfig overrides, epochs)
    "default": ({}, 8),
    "reconstruct_skips": ({"objective": "reconstruct", "model.skips": "all"}, 6),
    "noskips": ({"model.skips": "none"}, 6),
    "ssim_noskips": ({"loss": "ssim", "model.skips": "none"}, 5),
    "l1_reconstruct_noskips": ({"loss": "l1", "objective": "reconstruct", "model.skips": "none"}, 5),
    "short_seed1": ({"seed": 1}, 3),
    "discriminative": ({"objective": "discriminative"}, 4),
    "noskips_highlr": ({"model.skips": "none", "lr": 0.01}, 5),
}
RULES = ("chosen", "lowest val loss", "last", "best synthetic AUROC")


def train(data: Path, run_dir: Path, size: int, overrides: dict, epochs: int):
    from core.config import TrainConfig
    from core.runs.folder import Run
    from core.training.loop import train_one

    run = Run(run_dir)
    if len(run.epochs()) >= epochs:
        return run
    config = TrainConfig(data=str(data), run=str(run_dir), image_size=size, epochs=epochs)
    train_one(config.with_overrides(overrides), progress=False, log=lambda _: None)
    return Run(run_dir)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def synthetic_pick(run, method: str) -> int | None:
    best = None
    for record in run.metrics():
        logged = {k: v for k, v in (record.get("synthetic_auroc") or {}).items() if _finite(v)}
        if not logged:
            continue
        value = logged.get(method, sum(logged.values()) / len(logged))
        if best is None or value > best[0]:
            best = (value, int(record["epoch"]))
    return None if best is None else best[1]


def measure(run, data: Path) -> dict:
    """Real AUROC per method and epoch, the blind choice and every rule's epoch for one run."""
    from core.diagnostics import diagnose_run
    from core.diagnostics.choice import choose_epoch
    from core.diagnostics.timeline import ranked_methods
    from core.evaluation.evaluate import evaluate_run
    from core.scoring.options import DEFAULT_METHOD

    methods = tuple(dict.fromkeys((*ranked_methods(run), DEFAULT_METHOD)))
    table = evaluate_run(run, "all", data, methods)
    real = {m: {int(r["epoch"]): r.get(f"real_auroc_{m}") for _, r in table.iterrows()} for m in methods}
    diagnosis = diagnose_run(run, data_root=data, cluster=False, blind=True)
    choice = choose_epoch(run, diagnosis)
    method = choice.method or DEFAULT_METHOD
    epochs = run.epochs()
    picks = {"chosen": choice.epoch, "lowest val loss": run.best_by_val_loss() or epochs[-1],
             "last": epochs[-1], "best synthetic AUROC": synthetic_pick(run, method) or epochs[-1]}
    flagged = {int(r["epoch"]): ",".join(r["errors"]) for r in diagnosis.timeline if r["errors"]}
    labelled = diagnose_run(run, data_root=data, cluster=False)  # cached: agreements with labels
    agreements = [(a.criterion, a.method, a.spearman)
                  for a in (labelled.ranking.agreements if labelled.ranking else [])
                  if a.spearman is not None]
    return {"method": method, "real": real, "picks": picks, "choice": choice, "flagged": flagged,
            "agreements": agreements}


def regrets(result: dict, method: str) -> dict[str, float]:
    by_epoch = {e: v for e, v in result["real"][method].items() if _finite(v)}
    if not by_epoch:
        return {}
    best = max(by_epoch.values())
    return {rule: best - by_epoch.get(epoch, float("nan")) for rule, epoch in result["picks"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/realdata"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/epoch_choice"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--runs", default=",".join(RECIPES), help="comma list of recipes")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # per-file data warnings are not what this measures
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (the shared real data sets)")
    from core.scoring.options import DEFAULT_METHOD

    rows, per_rule, per_rule_default = [], {r: [] for r in RULES}, {r: [] for r in RULES}
    agreement: dict[tuple[str, str], list[float]] = {}
    for name in args.runs.split(","):
        overrides, epochs = RECIPES[name]
        started = time.perf_counter()
        run = train(args.data, args.work / name, args.image_size, overrides, epochs)
        result = measure(run, args.data)
        mine, default = regrets(result, result["method"]), regrets(result, DEFAULT_METHOD)
        for criterion, method, rho in result["agreements"]:
            agreement.setdefault((criterion, method), []).append(rho)
        for rule in RULES:
            per_rule[rule].append(mine.get(rule, float("nan")))
            per_rule_default[rule].append(default.get(rule, float("nan")))
        best = max((v, e) for e, v in result["real"][result["method"]].items() if _finite(v))
        picks = " / ".join(f"{result['picks'][r]} ({mine.get(r, float('nan')):+.3f})" for r in RULES)
        flagged = "; ".join(f"{e}: {f}" for e, f in sorted(result["flagged"].items())) or "-"
        chosen = result["picks"]["chosen"]
        here = result["real"][result["method"]].get(chosen, float("nan"))
        plain = result["real"][DEFAULT_METHOD].get(chosen, float("nan"))
        rows.append(f"| {name} | {len(run.epochs())} | {result['method']} | {best[1]} ({best[0]:.3f}) | "
                    f"{picks} | {here:.3f} / {plain:.3f} | {flagged} |")
        print(f"{name}: {result['choice'].label}, {time.perf_counter() - started:.0f} s", flush=True)
    print("\n| run | epochs | method (chosen) | best epoch (real AUROC) | " + " / ".join(RULES)
          + f": epoch (regret) | real AUROC at the chosen epoch: chosen method / {DEFAULT_METHOD} "
          "| error flags by epoch |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for title, table in (("chosen method", per_rule), (f"default method {DEFAULT_METHOD}", per_rule_default)):
        print(f"\nregret for the {title}, over {len(rows)} runs:")
        for rule, values in table.items():
            finite = [v for v in values if _finite(v)]
            if finite:
                print(f"  {rule:22s} mean {sum(finite) / len(finite):.3f}  worst {max(finite):.3f}")
    print("\nmean Spearman of each label-free criterion with real AUROC across epochs (runs with >= 3 epochs):")
    for (criterion, method), values in sorted(agreement.items()):
        print(f"  {criterion:16s} {method:9s} {sum(values) / len(values):+.2f} over {len(values)} runs")


if __name__ == "__main__":
    main()
