"""Find the samples of a dataset on disk: MVTec AD layout or a flat Kaggle-style folder.

Both layouts produce the same `Sample` records, so nothing downstream knows which one it read.
Category folders are found anywhere up to three levels below the root, so one `--data` can
point at a single category, at an MVTec root, or at a folder holding several such roots
(several datasets trained as one model).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.data.images import (
    IMAGE_EXTENSIONS,
    LeftOutWarning,
    MaskWarning,
    is_image_file,
    list_images,
)
from core.data.samples import ANOMALOUS, NORMAL, UNKNOWN, Sample
from core.data.snapshot import remembered
from core.data.tables import TableError, read_table

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
    if _visa_categories(root):
        return "visa"
    if _category_dirs(root):
        return "mvtec"
    if list_images(root / "train"):
        return "flat"
    raise DatasetLayoutError(
        f"{root}: no dataset found within {MAX_DEPTH} folder levels below it{deeper_dataset_hint(root)}; "
        f"{MVTEC_HELP}"
    )


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
    """Every folder's mtime (changes when an entry is added, removed or renamed) + root CSVs';
    walked once per data_snapshot block (core.data.snapshot)."""
    return remembered(("tree", str(root)), lambda: _walk_signature(root))


def _walk_signature(root: Path) -> tuple:
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
    elif layout == "visa":
        samples = _visa_samples(root)
    else:
        raise DatasetLayoutError(f"unknown layout '{layout}'; use auto, mvtec, visa or flat")
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

# Folder names public datasets use for defect-free images (MVTec "good", BTAD "ok", VisA
# "Normal", ...), compared case-insensitively; every one is read as "good".
NORMAL_FOLDER_NAMES = ("good", "ok", "normal", "nominal", "no_defect", "defect_free",
                       "non_defective", "nodefect")
# Folders that may hold ground-truth masks next to test/, compared case-insensitively.
MASK_FOLDER_NAMES = ("ground_truth", "groundtruth", "ground-truth", "gt", "masks", "mask")
# Mask file naming schemes: <stem><suffix>.<any image format> or <prefix><stem>.<any format>,
# matched case-insensitively; a plain <stem>.<format> inside a mask folder also matches.
MASK_SUFFIXES = ("_mask", "-mask", ".mask", "_gt", "-gt", "_label", "_labels", "_seg",
                 "_segmentation", "_anno", "_annotation", "_defect")
MASK_PREFIXES = ("mask_", "gt_", "label_")
DEEP_SEARCH_LEVELS = 8  # how far down the "no dataset found" hint looks for a misplaced set
DEEP_SEARCH_FOLDERS = 5000


def is_ignored_folder(path: Path) -> bool:
    """Hidden and tool folders (.ipynb_checkpoints, .git, __MACOSX, __pycache__) are no data."""
    return path.name.startswith((".", "_"))


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not is_ignored_folder(p))
    except OSError:
        return []


def is_normal_folder_name(name: str) -> bool:
    return name.strip().lower() in NORMAL_FOLDER_NAMES


def _normal_dir(split_dir: Path | None) -> Path | None:
    """The defect-free folder of train/ or val/ (good, ok, normal, ... in any case)."""
    if split_dir is None or not split_dir.is_dir():
        return None
    found = [p for p in _subfolders(split_dir) if is_normal_folder_name(p.name)]
    return found[0] if found else None


def _child_dir(folder: Path, names: Sequence[str]) -> Path | None:
    """folder's child whose lower-case name is one of names (in the order of names)."""
    children = {p.name.lower(): p for p in _subfolders(folder)} if folder.is_dir() else {}
    return next((children[n] for n in names if n in children), None)


def _category_dirs(root: Path) -> list[Path]:
    """Folders holding train/<good|ok|normal>, searched breadth-first down to MAX_DEPTH levels;
    hidden and tool folders are skipped."""
    found, frontier = [], [root]
    for _ in range(MAX_DEPTH + 1):
        next_frontier = []
        for folder in frontier:
            if _is_category_dir(folder):
                found.append(folder)
            elif folder.is_dir():
                next_frontier += _subfolders(folder)
        frontier = next_frontier
    return found


def _is_category_dir(folder: Path) -> bool:
    return _normal_dir(_child_dir(folder, ("train",))) is not None


def deeper_dataset_hint(root: Path) -> str:
    """Where a category folder sits instead (inside --data's parents, or below MAX_DEPTH
    levels), as advice; "" when none is found."""
    resolved = root.resolve()
    for parent in list(resolved.parents)[:3]:
        if _is_category_dir(parent):
            return (f"; {root} lies inside the dataset category {parent} (a train/, test/ or "
                    f"defect folder): pass --data {parent}")
    frontier, seen = [root], 0
    for level in range(DEEP_SEARCH_LEVELS + 1):
        next_frontier = []
        for folder in frontier:
            seen += 1
            if seen > DEEP_SEARCH_FOLDERS:
                return ""
            if level > MAX_DEPTH and _is_category_dir(folder):
                parent = folder.parent
                return (f"; a category folder was found {level} levels down at {folder}, but the "
                        f"search goes only {MAX_DEPTH} levels below --data: pass --data {parent}")
            next_frontier += _subfolders(folder)
        frontier = next_frontier
    return ""


def _category_names(dirs: list[Path], root: Path) -> dict[Path, str]:
    """Folder name as the category; the path below root when two sets share a name."""
    names = [d.name for d in dirs]
    return {d: d.name if names.count(d.name) == 1 else d.relative_to(root).as_posix() for d in dirs}


def _mask_key(path: Path) -> str:
    """The image stem a mask file belongs to: its stem without a mask suffix or prefix, and
    without an image extension kept inside the name (000.png_mask.png -> 000)."""
    stem = path.stem.lower()
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        for prefix in MASK_PREFIXES:
            if stem.startswith(prefix) and len(stem) > len(prefix):
                stem = stem[len(prefix):]
                break
    inner = Path(stem)
    return inner.stem if inner.suffix in IMAGE_EXTENSIONS else stem


def find_in_index(index: dict[str, Path], image: Path) -> Path | None:
    """The mask of `image` in a `mask_index`: by lower-case stem, else by number
    (000.png <-> 0_mask.png)."""
    stem = image.stem.lower()
    if stem in index:
        return index[stem]
    return index.get(f"#{int(stem)}") if stem.isdigit() else None


def mask_index(folder: Path | None) -> dict[str, Path]:
    """lower-case image stem -> mask file (or folder of mask parts, as in MVTec LOCO) in folder;
    numbered names are also keyed "#<number>". A name with a mask suffix (<stem>_mask.PNG) wins
    over a bare <stem>.png. Look masks up with `find_in_index`.
    """
    if folder is None or not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    entries = sorted(folder.iterdir(), key=lambda p: (_mask_key(p) == p.stem.lower(), p.name))
    for path in entries:
        if is_image_file(path) or (path.is_dir() and not is_ignored_folder(path) and list_images(path)):
            key = _mask_key(path)
            index.setdefault(key, path)
            if key.isdigit():
                index.setdefault(f"#{int(key)}", path)  # numbered names may differ in zero padding
    return index


def split_masks(paths: list[Path]) -> tuple[list[Path], dict[str, Path]]:
    """Images and masks stored side by side (<stem>.png + <stem>_mask.png in one folder):
    a file is a mask when its name has a mask suffix or prefix and its image is present."""
    stems = {p.stem.lower() for p in paths}
    masks = {_mask_key(p): p for p in paths if _mask_key(p) != p.stem.lower() and _mask_key(p) in stems}
    mask_paths = set(masks.values())
    return [p for p in paths if p not in mask_paths], masks


def _defect_masks(category_dir: Path, defect_dir: Path) -> tuple[dict[str, Path], Path | None]:
    """(stem -> mask) for one defect folder, and the mask folder it was looked up in: beside
    test/ (MVTec AD), else inside it (MVTec AD 2: test_public/ground_truth/<defect>)."""
    gt_root = _child_dir(category_dir, MASK_FOLDER_NAMES) or _child_dir(defect_dir.parent,
                                                                         MASK_FOLDER_NAMES)
    if gt_root is None:
        return {}, None
    gt = _child_dir(gt_root, (defect_dir.name.lower(),))
    if gt is None and list_images(gt_root) and not _subfolders(gt_root):
        gt = gt_root  # masks of every defect directly in ground_truth/
    return mask_index(gt), gt


def _warn_unmatched(gt: Path | None, defect_dir: Path, missing: list[Path], total: int) -> None:
    if gt is None or not missing:
        return
    warnings.warn(
        f"{gt}: no mask matches {len(missing)} of the {total} images of {defect_dir} (e.g. "
        f"{missing[0].name}; looked for <stem>.*, <stem>_mask.*, <stem>_gt.*, <stem>_label.* in any "
        "image format and case); those images count at image level only -- rename their masks",
        MaskWarning, stacklevel=4)


# Folder names of each split; MVTec AD 2 names them validation/ and test_public/ (its
# test_private*/ folders hold no labels and are not read).
PRIVATE_PREFIX = "test_private"
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validation"), "test": ("test", "test_public")}


def _split_samples(folder: Path, category: str, split: str) -> list[Sample]:
    """Normal images of train/ or val/ (masks stored beside them are left out)."""
    normal = _normal_dir(_child_dir(folder, SPLIT_FOLDERS[split]))
    if normal is None:
        return []
    images, _ = split_masks(list_images(normal))
    return [Sample(p, category, NORMAL, "good", split) for p in images]


def _test_samples(folder: Path, category: str) -> list[Sample]:
    test = _child_dir(folder, SPLIT_FOLDERS["test"])
    samples: list[Sample] = []
    for defect_dir in _subfolders(test) if test is not None else []:
        if defect_dir.name.lower() in MASK_FOLDER_NAMES:  # MVTec AD 2: test_public/ground_truth
            continue
        images, beside = split_masks(list_images(defect_dir))
        if is_normal_folder_name(defect_dir.name):
            samples += [Sample(p, category, NORMAL, "good", "test") for p in images]
            continue
        index, gt = _defect_masks(folder, defect_dir)
        index = {**beside, **index}
        masks = {p: find_in_index(index, p) for p in images}
        missing = [p for p in images if masks[p] is None]
        _warn_unmatched(gt, defect_dir, missing if index else [], len(images))
        samples += [Sample(p, category, ANOMALOUS, defect_dir.name, "test", masks[p]) for p in images]
    return samples


def _mvtec_samples(root: Path) -> list[Sample]:
    samples: list[Sample] = []
    private: list[Path] = []
    for folder, category in _category_names(_category_dirs(root), root).items():
        train = _split_samples(folder, category, "train") + _split_samples(folder, category, "val")
        test = _test_samples(folder, category)
        if not train:
            _warn_untrainable(folder, category, len(test))
        samples += train + test
        private += [p for p in _subfolders(folder) if p.name.lower().startswith(PRIVATE_PREFIX)]
    if private:
        warnings.warn(
            f"{root}: {len(private)} MVTec AD 2 {PRIVATE_PREFIX}* folder(s) are not read (e.g. "
            f"{private[0]}): their labels are not published -- to score them, pass such a "
            "folder to python -m core export --test (a submission) or score --data",
            LeftOutWarning, stacklevel=4)
    return samples


def _warn_untrainable(folder: Path, category: str, n_test: int) -> None:
    normal = _normal_dir(_child_dir(folder, ("train",)))
    warnings.warn(
        f"{normal}: holds no images, so category '{category}' is left out of training and its "
        f"{n_test} test images out of the evaluation -- add its normal training images",
        LeftOutWarning, stacklevel=4)


def _warn_untrainable_rows(samples: list[Sample], source: Path) -> None:
    """Categories of a CSV-described set (flat, VisA) that have test images but no training
    image, each named once (the MVTec reader names the empty train/good folder instead)."""
    trainable = {s.category for s in samples if s.split != "test"}
    counts: dict[str, int] = {}
    for s in samples:
        if s.split == "test" and s.category and s.category not in trainable:
            counts[s.category] = counts.get(s.category, 0) + 1
    for category, n in sorted(counts.items()):
        warnings.warn(
            f"{source}: category '{category}' has {n} test images but no training image, so it "
            "is left out of training and its test images out of the evaluation -- add its "
            "normal training images", LeftOutWarning, stacklevel=4)


# --- flat (Kaggle homework style) ----------------------------------------------------------

FLAT_CATEGORY = "all"  # the one category of a flat train folder without a category CSV


def _flat_samples(root: Path, category_file: Path | None = None) -> list[Sample]:
    """Training images without a CSV category form one category, FLAT_CATEGORY; test images
    without one get the empty category (unknown): the test set routes them to a trained one.
    CSV rows naming no image, and test images without a label row beside labelled ones, are
    named in a warning (they are left out of the labels, never silently)."""
    csvs = sorted(root.glob("*.csv")) + ([category_file] if category_file else [])
    maps = _read_csv_maps(csvs)
    samples: list[Sample] = []
    for split in ("train", "val", "test"):
        unknown = "" if split == "test" else FLAT_CATEGORY
        for path in list_images(root / split):
            category = _lookup(maps.category_of, split, path, unknown, maps.used)
            if split == "test":
                label = _lookup(maps.label_of, split, path, UNKNOWN, maps.used)
            else:
                label = NORMAL
            defect = {NORMAL: "good", ANOMALOUS: "anomaly", UNKNOWN: ""}[label]
            samples.append(Sample(path, category, label, defect, split))
    if not any(s.split == "train" for s in samples):
        raise DatasetLayoutError(f"{root}/train: no training images; {MVTEC_HELP}")
    _warn_unused_rows(maps)
    _warn_unlabelled(root, samples, maps)
    _warn_untrainable_rows(samples, root)
    return samples


def _warn_unused_rows(maps: CsvMaps) -> None:
    """One warning per CSV whose rows name files that are not in train/, val/ or test/."""
    unused: dict[Path, list[tuple[int, str]]] = {}
    for key, (csv_path, row, cell) in maps.origin.items():
        if key not in maps.used:
            unused.setdefault(csv_path, []).append((row, cell))
    for csv_path, rows in unused.items():
        rows.sort()
        warnings.warn(
            f"{csv_path}: {len(rows)} row(s) name files that are not in train/, val/ or test/ "
            f"(e.g. row {rows[0][0]}: '{rows[0][1]}'); they are left out -- fix the file names "
            "or add the images", LeftOutWarning, stacklevel=4)


def _warn_unlabelled(root: Path, samples: list[Sample], maps: CsvMaps) -> None:
    test = [s for s in samples if s.split == "test"]
    unlabelled = [s for s in test if s.label == UNKNOWN]
    if maps.label_of and unlabelled and len(unlabelled) < len(test):
        warnings.warn(
            f"{root}/test: {len(unlabelled)} of {len(test)} test images have no row in a label "
            f"CSV (e.g. {unlabelled[0].path.name}); they are scored but left out of AUROC -- add "
            "their labels", LeftOutWarning, stacklevel=4)


SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


def _lookup(table: dict[tuple[str | None, str], object], split: str, path: Path, default,
            used: set | None = None):
    """A CSV value for this file: rows that name its split first (a val/ image also reads the
    training CSV: it is a held-out training image), then rows for any split. The key found is
    added to `used`."""
    splits = (split, "train", None) if split == "val" else (split, None)
    for key in ((s, name) for s in splits for name in (path.stem, path.name)):
        if key in table:
            if used is not None:
                used.add(key)
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


@dataclass
class CsvMaps:
    """What the root's CSVs say: (split or None, file stem) -> category / label, where each key
    came from (CSV, line, file cell), and the keys some image looked up (filled by _lookup)."""

    category_of: dict[tuple[str | None, str], str] = field(default_factory=dict)
    label_of: dict[tuple[str | None, str], int] = field(default_factory=dict)
    origin: dict[tuple[str | None, str], tuple[Path, int, str]] = field(default_factory=dict)
    used: set = field(default_factory=set)


def _read_csv_maps(csvs: Sequence[Path]) -> CsvMaps:
    """Every CSV at the root is read (any encoding, line ending and separator: core.data.tables);
    columns are recognised by name, case-insensitively. A CSV without a file column, or with
    neither a category nor a label column, is named in a warning and not used.

    A row applies to the split its file cell names (train/0001.png), else to the split the
    CSV's own name names (train.csv, test_labels.csv), else to a file of that name in any
    split: train and test files often share names (0001.png in both).
    """
    maps = CsvMaps()
    for csv_path in csvs:
        try:
            table = read_table(csv_path)
        except TableError as err:
            raise DatasetLayoutError(str(err)) from err
        columns = {c.lower(): c for c in table.columns}
        file_col = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
        cat_col = next((columns[c] for c in CATEGORY_COLUMNS if c in columns), None)
        label_col = next((columns[c] for c in LABEL_COLUMNS if c in columns), None)
        if file_col is None or (cat_col is None and label_col is None):
            _warn_unmapped(csv_path, table.columns, file_col)
            continue
        split = _csv_split(csv_path)
        for row_number, row in table.rows:
            key = _row_key(row.get(file_col, ""), split)
            if cat_col and row.get(cat_col):
                maps.category_of[key] = row[cat_col]
            if label_col and row.get(label_col, "") != "":
                maps.label_of[key] = _parse_label(row[label_col], csv_path, row_number)
            if row.get(file_col):
                maps.origin.setdefault(key, (csv_path, row_number, row[file_col]))
    return maps


def _warn_unmapped(csv_path: Path, columns: list[str], file_col: str | None) -> None:
    wanted = (f"a category column ({', '.join(CATEGORY_COLUMNS)}) or a label column "
              f"({', '.join(LABEL_COLUMNS)})" if file_col else
              f"a file column ({', '.join(FILE_COLUMNS)})")
    warnings.warn(
        f"{csv_path}: not used: its columns ({', '.join(columns) or 'none'}) have no {wanted}; "
        "rename the columns if it holds categories or labels", LeftOutWarning, stacklevel=5)


def _parse_label(value: str, csv_path: Path, row_number: int) -> int:
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "anomaly", "anomalous", "bad", "defect", "ng"):
        return ANOMALOUS
    if text in ("0", "0.0", "false", "normal", "good", "ok"):
        return NORMAL
    raise DatasetLayoutError(
        f"{csv_path}, row {row_number}: label '{value}' is not 0/1 or normal/anomaly; fix the CSV"
    )


# --- VisA (as distributed) ------------------------------------------------------------------

VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ("object", "split", "label", "image")


def _is_visa_category(folder: Path) -> bool:
    return (folder / "Data" / "Images" / "Normal").is_dir()


def _visa_categories(root: Path) -> list[Path]:
    """<root>/<category>/Data/Images/Normal, or root itself being one such category."""
    if _is_visa_category(root):
        return [root]
    return [p for p in _subfolders(root) if _is_visa_category(p)]


def _visa_split_csv(root: Path) -> Path:
    """split_csv/1cls.csv in root or, when root is one category, in its parent."""
    for base in (root, root.parent):
        if (base / VISA_SPLIT_CSV).is_file():
            return base / VISA_SPLIT_CSV
    raise DatasetLayoutError(
        f"{root}: VisA layout (<category>/Data/Images/Normal) without its split file "
        f"{root / VISA_SPLIT_CSV}; VisA is read through the split CSV it is distributed with "
        "(columns object,split,label,image,mask): put split_csv/1cls.csv back next to the "
        "category folders")


def _visa_samples(root: Path) -> list[Sample]:
    """VisA read through split_csv/1cls.csv: train rows are the training normals (validation
    normals are held out of them as for any set), test rows the labelled test images with
    their masks (Data/Masks/Anomaly). Rows naming missing files are named in a warning."""
    csv_path = _visa_split_csv(root)
    base = csv_path.parent.parent
    wanted = {p.name for p in _visa_categories(root)}
    try:
        table = read_table(csv_path)
    except TableError as err:
        raise DatasetLayoutError(str(err)) from err
    columns = {c.lower(): c for c in table.columns}
    if not all(c in columns for c in VISA_COLUMNS):
        raise DatasetLayoutError(
            f"{csv_path}: columns {', '.join(table.columns)} are not VisA's split columns "
            f"({', '.join(VISA_COLUMNS)}, mask); restore the file that came with the dataset")
    samples, missing, no_mask = [], [], []
    for row_number, row in table.rows:
        category = row[columns["object"]]
        if category not in wanted:
            continue
        sample = _visa_sample(base, category, row, columns, csv_path, row_number)
        if sample is None:
            missing.append((row_number, row[columns["image"]]))
            continue
        samples.append(sample)
        if sample.label == ANOMALOUS and _visa_mask_cell(row, columns) and sample.mask_path is None:
            no_mask.append((row_number, _visa_mask_cell(row, columns)))
    if missing:
        warnings.warn(
            f"{csv_path}: {len(missing)} row(s) name images that do not exist (e.g. row "
            f"{missing[0][0]}: '{missing[0][1]}'); they are left out -- restore the images",
            LeftOutWarning, stacklevel=4)
    if no_mask:
        warnings.warn(
            f"{csv_path}: {len(no_mask)} row(s) name masks that do not exist (e.g. row "
            f"{no_mask[0][0]}: '{no_mask[0][1]}'); those images count at image level only -- "
            "restore the masks", MaskWarning, stacklevel=4)
    _warn_untrainable_rows(samples, csv_path)
    return samples


def _visa_sample(base: Path, category: str, row: dict[str, str], columns: dict[str, str],
                 csv_path: Path, row_number: int) -> Sample | None:
    image = base / row[columns["image"]]
    if not image.is_file():
        return None
    split = SPLIT_WORDS.get(row[columns["split"]].lower())
    if split not in ("train", "test"):
        raise DatasetLayoutError(f"{csv_path}, row {row_number}: split "
                                 f"'{row[columns['split']]}' is not train or test; fix the CSV")
    label = _parse_label(row[columns["label"]], csv_path, row_number)
    if split == "train":
        return Sample(image, category, NORMAL, "good", "train")
    mask_cell = _visa_mask_cell(row, columns)
    mask = base / mask_cell if mask_cell and (base / mask_cell).is_file() else None
    if label == NORMAL:
        return Sample(image, category, NORMAL, "good", "test")
    return Sample(image, category, ANOMALOUS, "anomaly", "test", mask)


def _visa_mask_cell(row: dict[str, str], columns: dict[str, str]) -> str:
    """The row's mask path below the dataset root, "" when the row names none."""
    return row.get(columns["mask"], "").strip() if "mask" in columns else ""
