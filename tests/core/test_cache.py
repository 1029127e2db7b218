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
