"""`python -m core evaluate`: method x category AUROC for one epoch, or the epoch table.

Also home of the scoring flags the export and score verbs share (add_scoring_arguments).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.scoring.options import BANK_SCOPES, REDUCTIONS

VERB = "evaluate"
HELP = "score a run's checkpoints with every method and print AUROC per method and category"

# Scoring flags shared by the evaluate, export and score verbs. Every flag defaults to None,
# so only what the user typed reaches ScoreOptions and the cache key of a default call stays
# the same whichever verb made it. flag -> (ScoreOptions field, type, help).
SCORING_FLAGS: dict[str, tuple[str, Any, str]] = {
    "reduce": ("reduce", str, f"image score from the map: {' or '.join(REDUCTIONS)} (default max)"),
    "sigma": ("sigma", float, "map smoothing in px; negative = image_size/64 (default), 0 = off"),
    "levels": ("levels", str, "encoder levels for feature/knn: auto, all, bottleneck or 1,2"),
    "k": ("k", int, "knn/rawknn: mean distance to the k nearest (default 1)"),
    "bank_scope": ("bank_scope", str, f"knn/rawknn bank: {', '.join(BANK_SCOPES)} (default auto)"),
    "neighbours": (
        "neighbours", int, "knn: nearest normal images whose patches are searched (default 5)"
    ),
    "max_bank": ("max_bank", int, "entries kept per category bank (default 262144)"),
    "thumb_size": ("thumb_size", int, "rawknn thumbnail side in px (default 32)"),
    "routing": (
        "routing",
        str,
        "how images without a category are routed: auto, features or thumbnail",
    ),
}


def add_scoring_arguments(parser) -> None:
    group = parser.add_argument_group("scoring options")
    for flag, (_, kind, text) in SCORING_FLAGS.items():
        group.add_argument("--" + flag.replace("_", "-"), type=kind, default=None, help=text)
    group.add_argument(
        "--no-patch", action="store_true", help="knn: one pooled vector per image, no map"
    )
    group.add_argument(
        "--route",
        action="store_true",
        help="score categories the run never trained on against the nearest trained one",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default"
    )


def scoring_options(args) -> dict[str, Any]:
    options = {
        field: getattr(args, flag)
        for flag, (field, _, _) in SCORING_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if args.no_patch:
        options["patch"] = False
    if args.route:
        options["unknown_categories"] = "route"
    return options


def device_of(args) -> str:
    """The device to score on; also applies --threads, which every scoring verb has."""
    import torch

    from core.model import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return str(resolve_device(args.device))


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder, e.g. checkpoints/demo")
    parser.add_argument(
        "--epoch",
        default="best",
        help="a number, best (pinned, else lowest val loss), last, or all (default best)",
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
    from core.evaluate import (
        epoch_choices,
        evaluate_epoch,
        format_table,
        run_table,
        with_floor,
    )
    from core.finite import NonFiniteError
    from core.runs import Run, atomic_write_json, jsonable
    from core.scoring import parse_methods
    from core.scoring.data import run_data_root

    run = Run.open(args.run)
    data = run_data_root(run.config(), args.data)
    methods = with_floor(parse_methods(args.method))
    epochs = run.epochs() if str(args.epoch).lower() == "all" else [run.resolve_epoch(args.epoch)]
    if not epochs:
        raise ValueError(f"{run.path}: no finished epochs to evaluate yet")
    detail = not args.fast
    options = scoring_options(args)
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
    if not results:
        raise NonFiniteError(f"{run.path}: every epoch gives NaN/inf scores; retrain with a lower --lr")
    if len(epochs) == 1:
        payload = results[0]
        print(format_table(payload))
    else:
        table = run_table(run, results)
        best = run.resolve_epoch("best")
        print(format_table(table))
        print()
        print(format_table(next((r for r in results if r["epoch"] == best), results[-1])))
        payload = {
            "run": str(run.path),
            "data": str(data),
            "methods": list(methods),
            "table": jsonable(table.to_dict(orient="records")),
            "choices": epoch_choices(table),
            "epochs": results,
        }
    if args.json:
        atomic_write_json(Path(args.json), payload)
        json.loads(Path(args.json).read_text())  # refuse to leave invalid JSON behind
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
