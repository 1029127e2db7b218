"""`python -m core follow`: evaluate each epoch of a run as it lands (see core.follow)."""

from __future__ import annotations

VERB = "follow"
HELP = ("score each new epoch of a run with the Overview's methods while it trains, so the "
        "dashboard opens it from cache (started by train; rarely needed by hand)")


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--data", help="dataset with test images (default: the run's data)")
    parser.add_argument("--methods", default=",".join(("pixel", "ssim", "knn")),
                        help="comma-separated scoring methods (default pixel,ssim,knn)")


def main(args) -> int:
    import torch

    from core.follow import follow_run
    from core.runs import Run
    from core.scoring.options import parse_methods

    torch.set_num_threads(1)  # beside training: one core at most
    scored = follow_run(Run.open(args.run), args.data, parse_methods(args.methods),
                        log=lambda text: print(text, flush=True))
    print(f"followed {args.run}: {len(scored)} epoch(s) evaluated", flush=True)
    return 0
