from __future__ import annotations

import os
from pathlib import Path

from core.cli.flags import add_train_arguments as add_arguments
from core.cli.flags import config_from_args

VERB = "train"
HELP = "train a U-Net autoencoder, saving a checkpoint every epoch"
__all__ = ["VERB", "HELP", "add_arguments", "config_from_args", "main"]


def main(args) -> int:
    from core.training import distributed, threads
    from core.training.follow import follower_enabled
    from core.training.loop import train

    config = config_from_args(args)
    follow = (not args.no_follow and not config.per_category and follower_enabled()
              and Path(config.data).expanduser().is_dir())
    workload = threads.training_workload(evaluator=follow)
    share = threads.apply(threads.thread_share("training", workload, config.num_threads))
    if os.environ.get("RANK", "0") == "0":  # the job's first line: what each process got
        print(_threads_line(share, workload, _start_follower(config.run) if follow else None),
              flush=True)
    try:
        train(config, resume=args.resume, progress=not args.quiet, share=share)
    finally:
        distributed.shutdown()  # leaves the process group under torchrun; nothing otherwise
    return 0


def _start_follower(run: str) -> str:
    from dataclasses import replace

    from core.training.follow import LOG_NAME, start_follower
    from core.training.threads import Workload, thread_share

    follower = start_follower(run)
    share = thread_share("evaluator", Workload(1))  # its niceness adds to this process's own
    share = replace(share, nice=min(19, os.getpriority(os.PRIO_PROCESS, 0) + share.nice))
    return (f"background evaluator {share.describe()} while training, every core once it ends "
            f"(pid {follower.pid if follower else '-'}, log {Path(run) / LOG_NAME}; "
            "--no-follow turns it off)")


def _threads_line(share, workload, follower: str | None) -> str:
    from core.training.threads import wait_policy

    ranks = f"{workload.ranks} processes x " if workload.ranks > 1 else ""
    jobs = f", shared by {workload.jobs} jobs" if workload.jobs > 1 else ""
    return (f"threads ({workload.cores} cores{jobs}; OpenMP wait policy {wait_policy()}): "
            f"training {ranks}{share.describe()}; {follower or 'no background evaluator'}")
