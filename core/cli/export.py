"""`python -m core export`: one epoch as the chosen model, plus an optional submission.csv."""

from __future__ import annotations

import sys

from core.cli.flags import add_epoch_argument, add_scoring_arguments, device_of, scoring_options
from core.scoring.calibration import CALIBRATIONS
from core.scoring.options import DEFAULT_METHOD_TEXT

VERB = "export"
HELP = (
    "write an epoch's weights, config and card, and optionally a submission.csv for a test folder"
)


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    add_epoch_argument(parser)
    parser.add_argument(
        "--out", required=True, help="output folder (refused if it already holds an export)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the export already in --out"
    )
    parser.add_argument(
        "--test", help="folder of test images (or a dataset) to score into submission.csv"
    )
    parser.add_argument(
        "--method",
        default=None,
        help=f"scoring method for the submission (default {DEFAULT_METHOD_TEXT})",
    )
    parser.add_argument(
        "--calibration",
        default="normals",
        choices=CALIBRATIONS,
        help="normals (default): per-category z-scores against held-out normals, so one "
        "ranking over mixed categories is fair; none: raw scores",
    )
    parser.add_argument(
        "--reason", default="", help="why this epoch was chosen (goes into card.json)"
    )
    parser.add_argument("--id-column", default="id", help="CSV id column name (default id)")
    parser.add_argument(
        "--score-column",
        default="anomaly_score",
        help="CSV score column name (default anomaly_score)",
    )
    add_scoring_arguments(parser)


def main(args) -> int:
    from core.reports.export import export_epoch
    from core.runs.folder import Run

    run = Run.open(args.run)
    written = export_epoch(
        run,
        args.epoch,
        args.out,
        test_dir=args.test,
        method=args.method,
        calibration=args.calibration,
        reason=args.reason,
        id_column=args.id_column,
        score_column=args.score_column,
        device=device_of(args),
        overwrite=args.overwrite,
        **scoring_options(args),
    )
    import json

    for kind, path in written.items():
        print(f"{kind:10s} {path}")
    card = json.loads(written["card"].read_text())
    choice = card.get("choice") or {}
    if choice:
        print(f"epoch      {choice['label']}: {choice['reason']}", file=sys.stderr)
        for text in (choice.get("caveat"), choice.get("differs_from_best")):
            if text:
                print(f"epoch      {text}", file=sys.stderr)
    if "submission" in written:
        calibrated = card["scoring"]["calibration"] or "raw (not calibrated)"  # None: --calibration none
        print(f"scores     {card['scoring']['method']}, {calibrated}")
        if card["scoring"].get("note"):
            print(f"note       {card['scoring']['note']}")
    health = card.get("health") or {}
    for flag in health.get("flags", []):
        print(f"warning    epoch {card['epoch']} is flagged {flag['name']} ({flag['severity']}): "
              f"{flag['sentence']}", file=sys.stderr)
    if health.get("warning"):
        print(f"warning    {health['warning']}", file=sys.stderr)
    return 0
