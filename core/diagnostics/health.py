"""Health flags for one checkpoint: each with its evidence numbers and one plain sentence.

The failures this workflow has met, and the rule that catches each (thresholds below, each
with the reason for its number):

* nan           any weight or reconstructed pixel is NaN/inf.
* collapsed     every input comes out as nearly the same image (uniform grey, black, a mean
                image): spread across images far below the input's.
* identity_copy defects come back in the reconstruction, so nothing stands out in the error
                map: real defects are not localised by the error (AUC interval below a line)
                and pasted synthetic defects reappear (core.diagnostics.evidence).
* defects_missed real defects are not localised by the error although the model does not copy.
* dead_layers   a layer's weight std or gradient norm fell far below its early value.
* blurry        the output keeps little of the input's fine detail (a warning: blur is normal
                early in training and only hurts pixel-level scores).

Error-severity flags make an epoch unhealthy. Each flag names the scoring methods it makes
unusable (`unusable`): copying ruins every score read from the reconstruction (pixel, ssim,
feature) but not the knn feature bank; the epoch suggestion never uses a method at an epoch
where a flag rules it out.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import TrainConfig
from core.diagnostics.evidence import RECONSTRUCTION_METHODS, CopyEvidence, copy_evidence_of
from core.diagnostics.gradients import gradient_table, vanishing_gradients
from core.diagnostics.probe import PROBE_PER_CATEGORY, probe_set, probe_signature
from core.diagnostics.reconstruction import reconstruction_numbers
from core.diagnostics.weights import init_weight_std, weight_stats
from core.model.tensors import reconstruct, to_tensor
from core.runs.cache import cached
from core.runs.checkpoint import open_checkpoint
from core.runs.folder import Run, RunError

# collapsed: the reconstructions no longer follow their inputs. Decided from the input dependence
# (core.diagnostics.collapse: the share of the differences between a category's input images
# that comes back in their reconstructions, 1 = copy, 0 = the same output whatever the input),
# flagged when its whole 90% interval lies below 0.1, pooled or for one category. Measured at 64 px
# on ../shared/realdata and realdata_more (docs/diagnosis.md): collapsed homework
# runs (one blob per category, which the old spread line missed at 0.121) read 0.00-0.02 with
# interval highs <= 0.04; working models read 0.3-0.9, blurry ones included.
COLLAPSE_DEPENDENCE = 0.1
# A category whose inputs differ by under 5% of their pixel variance leaves nothing to follow
# (every bottle alike: one good bottle for all is the right output); there a low dependence is a
# collapse only when the output does not resemble the inputs either (misses over half their
# variance).
# Measured: a no-skip model's mean bottle misses 0.03-0.11 of it; blobs miss 0.75-1.14.
ALIKE_BETWEEN_SHARE = 0.05
ALIKE_UNEXPLAINED = 0.5
# Fallback when the dependence cannot be measured (under 3 probe images per category): output
# spread across images below 10% of the input's (an exact constant reads ~0).
COLLAPSE_SPREAD_RATIO = 0.1
# collapsed into a *uniform* image when, in addition, each output varies inside itself by less
# than 10% of what the inputs do (same reasoning, within images).
UNIFORM_PIXEL_RATIO = 0.1
# blurry: output keeps under 25% of the input's Laplacian energy, i.e. under half the amplitude
# of edges and texture; pixel-error maps of such a model light up on every normal edge.
BLURRY_HF_RATIO = 0.25
# identity_copy: decided from measured copy evidence with its interval (core.diagnostics.evidence).
# dead_layers: weight std below 10% of its early value (max of initialisation and the first
# checkpoint). Adam updates move a live layer's std by tens of percent, not by 10x downwards;
# a 10x fall is weight decay winning over a gradient that no longer arrives.
DEAD_STD_FRACTION = 0.1
NUMBERS_VERSION = 3  # part of the cache key of reconstruction numbers: bump when they change

ERROR = "error"
WARNING = "warning"
LEARNED_METHODS = ("pixel", "ssim", "feature", "knn", "seg")  # every score that reads the model


@dataclass
class HealthFlag:
    """One detected problem. evidence: the numbers the rule read, by name; unusable: the scoring
    methods (core.scoring.METHODS) whose scores this problem makes meaningless."""

    name: str
    severity: str  # "warning" | "error"
    sentence: str
    evidence: dict[str, float]
    unusable: tuple[str, ...] = ()


@dataclass
class HealthReport:
    """Every flag for one epoch plus all numbers they were computed from.

    notes: what could not be checked and why (e.g. the dataset folder is missing).
    """

    epoch: int
    flags: list[HealthFlag]
    numbers: dict[str, float]
    notes: list[str] = field(default_factory=list)
    copy: CopyEvidence | None = None

    @property
    def healthy(self) -> bool:
        return not any(flag.severity == ERROR for flag in self.flags)

    def flag(self, name: str) -> HealthFlag | None:
        return next((flag for flag in self.flags if flag.name == name), None)

    @property
    def unusable(self) -> list[str]:
        """Methods some flag of this epoch rules out, in core.scoring's order."""
        named = {m for flag in self.flags for m in flag.unusable}
        return [m for m in LEARNED_METHODS if m in named] + sorted(named - set(LEARNED_METHODS))

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "healthy": self.healthy,
                "flags": [{**asdict(f), "unusable": list(f.unusable)} for f in self.flags],
                "unusable": self.unusable, "numbers": dict(self.numbers), "notes": list(self.notes),
                "copy": None if self.copy is None else self.copy.to_dict()}


# --------------------------------------------------------------------------- rules (pure)


def _finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def nan_flag(nonfinite_weights: int, nonfinite_outputs: int) -> HealthFlag | None:
    if nonfinite_weights <= 0 and nonfinite_outputs <= 0:
        return None
    return HealthFlag("nan", ERROR,
                      f"The model contains NaN or infinite values ({nonfinite_weights} weights, "
                      f"{nonfinite_outputs} output values): training diverged; lower the learning rate "
                      "or pick an earlier epoch.",
                      {"nonfinite_weights": float(nonfinite_weights), "nonfinite_outputs": float(nonfinite_outputs)},
                      LEARNED_METHODS)


def _collapse_kind(numbers: dict[str, float]) -> str:
    mean = numbers["output_mean"]
    if not _finite(numbers["pixel_spread_ratio"]) or numbers["pixel_spread_ratio"] >= UNIFORM_PIXEL_RATIO:
        return "the same mean-looking image"
    if mean < 0.1:
        return f"a uniform black image (mean intensity {mean:.2f})"
    if mean > 0.9:
        return f"a uniform white image (mean intensity {mean:.2f})"
    return f"a uniform grey image (mean intensity {mean:.2f})"


def _category_numbers(numbers: dict[str, float]) -> dict[str, tuple[float, float, float, float]]:
    """category -> (dependence, its interval high, between_share, unexplained share)."""
    prefix = "input_dependence_high:"
    return {k.removeprefix(prefix): (numbers.get(f"input_dependence:{k.removeprefix(prefix)}", float("nan")), v,
                                     numbers.get(f"between_share:{k.removeprefix(prefix)}", float("nan")),
                                     numbers.get(f"unexplained_share:{k.removeprefix(prefix)}", float("nan")))
            for k, v in numbers.items() if k.startswith(prefix)}


def _category_collapsed(dependence_high: float, between: float, missed: float) -> bool:
    """Output that does not follow its inputs, unless the inputs are all alike and the output
    resembles them (then one good image for all is right, not a collapse)."""
    if not (_finite(dependence_high) and dependence_high < COLLAPSE_DEPENDENCE):
        return False
    alike = _finite(between) and between < ALIKE_BETWEEN_SHARE
    return not alike or (_finite(missed) and missed > ALIKE_UNEXPLAINED)


def collapsed_categories(numbers: dict[str, float]) -> list[str]:
    """Categories whose reconstructions do not follow their inputs (input dependence, whole
    interval below COLLAPSE_DEPENDENCE), except alike inputs rebuilt as one image that resembles
    them."""
    return sorted(c for c, (_, high, between, missed) in _category_numbers(numbers).items()
                  if _category_collapsed(high, between, missed))


def _category_text(category: str, values: tuple[float, float, float, float]) -> str:
    dependence, high, between, missed = values
    name = category or "the images"
    if _finite(between) and between < ALIKE_BETWEEN_SHARE:
        return (f"{name}'s inputs are alike, and the output misses {100 * missed:.0f}% of their pixel variance "
                "(it does not look like them)")
    return f"{name} keeps {dependence:.2f} of the differences between its images (90% interval up to {high:.2f})"


def collapsed_flag(numbers: dict[str, float]) -> HealthFlag | None:
    """Error when the reconstructions do not follow their inputs (core.diagnostics.collapse):
    in every category ("every input is reconstructed as ...") or in some (one blob per category
    keeps the outputs varying overall while nothing of each image comes back). Falls back to the
    output spread when no category can be measured (under 3 probe images each)."""
    per_category = _category_numbers(numbers)
    categories = collapsed_categories(numbers)
    ratio = numbers.get("image_spread_ratio", float("nan"))
    out, inp = numbers.get("output_image_spread", float("nan")), numbers.get("input_image_spread", float("nan"))
    spread = f"spread across images {out:.3f} vs input {inp:.3f}"
    evidence = {"input_dependence": numbers.get("input_dependence", float("nan")),
                "input_dependence_high": numbers.get("input_dependence_high", float("nan")),
                "output_image_spread": out, "input_image_spread": inp, "image_spread_ratio": ratio,
                "output_pixel_spread": numbers.get("output_pixel_spread", float("nan")),
                "output_mean": numbers.get("output_mean", float("nan")),
                "output_saturated_share": numbers.get("output_saturated_share", float("nan"))}
    details = "; ".join(_category_text(c, per_category[c]) for c in categories)
    if categories and len(categories) == len(per_category):
        what = f"Every input is reconstructed as {_collapse_kind(numbers)} ({details}; {spread})"
    elif categories:
        what = "Within " + ", ".join(categories) + f", every image is reconstructed as nearly the same image ({details})"
    elif not per_category and _finite(ratio) and ratio < COLLAPSE_SPREAD_RATIO:
        what = f"Every input is reconstructed as {_collapse_kind(numbers)} ({spread})"
    else:
        return None
    for c in categories:
        evidence[f"input_dependence_high:{c}"] = per_category[c][1]
        evidence[f"unexplained_share:{c}"] = per_category[c][3]
    return HealthFlag("collapsed", ERROR,
                      what + ": the model has collapsed (or, early in training, has not learned to reconstruct "
                      "yet), so scores that compare an image with its reconstruction cannot find defects.",
                      evidence, RECONSTRUCTION_METHODS)


def blurry_flag(numbers: dict[str, float]) -> HealthFlag | None:
    ratio = numbers.get("hf_ratio", float("nan"))
    if not _finite(ratio) or ratio >= BLURRY_HF_RATIO:
        return None
    return HealthFlag("blurry", WARNING,
                      f"Reconstructions keep only {100 * ratio:.0f}% of the input's fine detail "
                      f"(high-frequency energy {numbers['output_hf_energy']:.4f} vs input "
                      f"{numbers['input_hf_energy']:.4f}): the output is blurry, so pixel errors "
                      "light up on every edge of normal images too.",
                      {"hf_ratio": ratio, "output_hf_energy": numbers["output_hf_energy"],
                       "input_hf_energy": numbers["input_hf_energy"]})


def identity_copy_flag(copy: CopyEvidence | None, skips: str = "") -> HealthFlag | None:
    """Error when the copy evidence says, with its whole interval, that defects come back in the
    reconstruction (CopyEvidence.copies); the sentence carries the measurements and intervals."""
    if copy is None or not copy.copies:
        return None
    via = f"through its skip connections (skips={skips})" if skips and skips != "none" else "through"
    evidence = {"real_localisation_auc": copy.real_localisation.estimate,
                "real_localisation_high": copy.real_localisation.high,
                "kept_share": copy.kept_share.estimate, "kept_share_low": copy.kept_share.low,
                "n_defect_images": float(copy.real_localisation.n), "n_pasted_images": float(copy.kept_share.n)}
    return HealthFlag("identity_copy", ERROR,
                      f"The model copies anomalies {via}, so they cannot be found by comparing an image with "
                      f"its reconstruction: {copy.reason()}. Unusable here: "
                      f"{', '.join(RECONSTRUCTION_METHODS)}; the knn feature bank does not read the "
                      "reconstruction and stays usable.", evidence, RECONSTRUCTION_METHODS)


def defects_missed_flag(copy: CopyEvidence | None) -> HealthFlag | None:
    """Warning when real defects are not localised by the reconstruction error (whole interval of
    the localisation AUC below the line) although the model does not copy: too blurry or too
    noisy an error map. The scores read from the reconstruction cannot find these defects."""
    if copy is None or copy.copies or not copy.misses_real_defects:
        return None
    evidence = {"real_localisation_auc": copy.real_localisation.estimate,
                "real_localisation_high": copy.real_localisation.high, "kept_share": copy.kept_share.estimate,
                "n_defect_images": float(copy.real_localisation.n)}
    return HealthFlag("defects_missed", WARNING,
                      f"The reconstruction error does not single out real defects: {copy.reason()}. Unusable "
                      f"here: {', '.join(RECONSTRUCTION_METHODS)}; the knn feature bank stays usable.",
                      evidence, RECONSTRUCTION_METHODS)


def dead_layer_table(stats: pd.DataFrame, reference_std: pd.Series, vanishing: pd.DataFrame) -> pd.DataFrame:
    """Layers that stopped learning, by weight or by gradient.

    stats: weight_stats of the epoch; reference_std: per-layer early std (index = layer);
    vanishing: vanishing_gradients of the epoch. Returns layer, part, level, evidence
    ("weight_std" | "gradient"), ratio (now / early), in layer order.
    """
    rows = []
    by_layer = stats.set_index("layer")
    for layer, row in by_layer.iterrows():
        early = reference_std.get(layer)
        if early is not None and early > 0 and _finite(row["std"]) and row["std"] < DEAD_STD_FRACTION * early:
            rows.append({"layer": layer, "part": row["part"], "level": int(row["level"]),
                         "evidence": "weight_std", "ratio": float(row["std"] / early)})
    for _, grad in vanishing.iterrows():
        part, level = (by_layer.loc[grad["layer"], ["part", "level"]] if grad["layer"] in by_layer.index
                       else ("other", -1))
        rows.append({"layer": grad["layer"], "part": part, "level": int(level), "evidence": "gradient",
                     "ratio": float(grad["ratio"])})
    return pd.DataFrame(rows, columns=["layer", "part", "level", "evidence", "ratio"])


def dead_layers_flag(dead: pd.DataFrame, n_layers: int) -> HealthFlag | None:
    """Error when a bottleneck layer or half of all layers died: the U-Net's only route through
    which it must understand the image is gone, and the output either ignores the input or
    copies it through the skips. Otherwise a warning: the rest of the network may compensate."""
    if dead.empty:
        return None
    layers = list(dict.fromkeys(dead["layer"]))
    severe = (dead["part"] == "bottleneck").any() or len(layers) * 2 >= max(1, n_layers)
    worst = dead.sort_values("ratio", kind="stable").drop_duplicates("layer").head(3)
    what = {"weight_std": "weight std", "gradient": "gradient norm"}
    details = "; ".join(f"{r.layer} {what[r.evidence]} at {100 * r.ratio:.2g}% of its early value"
                        for r in worst.itertuples())
    evidence = {"dead_layers": float(len(layers)), "layers": float(n_layers)}
    evidence.update({f"{r.evidence}_ratio:{r.layer}": float(r.ratio) for r in dead.itertuples()})
    return HealthFlag("dead_layers", ERROR if severe else WARNING,
                      f"{len(layers)} of {n_layers} layers stopped learning ({details}): they no longer "
                      "contribute to the reconstruction.", evidence, RECONSTRUCTION_METHODS if severe else ())


# --------------------------------------------------------------------------- per checkpoint


@functools.lru_cache(maxsize=16)
def _init_std(config_json: str) -> pd.Series:
    return init_weight_std(TrainConfig.from_dict(json.loads(config_json)))


def reference_weight_std(run: Run) -> pd.Series:
    """Per-layer early std: the larger of the initialisation's and the first readable checkpoint's."""
    reference = _init_std(json.dumps(run.config().to_dict(), sort_keys=True)).copy()
    for epoch in run.epochs():
        try:
            first = weight_stats(run, epoch).set_index("layer")["std"]
        except RunError:
            continue  # a damaged first checkpoint must not take every later epoch down with it
        return pd.concat([reference, first], axis=1).max(axis=1, skipna=True)
    return reference


def weight_flags(run: Run, epoch: int) -> tuple[list[HealthFlag], dict[str, float]]:
    """The flags readable without images: nan (weights) and dead_layers (weights, gradients)."""
    stats = weight_stats(run, epoch)
    vanishing = vanishing_gradients(gradient_table(run), epoch)
    dead = dead_layer_table(stats, reference_weight_std(run), vanishing)
    numbers = {"nonfinite_weights": float(stats["nonfinite"].sum()), "dead_layers": float(dead["layer"].nunique())}
    flags = [nan_flag(int(stats["nonfinite"].sum()), 0), dead_layers_flag(dead, len(stats))]
    return [f for f in flags if f is not None], numbers


def _reconstruction_result(run: Run, epoch: int, data_root, per_category: int, seed: int) -> dict:
    probe = probe_set(run, data_root, per_category, seed)
    outputs = reconstruct(open_checkpoint(run, epoch).model(), np.asarray(probe.images))
    inputs = to_tensor(np.asarray(probe.images)).numpy()
    masks = np.asarray(probe.masks) * np.asarray(probe.has_mask)[:, None, None]
    return reconstruction_numbers(inputs, outputs, masks, probe.labels, probe.categories)


def reconstruction_numbers_of(run: Run, epoch: int, data_root: str | Path | None = None,
                              per_category: int = PROBE_PER_CATEGORY, seed: int = 0) -> dict[str, float]:
    """reconstruction_numbers of the checkpoint on the run's probe set, cached per checkpoint."""
    params = {**probe_signature(run, data_root, per_category, seed), "numbers": NUMBERS_VERSION}
    result = cached(run, epoch, "reconstruction_numbers", params,
                    lambda: _reconstruction_result(run, epoch, data_root, per_category, seed))
    return {k: float(v) for k, v in result.items()}


def assess(epoch: int, numbers: dict[str, float], image_free_flags: list[HealthFlag], skips: str,
           copy: CopyEvidence | None = None) -> HealthReport:
    """Combines reconstruction numbers, copy evidence and the image-free flags (weight_flags).

    NaN outputs make every output-based rule meaningless, and a collapsed output has uniform
    error that would read as identity copying, so those rules are skipped in those cases.
    """
    flags = [f for f in image_free_flags if f.name != "nan"]  # re-made below with the outputs
    nonfinite_weights = int(numbers.get("nonfinite_weights", 0))
    broken = nan_flag(nonfinite_weights, int(numbers.get("nonfinite_outputs", 0)))
    if broken is not None:
        return HealthReport(epoch, [broken, *flags], numbers, copy=copy)
    collapsed = collapsed_flag(numbers)
    found = [collapsed, blurry_flag(numbers)]
    if collapsed is None:
        found += [identity_copy_flag(copy, skips), defects_missed_flag(copy)]
    return HealthReport(epoch, [f for f in found if f is not None] + flags, numbers, copy=copy)


def reconstruction_health(run: Run, epoch: int, data_root: str | Path | None = None) -> HealthReport:
    """Every health flag of one checkpoint: probe reconstructions, weights and gradients.

    Raises DataFolderMissing (core.scoring.data) (naming the folder) when the probe images are not there; use
    weight_health for the checks that need no images.
    """
    numbers = reconstruction_numbers_of(run, epoch, data_root)
    image_free_flags, weight_numbers = weight_flags(run, epoch)
    numbers.update(weight_numbers)
    copy = copy_evidence_of(run, epoch, data_root) if int(numbers.get("nonfinite_outputs", 0)) == 0 else None
    return assess(epoch, numbers, image_free_flags, run.config().model.skips, copy)


def weight_health(run: Run, epoch: int, note: str = "") -> HealthReport:
    """The image-free part of the health check (nan weights, dead layers)."""
    flags, numbers = weight_flags(run, epoch)
    return HealthReport(epoch, flags, numbers, [note] if note else [])
