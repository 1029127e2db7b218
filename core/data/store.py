"""Decoded image sets on disk: decoded once per machine, memory-mapped when large.

A set is decoded once at the run's size into a folder keyed by every file's name, size and
mtime (`fingerprint`) and the side: `images.u8` (N, S, S, 3) and `masks.u8` (N, S, S) raw
uint8 rows, and `meta.json` (which samples were kept, which masks were read, the warnings
decoding gave, which a later read shows again). Decoding streams chunk by chunk into the
files (core.data.images.decode_stream), so decoding 100,000 images needs the memory of a few
hundred. The folder is written under a temporary name and renamed, so a reader never sees a
half-written set, and a file lock makes a second process (another torchrun rank, the
dashboard) wait for the first decode instead of repeating it.

A set whose images take more than IN_MEMORY_MAX_BYTES is memory-mapped read-only (np.memmap):
training, scoring and the dashboard read the rows they index and the operating system keeps
or drops the pages, so memory does not grow with the set; under torchrun every rank maps the
same file and reads only its own slice of each batch. A smaller set is read into memory, as
fast as before. A set without any mask gets a zero-byte all-zero mask view.
RECONSCOPE_CACHE=off keeps every set in memory (nothing is written).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.data.images import DECODE_WORKERS, accept, decode_stream, load_image_set
from core.data.samples import ImageSet, Sample
from core.data.snapshot import remembered

DECODED_VERSION = 3  # bump when decoding or the folder format changes: older folders are not read
# Decoded images above this many bytes stay on disk, memory-mapped (2 GiB: about 10,000 images
# at 256 px or 170,000 at 64 px); below it they are read into memory.
IN_MEMORY_MAX_BYTES = 2 * 2**30
PROGRESS_MIN_IMAGES = 2000  # a decode this long shows a progress bar (when stderr is a terminal)


def fingerprint(samples: Sequence[Sample]) -> str:
    """Names, sizes and modification times of every file: changes when the data changes.
    Taken once per file list inside a data_snapshot block (core.data.snapshot)."""
    samples = tuple(samples)
    return remembered(("fingerprint", samples), lambda: _stat_fingerprint(samples))


def _stat_fingerprint(samples: Sequence[Sample]) -> str:
    digest = hashlib.sha1()
    for sample in samples:
        for path in (sample.path, sample.mask_path):
            if path is None:
                continue
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}:missing\n".encode())
        digest.update(f"{sample.category}|{sample.label}|{sample.defect}\n".encode())
    return digest.hexdigest()[:16]


def decoded_cache_dir() -> Path | None:
    """Where decoded sets are kept across processes: $RECONSCOPE_CACHE, else
    ~/.cache/reconscope/decoded; RECONSCOPE_CACHE=off keeps them in memory only."""
    chosen = os.environ.get("RECONSCOPE_CACHE", "")
    if chosen.lower() == "off":
        return None
    return Path(chosen).expanduser() if chosen else Path.home() / ".cache" / "reconscope" / "decoded"


def store_path(samples: Sequence[Sample], size: int) -> Path | None:
    """The folder a decoded set lives in (it may not exist yet), or None when caching is off."""
    folder = decoded_cache_dir()
    if folder is None or not samples:
        return None
    key = hashlib.sha1(f"{DECODED_VERSION}|{fingerprint(samples)}|{size}".encode()).hexdigest()[:20]
    return folder / key


def decoded_set(samples: Sequence[Sample], size: int, progress: bool = True,
                in_memory_max: int = IN_MEMORY_MAX_BYTES) -> ImageSet:
    """The samples decoded at `size` (images (N, S, S, 3) uint8, masks (N, S, S) uint8),
    read-only: from the store when a process decoded them before, else decoded into it.
    Sets over `in_memory_max` bytes of images are memory-mapped. Bad files and masks warn as
    in core.data.images.load_image_set, on every read. A store that cannot be written (a
    read-only or full cache folder) costs only memory: the set is decoded in memory."""
    samples = tuple(samples)
    path = store_path(samples, size)
    if path is None:
        return load_image_set(samples, size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            stored = _open(path, samples, size, in_memory_max)
            if stored is not None:
                return stored
            shutil.rmtree(path, ignore_errors=True)  # a folder left without its meta.json
            _write(path, samples, size, progress)
    except OSError:
        return load_image_set(samples, size)
    stored = _open(path, samples, size, in_memory_max)
    return stored if stored is not None else load_image_set(samples, size)


@contextlib.contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(path: Path, samples: tuple[Sample, ...], size: int, progress: bool) -> None:
    """Streams the decoded rows into a temporary folder, then renames it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skipped: list[tuple[Path, str]] = []
    mask_problems: list[tuple[Path, str]] = []
    kept: list[int] = []
    has_mask: list[bool] = []
    any_mask = any(s.mask_path is not None for s in samples)
    bar = tqdm(total=len(samples), desc=f"decoding at {size} px", unit="img", file=sys.stderr,
               disable=not progress or len(samples) < PROGRESS_MIN_IMAGES or None, leave=False)
    zeros = np.zeros((size, size), np.uint8)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                open(tmp / "images.u8", "wb") as images, open(tmp / "masks.u8", "wb") as masks:
            warnings.simplefilter("always")
            for index, item in enumerate(decode_stream(samples, size, DECODE_WORKERS)):
                bar.update(1)
                used = accept(item, skipped, mask_problems)
                if used is None:
                    continue
                image, mask = used
                images.write(image.tobytes())
                if any_mask:
                    masks.write((mask if mask is not None else zeros).tobytes())
                kept.append(index)
                has_mask.append(mask is not None)
        notes = [[type(w.message).__name__, str(w.message)] for w in caught]
        meta = {"size": size, "count": len(kept), "kept": kept, "has_mask": has_mask,
                "masks": any_mask, "skipped": [[str(p), why] for p, why in skipped],
                "mask_problems": [[str(p), why] for p, why in mask_problems], "warnings": notes}
        (tmp / "meta.json").write_text(json.dumps(meta))  # last: its presence means complete
        os.rename(tmp, path)
    finally:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _open(path: Path, samples: tuple[Sample, ...], size: int, in_memory_max: int) -> ImageSet | None:
    """The stored set, or None when there is none; a torn or foreign folder is removed."""
    if not (path / "meta.json").is_file():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        count = int(meta["count"])
        if int(meta["size"]) != size:
            raise ValueError("stored at another size")
        mapped = count * size * size * 3 > in_memory_max
        images = _rows(path / "images.u8", (count, size, size, 3), mapped)
        masks = (_rows(path / "masks.u8", (count, size, size), mapped) if meta["masks"] else
                 _no_masks(count, size, mapped))
        result = ImageSet([samples[i] for i in meta["kept"]], images, masks,
                          np.array(meta["has_mask"], bool).reshape(count),
                          [(Path(p), why) for p, why in meta["skipped"]],
                          [(Path(p), why) for p, why in meta["mask_problems"]])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        shutil.rmtree(path, ignore_errors=True)  # decode again
        return None
    _warn_again(meta["warnings"])
    return result


def _rows(file: Path, shape: tuple[int, ...], mapped: bool) -> np.ndarray:
    expected = int(np.prod(shape))
    if file.stat().st_size != expected:
        raise ValueError(f"{file}: {file.stat().st_size} bytes, expected {expected}")
    if expected == 0:
        return np.zeros(shape, np.uint8)
    if mapped:
        return np.memmap(file, np.uint8, "r", shape=shape)
    return np.fromfile(file, np.uint8).reshape(shape)


def _no_masks(count: int, size: int, mapped: bool) -> np.ndarray:
    """All-zero masks; for a mapped set a read-only view that takes no memory."""
    if mapped:
        return np.broadcast_to(np.zeros((1, size, size), np.uint8), (count, size, size))
    return np.zeros((count, size, size), np.uint8)


def _warn_again(notes: list) -> None:
    from core.data import images

    for kind, message in notes:
        category = getattr(images, kind, None)
        is_warning = isinstance(category, type) and issubclass(category, Warning)
        warnings.warn(message, category if is_warning else UserWarning, stacklevel=4)


def is_mapped(images: np.ndarray) -> bool:
    """Whether an image array is read from a store file (np.memmap) rather than memory."""
    return isinstance(images, np.memmap)


__all__ = ["DECODED_VERSION", "IN_MEMORY_MAX_BYTES", "decoded_cache_dir", "decoded_set",
           "fingerprint", "is_mapped", "store_path"]
