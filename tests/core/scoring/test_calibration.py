"""Per-category calibration (core.scoring.calibration): one ranking over mixed categories."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.metrics import image_auroc
from core.scoring.calibration import MIN_REFERENCE, CalibrationError, fit_calibration


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
    fitted = fit_calibration(np.linspace(0.9, 1.1, 12), ["a"] * 12)
    with pytest.raises(CalibrationError, match="category 'b' has no reference normal scores"):
        fitted.apply([1.0, 2.0], ["a", "b"])


def test_identical_normals_do_not_blow_up():
    same = [2.0] * 12
    fitted = fit_calibration(same + list(np.linspace(1.0, 3.0, 12)), ["same"] * 12 + ["spread"] * 12)
    assert fitted.categories["same"].scale > 0
    assert np.isfinite(fitted.apply([2.5], ["same"])).all()
    assert "median" in fitted.describe() and "n=12" in fitted.describe()


def test_too_few_reference_normals_are_refused_naming_the_category():
    scores = list(np.linspace(1.0, 2.0, 12)) + [5.0, 5.5, 4.5]
    with pytest.raises(CalibrationError, match=f"at least {MIN_REFERENCE} reference normal.*b: 3"):
        fit_calibration(scores, ["a"] * 12 + ["b"] * 3)


def test_one_outlying_normal_does_not_set_the_scale():
    rng = np.random.default_rng(1)
    normals = rng.normal(0.0, 1.0, 40)
    spoiled = np.r_[normals[:-1], 60.0]  # one mislabelled or broken "normal"
    clean = fit_calibration(normals, ["a"] * 40).categories["a"].scale
    assert fit_calibration(spoiled, ["a"] * 40).categories["a"].scale < 1.2 * clean
    assert np.std(spoiled) > 5 * np.std(normals)  # a standard deviation would have exploded
