"""Write a dataset the way a course or a Kaggle competition hands it out (flat layout).

    out/train/<n>.png         normal training images of every category, shuffled and renamed
    out/train_categories.csv  file,category of the training images (unless category_csv=False)
    out/test/<n>.png          test images of every category, normal and defective, shuffled
    <answers>                 file,category,label: the hidden key a judge keeps; written
                              beside `out` by default, never inside it, so the test set stays
                              unlabeled (pass answers_inside=True for a labelled flat set)

Used to measure the homework job end to end (pooled AUROC over mixed categories) on any
MVTec-layout data, and by the tests. Train and test files share names (00000.png in both),
as they often do in such hand-outs.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from core.data.layouts import discover_samples

TEST_PER_CATEGORY = 35  # test images per category of a flat set, unless asked otherwise


def write_flat_dataset(
    source: str | Path,
    out: str | Path,
    train_per_category: int = 60,
    test_per_category: int = TEST_PER_CATEGORY,
    category_csv: bool = True,
    answers_inside: bool = False,
    seed: int = 0,
) -> Path:
    """Copies a seeded sample of `source` (any layout core reads) into `out`; returns the
    path of the answer key (file stem, category, label 0/1). Replaces `out` if it exists."""
    rng = np.random.default_rng(seed)
    samples = discover_samples(source)
    train, test = [], []
    for category in sorted({s.category for s in samples}):
        own_train = [s for s in samples if s.category == category and s.split in ("train", "val")]
        own_test = [s for s in samples if s.category == category and s.split == "test"]
        train += [own_train[i] for i in rng.permutation(len(own_train))[:train_per_category]]
        test += [own_test[i] for i in rng.permutation(len(own_test))[:test_per_category]]
    out = Path(out)
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
        _write_csv(out / "train_categories.csv", ("file", "category"), rows)
    answers = []
    for i, k in enumerate(rng.permutation(len(test))):
        name = f"{i:05d}{test[k].path.suffix.lower()}"
        shutil.copyfile(test[k].path, out / "test" / name)
        answers.append((Path(name).stem, test[k].category, int(test[k].label)))
    key = out / "test_labels.csv" if answers_inside else out.parent / f"{out.name}_answers.csv"
    _write_csv(key, ("file", "category", "label"), answers)
    return key


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
