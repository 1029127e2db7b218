"""Metrics: agreement with sklearn, degenerate inputs, AUPRO against a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from core.evaluation.metrics import (
    aupro,
    auroc_undefined_reason,
    confusion_at,
    evaluation_table,
    f1_max,
    image_auroc,
    jump_threshold,
    percentile_threshold,
    pixel_auroc,
    pixel_metrics,
    pro_curve,
)

# --------------------------------------------------------------------------- AUROC


def test_image_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=200)
    scores = rng.normal(size=200) + labels * 0.8
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4]  # ties count half
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_image_auroc_perfect_inverted_random():
    y = np.array([0] * 50 + [1] * 50)
    s = np.arange(100.0)
    assert image_auroc(y, s) == 1.0
    assert image_auroc(y, -s) == 0.0
    assert image_auroc(y, np.zeros(100)) == 0.5
    rng = np.random.default_rng(1)
    big = rng.integers(0, 2, size=20000)
    assert abs(image_auroc(big, rng.random(20000)) - 0.5) < 0.02


def test_image_auroc_one_class_is_nan_with_reason():
    assert math.isnan(image_auroc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(image_auroc([1, 1], [0.1, 0.2]))
    assert math.isnan(image_auroc([], []))
    assert "only normal" in auroc_undefined_reason([0, 0, 0])
    assert "only anomalous" in auroc_undefined_reason([1, 1])
    assert auroc_undefined_reason([0, 1]) is None
    assert math.isnan(image_auroc([0, 1], [0.1, float("nan")]))
    assert "NaN" in auroc_undefined_reason([0, 1], [0.1, float("nan")])


def test_image_auroc_drops_unknown_labels():
    y = [0, 1, -1, -1]
    s = [0.1, 0.9, 5.0, float("nan")]
    assert image_auroc(y, s) == 1.0


def test_pixel_auroc_hand_made():
    masks = np.zeros((2, 4, 4), dtype=np.uint8)
    masks[0, 1:3, 1:3] = 1
    maps = np.zeros((2, 4, 4))
    maps[0, 1:3, 1:3] = 1.0
    assert pixel_auroc(masks, maps) == 1.0
    maps[1, 0, 0] = 2.0  # one normal pixel outranks all 4 anomalous ones: 4 of 4*28 pairs lost
    assert pixel_auroc(masks, maps) == pytest.approx(1 - 4 / (4 * 28))
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert math.isnan(pixel_auroc(np.zeros((1, 4, 4)), maps[:1]))
    with pytest.raises(ValueError):
        pixel_auroc(masks, maps[:1])


def test_pixel_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    masks = (rng.random((4, 32, 32)) < 0.1).astype(np.uint8)
    maps = np.round(rng.normal(size=masks.shape) + masks, 1)  # many ties
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert math.isnan(pixel_auroc(masks, np.full(masks.shape, np.nan)))


def half_maps(masks, seed):
    """Maps as scoring stores them (float16 values in float32), with ties, negatives, -0.0."""
    rng = np.random.default_rng(seed)
    maps = (rng.normal(size=masks.shape) + masks).astype(np.float16)
    maps[rng.random(masks.shape) < 0.05] = np.float16(-0.0)
    maps[rng.random(masks.shape) < 0.05] = 0.0
    return maps.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_auroc_of_float16_maps_is_exact(seed):
    """The counting path (maps stored as float16) gives sklearn's number, ties and signed
    zeros included, and so does the sorting path for the same maps in float64 + 1e-9."""
    rng = np.random.default_rng(seed)
    masks = (rng.random((6, 32, 32)) < 0.1).astype(np.uint8)
    maps = half_maps(masks, seed)
    from core.evaluation.metrics import half_keys

    assert half_keys(maps) is not None and half_keys(maps.astype(np.float64) + 1e-9) is None
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks, maps.astype(np.float64)) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- AUPRO


def slow_aupro(masks, maps, fpr_limit):
    """Textbook AUPRO: loop over every distinct threshold and every region."""
    regions = []
    for idx, m in enumerate(masks):
        lab, n = ndimage.label(m > 0, structure=np.ones((3, 3)))
        regions += [(idx, lab == k) for k in range(1, n + 1)]
    normal = masks == 0
    points = [(0.0, 0.0)]
    for t in sorted(np.unique(maps), reverse=True):
        pred = maps >= t
        fpr = (pred & normal).sum() / normal.sum()
        pro = np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions])
        points.append((fpr, pro))
    fpr, pro = np.array(points).T
    area = 0.0
    for k in range(1, len(fpr)):
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (fpr_limit - x0) / (x1 - x0) * (y1 - y0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def two_region_example(seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 16, 16), dtype=np.uint8)
    masks[0, 2:6, 2:6] = 1  # two regions of different size in one image
    masks[0, 10:12, 9:15] = 1
    masks[1, 5:13, 4:8] = 1  # image 2: one region; image 3: normal
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    return masks, np.round(maps, 1)  # rounding creates ties


def test_aupro_perfect_and_inverted():
    masks, _ = two_region_example()
    perfect = masks.astype(float)
    assert aupro(masks, perfect) == pytest.approx(1.0)
    assert aupro(masks, -perfect) < 0.05
    assert aupro(masks, perfect, num_thresholds=50) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_matches_slow_reference(seed, limit):
    masks, maps = two_region_example(seed)
    ref = slow_aupro(masks, maps, limit)
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(ref, abs=1e-9)
    assert abs(aupro(masks, maps, fpr_limit=limit, num_thresholds=200) - ref) < 1e-2


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_of_float16_maps_matches_slow_reference(seed, limit):
    masks, _ = two_region_example(seed)
    maps = half_maps(masks, seed)
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(
        slow_aupro(masks, maps, limit), abs=1e-9
    )


def test_aupro_random_map_is_about_half_the_limit():
    rng = np.random.default_rng(3)
    masks = np.zeros((8, 32, 32), dtype=np.uint8)
    masks[:, 8:20, 8:20] = 1
    value = aupro(masks, rng.random(masks.shape), fpr_limit=0.3)
    assert abs(value - 0.15) < 0.03


def test_aupro_small_region_counts_as_much_as_large():
    masks = np.zeros((1, 20, 20), dtype=np.uint8)
    masks[0, 0:10, 0:10] = 1  # big region, found
    masks[0, 15, 15] = 1  # one-pixel region, missed
    maps = masks.astype(float)
    maps[0, 15, 15] = -1.0
    # found region contributes 1/2, missed pixel 0 until fpr=1: pixel AUROC would look great
    assert aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.5)
    assert pixel_auroc(masks, maps) > 0.99


def test_pro_curve_and_undefined():
    masks, maps = two_region_example()
    fpr, pro = pro_curve(masks, maps)
    assert fpr[0] == 0 and pro[0] == 0 and fpr[-1] == pytest.approx(1) and pro[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    assert math.isnan(aupro(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))))
    assert math.isnan(aupro(np.ones((1, 4, 4)), np.zeros((1, 4, 4))))
    with pytest.raises(ValueError):
        aupro(masks, maps, fpr_limit=0.0)


# --------------------------------------------------------------------------- thresholds


def test_f1_max_hand_made():
    y = [0, 0, 0, 1, 1, 1, 0, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # threshold 0.4: tp=4 fp=1 fn=0 -> P=0.8 R=1 F1=8/9; no other cut does better
    f1, thr = f1_max(y, s)
    assert f1 == pytest.approx(8 / 9)
    assert thr == pytest.approx(0.4)
    assert f1_max([0, 1], [0.0, 1.0]) == (1.0, 1.0)
    f1, thr = f1_max([0, 0], [0.1, 0.2])
    assert math.isnan(f1) and math.isnan(thr)


def test_jump_threshold_finds_clear_jump():
    normals = np.linspace(0.0, 1.0, 30)  # gap 1/29
    anomalies = np.array([3.0, 3.2, 3.5])
    scores = np.random.default_rng(0).permutation(np.concatenate([normals, anomalies]))
    assert jump_threshold(scores) == pytest.approx(2.0)  # midpoint of the 1.0 -> 3.0 gap
    # factor is configurable: this jump is ~58x the mean gap
    assert jump_threshold(scores, factor=100.0) is None


def test_jump_threshold_no_jump_and_too_few():
    assert jump_threshold(np.linspace(0, 1, 100)) is None
    assert jump_threshold(np.linspace(0, 1, 15)) is None  # not more than n_low scores
    assert jump_threshold(np.zeros(30).tolist() + [5.0]) is None  # baseline 0: no scale


def test_jump_threshold_first_jump_after_window_wins():
    scores = np.concatenate([np.linspace(0, 1, 25), [2.0, 2.05], [10.0]])
    assert jump_threshold(scores) == pytest.approx(1.5)


def test_jump_threshold_ignores_jump_among_lowest():
    # one very low outlier: its gap lies inside the lowest-20 window, so it is not a candidate
    # (it only inflates the baseline); the threshold is never placed below the bulk.
    bulk = np.linspace(10.0, 11.0, 40)
    scores = np.concatenate([[0.0], bulk])
    assert jump_threshold(scores) is None
    with_anomaly = np.concatenate([scores, [40.0]])
    assert jump_threshold(with_anomaly) == pytest.approx(25.5)


def test_percentile_threshold():
    s = np.arange(101.0)
    assert percentile_threshold(s, 99.0) == pytest.approx(99.0)
    assert percentile_threshold(s) == pytest.approx(99.0)
    assert percentile_threshold(s, 50) == pytest.approx(50.0)
    assert percentile_threshold([1.0, 2.0, float("nan")], 100) == 2.0
    assert math.isnan(percentile_threshold([]))


def test_confusion_at():
    y = [0, 0, 1, 1, 1, -1]
    s = [0.1, 0.6, 0.5, 0.7, 0.2, 0.9]
    c = confusion_at(y, s, 0.5)  # >= 0.5 flagged; the UNKNOWN sample is dropped
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 1, 1, 1)
    assert c["precision"] == pytest.approx(2 / 3)
    assert c["recall"] == pytest.approx(2 / 3)
    assert c["fpr"] == pytest.approx(0.5)
    none = confusion_at([0, 0], [0.1, 0.2], 1.0)
    assert math.isnan(none["precision"]) and math.isnan(none["recall"]) and none["fpr"] == 0.0


# --------------------------------------------------------------------------- tables


def test_evaluation_table():
    cats = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
    good = np.array([0.1, 0.2, 0.8, 0.9, 5.1, 5.2, 5.8, 5.9, 0.3, 0.4])
    bad = np.array([0.9, 0.1, 0.2, 0.8, 0.1, 0.2, 0.8, 0.9, 0.5, 0.5])
    table = evaluation_table(cats, labels, {"good": good, "bad": bad})
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["good", "bad"]
    assert list(table.columns) == ["a", "b", "c", "mean", "overall"]
    assert table.loc["good", "a"] == 1.0 and table.loc["good", "b"] == 1.0
    assert math.isnan(table.loc["good", "c"])  # only normals in c
    assert table.loc["good", "mean"] == 1.0  # c left out of the mean
    # pooled: category b's normals (5.1) outrank a's anomalies (0.8): overall < mean
    assert table.loc["good", "overall"] == pytest.approx(roc_auc_score(labels, good))
    assert table.loc["good", "overall"] < 1.0
    assert table.loc["bad", "a"] == pytest.approx(0.5)
    assert table.loc["bad", "mean"] == pytest.approx(0.75)


def test_evaluation_table_defect_columns():
    cats = ["a"] * 5
    labels = [0, 0, 1, 1, 1]
    defects = ["good", "good", "scratch", "scratch", "hole"]
    scores = {"m": np.array([0.1, 0.5, 0.9, 0.8, 0.3])}
    table = evaluation_table(cats, labels, scores, defects=defects)
    assert list(table.columns) == ["a", "mean", "overall", "a/hole", "a/scratch"]
    assert table.loc["m", "a/scratch"] == 1.0
    assert table.loc["m", "a/hole"] == 0.5


def test_pixel_metrics():
    masks, maps = two_region_example()
    masks = np.concatenate([masks, np.zeros((1, 16, 16), np.uint8)])
    maps = np.concatenate([maps, np.full((1, 16, 16), 9.0)])  # unmasked defect, hot map
    has_mask = np.array([True, True, False, False])
    labels = np.array([1, 1, 0, 1])
    out = pixel_metrics(masks, maps, has_mask, labels=labels)
    assert set(out) == {"pixel_auroc", "aupro"}
    used = [0, 1, 2]  # masked anomalies + the normal; the unmasked defect is never used
    assert out["pixel_auroc"] == pytest.approx(pixel_auroc(masks[used], maps[used]))
    assert out["aupro"] == pytest.approx(aupro(masks[used], maps[used]))
    only_masked = pixel_metrics(masks, maps, has_mask)
    assert only_masked["aupro"] == pytest.approx(aupro(masks[:2], maps[:2]))
    none = pixel_metrics(masks, maps, np.zeros(4, bool), labels=labels)
    assert math.isnan(none["pixel_auroc"]) and math.isnan(none["aupro"])
