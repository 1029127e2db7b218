"""One evaluation builds its scoring context once: the checkpoint is opened once, the held-out
normals are discovered once and the test set is built once, whatever the methods, the ensemble,
the calibration references, thresholds, pixel metrics and routing ask for."""

from __future__ import annotations

import sys
from collections import Counter

import core.runs.checkpoint
import core.scoring.data
import core.scoring.testset
from core.config import TrainConfig
from core.evaluation.evaluate import evaluate_epoch
from core.runs.folder import Run


def _count_everywhere(monkeypatch, owner, name: str, calls: Counter, key=lambda *a, **k: None):
    """Wraps `owner.name` in every core module that holds it (imported by name or not)."""
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        calls[(name, key(*args, **kwargs))] += 1
        return original(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("core") and \
                getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, counting)


def test_one_evaluate_epoch_reads_config_and_samples_once(tiny_run, demo_root, monkeypatch):
    calls: Counter = Counter()
    _count_everywhere(monkeypatch, core.runs.checkpoint, "open_checkpoint", calls)
    _count_everywhere(monkeypatch, core.scoring.data, "reference_samples", calls,
                      key=lambda root, split, config: split)
    _count_everywhere(monkeypatch, core.scoring.testset, "build_test_set", calls)
    config_json = Run.config
    monkeypatch.setattr(Run, "config", lambda self: calls.update([("config.json", None)])
                        or config_json(self))
    from_saved = TrainConfig.from_saved.__func__
    monkeypatch.setattr(TrainConfig, "from_saved", classmethod(
        lambda cls, *a, **k: calls.update([("from_saved", None)]) or from_saved(cls, *a, **k)))

    report = evaluate_epoch(tiny_run, "last", demo_root, "all")

    assert "ensemble" in report.methods and report.pixel and report.thresholds
    assert calls[("open_checkpoint", None)] == 1  # the one config: the checkpoint's own
    assert calls[("from_saved", None)] <= 1  # read from the file at most once (memoised by stamp)
    assert calls[("config.json", None)] == 0  # config.json only lists runs
    assert calls[("reference_samples", "val")] == 1
    assert calls[("build_test_set", None)] == 1
