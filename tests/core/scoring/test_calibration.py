"""Per-category calibration (core.scoring.calibration): one ranking over mixed categories."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics import image_auroc
from core.scoring.calibration import CalibrationError, fit_calibration


def two_scales(seed: int = 0):
    """Category 'plain' scores near 1, 'texture' near 10; defects sit 4 normal spreads above."""
    rng = np.random.default_rng(seed)
    scores, cats, labels = [], [], []
    for name, centre, spread in (("plain", 1.0, 0.1), ("texture", 10.0, 1.0)):
        normal = rng.normal(centre, spread, 30)
        defect = rng.normal(centre + 4 * spread, spread, 10)
        scores += [*normal, *defect]
        cats += [name] * 40
        labels += [0] * 30 + [1] * 10
    val = {name: rng.normal(c, s, 12) for name, c, s in (("plain", 1.0, 0.1), ("texture", 10.0, 1.0))}
    return np.array(scores), np.array(cats), np.array(labels), val


def test_calibration_makes_pooled_auroc_match_the_categories():
    scores, cats, labels, val = two_scales()
    per_category = np.mean([image_auroc(labels[cats == c], scores[cats == c]) for c in ("plain", "texture")])
    raw_pooled = image_auroc(labels, scores)
    fitted = fit_calibration(np.r_[val["plain"], val["texture"]], ["plain"] * 12 + ["texture"] * 12)
    calibrated = fitted.apply(scores, cats)
    assert raw_pooled < per_category - 0.1  # every texture normal outranks every plain defect
    assert abs(image_auroc(labels, calibrated) - per_category) < 0.03
    # within a category the order never changes, so per-category AUROC is untouched
    for c in ("plain", "texture"):
        assert image_auroc(labels[cats == c], calibrated[cats == c]) == image_auroc(labels[cats == c], scores[cats == c])


def test_a_category_without_normals_is_named():
    fitted = fit_calibration([1.0, 1.1, 0.9], ["a", "a", "a"])
    with pytest.raises(CalibrationError, match="category 'b' has no held-out normal scores.*--val-fraction"):
        fitted.apply([1.0, 2.0], ["a", "b"])


def test_identical_normals_do_not_blow_up():
    fitted = fit_calibration([2.0, 2.0, 1.0, 3.0], ["same", "same", "spread", "spread"])
    assert fitted.categories["same"].scale > 0
    assert np.isfinite(fitted.apply([2.5], ["same"])).all()
    assert "median" in fitted.describe() and "n=2" in fitted.describe()


def test_too_few_normals_everywhere_is_refused_with_a_reason():
    with pytest.raises(CalibrationError, match="at least 2 held-out normal images.*--val-fraction"):
        fit_calibration([1.0, 5.0], ["a", "b"])  # one normal each: no spread to measure
    fitted = fit_calibration([1.0, 1.2, 0.8, 5.0], ["a", "a", "a", "b"])
    assert fitted.categories["b"].scale == pytest.approx(fitted.categories["a"].scale)  # the typical spread


def test_few_normals_are_named_in_a_warning():
    fitted = fit_calibration([1.0, 1.2, 0.8, 5.0, 5.5, 4.5, 5.2, 4.8], ["a"] * 3 + ["b"] * 5)
    assert "Warning: fewer than 5 held-out normals in a," in fitted.describe()
    assert "in a, b" not in fitted.describe()
