import numpy as np
import pytest

from core.runs.cache import cached, load_cached


def test_results_round_trip_and_recompute_only_on_change(tiny_run, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"scores": np.arange(4, dtype=np.float32), "auroc": np.float32(0.75), "names": ["a", "b"]}

    first = cached(tiny_run, 1, "test-kind", {"k": 1}, compute)
    second = cached(tiny_run, 1, "test-kind", {"k": 1}, compute)
    assert len(calls) == 1
    assert np.array_equal(second["scores"], first["scores"]) and second["auroc"] == pytest.approx(0.75)
    assert second["names"] == ["a", "b"]
    cached(tiny_run, 1, "test-kind", {"k": 2}, compute)  # other parameters, other entry
    assert len(calls) == 2
    assert load_cached(tiny_run, 2, "test-kind", {"k": 1}) is None


def test_nested_arrays_are_refused_not_stringified(tiny_run):
    with pytest.raises(TypeError, match="top level"):
        cached(tiny_run, 1, "bad-kind", None, lambda: {"nested": {"a": np.zeros(3)}})


def test_model_free_scores_are_computed_once_for_every_epoch(tiny_run, demo_root, tmp_path, monkeypatch):
    """The floors never read the model: scoring them at a second epoch reads the first epoch's
    entry (the diagnosis scores every epoch), while a learned score is still per checkpoint."""
    import shutil

    import core.scoring.checkpoint as checkpoint
    from core.runs.folder import Run

    shutil.copytree(tiny_run.path, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    run = Run(tmp_path / "run")
    first = checkpoint.score_checkpoint(run, 1, demo_root, "patchz")
    reference = checkpoint.checkpoint_reference(run, 1, demo_root, "patchz")

    def refuse(context, methods, split, images):
        raise AssertionError(f"recomputed {methods} at epoch {context.epoch}")

    monkeypatch.setattr(checkpoint, "_compute", refuse)
    second = checkpoint.score_checkpoint(run, 2, demo_root, "patchz")
    assert second.epoch == 2 and np.array_equal(second.image_scores, first.image_scores)
    again = checkpoint.checkpoint_reference(run, 2, demo_root, "patchz", cached_only=True)
    assert again is not None and np.array_equal(again.scores, reference.scores)
    with pytest.raises(AssertionError, match="recomputed"):
        checkpoint.score_checkpoint(run, 2, demo_root, "knn")
