from __future__ import annotations

import os
from pathlib import Path

from core.cli.flags import add_train_arguments as add_arguments
from core.cli.flags import config_from_args

VERB = "train"
HELP = "train a U-Net autoencoder, saving a checkpoint every epoch"
__all__ = ["VERB", "HELP", "add_arguments", "config_from_args", "main"]


def main(args) -> int:
    from core import distributed
    from core.train import train

    config = config_from_args(args)
    follow = not args.no_follow and not config.per_category and Path(config.data).expanduser().is_dir()
    if follow and os.environ.get("RANK", "0") == "0":
        from core.follow import LOG_NAME, start_follower

        follower = start_follower(config.run)
        if follower is not None:
            print(f"evaluating each epoch in the background (pid {follower.pid}, log "
                  f"{Path(config.run) / LOG_NAME}); --no-follow turns this off")
    try:
        train(config, resume=args.resume, progress=not args.quiet)
    finally:
        distributed.shutdown()  # leaves the process group under torchrun; nothing otherwise
    return 0
