"""`python -m core follow`: evaluate each epoch of a run as it lands (see core.training.follow)."""

from __future__ import annotations

VERB = "follow"
HELP = ("score each new epoch of a run with the Overview's methods while it trains, so the "
        "dashboard opens it from cache (started by train; rarely needed by hand)")


def add_arguments(parser) -> None:
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--data", help="dataset with test images (default: the run's data)")
    parser.add_argument("--methods", default=",".join(("pixel", "ssim", "knn")),
                        help="comma-separated scoring methods (default pixel,ssim,knn)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 = the thread budget (1 while the run trains, "
                             "every core after)")


def main(args) -> int:
    from core.runs.folder import Run
    from core.scoring.options import parse_methods
    from core.training.follow import follow_run
    from core.training.threads import Workload, apply, thread_share, usable_cores

    if args.threads < 0:
        raise ValueError(f"--threads {args.threads}: expected 0 (the budget) or more")
    apply(thread_share("evaluator", Workload(usable_cores()), args.threads))  # background priority
    scored = follow_run(Run.open(args.run), args.data, parse_methods(args.methods),
                        log=lambda text: print(text, flush=True), threads=args.threads)
    print(f"followed {args.run}: {len(scored)} epoch(s) evaluated", flush=True)
    return 0
