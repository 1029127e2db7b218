"""Encoder features as vectors: one per image (pooled) or one per location (patches).

Why normalise: encoder levels differ in width and activation scale, so a raw concatenation
lets the widest level dominate every distance. Each level is L2-normalised over its channels
at every location, then the levels are concatenated and divided by sqrt(number of levels),
so every vector has unit norm and each chosen level weighs the same. Euclidean distance
between such vectors is a monotone function of their mean cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.model.tensors import to_tensor
from core.model.unet import parse_levels as model_levels


def parse_levels(
    levels: str | Sequence[int], depth: int, default: Sequence[int]
) -> tuple[int, ...]:
    """ "auto" -> default, "all" -> 0..depth, "bottleneck" -> (depth,), "1,2" -> (1, 2)
    (core.model.unet.parse_levels with the words scoring accepts)."""
    return model_levels(levels, depth, words=("auto", "all", "bottleneck"), default=default)


def normalise_levels(features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Each (B, C, h, w) L2-normalised over C and scaled by 1/sqrt(len(features))."""
    scale = 1.0 / float(np.sqrt(len(features)))
    return [F.normalize(f, dim=1, eps=1e-6) * scale for f in features]


def patch_grid(image_size: int, levels: Sequence[int]) -> int:
    """Side of the patch grid: the resolution of the coarsest chosen level."""
    return max(1, image_size // 2 ** max(levels))


def pooled_vectors(features: Sequence[torch.Tensor], normalise: bool = True) -> torch.Tensor:
    """[(B, C_l, h_l, w_l)] -> (B, sum C_l): global average of each level, then normalised
    (normalise=False: the plain channel means, levels in order).

    Averaging first and normalising after keeps the vector of a uniform image equal to its
    per-location feature, whatever the level's resolution.
    """
    pooled = [f.mean(dim=(2, 3), keepdim=True) for f in features]
    return torch.cat(normalise_levels(pooled) if normalise else pooled, dim=1).flatten(1)


def patch_vectors(features: Sequence[torch.Tensor], grid: int) -> torch.Tensor:
    """[(B, C_l, h_l, w_l)] -> (B, grid*grid, sum C_l): each level resampled to grid x grid.

    Finer levels are average-pooled down (a local neighbourhood, as in PatchCore), coarser
    ones bilinearly upsampled, so every grid cell sees every chosen level.
    """
    resized = []
    for f in features:
        if f.shape[-1] >= grid:
            resized.append(F.adaptive_avg_pool2d(f, grid))
        else:
            resized.append(
                F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
            )
    stacked = torch.cat(normalise_levels(resized), dim=1)  # (B, D, g, g)
    return stacked.flatten(2).transpose(1, 2).contiguous()


def level_vectors(
    encoded: Sequence[torch.Tensor],
    levels: Sequence[int],
    patch: bool,
    size: int,
    normalise: bool = True,
) -> torch.Tensor:
    """model.encode's output -> (B, g*g, D) patch vectors or (B, D) pooled ones of `levels`
    (normalise: see pooled_vectors)."""
    chosen = [encoded[level].float() for level in levels]
    if patch:
        return patch_vectors(chosen, patch_grid(size, levels))
    return pooled_vectors(chosen, normalise)


@torch.no_grad()
def encoder_vectors(
    model: torch.nn.Module,
    images: np.ndarray,
    levels: Sequence[int],
    patch: bool,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    normalise: bool = True,
) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 (N, D) pooled or (N, g*g, D) patch vectors on the CPU.

    normalise=False (pooled only): each level's plain channel means, what diagnostics
    cluster. Each batch is reduced right after encoding, so peak memory is one batch of
    feature maps, not the whole set's.
    """
    model.eval()
    size = images.shape[1]
    grid = patch_grid(size, levels)
    chunks = []
    for start in range(0, len(images), batch_size):
        encoded = model.encode(to_tensor(images[start : start + batch_size], device),
                               upto=max(levels))  # deeper levels are never read
        chunks.append(level_vectors(encoded, levels, patch, size, normalise).cpu())
    if not chunks:
        dim = sum(_level_width(model, level) for level in levels)
        shape = (0, grid * grid, dim) if patch else (0, dim)
        return np.zeros(shape, np.float32)
    return torch.cat(chunks).numpy()


def _level_width(model: torch.nn.Module, level: int) -> int:
    widths = list(getattr(model, "widths", []))
    config = getattr(model, "config", None)
    if level == len(widths) - 1 and config is not None and config.bottleneck_channels:
        return int(config.bottleneck_channels)
    return int(widths[level])
