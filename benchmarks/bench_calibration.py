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


def calibrate(kind: str, ref: np.ndarray, ref_cats: np.ndarray, held_out: np.ndarray,
              scores: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """Per-category z-scores of `scores` with location and spread from the reference normals;
    "product" is core.scoring.calibration itself."""
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
        out[sel] = (scores[sel] - loc) / max(spread, 1e-12)
    return out


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
    args = parser.parse_args()
    methods = tuple(args.methods.split(","))
    kinds = ("product", "std", "mad", "p95", "heldout_location")
    table: dict[tuple[str, str], list[float]] = {}
    choice: dict[str, list[float]] = {}
    for work in args.works:
        data = load(work, args.epoch, tuple(dict.fromkeys(methods + MEMBERS)))
        for m in methods:
            labels, cats, scores, ref, ref_cats, held = data[m]
            for kind in kinds:
                table.setdefault((m, kind), []).append(
                    image_auroc(labels, calibrate(kind, ref, ref_cats, held, scores, cats)))
            table.setdefault((m, "raw"), []).append(image_auroc(labels, scores))
            table.setdefault((m, "oracle"), []).append(image_auroc(labels, oracle_scores(labels, cats, scores)))
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
    print(f"\nmember per category among {', '.join(MEMBERS)}:")
    for name, values in choice.items():
        print(f"{name:26s} {np.mean(values):.3f}  " + " ".join(f"{v:.3f}" for v in values))


if __name__ == "__main__":
    main()
