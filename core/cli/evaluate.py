"""`python -m core evaluate`: method x category AUROC for one epoch, or the epoch table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli.flags import (
    EPOCH_HELP,
    add_scoring_arguments,
    device_of,
    resolve_epoch_arg,
    scoring_options,
)

VERB = "evaluate"
HELP = "score a run's checkpoints with every method and print AUROC per method and category"

def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder, e.g. checkpoints/demo")
    parser.add_argument(
        "--epoch", default="chosen", help=f"{EPOCH_HELP}, or all (default chosen)"
    )
    parser.add_argument(
        "--method",
        default="all",
        help="pixel, ssim, feature, knn, rawknn, a comma list, or all (rawknn, the no-learning "
        "floor, is always added)",
    )
    parser.add_argument(
        "--data", help="dataset with test images (default: the data the run trained on)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="image AUROC only: no pixel metrics, thresholds, routing",
    )
    add_scoring_arguments(parser)


def main(args) -> int:
    from core.data.snapshot import data_snapshot
    from core.evaluation.evaluate import (
        criterion_picks,
        format_table,
        run_table,
        with_floor,
    )
    from core.runs.finite import NonFiniteError
    from core.runs.folder import Run, atomic_write_json, jsonable
    from core.scoring import parse_methods
    from core.scoring.data import run_data_root

    run = Run.open(args.run)
    data = run_data_root(run.config(), args.data)
    asked = parse_methods(args.method)
    methods = with_floor(asked)
    every = str(args.epoch).lower() == "all"
    single = asked[0] if len(asked) == 1 else None  # the chosen epoch for that one method
    epochs = run.epochs() if every else [resolve_epoch_arg(run, args.epoch, args.data, single)]
    if not epochs:
        raise ValueError(f"{run.path}: no finished epochs to evaluate yet")
    detail = not args.fast
    options = scoring_options(args)
    with data_snapshot():  # the data files looked at once for every epoch
        results = _evaluate_each(run, epochs, data, methods, args, detail, options)
    if not results:
        raise NonFiniteError(f"{run.path}: every epoch gives NaN/inf scores; retrain with a lower --lr")
    if len(epochs) == 1:
        payload = results[0].to_dict()
        print(format_table(results[0]))
    else:
        table = run_table(run, results)
        print(format_table(table))
        print()
        chosen = resolve_epoch_arg(run, "chosen", args.data, single)
        print(format_table(next((r for r in results if r.epoch == chosen), results[-1])))
        payload = {
            "run": str(run.path),
            "data": str(data),
            "methods": list(methods),
            "table": jsonable(table.to_dict(orient="records")),
            "choices": criterion_picks(table),
            "epochs": [r.to_dict() for r in results],
        }
    if args.json:
        atomic_write_json(Path(args.json), payload)
        json.loads(Path(args.json).read_text())  # refuse to leave invalid JSON behind
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _evaluate_each(run, epochs, data, methods, args, detail, options) -> list:
    """evaluate_epoch for each epoch; an epoch with NaN/inf scores is left out and named."""
    from core.evaluation.evaluate import evaluate_epoch
    from core.runs.finite import NonFiniteError

    results = []
    for epoch in epochs:
        print(
            f"evaluating epoch {epoch} ({', '.join(methods)}) on {data}",
            file=sys.stderr,
            flush=True,
        )
        try:
            results.append(
                evaluate_epoch(
                    run,
                    epoch,
                    data,
                    methods,
                    device=device_of(args),
                    pixel=detail,
                    thresholds=detail,
                    routing=detail,
                    **options,
                )
            )
        except NonFiniteError as err:
            if len(epochs) == 1:
                raise
            print(f"epoch {epoch} left out: {err}", file=sys.stderr, flush=True)
    return results
