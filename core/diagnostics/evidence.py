"""Does the model copy defects into its reconstruction? Measured, with an interval.

Two measurements, both per image and summarised by a bootstrap interval over images (so a
verdict says how sure it is, and an epoch whose few probe images happen to sit near a line
does not flip the flag):

* defect localisation (needs masks): per image, the ROC AUC of the per-pixel reconstruction
  error inside the defect mask against outside it. A model that removes defects puts its error
  on them (AUC near 1); a model that copies them through reconstructs them as well as their
  surroundings (AUC near 0.5). Real masked test defects when the dataset has them.
* pasted defects come back (no labels needed): synthetic defects (core.data.synthetic:
  CutPaste, scar, texture damage, Perlin blends) are pasted into held-out normals, and both
  versions are reconstructed. The share of the pasted change that reappears in the
  reconstruction, sum|R(x') - R(x)| / sum|x' - x| inside the pasted mask, is ~1 for a model that
  copies and ~0 for one that restores the normal image. Its localisation AUC is measured too.

Copying ruins every score that compares an image with its own reconstruction (pixel, ssim,
feature); the knn score compares encoder features with a bank of normal features and never
looks at the reconstruction, so it stays usable (RECONSTRUCTION_METHODS).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.evaluation.metrics import _mann_whitney_auc
from core.runs.checkpoint import open_checkpoint

# Scores read from the reconstruction: useless when the reconstruction copies the input.
RECONSTRUCTION_METHODS = ("pixel", "ssim", "feature", "ssimz")
BOOTSTRAP_ROUNDS = 1000
INTERVAL_LEVEL = 0.9  # two-sided: 5% of resamples below the interval, 5% above
# identity_copy when at least half of the pasted change comes back in the reconstruction, with
# the whole 90% interval above 0.5. Measured on ../shared/realdata at 64 px (docs/diagnosis.md, "Diagnosis
# you can trust"): every skip + reconstruct training keeps 0.69-0.90 of it (interval lows
# 0.61-0.84) at every epoch; a denoise run without skips keeps 0.03-0.08 (highs <= 0.14).
COPY_KEPT_SHARE = 0.5
# defects_missed when the whole 90% interval of the mean localisation AUC of real defects lies
# below 0.6: the reconstruction error does not single out real defect pixels, copying or not
# (measured: 0.40-0.45 with every skip, 0.50-0.61 for a denoise run without skips at 64 px).
MISSED_LOCALISATION_AUC = 0.6
MIN_IMAGES = 3  # fewer masked images than this: no verdict, the interval would be meaningless


@dataclass(frozen=True)
class Interval:
    """A statistic over images with its bootstrap interval: estimate (mean over images), low and
    high (percentile interval at `level`), n images."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = INTERVAL_LEVEL

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{100 * self.level:.0f}% interval {self.low:.2f}-{self.high:.2f}, {self.n} images]"

    @property
    def defined(self) -> bool:
        return self.n > 0 and bool(np.isfinite(self.estimate))

    def to_dict(self) -> dict:
        return asdict(self)


NO_INTERVAL = Interval(float("nan"), float("nan"), float("nan"), 0)


def bootstrap_mean(values: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, level: float = INTERVAL_LEVEL,
                   seed: int = 0) -> Interval:
    """Mean of per-image values with a percentile bootstrap interval (resampling images).

    values (N,) float, NaN entries dropped. Deterministic for a seed. N = 0 -> NO_INTERVAL.
    """
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if not len(x):
        return NO_INTERVAL
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(len(x)), level)


def per_pixel_error(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float inputs and reconstructions -> (N, H, W) absolute error, mean over channels."""
    return np.abs(np.asarray(inputs, np.float64) - np.asarray(outputs, np.float64)).mean(axis=1)


def localisation_aucs(errors: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, ROC AUC of error inside the mask against outside it (ties count half).

    errors (N, H, W), masks (N, H, W) nonzero = defect. NaN for an image whose mask is empty or
    full, or whose errors are not finite.
    """
    out = np.full(len(errors), np.nan)
    for i, (error, mask) in enumerate(zip(errors, np.asarray(masks) > 0, strict=True)):
        if mask.any() and (~mask).any() and np.all(np.isfinite(error)):
            out[i] = _mann_whitney_auc(error[mask], error[~mask])
    return out


def kept_shares(clean: np.ndarray, pasted: np.ndarray, clean_out: np.ndarray, pasted_out: np.ndarray,
                masks: np.ndarray) -> np.ndarray:
    """Per image, the share of a pasted change that comes back in the reconstruction.

    clean, pasted: (N, 3, H, W) inputs without and with the pasted defect; clean_out,
    pasted_out: their reconstructions; masks (N, H, W) where the paste changed pixels.
    sum_mask |R(x') - R(x)| / sum_mask |x' - x|: 1 = copied, 0 = removed. NaN where nothing changed.
    """
    mask = (np.asarray(masks) > 0)[:, None]
    change = (np.abs(np.asarray(pasted, np.float64) - clean) * mask).sum(axis=(1, 2, 3))
    kept = (np.abs(np.asarray(pasted_out, np.float64) - clean_out) * mask).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(change > 1e-9, kept / change, np.nan)


@dataclass(frozen=True)
class CopyEvidence:
    """Everything the identity_copy verdict reads, for one checkpoint.

    real_localisation: localisation AUC on the dataset's masked defects (NO_INTERVAL without
    masks); synthetic_localisation and kept_share: on synthetic defects pasted into held-out
    normals. Verdicts: copies (identity_copy), misses_real_defects (defects_missed).
    """

    real_localisation: Interval
    synthetic_localisation: Interval
    kept_share: Interval

    @property
    def copies(self) -> bool:
        """Pasted defects come back: the kept share's whole interval lies above COPY_KEPT_SHARE."""
        return self.kept_share.n >= MIN_IMAGES and self.kept_share.low > COPY_KEPT_SHARE

    @property
    def misses_real_defects(self) -> bool:
        """Real defects are not localised by the error: the whole interval below MISSED_LOCALISATION_AUC."""
        return self.real_localisation.n >= MIN_IMAGES and self.real_localisation.high < MISSED_LOCALISATION_AUC

    def reason(self) -> str:
        """One sentence of evidence, with intervals, whatever the verdict."""
        parts = []
        if self.real_localisation.defined:
            parts.append(f"reconstruction error separates real defect pixels from their surroundings "
                         f"with AUC {self.real_localisation} (0.5 = not at all)")
        if self.kept_share.defined:
            parts.append(f"of synthetic defects pasted into held-out normals, a share of "
                         f"{self.kept_share} comes back in the reconstruction (1 = copied, 0 = removed; "
                         f"localisation AUC {self.synthetic_localisation.estimate:.2f})")
        return "; ".join(parts) or "no masked or synthetic defects to measure copying on"

    def to_dict(self) -> dict:
        return {"real_localisation": self.real_localisation.to_dict(),
                "synthetic_localisation": self.synthetic_localisation.to_dict(),
                "kept_share": self.kept_share.to_dict(), "copies": self.copies,
                "misses_real_defects": self.misses_real_defects}

    @classmethod
    def from_dict(cls, record: dict) -> CopyEvidence:
        def interval(d: dict) -> Interval:
            return Interval(float(d["estimate"]), float(d["low"]), float(d["high"]), int(d["n"]),
                            float(d.get("level", INTERVAL_LEVEL)))

        return cls(interval(record["real_localisation"]), interval(record["synthetic_localisation"]),
                   interval(record["kept_share"]))


def copy_evidence(real: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                  synthetic: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
                  seed: int = 0) -> CopyEvidence:
    """CopyEvidence from arrays (pure).

    real: (inputs, outputs, masks) of masked defect images, or None; synthetic: (clean, pasted,
    clean_out, pasted_out, masks), or None. Shapes as in per_pixel_error / kept_shares.
    """
    real_auc = NO_INTERVAL
    if real is not None and len(real[0]):
        inputs, outputs, masks = real
        real_auc = bootstrap_mean(localisation_aucs(per_pixel_error(inputs, outputs), masks), seed=seed)
    synth_auc = kept = NO_INTERVAL
    if synthetic is not None and len(synthetic[0]):
        clean, pasted, clean_out, pasted_out, masks = synthetic
        synth_auc = bootstrap_mean(localisation_aucs(per_pixel_error(pasted, pasted_out), masks), seed=seed)
        kept = bootstrap_mean(kept_shares(clean, pasted, clean_out, pasted_out, masks), seed=seed)
    return CopyEvidence(real_auc, synth_auc, kept)


# --------------------------------------------------------------------------- per checkpoint

EVIDENCE_PER_CATEGORY = 8  # masked defects and held-out normals per category; 16 tripled diagnose time (0.9 -> 3.0 s)
EVIDENCE_VERSION = 1  # part of the cache key: bump when the measurement changes


def _evidence_record(run, epoch: int, data_root, per_category: int, seed: int) -> dict:
    from core.data.samples import ANOMALOUS, NORMAL
    from core.data.synthetic import make_synthetic_set
    from core.diagnostics.probe import probe_set
    from core.model.tensors import reconstruct, to_tensor

    probe = probe_set(run, data_root, per_category, seed)
    model = open_checkpoint(run, epoch).model()
    real = [i for i, s in enumerate(probe.samples)
            if s.label == ANOMALOUS and s.split != "probe" and probe.has_mask[i]]
    normals = [i for i, s in enumerate(probe.samples) if s.label == NORMAL]
    real_arrays = None
    if real:
        images = probe.images[real]
        real_arrays = (to_tensor(images).numpy(), reconstruct(model, images), probe.masks[real])
    synthetic = None
    if normals:
        clean = probe.images[normals]
        pasted, masks, _ = make_synthetic_set(clean, seed=seed)
        synthetic = (to_tensor(clean).numpy(), to_tensor(pasted).numpy(), reconstruct(model, clean),
                     reconstruct(model, pasted), masks)
    return copy_evidence(real_arrays, synthetic, seed).to_dict()


def copy_evidence_of(run, epoch: int, data_root=None, per_category: int = EVIDENCE_PER_CATEGORY,
                     seed: int = 0) -> CopyEvidence:
    """CopyEvidence of one checkpoint, cached per checkpoint (core.runs.cache).

    Up to `per_category` masked test defects and held-out normals per category (the probe
    selection of core.diagnostics.probe, at the run's image size). Raises DataFolderMissing (core.scoring.data)
    (naming the folder) when the dataset is not there.
    """
    from core.diagnostics.probe import probe_signature
    from core.runs.cache import cached

    params = {**probe_signature(run, data_root, per_category, seed), "evidence": EVIDENCE_VERSION}
    record = cached(run, epoch, "copy_evidence", params,
                    lambda: _evidence_record(run, epoch, data_root, per_category, seed))
    return CopyEvidence.from_dict(record)
