"""Why a metric of an evaluation is undefined, as one sentence a user can act on.

A table cell "-" beside an F1-max of 1.000 tells nothing; these notes say which metric is
undefined, for which category, why, and what to add. Pure functions of an `evaluate_epoch`
result (counts, image AUROC, pixel metrics, thresholds), so the CLI and the dashboard print the
same sentences.
"""

from __future__ import annotations

import math
from typing import Any


def category_note(category: str, counts: dict[str, int]) -> str | None:
    """Why image AUROC (and F1-max) of one category is undefined; None when it is defined."""
    normal, anomalous, unlabeled = counts["normal"], counts["anomalous"], counts["unlabeled"]
    if normal and anomalous:
        return None
    if not normal and not anomalous:
        return (f"{category}: image AUROC and F1-max undefined: its {unlabeled} test images carry "
                "no labels (labels come from test/<good|defect>/ folders or a CSV label column)")
    if not normal:
        return (f"{category}: image AUROC and F1-max undefined: the test set has {anomalous} defect "
                "images but no normal ones; AUROC needs both -- add normal images to test/good/")
    return (f"{category}: image AUROC and F1-max undefined: the test set has {normal} normal images "
            "but no defect ones; AUROC needs both -- add defect images to test/<defect>/")


def pixel_note(pixel: dict[str, Any] | None) -> str | None:
    """Why pixel AUROC / AUPRO are undefined (first method with maps); None when defined."""
    if not pixel:
        return None
    report = next(iter(pixel.values()))
    value = report.get("pixel_auroc")
    if value is not None and math.isfinite(value):
        return None
    if not report.get("n_masked"):
        return ("pixel AUROC and AUPRO undefined: no ground-truth mask was read (expected "
                "<category>/ground_truth/<defect>/<stem>_mask.png; see any mask warnings above)")
    return ("pixel AUROC and AUPRO undefined: the masks read hold only one class of pixel "
            "(every mask empty, or no normal pixel at all)")


def threshold_note(thresholds: dict[str, Any] | None) -> str | None:
    """Why the percentile-of-validation threshold is undefined; None when it is defined."""
    if not thresholds:
        return None
    overall = next(iter(thresholds.values())).get("overall", {})
    if overall.get("n_val_normals", 1):
        return None
    return ("percentile threshold undefined: the run held out no validation normals (a category "
            "had fewer than 4 training images, or --val-fraction 0); add a val/good/ folder or "
            "train with more images and --val-fraction 0.1")


def evaluation_notes(result: dict[str, Any]) -> list[str]:
    """Every undefined-metric sentence of an evaluate_epoch result, categories first."""
    notes = [category_note(c, n) for c, n in result.get("counts", {}).items()]
    notes += [pixel_note(result.get("pixel")), threshold_note(result.get("thresholds"))]
    return [n for n in notes if n]
