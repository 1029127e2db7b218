"""Builds a Kaggle-homework-style flat dataset from MVTec-layout folders (for measurements).

    python benchmarks/make_flat_set.py ../shared/realdata /tmp/flat --train-per-category 60 \
        --test-per-category 35 [--no-category-csv]

out/train/<n>.png        normal training images of every category, shuffled, renamed
out/train_categories.csv file,category for the training images (unless --no-category-csv)
out/test/<n>.png         test images of every category (normal and defective), shuffled
out_answers.csv          file,category,label beside the folder (NOT inside it): the hidden key
                         a course or a Kaggle judge keeps, used to measure pooled AUROC.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

from core.data.layouts import discover_samples


def build(source: Path, out: Path, train_n: int, test_n: int, category_csv: bool, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    samples = discover_samples(source)
    train, test = [], []
    for category in sorted({s.category for s in samples}):
        own_train = [s for s in samples if s.category == category and s.split in ("train", "val")]
        own_test = [s for s in samples if s.category == category and s.split == "test"]
        train += [own_train[i] for i in rng.permutation(len(own_train))[:train_n]]
        test += [own_test[i] for i in rng.permutation(len(own_test))[:test_n]]
    if out.exists():
        shutil.rmtree(out)
    (out / "train").mkdir(parents=True)
    (out / "test").mkdir()
    rows = []
    for i, k in enumerate(rng.permutation(len(train))):
        name = f"{i:05d}{train[k].path.suffix.lower()}"
        shutil.copyfile(train[k].path, out / "train" / name)
        rows.append((name, train[k].category))
    if category_csv:
        with (out / "train_categories.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("file", "category"), *rows])
    answers = out.parent / f"{out.name}_answers.csv"
    with answers.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "category", "label"))
        for i, k in enumerate(rng.permutation(len(test))):
            name = f"{i:05d}{test[k].path.suffix.lower()}"
            shutil.copyfile(test[k].path, out / "test" / name)
            writer.writerow((Path(name).stem, test[k].category, int(test[k].label)))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-per-category", type=int, default=60)
    parser.add_argument("--test-per-category", type=int, default=35)
    parser.add_argument("--no-category-csv", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    answers = build(args.source, args.out, args.train_per_category, args.test_per_category,
                    not args.no_category_csv, args.seed)
    print(f"wrote {args.out} and the hidden answer key {answers}")


if __name__ == "__main__":
    main()
