"""Builds a Kaggle-homework-style flat dataset from MVTec-layout folders (see core.data.flatten).

    python benchmarks/make_flat_set.py ../shared/realdata /tmp/flat [--train-per-category 60] \
        [--test-per-category 35] [--no-category-csv]

The answer key (file,category,label) is written beside the folder as /tmp/flat_answers.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.data.flatten import TEST_PER_CATEGORY, write_flat_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="MVTec-layout folder, e.g. ../shared/realdata")
    parser.add_argument("out", type=Path, help="new flat folder: train/*.png, test/*.png")
    parser.add_argument("--train-per-category", type=int, default=60,
                        help="normal training images drawn per category (default 60)")
    parser.add_argument("--test-per-category", type=int, default=TEST_PER_CATEGORY,
                        help="test images drawn per category, normal and defective (default 35)")
    parser.add_argument("--no-category-csv", action="store_true",
                        help="do not write train_categories.csv (categories unknown, as in the "
                             "hardest homework)")
    parser.add_argument("--seed", type=int, default=0, help="which images are drawn (default 0)")
    args = parser.parse_args()
    answers = write_flat_dataset(args.source, args.out, args.train_per_category,
                                 args.test_per_category, not args.no_category_csv, seed=args.seed)
    print(f"wrote {args.out} and the hidden answer key {answers}")


if __name__ == "__main__":
    main()
