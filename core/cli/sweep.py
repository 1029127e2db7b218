"""`python -m core sweep --data D --name NAME --grid loss=l1,l2 --grid model.skips=all|none`:
one training run per combination under checkpoints/NAME/<member>/, planned in sweep.json.

Every `python -m core train` flag sets the base config of all members. Starting the same sweep
again (same command, or just --name NAME) skips finished members and resumes partial ones.
--print-commands prints one `python -m core train ...` line per member still to train, for a
cluster scheduler, and trains nothing. Values with a comma inside: separate the values with
'|' (model.skips=all|none|1,2).
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from core.cli.flags import add_train_arguments, config_from_args

VERB = "sweep"
HELP = "train one run per combination of --grid values (resumable; --print-commands for a cluster)"


def add_arguments(parser) -> None:
    parser.add_argument("--name", help="sweep name: members go to ROOT/NAME/<member>/")
    parser.add_argument("--root", default="checkpoints", help="runs folder (default checkpoints)")
    parser.add_argument("--folder", help="the sweep folder itself (instead of --root/--name)")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a config field and its values, e.g. loss=l1,l2 or model.skips=all|none|1,2 "
                             "('|' separates values when a value holds a comma); repeatable")
    parser.add_argument("--print-commands", action="store_true",
                        help="print one python -m core train line per member still to train; train nothing")
    parser.add_argument("--gpus", help="comma-separated GPU indices to use (default: every visible GPU)")
    group = parser.add_argument_group("train flags (base config of every member)")
    add_train_arguments(group)


def _folder(args) -> Path:
    if args.folder:
        return Path(args.folder).expanduser()
    if not args.name:
        raise ValueError("give the sweep a --name (or its --folder)")
    if "/" in args.name or args.name in (".", ".."):
        raise ValueError(f"--name '{args.name}': a plain folder name; use --root for where it goes")
    return Path(args.root).expanduser() / args.name


def _base_config(args):
    if args.run:
        raise ValueError("--run is not used by a sweep: members go to ROOT/NAME/<member>; give --name")
    args.resume = False
    args.run = "sweep"
    return config_from_args(args)


def main(args: argparse.Namespace) -> int:
    from core.training.sweep import open_or_plan, parse_grid, print_commands, run_sweep

    folder = _folder(args)
    grid = parse_grid(args.grid) if args.grid else None
    plan = open_or_plan(folder, _base_config(args) if grid else None, grid, require_data=not args.print_commands)
    if args.print_commands:
        lines = print_commands(plan)
        print("\n".join(lines) if lines else f"# every member of {plan.folder} is finished")
        return 0
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    print(f"sweep {plan.folder}: {len(plan.members)} members ({', '.join(m.name for m in plan.members)})",
          flush=True)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops members cleanly
    try:
        outcome = run_sweep(plan, gpus=gpus, log=lambda line: print(line, flush=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [name for name, state in outcome.states.items() if state not in ("finished", "skipped")]
    if failed:
        print(f"not finished: {', '.join(failed)}; see their train.log, then run the sweep again to resume")
        return 1
    print(f"all {len(plan.members)} members finished; python -m core compare --sweep {plan.folder}")
    return 0
