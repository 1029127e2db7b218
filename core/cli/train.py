from __future__ import annotations

import json
import os
from pathlib import Path

from core.config import TrainConfig, parse_set_items

VERB = "train"
HELP = "train a U-Net autoencoder, saving a checkpoint every epoch"

def pseudo_k(text: str) -> int:
    """--pseudo-categories: a number of groups, or auto (-1)."""
    return -1 if str(text).strip().lower() == "auto" else int(text)


# flag -> dotted config key; every flag defaults to None so only what the user typed overrides
FLAGS = {
    "data": ("data", str), "run": ("run", str), "layout": ("layout", str),
    "epochs": ("epochs", int), "image_size": ("image_size", int), "batch_size": ("batch_size", int),
    "lr": ("lr", float), "loss": ("loss", str), "objective": ("objective", str), "device": ("device", str), "seed": ("seed", int),
    "val_fraction": ("val_fraction", float), "threads": ("num_threads", int),
    "workers": ("workers", int), "precision": ("precision", str), "channels_last": ("channels_last", str),
    "depth": ("model.depth", int), "base_width": ("model.base_width", int), "skips": ("model.skips", str),
    "norm": ("model.norm", str), "activation": ("model.activation", str),
    "pseudo_categories": ("pseudo_categories", pseudo_k),
}


FLAG_HELP = {
    "pseudo_categories": "a flat train folder without a category CSV: K-Means groups as categories, "
                         "K = 2..32 or auto (best silhouette in 2..8); 0 = one category",
}


def add_arguments(parser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--config", help="JSON file with any TrainConfig fields (flags override it)")
    for flag, (key, kind) in FLAGS.items():
        default = defaults.to_dict()
        for part in key.split("."):
            default = default[part]
        text = FLAG_HELP.get(flag, "")
        parser.add_argument("--" + flag.replace("_", "-"), type=kind, default=None,
                            help=f"{text}{'; ' if text else ''}default {default}")
    parser.add_argument("--run-dir", dest="run", default=None,
                        help="same as --run; use it under torchrun, whose own parser claims --run")
    parser.add_argument("--categories", help="comma-separated categories (default: all found)")
    parser.add_argument("--per-category", action="store_true", default=None, help="one model per category")
    parser.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    parser.add_argument("--no-synthetic-val", action="store_true", help="skip synthetic-anomaly AUROC per epoch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="any config field, e.g. --set augment.rotate_limit=15 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-follow", action="store_true",
                        help="do not evaluate epochs in the background as they land")


def config_from_args(args) -> TrainConfig:
    """Order: defaults < the run's config.json (on --resume) < --config file < flags."""
    overrides = {key: getattr(args, flag) for flag, (key, _) in FLAGS.items() if getattr(args, flag) is not None}
    base = TrainConfig()
    run_config = Path(overrides.get("run", base.run)) / "config.json"
    if args.resume and run_config.is_file():
        base = TrainConfig.load(run_config)
    if args.config:
        base = base.with_overrides(json.loads(Path(args.config).read_text()))
    if args.categories:
        overrides["categories"] = [c.strip() for c in args.categories.split(",") if c.strip()]
    if args.per_category:
        overrides["per_category"] = True
    if args.no_augment:
        overrides["augment.enabled"] = False
    if args.no_synthetic_val:
        overrides["synthetic_val"] = False
    overrides.update(parse_set_items(args.set))
    return base.with_overrides(overrides)


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
