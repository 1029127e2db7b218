"""data_snapshot: one look at the data files per batch of work, a fresh look after it."""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image

from core.data import layouts
from core.data.samples import NORMAL, Sample
from core.data.snapshot import data_snapshot, remembered
from core.scoring.data import fingerprint


def _image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return Sample(path, "a", NORMAL, "", "train")


def test_fingerprint_sees_a_rewritten_file_outside_a_snapshot_only_after_it(tmp_path):
    sample = _image(tmp_path / "a.png", 10)
    before = fingerprint([sample])
    with data_snapshot():
        assert fingerprint([sample]) == before
        os.utime(sample.path, ns=(1, 1))  # the file changes while the batch runs
        assert fingerprint([sample]) == before  # one look per batch, as documented
    assert fingerprint([sample]) != before  # the next batch (or plain call) sees it


def test_folders_are_walked_once_per_snapshot(tmp_path, monkeypatch):
    _image(tmp_path / "data" / "train" / "x.png", 10)
    walks = []
    real = layouts._walk_signature
    monkeypatch.setattr(layouts, "_walk_signature", lambda root: walks.append(root) or real(root))
    with data_snapshot():
        for _ in range(5):
            layouts._tree_signature(tmp_path / "data")
        with data_snapshot():  # nested: shares the outer look
            layouts._tree_signature(tmp_path / "data")
    assert len(walks) == 1
    layouts._tree_signature(tmp_path / "data")
    layouts._tree_signature(tmp_path / "data")
    assert len(walks) == 3  # outside a block every call looks again


def test_snapshots_are_per_thread():
    seen = []
    with data_snapshot():
        remembered("k", lambda: "main")
        thread = threading.Thread(target=lambda: seen.append(remembered("k", lambda: "other")))
        thread.start()
        thread.join()
    assert seen == ["other"]
