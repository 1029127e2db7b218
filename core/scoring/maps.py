"""Anomaly maps from a reconstruction: pixel error, 1 - SSIM, encoder-feature distance.

Each is a (B, S, S) map at input resolution (computed in one model pass per batch by
core.scoring.model_pass), smoothed with a Gaussian (a defect is a region, single noisy pixels
are not), and reduced to one score per image. Reduction "max" is the default: on the demo data the mean of the map lets a
small defect drown in the error of everything the autoencoder reproduces imperfectly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, H, W) -> (B, H, W), separable Gaussian with reflected borders; sigma <= 0 = identity.

    The kernel radius is 3 sigma, clipped to the image so reflection stays defined.
    """
    if sigma <= 0:
        return maps
    height, width = maps.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = maps.unsqueeze(1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def reduce_maps(maps: np.ndarray, how: str) -> np.ndarray:
    """(N, H, W) -> (N,) float64: the mean or the max of each map."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    if flat.shape[1] == 0:
        return np.zeros(len(maps))
    return flat.max(axis=1) if how == "max" else flat.mean(axis=1)


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) -> (B, size, size), bilinear; identity when already at size."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(
        maps.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False
    ).squeeze(1)


def pixel_error(x: torch.Tensor, y: torch.Tensor, error: str = "l2") -> torch.Tensor:
    """(B, C, H, W) input and reconstruction -> (B, H, W) error averaged over channels."""
    diff = x - y
    return (diff.pow(2) if error == "l2" else diff.abs()).mean(dim=1)


def feature_distance(
    fx: list[torch.Tensor],
    fy: list[torch.Tensor],
    levels: tuple[int, ...],
    size: int,
    distance: str = "cosine",
) -> torch.Tensor:
    """(B, size, size): distance between encoder features of an input (fx) and of its
    reconstruction (fy), both lists of (B, C_l, h_l, w_l) as `model.encode` returns them.

    Per chosen level: cosine distance (1 - cos) over channels, which ignores each level's
    activation scale, or the raw mean squared difference over channels ("l2", in which the
    level with the largest activations dominates); each upsampled to size x size, then
    averaged over levels.
    """
    maps = []
    for level in levels:
        a, b = fx[level].float(), fy[level].float()
        if distance == "cosine":
            d = 1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-6)
        else:
            d = (a - b).pow(2).mean(dim=1)
        maps.append(upsample(d, size))
    return torch.stack(maps).mean(dim=0)
