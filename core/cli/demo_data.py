from __future__ import annotations

import time

from core.data.demo import DemoSpec, generate_demo_dataset

VERB = "demo-data"
HELP = "write the built-in procedural demo dataset (MVTec layout, with exact masks)"


def add_arguments(parser) -> None:
    defaults = DemoSpec()
    parser.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    parser.add_argument("--size", type=int, default=defaults.size, help=f"image side in px (default {defaults.size})")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--n-train", type=int, default=defaults.n_train, help="normal training images per category")


def main(args) -> int:
    started = time.perf_counter()
    summary = generate_demo_dataset(args.out, DemoSpec(size=args.size, seed=args.seed, n_train=args.n_train))
    total = sum(c["train"] + c["test_good"] + sum(c["defects"].values()) for c in summary.values())
    print(f"wrote {total} images in {len(summary)} categories to {args.out} "
          f"in {time.perf_counter() - started:.1f}s")
    return 0
