"""Numbers that describe how a model reconstructs a probe set, each against the input's own.

Pure functions on arrays: inputs and outputs are float (N, 3, H, W) in [0, 1], masks (N, H, W)
{0, 1}. Every output number has an input counterpart, because "low spread" or "little detail"
only means something relative to what went in.
"""

from __future__ import annotations

import numpy as np

from core.diagnostics.collapse import input_dependence

# A pixel value at most one grey level from 0 or 1 counts as saturated.
SATURATION_MARGIN = 1.0 / 255.0
# Guards ratios of errors that can both be ~0 (a perfect copy): then the ratio reads 1.
RATIO_EPS = 1e-6


def high_frequency_energy(images: np.ndarray) -> float:
    """Mean squared response of the 4-neighbour Laplacian: fine detail (edges, texture, noise).

    images (N, C, H, W) float. Blur removes this energy first, so output/input is a blur gauge.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.shape[-1] < 3 or x.shape[-2] < 3:
        return float("nan")
    lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
           - x[..., 1:-1, :-2] - x[..., 1:-1, 2:])
    return float(np.mean(lap ** 2))


def image_spread(images: np.ndarray) -> float:
    """How different the images are from each other: per-pixel std across images, averaged.

    images (N, C, H, W). ~0 when every image is the same (a collapsed model's output).
    """
    x = np.asarray(images, dtype=np.float64)
    return float(x.std(axis=0).mean()) if len(x) > 1 else float("nan")


def pixel_spread(images: np.ndarray) -> float:
    """How much each image varies inside itself: per-image std over pixels, averaged over images.

    ~0 for a uniform (grey or black) output.
    """
    x = np.asarray(images, dtype=np.float64)
    return float(x.reshape(len(x), -1).std(axis=1).mean()) if len(x) else float("nan")


def saturated_share(images: np.ndarray) -> float:
    """Share of values within SATURATION_MARGIN of 0 or 1 (a black or white collapse -> ~1)."""
    x = np.asarray(images, dtype=np.float64)
    return float(np.mean((x <= SATURATION_MARGIN) | (x >= 1 - SATURATION_MARGIN))) if x.size else float("nan")


def defect_errors(inputs: np.ndarray, outputs: np.ndarray, masks: np.ndarray) -> tuple[float, float, int]:
    """Mean absolute reconstruction error inside and outside defect masks, on the same images.

    Only images with a non-empty mask count, and "outside" is measured on those same images, so
    the comparison is not skewed by easier or harder normal images. Returns (inside, outside,
    number of images used); NaN errors when no image has a defect.
    """
    masks = np.asarray(masks).astype(bool)
    used = masks.reshape(len(masks), -1).any(axis=1)
    if not used.any():
        return float("nan"), float("nan"), 0
    error = np.abs(np.asarray(inputs, np.float64)[used] - np.asarray(outputs, np.float64)[used]).mean(axis=1)
    inside = masks[used]
    return float(error[inside].mean()), float(error[~inside].mean()) if (~inside).any() else float("nan"), int(used.sum())


def reconstruction_numbers(inputs: np.ndarray, outputs: np.ndarray, masks: np.ndarray,
                           labels: np.ndarray, categories=None) -> dict[str, float]:
    """Every number the reconstruction health flags read, as plain floats.

    inputs, outputs (N, 3, H, W) float in [0, 1]; masks (N, H, W) {0, 1} (zero where unknown);
    labels (N,) NORMAL 0 / ANOMALOUS 1; categories (N,) names (None: one category). Non-finite
    outputs are counted and make the other output numbers NaN (a NaN model has no meaningful
    spread). input_dependence* (core.diagnostics.collapse): pooled estimate and 90% interval,
    and per category "input_dependence:<category>", "input_dependence_high:<category>",
    "between_share:<category>" and "unexplained_share:<category>" (category "" when None).
    """
    inputs = np.asarray(inputs, np.float64)
    outputs = np.asarray(outputs, np.float64)
    normal = np.asarray(labels) == 0
    inside, outside, n_defects = defect_errors(inputs, outputs, masks)
    numbers = {
        "n_images": float(len(inputs)),
        "n_defect_images": float(n_defects),
        "nonfinite_outputs": float(np.size(outputs) - np.isfinite(outputs).sum()),
        "input_image_spread": image_spread(inputs),
        "output_image_spread": image_spread(outputs),
        "input_pixel_spread": pixel_spread(inputs),
        "output_pixel_spread": pixel_spread(outputs),
        "input_mean": float(inputs.mean()) if inputs.size else float("nan"),
        "output_mean": float(outputs.mean()) if outputs.size else float("nan"),
        "input_saturated_share": saturated_share(inputs),
        "output_saturated_share": saturated_share(outputs),
        "input_hf_energy": high_frequency_energy(inputs),
        "output_hf_energy": high_frequency_energy(outputs),
        "normal_error": float(np.abs(inputs[normal] - outputs[normal]).mean()) if normal.any() else float("nan"),
        "defect_error_inside": inside,
        "defect_error_outside": outside,
    }
    numbers["image_spread_ratio"] = _ratio(numbers["output_image_spread"], numbers["input_image_spread"])
    numbers["pixel_spread_ratio"] = _ratio(numbers["output_pixel_spread"], numbers["input_pixel_spread"])
    numbers["hf_ratio"] = _ratio(numbers["output_hf_energy"], numbers["input_hf_energy"])
    numbers["defect_error_ratio"] = (inside + RATIO_EPS) / (outside + RATIO_EPS)
    numbers.update(_dependence_numbers(inputs, outputs, categories))
    return numbers


def _dependence_numbers(inputs: np.ndarray, outputs: np.ndarray, categories) -> dict[str, float]:
    categories = [""] * len(inputs) if categories is None else list(categories)
    dependence = input_dependence(inputs, outputs, categories)
    out = {"input_dependence": dependence.pooled.estimate,
           "input_dependence_low": dependence.pooled.low,
           "input_dependence_high": dependence.pooled.high}
    for category, interval in dependence.by_category.items():
        if interval.defined:
            out[f"input_dependence:{category}"] = interval.estimate
            out[f"input_dependence_high:{category}"] = interval.high
            out[f"between_share:{category}"] = dependence.between_share[category]
            out[f"unexplained_share:{category}"] = dependence.unexplained[category]
    return out


def _ratio(output: float, reference: float) -> float:
    """output / reference; NaN when the reference is ~0 (nothing to compare against)."""
    if not np.isfinite(reference) or reference < 1e-12:
        return float("nan")
    return float(output / reference)
