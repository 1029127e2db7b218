"""Does the reconstruction still depend on the input? Output collapse measured, with an interval.

A collapsed autoencoder rebuilds every image as nearly the same image (a grey or black field, a
mean image, one blob per category). A fixed line on "how much the outputs vary" misses the
common multi-category case: one blob per category keeps the differences *between* categories,
so the outputs still vary overall while nothing of each image comes back.

The measurement here is the *input dependence* per category: the share of the differences
between the input images of a category that comes back in their reconstructions,

    gain_c = sum_k <R(x_k) - mean R, x_k - mean x> / sum_k |x_k - mean x|^2      (images k of c)

the least-squares slope of the reconstructions' deviations on the inputs' deviations. It is 1 for
a perfect copy, ~0 for an output that does not follow its input (any constant, or noise), and
for a blurry but working model the share of the between-image differences in the frequencies
it keeps (a blur does not make it 0). Averaged over pairs, it is also how much nearer each
reconstruction lies to its own input than to the other inputs of its category, relative to how
far apart the inputs are. Pooled over categories: sum of numerators / sum of denominators.

Intervals: a percentile bootstrap over images, resampled within each category (stratified), so
a category's few probe images give a wide interval and no verdict rather than a false alarm.

When a category's inputs barely differ (every bottle photographed alike), there is nothing for
the output to follow, and rebuilding each of them as the same good bottle is exactly what an
anomaly-detection autoencoder should do. Two shares of the category's pixel variance around its
mean colour (T) tell the cases apart:

    between_share = sum_k |x_k - mean x|^2 / T      how much the inputs differ from each other
    unexplained   = sum_k |R(x_k) - x_k|^2 / T       how much of each input the output misses
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.diagnostics.evidence import BOOTSTRAP_ROUNDS, INTERVAL_LEVEL, NO_INTERVAL, Interval

MIN_CATEGORY_IMAGES = 3  # fewer images of a category: no gain for it (two points make any slope)


@dataclass(frozen=True)
class InputDependence:
    """Input dependence pooled over categories and per category (Interval each; NO_INTERVAL
    where a category has fewer than MIN_CATEGORY_IMAGES images or identical inputs), with each
    category's between_share and unexplained share (module docstring; NaN where undefined)."""

    pooled: Interval
    by_category: dict[str, Interval]
    between_share: dict[str, float]
    unexplained: dict[str, float]


def variance_shares(inputs: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
    """(between_share, unexplained) of one category's (n, C, H, W) inputs and reconstructions."""
    x = inputs.astype(np.float64)
    centre = x.mean(axis=(0, 2, 3), keepdims=True)
    total = float(((x - centre) ** 2).sum())
    if total < 1e-12 or not np.all(np.isfinite(outputs)):
        return float("nan"), float("nan")
    between = float(((x - x.mean(axis=0, keepdims=True)) ** 2).sum())
    missed = float(((outputs.astype(np.float64) - x) ** 2).sum())
    return between / total, missed / total


def _gram(outputs: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(<O_k, I_l>, <I_k, I_l>) over flattened images, float64 (n, n) each."""
    o = outputs.reshape(len(outputs), -1).astype(np.float64)
    x = inputs.reshape(len(inputs), -1).astype(np.float64)
    return o @ x.T, x @ x.T


def _centred(gram: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum_k w_k <a_k - mean_w a, b_k - mean_w b> for each row of weights (R, n) -> (R,)."""
    total = weights.sum(axis=1)
    diagonal = weights @ np.diag(gram)
    cross = np.einsum("rk,kl,rl->r", weights, gram, weights)
    return diagonal - cross / total


def _numerator_denominator(outputs, inputs, weights):
    ox, xx = _gram(outputs, inputs)
    return _centred(ox, weights), _centred(xx, weights)


def input_dependence(inputs: np.ndarray, outputs: np.ndarray, categories, rounds: int = BOOTSTRAP_ROUNDS,
                     level: float = INTERVAL_LEVEL, seed: int = 0) -> InputDependence:
    """The input dependence (module docstring) of reconstructions, pooled and per category.

    inputs, outputs: (N, C, H, W) float in [0, 1]; categories: (N,) names. Non-finite outputs
    give NaN estimates (a diverged model has its own flag). Deterministic for a seed.
    """
    inputs, outputs = np.asarray(inputs), np.asarray(outputs)
    names = np.asarray([str(c) for c in categories], dtype=object)
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    by_category: dict[str, Interval] = {}
    shares = {c: variance_shares(inputs[names == c], outputs[names == c]) for c in sorted(set(names.tolist()))}
    between = {c: v[0] for c, v in shares.items()}
    unexplained = {c: v[1] for c, v in shares.items()}
    pooled_num = np.zeros(rounds + 1)
    pooled_den = np.zeros(rounds + 1)
    n_pooled = 0
    for category in sorted(set(names.tolist())):
        index = np.flatnonzero(names == category)
        if len(index) < MIN_CATEGORY_IMAGES or not np.all(np.isfinite(outputs[index])):
            by_category[category] = NO_INTERVAL
            continue
        draws = rng.integers(0, len(index), size=(rounds, len(index)))
        weights = np.vstack([np.ones(len(index)), np.stack([np.bincount(d, minlength=len(index)) for d in draws])])
        num, den = _numerator_denominator(outputs[index], inputs[index], weights.astype(np.float64))
        if den[0] < 1e-12:  # identical inputs: nothing to follow
            by_category[category] = NO_INTERVAL
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            gains = num / den
        low, high = np.nanquantile(gains[1:], [tail, 1 - tail])
        by_category[category] = Interval(float(gains[0]), float(low), float(high), len(index), level)
        pooled_num += num
        pooled_den += den
        n_pooled += len(index)
    if not n_pooled:
        return InputDependence(NO_INTERVAL, by_category, between, unexplained)
    with np.errstate(invalid="ignore", divide="ignore"):
        gains = pooled_num / pooled_den
    low, high = np.nanquantile(gains[1:], [tail, 1 - tail])
    return InputDependence(Interval(float(gains[0]), float(low), float(high), n_pooled, level), by_category,
                           between, unexplained)
