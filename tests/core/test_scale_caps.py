"""Bounded references on huge sets: the training probe and the held-out normals scored for
calibration keep at most a stated number per category, a seeded sample; small sets are whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import core.training.loop as train_module
from core.config import TrainConfig
from core.data.dataset import TrainingData
from core.data.samples import NORMAL, ImageSet, Sample


def _set(categories):
    n = len(categories)
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    samples = [Sample(Path(f"{i}.png"), c, NORMAL, "good", "val") for i, c in enumerate(categories)]
    return ImageSet(samples, images, np.zeros((n, 4, 4), np.uint8), np.zeros(n, bool))


def test_the_probe_keeps_at_most_its_cap_per_category_and_small_sets_whole(monkeypatch):
    val = _set(["a"] * 5 + ["b"] * 2)
    data = TrainingData(train=val, val=val)
    config = TrainConfig(synthetic_val=False, seed=1)
    whole = train_module.ValidationProbe.build(data, config)
    assert whole.normals is val.images  # under the cap: the set itself, no copy
    monkeypatch.setattr(train_module, "PROBE_MAX_NORMALS", 2)
    capped = train_module.ValidationProbe.build(data, config)
    kept = capped.normals[:, 0, 0, 0].tolist()
    assert len(kept) == 4 and kept == sorted(kept) and set(kept) >= {5, 6}  # both of b
    again = train_module.ValidationProbe.build(data, config)
    np.testing.assert_array_equal(again.normals, capped.normals)  # seeded


def test_held_out_normals_for_calibration_are_capped_per_category(demo_root, monkeypatch):
    import core.scoring.context as checkpoint

    config = TrainConfig(data=str(demo_root), val_fraction=0.5, seed=0)
    whole = checkpoint.scoring_samples(config, demo_root, "val")
    monkeypatch.setattr(checkpoint, "REFERENCE_MAX_NORMALS", 2)
    capped = checkpoint.scoring_samples(config, demo_root, "val")
    per_category = {c: sum(s.category == c for s in capped) for c in {s.category for s in whole}}
    assert len(whole) > len(capped) and set(per_category.values()) == {2}
    assert set(capped) <= set(whole) and capped == [s for s in whole if s in set(capped)]
    assert len(checkpoint.scoring_samples(config, demo_root, "train")) > 2 * len(per_category)
