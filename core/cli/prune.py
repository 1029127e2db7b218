"""`python -m core prune --run R [--apply]`: drop optimizer state a resume will never need.

A dry run by default: it prints each epoch's size and what would be freed, and writes nothing.
With --apply it rewrites those checkpoints weights-only (every epoch still loads and scores).
Kept: the latest epoch (resume continues from it), the pinned one, the lowest-validation-loss
one, and epochs listed with --keep (remembered in keep.json, so training keeps them too).
A folder of per-category runs is pruned run by run.
"""

from __future__ import annotations

from pathlib import Path

from core.cli.flags import open_run

VERB = "prune"
HELP = "show (and with --apply free) the optimizer state that older epochs no longer need"


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True,
                        help="run folder (or name under checkpoints/); a folder of per-category runs prunes each")
    parser.add_argument("--apply", action="store_true",
                        help="free the space (default: a dry run that only reports)")
    parser.add_argument("--keep", default="",
                        help="epochs whose optimizer state to keep, e.g. 3,7 (saved in keep.json)")


def runs_below(path: Path) -> list:
    """The run itself, or every run below a per-category folder."""
    from core.runs.folder import Run, RunError, list_runs

    if (path / "config.json").is_file():
        return [Run(path)]
    runs = list_runs(path)
    if not runs:
        raise RunError(f"{path}: no run here (no config.json in it or in its subfolders)")
    return runs


def parse_keep(text: str) -> list[int]:
    from core.runs.folder import RunError

    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise RunError(f"--keep '{text}': give epoch numbers separated by commas, e.g. 3,7") from err


def format_plan(plan) -> list[str]:
    from core.runs.storage import megabytes

    lines = [f"  epoch {e.epoch:3d}  {megabytes(e.bytes):>9s}  "
             + ("optimizer state " + megabytes(e.optimizer_bytes) if e.optimizer_bytes else "weights only")
             + (f"  kept: {e.keep}" if e.keep and e.optimizer_bytes else "")
             + ("  -> drop optimizer state" if e.freeable else "")
             for e in plan.epochs]
    return [plan.summary()] + lines


def main(args) -> int:
    from core.runs import storage
    from core.runs.storage import megabytes

    keep = parse_keep(args.keep)
    for run in runs_below(open_run(args.run).path):
        if keep:
            storage.set_kept(run, keep)
        plan = storage.plan_prune(run)
        print("\n".join(format_plan(plan)))
        gone = [e.epoch for e in plan.epochs if e.epoch in keep and not e.optimizer_bytes]
        if gone:
            print(f"note: epochs {', '.join(map(str, gone))} have no optimizer state left to keep")
        if args.apply and plan.to_free:
            result = storage.prune(run, plan)
            print(f"freed {megabytes(result.freed_bytes)} from epochs "
                  f"{', '.join(map(str, result.epochs))}")
        elif plan.to_free:
            print("dry run: nothing was changed; add --apply to free it")
    return 0
