"""Find the samples of a dataset on disk: MVTec AD layout or a flat Kaggle-style folder.

Both layouts produce the same `Sample` records, so nothing downstream knows which one it read.
Category folders are found anywhere up to three levels below the root, so one `--data` can
point at a single category, at an MVTec root, or at a folder holding several such roots
(several datasets trained as one model).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from core.data.images import find_mask, list_images
from core.data.samples import ANOMALOUS, NORMAL, UNKNOWN, Sample

MVTEC_HELP = (
    "expected the MVTec AD layout <root>/<category>/train/good/*.png, "
    "<root>/<category>/test/<good|defect>/*.png, "
    "<root>/<category>/ground_truth/<defect>/<name>_mask.png (masks optional), "
    "or the flat layout <root>/train/*.png + <root>/test/*.png with optional CSVs "
    "mapping file -> category and file -> label"
)
MAX_DEPTH = 3
FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_id", "id", "name", "path")
CATEGORY_COLUMNS = ("category", "class", "cat", "object", "type")
LABEL_COLUMNS = ("label", "anomaly", "is_anomaly", "anomalous", "target", "defective")


class DatasetLayoutError(ValueError):
    """The folder is not a dataset we can read; the message says what was expected."""


def detect_layout(root: Path) -> str:
    if _category_dirs(root):
        return "mvtec"
    if list_images(root / "train"):
        return "flat"
    raise DatasetLayoutError(f"{root}: no dataset found; {MVTEC_HELP}")


def discover_samples(root: str | Path, layout: str = "auto",
                     categories: Sequence[str] | None = None,
                     category_file: str | Path | None = None) -> list[Sample]:
    """All samples of train/, val/ (when present) and test/, filtered to `categories`.

    category_file: a file,category CSV kept outside the data (a run's pseudo_categories.csv,
    see core.data.pseudo) that categorises a flat set's training images on top of its own CSVs.

    Listings are memoised against the folders' modification times (and the root's CSVs), so
    the dashboard and scoring can ask again and again without re-walking 20,000 files, while
    an added, removed or renamed file still shows up at once.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: folder does not exist; pass an existing dataset folder")
    extra = Path(category_file).expanduser() if category_file else None
    if extra is not None and not extra.is_file():
        raise DatasetLayoutError(
            f"{extra}: the run's category file is missing; restore it from the run folder or "
            "retrain without pseudo-categories"
        )
    stamp = (str(extra), extra.stat().st_mtime_ns) if extra else None
    key = (str(root.resolve()), layout, tuple(categories or ()), stamp, _tree_signature(root))
    if key not in _LISTINGS:
        if len(_LISTINGS) >= MAX_LISTINGS:
            _LISTINGS.pop(next(iter(_LISTINGS)))
        _LISTINGS[key] = tuple(_discover(root, layout, categories, extra))
    return list(_LISTINGS[key])


_LISTINGS: dict[tuple, tuple[Sample, ...]] = {}
MAX_LISTINGS = 16


def _tree_signature(root: Path) -> tuple:
    """Every folder's mtime (changes when an entry is added, removed or renamed) + root CSVs'."""
    signature = []
    for folder, _dirs, _files in os.walk(root, followlinks=True):
        signature.append((folder, os.stat(folder).st_mtime_ns))
    signature += [(str(p), p.stat().st_mtime_ns) for p in root.glob("*.csv")]
    return tuple(signature)


def _discover(root: Path, layout: str, categories: Sequence[str] | None,
              category_file: Path | None = None) -> list[Sample]:
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "mvtec":
        samples = _mvtec_samples(root)
    elif layout == "flat":
        samples = _flat_samples(root, category_file)
    else:
        raise DatasetLayoutError(f"unknown layout '{layout}'; use auto, mvtec or flat")
    if not samples:
        raise DatasetLayoutError(f"{root}: no images found; {MVTEC_HELP}")
    return _filter_categories(samples, categories, root)


def _filter_categories(samples: list[Sample], categories: Sequence[str] | None, root: Path):
    if not categories:
        return samples
    found = sorted({s.category for s in samples})
    missing = [c for c in categories if c not in found]
    if missing:
        raise DatasetLayoutError(
            f"{root}: category {', '.join(missing)} not found; available: {', '.join(found)}"
        )
    wanted = set(categories)
    return [s for s in samples if s.category in wanted]


# --- MVTec AD -----------------------------------------------------------------------------

def _category_dirs(root: Path) -> list[Path]:
    """Folders holding train/good, searched breadth-first; hidden folders are skipped."""
    found, frontier = [], [root]
    for _ in range(MAX_DEPTH + 1):
        next_frontier = []
        for folder in frontier:
            if (folder / "train" / "good").is_dir():
                found.append(folder)
            elif folder.is_dir():
                next_frontier += [p for p in sorted(folder.iterdir())
                                  if p.is_dir() and not p.name.startswith((".", "_"))]
        frontier = next_frontier
    return found


def _category_names(dirs: list[Path], root: Path) -> dict[Path, str]:
    """Folder name as the category; the path below root when two sets share a name."""
    names = [d.name for d in dirs]
    return {d: d.name if names.count(d.name) == 1 else d.relative_to(root).as_posix() for d in dirs}


def _mvtec_samples(root: Path) -> list[Sample]:
    dirs = _category_dirs(root)
    samples: list[Sample] = []
    for folder, category in _category_names(dirs, root).items():
        samples += [Sample(p, category, NORMAL, "good", "train")
                    for p in list_images(folder / "train" / "good")]
        samples += [Sample(p, category, NORMAL, "good", "val")
                    for p in list_images(folder / "val" / "good")]
        test = folder / "test"
        defect_dirs = sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []
        for defect_dir in defect_dirs:
            defect = defect_dir.name
            for path in list_images(defect_dir):
                if defect == "good":
                    samples.append(Sample(path, category, NORMAL, "good", "test"))
                    continue
                gt = folder / "ground_truth" / defect
                mask = find_mask([gt / f"{path.stem}_mask{path.suffix}", gt / f"{path.stem}_mask.png",
                                  gt / f"{path.stem}.png", gt / path.name])
                samples.append(Sample(path, category, ANOMALOUS, defect, "test", mask))
    return samples


# --- flat (Kaggle homework style) ----------------------------------------------------------

FLAT_CATEGORY = "all"  # the one category of a flat train folder without a category CSV


def _flat_samples(root: Path, category_file: Path | None = None) -> list[Sample]:
    """Training images without a CSV category form one category, FLAT_CATEGORY; test images
    without one get the empty category (unknown): the test set routes them to a trained one."""
    csvs = sorted(root.glob("*.csv")) + ([category_file] if category_file else [])
    category_of, label_of = _read_csv_maps(csvs)
    samples: list[Sample] = []
    for split in ("train", "val", "test"):
        unknown = "" if split == "test" else FLAT_CATEGORY
        for path in list_images(root / split):
            category = _lookup(category_of, split, path, unknown)
            if split == "test":
                label = _lookup(label_of, split, path, UNKNOWN)
            else:
                label = NORMAL
            defect = {NORMAL: "good", ANOMALOUS: "anomaly", UNKNOWN: ""}[label]
            samples.append(Sample(path, category, label, defect, split))
    if not any(s.split == "train" for s in samples):
        raise DatasetLayoutError(f"{root}/train: no training images; {MVTEC_HELP}")
    return samples


SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


def _lookup(table: dict[tuple[str | None, str], object], split: str, path: Path, default):
    """A CSV value for this file: rows that name its split first (a val/ image also reads the
    training CSV: it is a held-out training image), then rows for any split."""
    splits = (split, "train", None) if split == "val" else (split, None)
    for key in ((s, name) for s in splits for name in (path.stem, path.name)):
        if key in table:
            return table[key]
    return default


def _csv_split(csv_path: Path) -> str | None:
    """The split a CSV is about when its name says so (train.csv, test_labels.csv), else None."""
    words = [w for w in csv_path.stem.lower().replace("-", "_").split("_") if w]
    splits = {SPLIT_WORDS[w] for w in words if w in SPLIT_WORDS}
    return splits.pop() if len(splits) == 1 else None


def _row_key(value: str, csv_split: str | None) -> tuple[str | None, str]:
    """(split, stem) of a CSV file cell: a leading train/ or test/ folder names the split."""
    path = Path(str(value).strip())
    first = path.parts[0].lower() if len(path.parts) > 1 else ""
    return SPLIT_WORDS.get(first, csv_split), path.stem


def _read_csv_maps(csvs: Sequence[Path]) -> tuple[dict, dict]:
    """Every CSV at the root is read; columns are recognised by name, case-insensitively.

    A row applies to the split its file cell names (train/0001.png), else to the split the
    CSV's own name names (train.csv, test_labels.csv), else to a file of that name in any
    split: train and test files often share names (0001.png in both).
    """
    category_of: dict[tuple[str | None, str], str] = {}
    label_of: dict[tuple[str | None, str], int] = {}
    for csv_path in csvs:
        with csv_path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            file_col = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
            if file_col is None:
                continue
            cat_col = next((columns[c] for c in CATEGORY_COLUMNS if c in columns), None)
            label_col = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
            split = _csv_split(csv_path)
            for row_number, row in enumerate(reader, start=2):
                key = _row_key(row[file_col], split)
                if cat_col and row.get(cat_col):
                    category_of[key] = str(row[cat_col]).strip()
                if label_col and row.get(label_col, "").strip() != "":
                    label_of[key] = _parse_label(row[label_col], csv_path, row_number)
    return category_of, label_of


def _parse_label(value: str, csv_path: Path, row_number: int) -> int:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "anomaly", "anomalous", "bad", "defect", "ng"):
        return ANOMALOUS
    if text in ("0", "0.0", "false", "normal", "good", "ok"):
        return NORMAL
    raise DatasetLayoutError(
        f"{csv_path}, row {row_number}: label '{value}' is not 0/1 or normal/anomaly; fix the CSV"
    )
