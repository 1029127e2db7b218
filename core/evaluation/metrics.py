"""Honest detection metrics: scikit-learn wherever it has them, exact definitions elsewhere.

Conventions used by every function here:

* A higher score means "more anomalous"; a prediction is anomalous when score >= threshold.
* Image labels are NORMAL (0) / ANOMALOUS (1). Entries labelled UNKNOWN (-1, or any negative
  value) carry no ground truth and are dropped before computing anything.
* Undefined is not an error: a metric that cannot be computed (one class only, no masks, no
  data) returns float('nan') instead of raising, and `auroc_undefined_reason` says why so the
  UI can show it. The reason is also logged at INFO level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.metrics import precision_recall_curve

from core.data.samples import NORMAL

log = logging.getLogger(__name__)

NAN = float("nan")


# --------------------------------------------------------------------------- helpers


def _labelled(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64, scores float64) with UNKNOWN (negative) labels dropped."""
    y = np.asarray(labels).ravel().astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    keep = y >= 0
    return (y[keep] > 0).astype(np.int64), s[keep]


def auroc_undefined_reason(labels, scores=None) -> str | None:
    """Why an AUROC over these labels (and scores, if given) is undefined; None if defined.

    labels: (N,) with UNKNOWN entries ignored. scores: optional (N,).
    """
    y = np.asarray(labels).ravel()
    y = y[y >= 0]
    if y.size == 0:
        return "no labelled samples"
    n_pos = int((y > 0).sum())
    if n_pos == 0:
        return f"only normal samples ({y.size}); AUROC needs both classes"
    if n_pos == y.size:
        return f"only anomalous samples ({y.size}); AUROC needs both classes"
    if scores is not None:
        _, s = _labelled(labels, scores)
        if not np.all(np.isfinite(s)):
            return "scores contain NaN or inf"
    return None


def _binary_auroc(y: np.ndarray, s: np.ndarray, what: str) -> float:
    reason = auroc_undefined_reason(y, s)
    if reason is not None:
        log.info("%s AUROC undefined: %s", what, reason)
        return NAN
    # the same number as sklearn's roc_auc_score (tests compare them), without its input
    # checks, which cost more than the AUROC itself when a page computes hundreds of them
    return _mann_whitney_auc(s[y == 1], s[y == 0])


# --------------------------------------------------------------------------- AUROC


def image_auroc(labels, scores) -> float:
    """Image-level ROC AUC (equal to sklearn's roc_auc_score; ties count half).

    labels: (N,) NORMAL/ANOMALOUS (UNKNOWN dropped). scores: (N,) higher = more anomalous.
    Returns nan (never raises) when only one class is present or scores are not finite;
    `auroc_undefined_reason(labels, scores)` gives the reason.
    """
    y, s = _labelled(labels, scores)
    return _binary_auroc(y, s, "image")


def _mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Exact ROC AUC = P(pos > neg) + P(pos == neg) / 2, from two sorts and a searchsorted.

    Same value as sklearn's roc_auc_score (ties count half), but it needs no argsort of the
    pooled scores, which is what makes sklearn take ~10 s on 6.5M pixels on a small CPU.
    """
    neg = np.sort(neg)
    pos = np.sort(pos)  # sorted queries keep searchsorted cache-friendly
    below = np.searchsorted(neg, pos, side="left").astype(np.float64)
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (pos.size * neg.size))


HALF_KEYS = 2**16  # distinct float16 values, as order-preserving uint16 keys


def half_keys(maps) -> np.ndarray | None:
    """(N*H*W,) uint16 keys ordered as the values are, when every value of `maps` is a finite
    float16 (the precision anomaly maps are stored in: core.scoring.results), else None.

    Equal values get equal keys (-0.0 and 0.0 included), so counting pixels per key gives
    exact ROC and PRO curves in linear time instead of sorting millions of pixels.
    """
    a = np.asarray(maps)
    if a.dtype.kind != "f" or a.size == 0:
        return None
    half = a.astype(np.float16).ravel()
    with np.errstate(invalid="ignore"):
        if not np.array_equal(half.astype(a.dtype), a.ravel()):  # NaN and overflow fail too
            return None
    if not np.all(np.isfinite(half)):
        return None
    bits = (half + np.float16(0)).view(np.uint16)  # -0.0 + 0.0 = 0.0: one key for zero
    negative = (bits & 0x8000) != 0
    return np.where(negative, ~bits, bits | 0x8000).astype(np.uint16)


def _histogram_auc(keys: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC (ties count half) from per-key counts: the same value as _mann_whitney_auc."""
    pos = np.bincount(keys[positive], minlength=HALF_KEYS).astype(np.float64)
    neg = np.bincount(keys[~positive], minlength=HALF_KEYS).astype(np.float64)
    below = np.cumsum(neg) - neg  # negatives strictly below each key
    return float(np.dot(pos, below + 0.5 * neg) / (pos.sum() * neg.sum()))


def pixel_auroc(masks, maps) -> float:
    """Pixel-level ROC AUC over every pixel of every image, pooled; exact, no subsampling.

    masks: (N, H, W) ground truth, nonzero = anomalous. maps: (N, H, W) anomaly maps.
    Computed by the Mann-Whitney identity (equal to sklearn's roc_auc_score, tested), about
    0.5 s for 100 maps of 256x256; maps holding float16 values (as scoring stores them) by
    counting pixels per value, ten times faster and just as exact. Returns nan when the
    masks hold only one class or the maps are not finite.
    """
    _same_shape(masks, maps)
    return _pixel_auroc(masks, maps, half_keys(maps))


def _same_shape(masks, maps) -> None:
    if np.shape(masks) != np.shape(maps):
        raise ValueError(f"masks and maps differ in shape: {np.shape(masks)} vs {np.shape(maps)}")


def _pixel_auroc(masks, maps, keys: np.ndarray | None) -> float:
    """pixel_auroc with the maps' half_keys (None: not float16 values) already computed."""
    y = np.asarray(masks).ravel() > 0
    reason = auroc_undefined_reason(y.astype(np.int8))
    if reason is not None:
        log.info("pixel AUROC undefined: %s", reason)
        return NAN
    if keys is not None:
        return _histogram_auc(keys, y)
    s = np.asarray(maps, dtype=np.float64).ravel()
    if not np.all(np.isfinite(s)):
        log.info("pixel AUROC undefined: maps contain NaN or inf")
        return NAN
    return _mann_whitney_auc(s[y], s[~y])


# --------------------------------------------------------------------------- AUPRO


def _region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel weight 1 / (region size * number of regions) for anomalous pixels, else 0.

    Regions are 8-connected components of each image's mask (as in the MVTec AD evaluation
    code). Summing the weights of the pixels a prediction covers gives the mean per-region
    overlap (PRO). Returns (weights (N*H*W,) float64, number of regions).
    """
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across images
    comp, offset = ndimage.label(masks, structure=structure)
    if offset == 0:
        return np.zeros(masks.size), 0
    flat = comp.ravel()
    sizes = np.bincount(flat, minlength=offset + 1).astype(np.float64)
    inv = np.zeros(offset + 1)
    inv[1:] = 1.0 / (sizes[1:] * offset)
    return inv[flat], offset


def _integrate_to(fpr: np.ndarray, pro: np.ndarray, limit: float) -> float:
    """Trapezoid area under pro(fpr) on [0, limit]; fpr ascending, starting at 0.

    The curve is cut at `limit` by linear interpolation between the points around it.
    """
    k = int(np.searchsorted(fpr, limit, side="right"))  # fpr[:k] <= limit
    x, y = fpr[:k], pro[:k]
    if k < fpr.size and x[-1] < limit:
        t = (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x = np.append(x, limit)
        y = np.append(y, pro[k - 1] + t * (pro[k] - pro[k - 1]))
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _exact_pro_points(s, anomalous, pro_w, n_normal):
    """Every vertex of the PRO curve, without sorting all pixels together.

    Sorting only the normal scores (fast, no argsort) and argsorting only the anomalous ones
    (few) is enough: PRO changes only at distinct anomalous scores u_k (descending), so the
    exact curve is the polyline through, for each k, (FPR(score > u_k), PRO(u_{k-1})) -- the
    horizontal run over normals strictly between -- and (FPR(score >= u_k), PRO(u_k)), ending
    at (1, 1).
    """
    ns = np.sort(s[~anomalous])
    sa, wa = s[anomalous], pro_w[anomalous]
    order = np.argsort(-sa, kind="stable")
    sa, wa = sa[order], wa[order]
    last = np.flatnonzero(np.r_[sa[1:] != sa[:-1], True])  # last index of each distinct value
    u = sa[last]
    pro = np.minimum(np.cumsum(wa)[last], 1.0)
    fpr_gt = (n_normal - np.searchsorted(ns, u, side="right")) / n_normal
    fpr_ge = (n_normal - np.searchsorted(ns, u, side="left")) / n_normal
    prev = np.r_[0.0, pro[:-1]]
    fpr = np.column_stack([fpr_gt, fpr_ge]).ravel()
    pro = np.column_stack([prev, pro]).ravel()
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, pro, 1.0]


def _histogram_pro_points(keys, anomalous, pro_w, n_normal):
    """`_exact_pro_points` from per-key sums (keys: half_keys of the maps): the same vertices,
    in linear time."""
    weight = np.bincount(keys[anomalous], weights=pro_w[anomalous], minlength=HALF_KEYS)
    has_anomalous = np.bincount(keys[anomalous], minlength=HALF_KEYS) > 0
    normals = np.bincount(keys[~anomalous], minlength=HALF_KEYS).astype(np.float64)
    at_or_above = np.cumsum(normals[::-1])[::-1]  # normal pixels with key >= k
    u = np.flatnonzero(has_anomalous)[::-1]  # distinct anomalous values, descending
    pro = np.minimum(np.cumsum(weight[::-1])[::-1][u], 1.0)
    fpr_ge = at_or_above[u] / n_normal
    fpr_gt = (at_or_above[u] - normals[u]) / n_normal
    prev = np.r_[0.0, pro[:-1]]
    fpr = np.column_stack([fpr_gt, fpr_ge]).ravel()
    pro = np.column_stack([prev, pro]).ravel()
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, pro, 1.0]


def _binned_pro_points(s, normal, pro_w, n_normal, num, fpr_max):
    """PRO curve at normal-score quantile thresholds; see `pro_curve`."""
    ns = s[normal]
    levels = np.r_[np.linspace(0.0, fpr_max, max(2, int(num))), min(1.0, 1.1 * fpr_max)]
    extra = [s.min()]
    above = s[s > ns.max()]
    if above.size:
        extra.append(above.min())  # the exact PRO reached at FPR 0
    thresholds = np.unique(np.r_[np.quantile(ns, 1.0 - levels), extra])
    idx = np.searchsorted(thresholds, s, side="right") - 1  # largest threshold <= s
    # weight landing on each threshold; predicted at thresholds[k] = every pixel with idx >= k
    pro_bins = np.bincount(idx, weights=pro_w, minlength=thresholds.size)
    fp_bins = np.bincount(idx, weights=normal.astype(np.float64), minlength=thresholds.size)
    pro = np.minimum(np.cumsum(pro_bins[::-1]), 1.0)  # thresholds descending -> fpr ascending
    fpr = np.cumsum(fp_bins[::-1]) / n_normal
    return np.r_[0.0, fpr], np.r_[0.0, pro]


def pro_curve(
    masks, maps, num_thresholds: int | None = None, fpr_max: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The per-region-overlap curve: (fpr, pro), both non-decreasing, from (0, 0) to (1, 1).

    masks: (N, H, W) nonzero = anomalous; maps: (N, H, W). For each threshold t, a pixel is
    predicted anomalous when map >= t; FPR = fraction of normal pixels predicted, PRO = mean
    over all connected GT regions (pooled across images) of the fraction of the region
    predicted. num_thresholds None (default): exact, every vertex of the curve (no loop over
    thresholds; ~1 s for 100 maps of 256x256). An int: thresholds at normal-score quantiles
    for that many FPR levels evenly spaced on [0, fpr_max] -- an approximation, kept for
    comparison with tools that sample thresholds.
    Raises ValueError on a shape mismatch; returns empty arrays when undefined.
    """
    _same_shape(masks, maps)
    keys = half_keys(maps) if num_thresholds is None else None
    return _pro_curve(masks, maps, num_thresholds, fpr_max, keys)


def _pro_curve(masks, maps, num_thresholds, fpr_max, keys: np.ndarray | None):
    """pro_curve with the maps' half_keys (None: not float16 values) already computed."""
    m = np.asarray(masks) > 0
    if m.ndim == 2:
        m, maps = m[None], np.asarray(maps)[None]
    pro_w, n_regions = _region_weights(m)
    anomalous = m.ravel()
    n_normal = int(anomalous.size - anomalous.sum())
    if n_regions == 0 or n_normal == 0:
        return np.zeros(0), np.zeros(0)
    if keys is not None and num_thresholds is None:
        return _histogram_pro_points(keys, anomalous, pro_w, n_normal)
    s = np.asarray(maps, dtype=np.float64).ravel()
    if num_thresholds is None:
        return _exact_pro_points(s, anomalous, pro_w, n_normal)
    return _binned_pro_points(s, ~anomalous, pro_w, n_normal, num_thresholds, fpr_max)


def aupro(masks, maps, fpr_limit: float = 0.3, num_thresholds: int | None = None) -> float:
    """Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit` (MVTec AD definition).

    masks: (N, H, W) nonzero = anomalous (normals: all zero, they contribute only to FPR).
    maps: (N, H, W). 1.0 is perfect; a random map scores about fpr_limit / 2.
    num_thresholds: None = exact curve (default), int = quantile-approximated, see `pro_curve`.
    Returns nan when there is no anomalous region or no normal pixel, or the maps are not finite.
    """
    _same_shape(masks, maps)
    keys = half_keys(maps) if num_thresholds is None else None
    return _aupro(masks, maps, fpr_limit, num_thresholds, keys)


def _aupro(masks, maps, fpr_limit, num_thresholds, keys: np.ndarray | None) -> float:
    """aupro with the maps' half_keys (None: not float16 values) already computed."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if keys is None and not np.all(np.isfinite(maps)):  # keys exist only for finite maps
        log.info("AUPRO undefined: maps contain NaN or inf")
        return NAN
    fpr, pro = _pro_curve(masks, maps, num_thresholds, fpr_limit, keys)
    if fpr.size == 0:
        log.info("AUPRO undefined: no anomalous region or no normal pixel")
        return NAN
    return _integrate_to(fpr, pro, fpr_limit) / fpr_limit


# --------------------------------------------------------------------------- thresholds


def f1_max(labels, scores) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold achieving it (sklearn PR curve).

    labels: (N,), UNKNOWN dropped. scores: (N,). Predicted anomalous when score >= threshold.
    Returns (nan, nan) when there is no anomalous sample (F1 is undefined) or no data.
    """
    y, s = _labelled(labels, scores)
    if y.sum() == 0 or not np.all(np.isfinite(s)):
        log.info("F1 undefined: no anomalous sample or non-finite scores")
        return NAN, NAN
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]  # the last point (P=1, R=0) has no threshold
    denom = p + r
    f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def jump_threshold(scores, n_low: int = 20, factor: float = 5.0) -> float | None:
    """Threshold at the first big jump in the sorted scores, for data without labels.

    Rule: sort finite scores ascending, g = consecutive gaps. The lowest `n_low` scores are
    assumed normal; their mean gap (the n_low - 1 gaps between them) is the baseline spacing.
    Gaps inside that window are never candidates, a jump there only raises the baseline.
    The first later gap (from between score n_low-1 and n_low onwards) with
    gap > factor * baseline sets the threshold at that gap's midpoint: everything above it is
    flagged. Returns None when there is no such gap, when there are not more than `n_low`
    scores, or when the baseline is 0 (the lowest n_low are all equal: no scale to compare to).
    """
    if n_low < 2:
        raise ValueError("n_low must be >= 2")
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    if s.size <= n_low:
        return None
    gaps = np.diff(s)
    baseline = float(gaps[: n_low - 1].mean())
    if baseline <= 0.0:
        return None
    later = np.flatnonzero(gaps[n_low - 1 :] > factor * baseline)
    if later.size == 0:
        return None
    k = n_low - 1 + int(later[0])
    return float((s[k] + s[k + 1]) / 2.0)


def percentile_threshold(normal_scores, q: float = 99.0) -> float:
    """The q-th percentile of scores of known-normal images (linear interpolation).

    normal_scores: (N,). Non-finite values are dropped; nan when nothing is left.
    """
    s = np.asarray(normal_scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        return NAN
    return float(np.percentile(s, q))


def _ratio(num: int, den: int) -> float:
    return num / den if den > 0 else NAN


def confusion_at(labels, scores, threshold: float) -> dict[str, float]:
    """Confusion counts and rates when score >= threshold is called anomalous.

    labels: (N,), UNKNOWN dropped. Returns dict(tp, fp, tn, fn) as ints and precision
    (nan when nothing is flagged), recall (nan without anomalies), fpr (nan without normals).
    """
    y, s = _labelled(labels, scores)
    pred = s >= threshold
    pos = y > 0
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))
    fn = int(np.sum(~pred & pos))
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
    }


# --------------------------------------------------------------------------- tables


def _mean_defined(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else NAN


def _defect_columns(cats, defects, y) -> list[tuple[str, np.ndarray]]:
    """(column name, index mask) per category/defect: that defect vs the category's normals."""
    columns = []
    for cat in sorted(set(cats.tolist())):
        in_cat = cats == cat
        normals = in_cat & (y == NORMAL)
        for defect in sorted(set(defects[in_cat & (y > 0)].tolist())):
            columns.append((f"{cat}/{defect}", normals | (in_cat & (defects == defect) & (y > 0))))
    return columns


def evaluation_table(
    categories: Sequence[str],
    labels,
    scores: dict[str, np.ndarray],
    defects: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Image AUROC per method (rows) and category (columns).

    categories: (N,) category name per sample. labels: (N,). scores: method -> (N,) scores.
    Columns: each category (sorted), "mean" = mean of the defined per-category AUROCs (the
    usual MVTec summary; a category with one class is nan and left out of the mean), and
    "overall" = AUROC of all samples pooled (sensitive to score scales differing across
    categories, which the mean hides). defects: optional (N,) defect name per sample; when given,
    a column "category/defect" per anomalous defect type is appended: that defect's images
    against the same category's normals.
    """
    cats = np.asarray(list(categories), dtype=object)
    y = np.asarray(labels).ravel().astype(np.int64)
    if cats.shape != y.shape:
        raise ValueError(f"categories and labels differ in length: {cats.shape} vs {y.shape}")
    names = sorted(set(cats.tolist()))
    extra = [] if defects is None else _defect_columns(cats, np.asarray(list(defects), object), y)
    rows = {}
    for method, raw in scores.items():
        s = np.asarray(raw, dtype=np.float64).ravel()
        if s.shape != y.shape:
            raise ValueError(f"scores of {method!r} have length {s.size}, expected {y.size}")
        per_cat = [image_auroc(y[cats == c], s[cats == c]) for c in names]
        row = dict(zip(names, per_cat, strict=True))
        row["mean"] = _mean_defined(per_cat)
        row["overall"] = image_auroc(y, s)
        for col, sel in extra:
            row[col] = image_auroc(y[sel], s[sel])
        rows[method] = row
    columns = names + ["mean", "overall"] + [c for c, _ in extra]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=np.float64)


def pixel_metrics(masks, maps, has_mask, labels=None) -> dict[str, float]:
    """Pixel AUROC and AUPRO over images whose masks can be trusted.

    masks: (N, H, W), maps: (N, H, W), has_mask: (N,) bool (a GT mask was read).
    labels: optional (N,). Used images: those with a mask, plus -- when labels are given --
    normal images (whose all-zero masks are exact). Anomalous images without a mask are never
    used: their all-zero mask would count real defects as false positives. Without labels
    only has_mask images are used (normals cannot be told from unmasked defects).
    Returns {"pixel_auroc", "aupro"}; both nan when no image has a mask.
    """
    hm = np.asarray(has_mask, dtype=bool).ravel()
    if not hm.any():
        log.info("pixel metrics undefined: no ground-truth masks")
        return {"pixel_auroc": NAN, "aupro": NAN}
    use = hm.copy()
    if labels is not None:
        use |= np.asarray(labels).ravel() == NORMAL
    m = np.asarray(masks)[use]
    a = np.asarray(maps)[use]
    keys = half_keys(a)  # stored maps: per-value counts serve both metrics
    return {"pixel_auroc": _pixel_auroc(m, a, keys), "aupro": _aupro(m, a, 0.3, None, keys)}


def auroc_standard_error(auroc: float, n_negative: int, n_positive: int) -> float:
    """Standard error of an AUROC estimated from n_negative and n_positive scores (Hanley &
    McNeil 1982, Radiology 143:29-36, their equation 2); NaN when either side is empty."""
    if n_negative < 1 or n_positive < 1 or not math.isfinite(auroc):
        return float("nan")
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    variance = (auroc * (1 - auroc) + (n_positive - 1) * (q1 - auroc ** 2)
                + (n_negative - 1) * (q2 - auroc ** 2)) / (n_negative * n_positive)
    return math.sqrt(max(variance, 0.0))
