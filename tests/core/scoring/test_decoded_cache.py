"""Decoded image sets kept on disk (core.data.store via core.scoring.data): a new process reads,
never re-decodes; a large set is memory-mapped and reads the same."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data.images import BadImageWarning
from core.data.samples import NORMAL, Sample
from core.data.store import decoded_set
from core.scoring.data import clear_image_cache, decoded_cache_dir, load_samples


def _stores(folder):
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _samples(folder, n=3, bad=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(path)
        out.append(Sample(path, "a", NORMAL, "good", "test"))
    if bad:
        (folder / "bad.png").write_bytes(b"not a png")
        out.append(Sample(folder / "bad.png", "a", NORMAL, "good", "test"))
    return out


def test_a_clean_set_is_read_back_from_disk_by_a_new_process(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONSCOPE_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path / "imgs")
    clear_image_cache()
    first = load_samples(samples, 16)
    assert len(_stores(decoded_cache_dir())) == 1
    clear_image_cache()  # as a new process would start
    again = load_samples(samples, 16)
    np.testing.assert_array_equal(first.images, again.images)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(samples[0].path)  # edited: new key
    clear_image_cache()
    edited = load_samples(samples, 16)
    assert edited.images[0].max() == 0 and len(_stores(decoded_cache_dir())) == 2


def test_a_set_with_a_bad_file_warns_again_when_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONSCOPE_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path / "imgs", bad=True)
    for _ in range(2):  # decoded, then read back from disk: the same warning and the same report
        clear_image_cache()
        with pytest.warns(BadImageWarning, match="bad.png"):
            loaded = load_samples(samples, 16)
        assert len(loaded) == 3 and [p.name for p, _ in loaded.skipped] == ["bad.png"]
        assert [s.path.name for s in loaded.samples] == ["0.png", "1.png", "2.png"]
    assert len(_stores(tmp_path / "cache")) == 1


def test_a_large_set_is_memory_mapped_and_reads_like_one_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONSCOPE_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path / "imgs", n=5, bad=True)
    with pytest.warns(BadImageWarning, match="bad.png"):
        in_memory = decoded_set(samples, 16)
    with pytest.warns(BadImageWarning, match="bad.png"):  # said again when read back mapped
        mapped = decoded_set(samples, 16, in_memory_max=0)
    assert isinstance(mapped.images, np.memmap) and not isinstance(in_memory.images, np.memmap)
    np.testing.assert_array_equal(mapped.images, in_memory.images)
    assert mapped.images.shape == (5, 16, 16, 3) and mapped.masks.shape == (5, 16, 16)
    assert not mapped.masks.any() and not mapped.images.flags.writeable  # shared: read-only
    np.testing.assert_array_equal(mapped.subset([4, 0]).images, in_memory.images[[4, 0]])
    assert [s.path.name for s in mapped.samples] == [f"{i}.png" for i in range(5)]


def test_a_torn_store_is_decoded_again(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONSCOPE_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path / "imgs")
    first = decoded_set(samples, 16)
    (store,) = _stores(tmp_path / "cache")
    with open(store / "images.u8", "r+b") as handle:
        handle.truncate(100)  # a disk that filled up, a copy cut short
    again = decoded_set(samples, 16)
    np.testing.assert_array_equal(first.images, again.images)


def _decode_in_child(args):
    from core.data.store import decoded_set as decode

    samples, size = args
    return np.asarray(decode(samples, size).images).sum()


def test_processes_decoding_the_same_set_at_once_share_one_store(tmp_path, monkeypatch):
    """torchrun ranks (or the dashboard beside a training job) start together: one decodes,
    the others wait on the store's lock and read its result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("RECONSCOPE_CACHE", str(tmp_path / "cache"))
    samples = _samples(tmp_path / "imgs", n=6)
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        sums = list(pool.map(_decode_in_child, [(samples, 16)] * 3))
    assert len(set(sums)) == 1 and sums[0] > 0
    assert len(_stores(tmp_path / "cache")) == 1
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
