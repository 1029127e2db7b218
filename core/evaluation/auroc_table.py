"""Image AUROC of several methods over several sets and seeds, with bootstrap intervals and ranks.

Why: a default chosen on one run of three sets moved by more than the differences it was
chosen on (issue #29). This table shows, per set, each method's AUROC averaged over the seeds
(one model per seed, the same test images), a percentile bootstrap interval over test images,
and the method's rank on that set, so a method that wins on one set and loses on the others is
visible as such.

Bootstrap: each round resamples every set's test images with replacement, normals and
anomalies separately (stratified, so both classes keep their counts and the AUROC is always
defined), and applies the same resample to every seed and method (paired). The interval of
the mean over sets uses the mean of the per-set resampled values of the same round.
Source: B. Efron and R. Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13
(percentile intervals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

ROUNDS = 1000
LEVEL = 0.95
MEAN = "mean"


@dataclass(frozen=True)
class Interval:
    """An estimate with its percentile bootstrap interval [low, high]."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class MethodRow:
    """One method: per set (and MEAN, the mean over sets) its AUROC over seeds with interval;
    rank: per set, 1 = best AUROC on that set (ties share the mean rank); mean_rank over sets."""

    method: str
    aurocs: dict[str, Interval]
    rank: dict[str, float]
    mean_rank: float


@dataclass(frozen=True)
class SeedScores:
    """One model's test scores: labels (N,) 0 normal / 1 anomalous, categories (N,) the set of
    each image, scores {method: (N,) higher = more anomalous}. Images must be in the same
    order for every seed."""

    labels: np.ndarray
    categories: np.ndarray
    scores: Mapping[str, np.ndarray]


def _auroc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC of each row of scores (R, n) against the fixed labels positive (n,) bool
    (Mann-Whitney U from mid-ranks, so ties count one half)."""
    ranks = rankdata(scores, axis=1)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return (ranks[:, positive].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _resamples(labels: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(rounds + 1, n) indices: row 0 the images themselves, then stratified resamples."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    draws = np.concatenate([rng.choice(pos, (rounds, len(pos))), rng.choice(neg, (rounds, len(neg)))],
                           axis=1)
    return np.concatenate([np.concatenate([pos, neg])[None], draws])


def auroc_table(seeds: Sequence[SeedScores], rounds: int = ROUNDS, level: float = LEVEL,
                seed: int = 0) -> list[MethodRow]:
    """Rows for every method present in all seeds, in the first seed's method order.

    Raises ValueError when the seeds' images differ, or a set lacks normals or anomalies.
    """
    if not seeds:
        raise ValueError("auroc_table: no scored runs given")
    first = seeds[0]
    for other in seeds[1:]:
        if not (np.array_equal(other.labels, first.labels)
                and np.array_equal(other.categories, first.categories)):
            raise ValueError("auroc_table: the runs were scored on different test images; "
                             "score every seed on the same data")
    methods = [m for m in first.scores if all(m in s.scores for s in seeds)]
    sets = sorted(set(np.asarray(first.categories).tolist()))
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}  # (rounds + 1,) per set
    for name in sets:
        rows = np.flatnonzero(np.asarray(first.categories) == name)
        labels = np.asarray(first.labels)[rows]
        if labels.min() == labels.max():
            raise ValueError(f"auroc_table: set '{name}' needs normal and anomalous test images")
        index = _resamples(labels, rounds, rng)
        positive = labels[index[0]] == 1
        for method in methods:
            per_seed = [_auroc_rows(np.asarray(s.scores[method])[rows][index], positive)
                        for s in seeds]
            draws[method][name] = np.mean(per_seed, axis=0)
    for method in methods:
        draws[method][MEAN] = np.mean([draws[method][n] for n in sets], axis=0)
    tail = 100 * (1 - level) / 2
    estimates = np.array([[draws[m][n][0] for n in sets] for m in methods])  # (M, S)
    ranks = rankdata(-estimates, axis=0) if len(methods) else estimates
    out = []
    for i, method in enumerate(methods):
        aurocs = {n: Interval(float(draws[method][n][0]),
                              *map(float, np.percentile(draws[method][n][1:], [tail, 100 - tail])))
                  for n in [*sets, MEAN]}
        rank = {n: float(ranks[i, j]) for j, n in enumerate(sets)}
        out.append(MethodRow(method, aurocs, rank, float(np.mean(list(rank.values())))))
    return out


def format_auroc_table(rows: Sequence[MethodRow], floors: Sequence[str] = ()) -> str:
    """A Markdown table: one row per method, per set 'AUROC [low, high] #rank', then the mean
    with its interval and the mean rank; floors are marked '(floor)'."""
    if not rows:
        return "(no methods)"
    sets = [n for n in rows[0].aurocs if n != MEAN]
    head = ["method", *sets, "mean [95% interval]", "mean rank"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        label = f"{row.method} (floor)" if row.method in floors else row.method
        cells = [f"{_cell(row.aurocs[n])} #{row.rank[n]:g}" for n in sets]
        lines.append("| " + " | ".join([label, *cells, _cell(row.aurocs[MEAN]),
                                         f"{row.mean_rank:.1f}"]) + " |")
    return "\n".join(lines)


def _cell(value: Interval) -> str:
    return f"{value.estimate:.3f} [{value.low:.3f}, {value.high:.3f}]"
