"""`python -m core score`: per-image scores of one method and epoch, as CSV or JSON."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from core.cli.flags import (
    add_epoch_argument,
    add_scoring_arguments,
    device_of,
    resolve_epoch_arg,
    scoring_options,
)
from core.scoring.calibration import CALIBRATIONS
from core.scoring.options import DEFAULT_METHOD_TEXT, METHODS

VERB = "score"
HELP = (
    "per-image anomaly scores of one checkpoint and method (CSV on stdout, or --json); for knn and "
    "rawknn, compared_with is the category each image was compared with (routed when unlabeled)"
)


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    add_epoch_argument(parser)
    parser.add_argument(
        "--method",
        default=None,
        help=f"{', '.join(METHODS)} (default {DEFAULT_METHOD_TEXT})",
    )
    parser.add_argument(
        "--calibration",
        default="none",
        choices=CALIBRATIONS,
        help="none (default): raw scores; normals: per-category z-scores against held-out normals",
    )
    parser.add_argument(
        "--data", help="dataset or image folder (default: the data the run trained on)"
    )
    parser.add_argument(
        "--split", default="test", help="test (default), or the run's own val or train normals"
    )
    parser.add_argument(
        "--json", help="write {name: score, ...} details to this JSON file instead of CSV"
    )
    add_scoring_arguments(parser)


def main(args) -> int:
    from core.runs.folder import Run, atomic_write_json, jsonable
    from core.scoring import score_checkpoint
    from core.scoring.adaptive import describe_choices
    from core.scoring.checkpoint import check_method, resolve_method
    from core.scoring.data import run_data_root

    run = Run.open(args.run)
    data = run_data_root(run.config(), args.data)
    epoch = resolve_epoch_arg(run, args.epoch, None, args.method and check_method(args.method))
    method, why = resolve_method(args.method, run, epoch, data)
    if why:
        print(f"note: {why}", file=sys.stderr)
    result = score_checkpoint(
        run,
        epoch,
        data,
        method,
        split=args.split,
        device=device_of(args),
        calibration=args.calibration,
        **scoring_options(args),
    )
    chose = describe_choices(result.info)
    if chose:
        print(f"note: {chose}", file=sys.stderr)
    compared = result.bank_categories or [""] * len(result.names)
    rows = list(
        zip(
            result.names,
            result.categories,
            list(result.labels),
            list(result.image_scores),
            compared,
            strict=True,
        )
    )
    if args.json:
        keep = (
            "method",
            "epoch",
            "split",
            "names",
            "paths",
            "categories",
            "labels",
            "defects",
            "image_scores",
            "raw_scores",
            "calibration",
            "bank_categories",
            "info",
            "seconds",
        )
        fields = {k: getattr(result, k) for k in keep}
        atomic_write_json(Path(args.json), jsonable({k: v for k, v in fields.items() if v is not None}))
        print(f"wrote {len(rows)} scores to {args.json}", file=sys.stderr)
        return 0
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["name", "category", "label", "score", "compared_with"])
    for name, category, label, score, bank_category in rows:
        writer.writerow([name, category, int(label), repr(float(score)), bank_category or ""])
    return 0
