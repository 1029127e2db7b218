"""patchz: the second no-learning floor -- per-location patch statistics of the normals.

Why: objects photographed in a fixed pose (a bottle seen from above, a tile on a conveyor)
look the same at the same place in every normal image, so a defect is a patch whose pixels
are far from what the normals show AT THAT LOCATION. No learning is involved: each category
keeps, for every patch position, the per-value mean and standard deviation over its training
normals; a test patch's score is the root-mean-square of its z-scores, and the image score is
its worst patch. Each image is first standardised by its own mean and std, so a brighter or
lower-contrast exposure of a normal part is not a defect (on ../shared/realdata at 64 px this
raised the mean image AUROC from 0.83 to 0.87, mostly on magnetic_tile).

Scale: the images are read at SIDE = 128 px (decoded again from their files, like finepatch;
core.scoring.data.decoded_at), whatever size the model was trained at, with 8-px patches every
4 px. Measured on the six real categories of ../shared (benchmarks/bench_patchz_scale.py, every
test image): mean image AUROC .789 at the former 32-px thumbnails (8-px patches) against .817
at 128 px with all training normals, .784 against .812 with 60 per category; higher on every
category at both sizes (ball_screw .81 -> .87, mono .87 -> .91): small defects (a blowhole,
a scratch) cover a whole patch instead of a quarter of one.

Shapes: images uint8 (N, S, S, 3), resized to SIDE when S differs; patches (N, L, D) with
L = G * G positions, G = (SIDE - PATCH) // STRIDE + 1 (31), D = 3 * PATCH * PATCH (192).
The map is the (G, G) grid of patch scores upsampled to the image size. Every step runs in
blocks of BLOCK images, so memory does not grow with the number of images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SIDE = 128  # px the images are read at
PATCH, STRIDE = 8, 4  # px: patch side and step
# Floor added to every standard deviation, in units of an image's own std: a region that
# is constant in every normal (a black background) must not turn noise into a huge z-score.
STD_FLOOR = 0.2
EPS = 1e-3
BLOCK = 128  # images turned into patches at once (128 x 961 x 192 float32: 94 MB)
DOUBLE_BLOCK = BLOCK // 4  # sums and leave-one-out work in float64, several such arrays: ~50 MB each


def grid_side(side: int = SIDE) -> int:
    """Patch positions per axis at `side` px."""
    return (side - PATCH) // STRIDE + 1


def image_patches(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> float32 (N, L, D): the patches of each image standardised by its
    own mean and std, at SIDE px."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != SIDE:
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False,
                          antialias=True)
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + EPS)
    return F.unfold(x, kernel_size=PATCH, stride=STRIDE).transpose(1, 2).contiguous()


def _blocks(n: int, size: int | None = None):
    size = size or BLOCK
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _sums(images: np.ndarray, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, sum, sum of squares) over the patches of images[rows], float64 (L, D)."""
    total = square = None
    for part in _blocks(len(rows), DOUBLE_BLOCK):
        x = image_patches(images[rows[part]]).double()
        block_sum, block_sq = x.sum(dim=0), (x * x).sum(dim=0)
        total = block_sum if total is None else total + block_sum
        square = block_sq if square is None else square + block_sq
    return len(rows), total.numpy(), square.numpy()


def _moments(count: int, total: np.ndarray, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = total / count
    return mean.astype(np.float32), np.sqrt(np.clip(square / count - mean * mean, 0.0, None)).astype(np.float32)


def _rms_z(patches: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(N, L, D) patches -> (N, L) root-mean-square z-score of each patch."""
    z = (patches - torch.from_numpy(mean)) / (torch.from_numpy(std) + STD_FLOOR)
    return z.pow(2).mean(dim=-1).sqrt()


@dataclass
class PatchStats:
    """Per category: mean and std of every patch position over its training normals.

    mean, std: (C, L, D) float32, one row per entry of `categories`; `pooled_*` (L, D) over
    all categories (the global bank scope), at SIDE px.
    """

    categories: list[str]
    mean: np.ndarray
    std: np.ndarray
    pooled_mean: np.ndarray
    pooled_std: np.ndarray

    @classmethod
    def build(cls, images: np.ndarray, categories: Sequence[str]) -> PatchStats:
        """images: uint8 (N, S, S, 3) normals (at SIDE px: core.scoring.data.decoded_at);
        categories: (N,) their category names."""
        if len(images) == 0:
            raise ValueError("patchz needs normal training images; none were given")
        cats = np.asarray(list(categories), dtype=object)
        names = sorted(set(cats.tolist()))
        sums = {n: _sums(images, np.flatnonzero(cats == n)) for n in names}
        moments = [_moments(*sums[n]) for n in names]
        pooled = _moments(len(cats), sum(sums[n][1] for n in names), sum(sums[n][2] for n in names))
        return cls(names, np.stack([m for m, _ in moments]), np.stack([s for _, s in moments]),
                   pooled[0], pooled[1])

    def zscores(self, patches: torch.Tensor, category: str | None) -> torch.Tensor:
        """(N, L, D) patches -> (N, L) RMS z-score of each patch against `category` (None = all)."""
        if category is None:
            return _rms_z(patches, self.pooled_mean, self.pooled_std)
        if category not in self.categories:
            raise ValueError(
                f"patch statistics have no category '{category}'; "
                f"they hold {', '.join(self.categories)}"
            )
        index = self.categories.index(category)
        return _rms_z(patches, self.mean[index], self.std[index])


def patchz_scores(
    images: np.ndarray, groups: Sequence[str | None], stats: PatchStats
) -> tuple[np.ndarray, np.ndarray]:
    """Worst-patch z-score per image and the (N, G, G) float32 grid of patch scores.

    images: uint8 (N, S, S, 3) (at SIDE px: core.scoring.data.decoded_at); groups: (N,) the
    category each image is compared with (None: all categories' statistics).
    """
    side = grid_side()
    keys = np.asarray(["\0global" if g is None else g for g in groups], dtype=object)
    grids = np.zeros((len(images), side * side), np.float32)
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        for part in _blocks(len(rows)):
            grids[rows[part]] = stats.zscores(image_patches(images[rows[part]]),
                                              None if key == "\0global" else key).numpy()
    return grids.max(axis=1, initial=0.0).astype(np.float64), grids.reshape(len(images), side, side)


def leave_one_out_patchz(images: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Each normal image's patchz score against the statistics of the OTHER normals of its
    category (exactly, from running sums: no image is compared with itself).

    images: uint8 (N, S, S, 3) training normals (at SIDE px); categories: (N,). Returns (N,)
    float64, NaN for an image alone in its category (calibration's reference,
    core.scoring.reference).
    """
    cats = np.asarray(list(categories), dtype=object)
    out = np.full(len(images), np.nan)
    for name in sorted(set(cats.tolist())):
        rows = np.flatnonzero(cats == name)
        n = len(rows)
        if n < 2:
            continue
        _, total, square = _sums(images, rows)
        total, square = torch.from_numpy(total), torch.from_numpy(square)
        for part in _blocks(n, DOUBLE_BLOCK):
            x = image_patches(images[rows[part]]).double()
            mean = (total - x) / (n - 1)
            var = (square - x * x) / (n - 1) - mean * mean
            z = (x - mean) / (var.clamp(min=0.0).sqrt() + STD_FLOOR)
            out[rows[part]] = z.pow(2).mean(dim=-1).sqrt().amax(dim=1).numpy()
    return out
