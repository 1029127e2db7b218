"""Training objectives: what the network is asked to do with each batch of normal images.

    reconstruct     input = target = the (augmented) normal image: a plain autoencoder.
    denoise         input = the normal image with synthetic anomalies pasted in, target = the
                    clean image. Skip connections can no longer win by copying the input,
                    because copying a defect is now penalised.
    discriminative  denoise plus a segmentation network on (input, reconstruction) trained with
                    a focal loss to predict the synthetic mask (DRAEM, Zavrtanik et al. 2021;
                    OmniAL, Zhao 2023); its output is the `seg` scoring method's map.

Synthetic anomalies are made ONLY from the training images and procedural noise (no external
image set): CutPaste and scar, texture damage (re-tiling, blur, noise), Perlin-shaped blends
of another normal image of the same category, and large panels (core.data.synthetic). Half the
images of a batch stay clean, so the network also learns to leave normal images alone.

An Objective is used by core.training.loop in three places: `make_batch` (in the prefetch thread),
`loss` (per step), and `state` / `load_state` (checkpoint). Every batch is seeded from
(seed, epoch, step), so a resumed run corrupts exactly the images an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.config import OBJECTIVES
from core.data.augment import augment_batch
from core.data.synthetic import BLENDING_KINDS, SYNTHETIC_KINDS
from core.model.losses import ReconstructionLoss, focal_loss
from core.model.segmentation import SEG_KEY, SegmentationNet, attach_segmenter
from core.model.tensors import to_tensor

CLEAN_FRACTION = 0.5  # DRAEM's share of unaltered images per batch
# Kinds of corruption and their weights: panels and Perlin blends of another normal image are
# the large, in-distribution anomalies that OmniAL and DRAEM found to matter most.
CORRUPTIONS: dict[str, float] = {
    "perlin": 0.3, "panel": 0.25, "cutpaste": 0.15, "scar": 0.1, "texture": 0.2,
}


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise ValueError(f"objective '{name}': use one of {', '.join(OBJECTIVES)}")
    return name


def corrupt_image(image: np.ndarray, kind: str, rng: np.random.Generator,
                  source: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic anomaly of `kind` on a uint8 (H, W, 3) image -> (image, (H, W) mask)."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption '{kind}'; known: {', '.join(CORRUPTIONS)}")
    make = SYNTHETIC_KINDS[kind]
    return make(image, rng, source=source) if kind in BLENDING_KINDS else make(image, rng)


def corrupt_batch(images: np.ndarray, sources: Sequence[np.ndarray], rng: np.random.Generator,
                  clean_fraction: float = CLEAN_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic anomalies on about (1 - clean_fraction) of a batch.

    images: uint8 (B, H, W, 3), never modified. sources: B images of the same shape, each
    another normal image of that image's category (blended in by the perlin and panel kinds).
    Returns (corrupted uint8 (B, H, W, 3), masks uint8 (B, H, W) in {0, 1}); a clean image
    has an all-zero mask, a corrupted one a non-empty mask exactly where pixels changed.
    """
    kinds, weights = list(CORRUPTIONS), np.array(list(CORRUPTIONS.values()))
    out = images.copy()
    masks = np.zeros(images.shape[:3], np.uint8)
    for i in range(len(images)):
        if rng.random() < clean_fraction:
            continue
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        out[i], masks[i] = corrupt_image(images[i], kind, rng, sources[i])
    return out, masks


@dataclass
class Batch:
    """What one training step sees: inputs and targets uint8 (B, H, W, 3), masks (B, H, W)."""

    inputs: np.ndarray
    targets: np.ndarray
    masks: np.ndarray


class Objective:
    """The objective of a run (config.objective), with its extra network when it has one.

    images, categories: the training set, where corruptions draw their other normal image.
    """

    def __init__(self, name: str, recon_loss: ReconstructionLoss, model_config, images: np.ndarray,
                 categories: Sequence[str], seed: int, device: torch.device | str = "cpu"):
        self.name = check_objective(name)
        self.recon_loss = recon_loss
        self.seed = int(seed)
        self.images = images
        cats = np.asarray(list(categories), dtype=object)
        self.same_category = {c: np.flatnonzero(cats == c) for c in set(cats.tolist())}
        self.categories = cats
        self.segmenter = (SegmentationNet(model_config).to(device)
                          if name == "discriminative" else None)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters to optimise besides the autoencoder's."""
        return [] if self.segmenter is None else list(self.segmenter.parameters())

    def attach(self, model: torch.nn.Module) -> None:
        """Lets scoring (the per-epoch synthetic AUROC of `seg`) find the segmenter."""
        attach_segmenter(model, self.segmenter)

    def make_batch(self, pipeline, indices: np.ndarray, epoch: int, step: int) -> Batch:
        """Augments the training images `indices`, then corrupts them (denoise, discriminative)."""
        return self.batch_from(augment_batch(pipeline, self.images[indices]), indices, epoch, step)

    def batch_from(self, clean: np.ndarray, indices: np.ndarray, epoch: int, step: int) -> Batch:
        """The batch for already augmented images `clean` (B, H, W, 3) uint8 of training
        images `indices`: corrupted inputs and their masks for denoise and discriminative,
        seeded from (seed, epoch, step) so a resumed run sees the same corruptions."""
        if self.name == "reconstruct":
            return Batch(clean, clean, np.zeros(clean.shape[:3], np.uint8))
        rng = np.random.default_rng([self.seed, epoch, step])
        others = [self.images[rng.choice(self.same_category[self.categories[i]])] for i in indices]
        corrupted, masks = corrupt_batch(clean, others, rng)
        return Batch(corrupted, clean, masks)

    def loss(self, model, batch: Batch, device) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss to minimise and its named terms (batch means, for metrics.jsonl).
        model: the autoencoder, or any callable x -> reconstruction (a DDP or autocast wrapper)."""
        per_image, terms = self.per_image_loss(model, batch, device)
        return per_image.mean(), terms

    def per_image_loss(self, model, batch: Batch, device) -> tuple[torch.Tensor, dict[str, float]]:
        """(B,) loss per image (reconstruction, plus focal for discriminative) and the named
        terms as batch means."""
        x = to_tensor(batch.inputs, device)
        target = x if self.name == "reconstruct" else to_tensor(batch.targets, device)
        y = model(x)
        per_image = self.recon_loss(target, y)
        with torch.no_grad():
            terms = {name: float(v.mean()) for name, v in self.recon_loss.components(target, y).items()}
        if self.segmenter is not None:
            self.segmenter.train(torch.is_grad_enabled())
            mask = torch.from_numpy(batch.masks).to(device).unsqueeze(1)
            focal = focal_loss(self.segmenter(x, y), mask)
            per_image = per_image + focal
            terms["focal"] = float(focal.detach().mean())
        return per_image, terms

    def state(self) -> dict[str, Any]:
        """Extra entries of a checkpoint payload."""
        return {} if self.segmenter is None else {SEG_KEY: self.segmenter.state_dict()}

    def load_state(self, payload: dict[str, Any]) -> None:
        if self.segmenter is not None:
            if SEG_KEY not in payload:
                raise ValueError(f"the checkpoint has no '{SEG_KEY}' to resume the discriminative "
                                 "objective from; resume with the objective it was trained with")
            self.segmenter.load_state_dict(payload[SEG_KEY])


def build_objective(config, recon_loss: ReconstructionLoss, train_images: np.ndarray,
                    train_categories: Sequence[str], device: torch.device | str = "cpu") -> Objective:
    """The Objective named by config.objective for a TrainConfig; recon_loss is the run's
    reconstruction loss (config.loss)."""
    return Objective(config.objective, recon_loss, config.model, train_images, train_categories,
                     config.seed, device)
