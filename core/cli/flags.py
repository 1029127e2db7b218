"""Flags and argument helpers that several `python -m core` verbs share; not a verb itself.

- scoring flags (evaluate, score, export): add_scoring_arguments, scoring_options, device_of
- train flags (train, sweep): add_train_arguments, config_from_args over core.config.TRAIN_FLAGS
- a run named on the command line and JSON output (diagnose, compare, prune): open_run, write_json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from core.config import TRAIN_FLAGS, TrainConfig, parse_set_items
from core.scoring.options import BANK_SCOPES, REDUCTIONS

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
        "neighbours", int, "knn: nearest normal images whose patches are searched; 0 (default) "
        "= auto: all of a category of at most 200 normals, else 5"
    ),
    "max_bank": ("max_bank", int, "entries kept per category bank (default 262144)"),
    "members": (
        "members", str, "ensemble: methods whose calibrated scores are averaged (default knn,patchz)"
    ),
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

    from core.model.unet import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return str(resolve_device(args.device))


FLAG_HELP = {
    "threads": "torch CPU threads per training process; 0 = the thread budget (core.training.threads)",
    "pseudo_categories": "a flat train folder without a category CSV: K-Means groups as categories, "
                         "K = 2..32 or auto (the default: best silhouette in 2..8, one category "
                         "unless it reaches 0.5); 0 = always one category",
}


def add_train_arguments(parser) -> None:
    """Every `python -m core train` flag (sweep gives them to all its members)."""
    defaults = TrainConfig()
    parser.add_argument("--config", help="JSON file with any TrainConfig fields (flags override it)")
    for flag, (key, kind) in TRAIN_FLAGS.items():
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
    overrides = {key: getattr(args, flag) for flag, (key, _) in TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    base = TrainConfig()
    run_config = Path(overrides.get("run", base.run)) / "config.json"
    if args.resume and run_config.is_file():
        base = TrainConfig.load(run_config, strict=True)
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


def open_run(text: str):
    """The run folder `text`, or the run of that name under checkpoints/ (Run.open's errors)."""
    from core.runs.folder import Run

    path = Path(text).expanduser()
    if not path.is_dir() and not path.is_absolute() and (Path("checkpoints") / text).is_dir():
        path = Path("checkpoints") / text
    return Run.open(path)


def write_json(target: str, payload: dict) -> None:
    """`payload` as indented JSON to the file `target`, or to stdout for "-" (NaN refused)."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    if target == "-":
        print(text, end="")
    else:
        Path(target).write_text(text)


EPOCH_HELP = ("chosen (the product's choice: the pinned epoch, else the diagnosis' label-free suggestion, "
              "else the lowest validation loss among healthy epochs), best (lowest validation loss), last, "
              "or a number")


def add_epoch_argument(parser, default: str = "chosen", extra: str = "") -> None:
    """--epoch with the one vocabulary every verb shares (core.diagnostics.choice)."""
    parser.add_argument("--epoch", default=default, help=f"{EPOCH_HELP}{extra} (default {default})")


def resolve_epoch_arg(run, which, data_root=None, method: str | None = None) -> int:
    """--epoch as a number; for "chosen" (for `method` when the command scores with one method:
    core.diagnostics.choice), prints which rule chose it and why (stderr)."""
    from core.diagnostics.choice import choice_lines, resolve_epoch

    epoch, choice = resolve_epoch(run, which, data_root, method)
    for line in choice_lines(choice) if choice is not None else []:
        print(f"epoch      {line}", file=sys.stderr)
    return epoch
