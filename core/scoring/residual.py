"""ssimz: the reconstruction's 1 - SSIM map, z-scored per location against normal residuals.

Why: an autoencoder never rebuilds every normal part equally well. On ../shared/realdata at
64 px the plain `ssim` score's worst pixel is mostly where normals are hard to rebuild (a
bottle's rim, a tile's texture), not where a defect is, so magnetic_tile stays at chance
(.51 image AUROC). Scoring how unusual the residual is AT THAT LOCATION, against the residuals
the same model leaves on the category's normal training images, removes that: a place every
normal rebuilds badly stops counting, a defect the model cannot restore still stands out. This
is `patchz` (core.scoring.patchz) applied to the reconstruction error instead of the pixels;
per-pixel error statistics of normals are the usual normalisation of reconstruction residuals
(e.g. the "normalised" residuals of Bergmann et al.'s MVTec AD baselines, and the per-position
Gaussian of PaDiM, Defard et al. 2021, here on a one-channel residual).

Shapes: residual maps (N, S, S), smoothed like every map (ScoreOptions.sigma), averaged over
POOL x POOL cells to (N, S/POOL, S/POOL); per category and cell the mean and std over at most
MAX_NORMALS training normals (seeded sample); z = (e - mean) / (std + STD_FLOOR * mean std of
the category); the image score is the worst cell, the map the z grid repeated (nearest) to S x S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

POOL = 2  # cells of 2 x 2 px at 64 px: measured best of 1, 2, 4, 8 (docs/reconstruction.md)
STD_FLOOR = 0.1  # of the category's mean std: a cell every normal rebuilds alike stays finite
MAX_NORMALS = 300  # per category: 120 and all 856 magnetic_tile normals scored alike


def pooled(maps: np.ndarray | torch.Tensor, pool: int = POOL) -> torch.Tensor:
    """(N, S, S) -> (N, S // pool, S // pool) float32 cell means (identity for pool 1)."""
    x = torch.as_tensor(np.asarray(maps, np.float32))
    if pool <= 1 or len(x) == 0:
        return x
    return F.avg_pool2d(x.unsqueeze(1), pool).squeeze(1)


@dataclass
class ResidualStats:
    """Per category: mean and std of the normals' pooled residual maps, (C, G, G) float32 each,
    one row per entry of `categories`; `pooled_*` (G, G) over all categories (global scope)."""

    categories: list[str]
    mean: np.ndarray
    std: np.ndarray
    pooled_mean: np.ndarray
    pooled_std: np.ndarray
    pool: int = POOL

    @classmethod
    def build(cls, maps: np.ndarray, categories: Sequence[str], pool: int = POOL) -> ResidualStats:
        """maps: (N, S, S) residual maps of normal images; categories: (N,) their names."""
        if len(maps) == 0:
            raise ValueError("ssimz needs normal training images to learn normal residuals; none "
                             "were given")
        cells = pooled(maps, pool).numpy()
        cats = np.asarray(list(categories), dtype=object)
        names = sorted(set(cats.tolist()))
        mean = np.stack([cells[cats == n].mean(axis=0) for n in names])
        std = np.stack([cells[cats == n].std(axis=0) for n in names])
        return cls(names, mean, std, cells.mean(axis=0), cells.std(axis=0), pool)

    def zscores(self, maps: np.ndarray, category: str | None) -> np.ndarray:
        """(N, S, S) residual maps -> (N, G, G) z-scores against `category` (None = all)."""
        if category is None:
            mean, std = self.pooled_mean, self.pooled_std
        elif category in self.categories:
            index = self.categories.index(category)
            mean, std = self.mean[index], self.std[index]
        else:
            raise ValueError(f"residual statistics have no category '{category}'; they hold "
                             f"{', '.join(self.categories)}")
        floor = STD_FLOOR * float(std.mean()) + 1e-8
        return (pooled(maps, self.pool).numpy() - mean[None]) / (std[None] + floor)


def residual_z(
    maps: np.ndarray, groups: Sequence[str | None], stats: ResidualStats
) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,) float64 = worst cell's z, maps (N, S, S) float32 = z upsampled).

    maps: (N, S, S) test residual maps; groups: (N,) the category each is compared with.
    """
    size = maps.shape[-1]
    side = size // max(1, stats.pool)
    grids = np.zeros((len(maps), side, side), np.float32)
    keys = np.asarray(["\0global" if g is None else g for g in groups], dtype=object)
    for key in sorted(set(keys.tolist())):
        sel = np.flatnonzero(keys == key)
        grids[sel] = stats.zscores(maps[sel], None if key == "\0global" else key)
    scores = grids.reshape(len(maps), -1).max(axis=1).astype(np.float64) if len(maps) else \
        np.zeros(0)
    # nearest, not bilinear: every cell keeps its value, so the map's maximum IS the score
    zmaps = F.interpolate(torch.from_numpy(grids).unsqueeze(1), size=(size, size), mode="nearest")
    return scores, zmaps.squeeze(1).numpy().astype(np.float32)
