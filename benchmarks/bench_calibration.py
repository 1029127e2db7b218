"""Calibration variants and per-category member choices on homework runs, against the answer key.

    python benchmarks/bench_calibration.py /tmp/homework/n60-csv /tmp/homework/n60-csv-seed1 ...
        [--epoch 3] [--methods knn,patchz,ensemble]

Each argument is a work folder that benchmarks/bench_homework.py left (flat/, run/,
flat_answers.csv). For each method it prints the pooled image AUROC of the scores calibrated per
category in several ways (`product`: core.scoring.calibration itself, median and IQR / 1.349;
the rest: the alternatives measured for issue #23), the raw pooled AUROC and the oracle
(bench_homework's: the test normals' own median and standard deviation, from the answer key). Then, for choosing a
member per category without labels among knn, patchz, finepatch and rawknn, it prints the
per-category and pooled AUROC of two label-free proxies: `separation` (AUROC of test against
reference normal scores: what core.scoring.adaptive uses) and `p95` (the fraction of test images
above the reference normals' 95th percentile: a detection rate at 5 % false alarms).

Two variants read the unlabeled test scores themselves (transductive, never the labels):
`test_quantile` moves each category's location by its test scores' 20th percentile minus its
reference normals' 20th percentile; `test_bounds` lowers the location to the test scores' median
and the spread to their robust spread when those are smaller (a shift or a narrowing the test
set proves, if defects only raise scores). --resample N re-draws each test set N times, keeping
every normal and a random 0.25, 1 or 4 times as many anomalies per category, to show whether a
variant depends on the share of anomalies in each category.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from bench_homework import oracle_scores  # the script's folder is on sys.path

from core.evaluation.metrics import image_auroc
from core.runs.folder import Run
from core.scoring.adaptive import separation
from core.scoring.calibration import fit_calibration, robust_spread
from core.scoring.checkpoint import calibration_reference, score_methods
from core.scoring.context import ScoringContext
from core.scoring.reference import as_reference

MEMBERS = ("knn", "patchz", "finepatch", "rawknn")


TRANSDUCTIVE_QUANTILE = 20  # percentile aligned by `test_quantile`
KINDS = ("product", "std", "mad", "p95", "heldout_location", "test_quantile", "test_bounds")


def calibrate(kind: str, ref: np.ndarray, ref_cats: np.ndarray, held_out: np.ndarray,
              scores: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Per-category z-scores of `scores` with location and spread from the reference normals
    (and, for the transductive kinds, the scores themselves); "product" is
    core.scoring.calibration itself."""
    if kind == "product":
        return fit_calibration(ref, list(ref_cats), "reference normals").apply(scores, list(cats))
    out = np.zeros(len(scores))
    for c in set(cats.tolist()):
        r, sel = ref[ref_cats == c], cats == c
        loc = float(np.median(r))
        spread = {"std": float(np.std(r, ddof=1)),
                  "mad": float(1.4826 * np.median(np.abs(r - loc))),
                  "p95": float((np.percentile(r, 95) - loc) / 1.645)}.get(kind, robust_spread(r))
        if kind == "heldout_location":
            val = ref[(ref_cats == c) & held_out]
            loc = float(np.median(val)) if len(val) else loc
        if kind == "test_quantile":
            loc += float(np.percentile(scores[sel], TRANSDUCTIVE_QUANTILE)
                         - np.percentile(r, TRANSDUCTIVE_QUANTILE))
        if kind == "test_bounds":
            loc = min(loc, float(np.median(scores[sel])))
            spread = min(spread, robust_spread(scores[sel]))
        out[sel] = (scores[sel] - loc) / max(spread, 1e-12)
    return out


def anomaly_share_draw(labels: np.ndarray, cats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask over the test images: every normal, and per category a random 0.25, 1 or
    4 times as many anomalies as normals (at least one, at most all)."""
    keep = labels == 0
    for c in set(cats.tolist()):
        anomalies = np.flatnonzero((cats == c) & (labels == 1))
        normals = int(np.sum((cats == c) & (labels == 0)))
        if not len(anomalies):
            continue
        count = min(len(anomalies), max(1, round(normals * float(rng.choice([0.25, 1.0, 4.0])))))
        keep[rng.choice(anomalies, count, replace=False)] = True
    return keep


def resample_once(data: dict, methods: tuple[str, ...], rng: np.random.Generator,
                  into: dict[tuple[str, str], list[float]]) -> None:
    """One anomaly_share_draw of the test set; appends each (method, calibration)'s pooled AUROC."""
    keep = anomaly_share_draw(data[methods[0]][0], data[methods[0]][1], rng)
    for m in methods:
        labels, cats, scores, ref, ref_cats, held = data[m]
        y, c, x = labels[keep], cats[keep], scores[keep]
        for kind in (*KINDS, "raw", "oracle"):
            z = (x if kind == "raw" else oracle_scores(y, c, x) if kind == "oracle"
                 else calibrate(kind, ref, ref_cats, held, x, c))
            into.setdefault((m, kind), []).append(image_auroc(y, z))


def load(work: Path, epoch: int, methods: tuple[str, ...]):
    """{method: (labels, categories, raw scores, reference scores, their categories, held_out)}."""
    key = {Path(r["file"]).stem: r for r in csv.DictReader((work / "flat_answers.csv").open())}
    context = ScoringContext(Run(work / "run"), epoch, work / "flat")
    results = score_methods(context, methods, "test", maps=False)
    out = {}
    for m in methods:
        r, ref = results[m], as_reference(calibration_reference(context, m))
        labels = np.array([int(key[Path(p).stem]["label"]) for p in r.paths])
        out[m] = (labels, np.array(r.categories, object), np.asarray(r.image_scores, np.float64),
                  ref.scores, np.array(ref.categories, object), np.asarray(ref.held_out, bool))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("works", nargs="+", type=Path)
    parser.add_argument("--epoch", type=int, default=3)
    parser.add_argument("--methods", default="knn,patchz,ensemble")
    parser.add_argument("--resample", type=int, default=0,
                        help="also re-draw each test set N times with other anomaly shares")
    args = parser.parse_args()
    methods = tuple(args.methods.split(","))
    rng = np.random.default_rng(0)
    resampled: dict[tuple[str, str], list[float]] = {}
    table: dict[tuple[str, str], list[float]] = {}
    choice: dict[str, list[float]] = {}
    for work in args.works:
        data = load(work, args.epoch, tuple(dict.fromkeys(methods + MEMBERS)))
        for m in methods:
            labels, cats, scores, ref, ref_cats, held = data[m]
            for kind in KINDS:
                table.setdefault((m, kind), []).append(
                    image_auroc(labels, calibrate(kind, ref, ref_cats, held, scores, cats)))
            table.setdefault((m, "raw"), []).append(image_auroc(labels, scores))
            table.setdefault((m, "oracle"), []).append(image_auroc(labels, oracle_scores(labels, cats, scores)))
        for _ in range(args.resample):
            resample_once(data, methods, rng, resampled)
        labels, cats = data[MEMBERS[0]][0], data[MEMBERS[0]][1]
        proxies = {"separation": lambda r, t: separation(r, t).auroc,
                   "p95": lambda r, t: float(np.mean(t > np.percentile(r, 95)))}
        for name, proxy in proxies.items():
            pooled, per = np.zeros(len(labels)), []
            for c in sorted(set(cats.tolist())):
                sel = cats == c
                value = {m: proxy(data[m][3][data[m][4] == c], data[m][2][sel]) for m in MEMBERS}
                m = max(MEMBERS, key=lambda k: value[k])
                _, cat_m, s_m, ref_m, rc_m, held_m = data[m]
                z = calibrate("product", ref_m, rc_m, held_m, s_m, cat_m)
                pooled[sel] = z[sel]
                per.append(image_auroc(labels[sel], s_m[sel]))
            choice.setdefault(f"{name} per-category", []).append(float(np.mean(per)))
            choice.setdefault(f"{name} pooled", []).append(image_auroc(labels, pooled))
    print(f"{'method':10s} {'calibration':18s} mean   worst  per run")
    for (m, kind), values in table.items():
        print(f"{m:10s} {kind:18s} {np.mean(values):.3f}  {np.min(values):.3f}  "
              + " ".join(f"{v:.3f}" for v in values))
    if resampled:
        print(f"\nre-drawn test sets ({args.resample} per run, anomalies 0.25 / 1 / 4 times the "
              "normals per category):")
        for (m, kind), values in resampled.items():
            print(f"{m:10s} {kind:18s} {np.mean(values):.3f}  {np.percentile(values, 10):.3f} (10th percentile)")
    print(f"\nmember per category among {', '.join(MEMBERS)}:")
    for name, values in choice.items():
        print(f"{name:26s} {np.mean(values):.3f}  " + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
