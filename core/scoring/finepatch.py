"""finepatch: every 3 x 3 px grey-level patch at 128 px against a memory bank of normal patches.

Why: the U-Net is trained and scored at 64 px, where a defect of 1-3 px at 256 px (a pin-hole,
a speck of copper, a mouse-bite on a PCB track) is gone before any score sees it: on DeepPCB
every learned and no-learning score sat at chance (.46-.56 image AUROC). Those defects are
still there at 128 px, as a few pixels no normal neighbourhood looks like. finepatch keeps, per
category, the distinct 3 x 3 patches of the normal training images at 128 px (the memory bank)
and scores each test patch by its distance to the nearest one; the image score is the worst
patch. This is the patch memory bank of PatchCore (Roth et al., CVPR 2022) on raw pixels at a
fine scale instead of pretrained features, in the spirit of the local-neighbourhood statistics
of classic texture-defect inspection. It learns nothing: it sees only what no normal patch
looks like, so it fails where defects are made of locally normal-looking patches (an inactive
solar-cell area is smooth, like plenty of normal areas). The default score uses it only where
the test images themselves say it separates them better (core.scoring.select).

Shapes: images (N, S, S, 3) uint8 are re-decoded at FINE_SIDE from their files (resized when
they have none), turned to grey (channel mean, 0..1); patches (N, L, 9) float32 with L =
(FINE_SIDE - 2)^2 (stride 1) for scored images and ((FINE_SIDE - 3) // 2 + 1)^2 (stride 2) for
the bank; maps (N, FINE_SIDE - 2, FINE_SIDE - 2) float32 L2 distances in grey levels 0..1.

Bank: the training patches quantised to QUANT levels per pixel, one representative per
distinct quantised patch (a lossless-in-practice coreset: DeepPCB's 700,000 training patches
hold 27,000 distinct ones), from at most BANK_IMAGES images and at most MAX_PATCHES entries per
category (seeded samples). Each entry
remembers how many training images hold it and one of them, so a training image can be scored
against the bank without its own patches (leave-one-out: an entry only that image holds is
skipped; searched among its LOO_CANDIDATES nearest entries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.data.samples import ImageSet
from core.scoring.data import decoded_at
from core.scoring.knn import bank_rows

FINE_SIDE = 128  # px: DeepPCB's 1-3 px defects (at 256 px) survive, 64 px loses them
PATCH = 3  # px: 3 x 3 grey patches, measured on DeepPCB (.96); larger ones were not measured
QUANT = 8  # grey levels per pixel for "distinct" patches of the bank
MAX_PATCHES = 32768  # per category; DeepPCB holds 27,000 distinct, textures up to ~17,000
LOO_CANDIDATES = 16  # nearest bank entries a leave-one-out search looks through
QUERY_BLOCK = 4096  # patches per distance block (memory: block x bank x 4 bytes, <= 512 MiB)
BANK_IMAGES = 1000  # per category, a seeded sample: memory (1000 x 3969 patches x 9 floats = 143 MB)
LOO_MAX = 200  # training normals per category scored leave-one-out (a seeded sample)


def fine_grey(images: ImageSet) -> torch.Tensor:
    """(N, FINE_SIDE, FINE_SIDE) float32 grey in 0..1: the images decoded again at FINE_SIDE from
    their files when they came at another size, else resized (images with no file)."""
    pixels = decoded_at(images, FINE_SIDE)
    grey = torch.from_numpy(np.asarray(pixels, np.float32)).mean(dim=-1) / 255.0
    if grey.shape[-1] != FINE_SIDE:
        grey = F.interpolate(grey.unsqueeze(1), size=(FINE_SIDE, FINE_SIDE), mode="bilinear",
                             align_corners=False, antialias=True).squeeze(1)
    return grey


def patches(grey: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """(N, S, S) -> (N, L, PATCH * PATCH) float32 patches at `stride`."""
    cols = F.unfold(grey.unsqueeze(1), PATCH, stride=stride)
    return cols.transpose(1, 2).contiguous()


@dataclass
class FinePatchBank:
    """Per category the distinct normal patches: vectors[c] (M, 9) float32, holders[c] (M,)
    how many training images hold each, owner[c] (M,) one of them (an index into the images
    the bank was built from)."""

    categories: list[str]
    vectors: dict[str, torch.Tensor]
    holders: dict[str, np.ndarray]
    owner: dict[str, np.ndarray]
    keys: dict[str, np.ndarray]  # (M,) ascending quantised key of each entry (_keys)

    @classmethod
    def build(cls, grey: torch.Tensor, categories: Sequence[str], seed: int = 0) -> FinePatchBank:
        """grey: (N, S, S) training normals (fine_grey); categories: (N,). Raises ValueError
        when there are none."""
        if len(grey) == 0:
            raise ValueError("finepatch needs normal training images for its patch bank; none "
                             "were given")
        cats = np.asarray(list(categories), dtype=object)
        names = sorted(set(cats.tolist()))
        vectors, holders, owner, bank_keys = {}, {}, {}, {}
        kept = bank_rows(cats, BANK_IMAGES, seed)  # the images each category's bank is built from
        rng = np.random.default_rng(seed)
        for name in names:
            rows = kept[cats[kept] == name]
            found = patches(grey[rows], stride=2)  # (n, L, 9)
            per_image = found.shape[1]
            flat = found.reshape(-1, found.shape[-1])
            keys = _keys(flat)
            unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            image = np.repeat(rows, per_image)
            span = int(image.max()) + 1  # (entry, image) pairs as one int64: a 1-D unique
            pairs = np.unique(inverse.astype(np.int64).ravel() * span + image)
            count = np.bincount(pairs // span, minlength=len(unique))
            keep = np.arange(len(unique))
            if len(keep) > MAX_PATCHES:
                keep = np.sort(rng.choice(len(keep), MAX_PATCHES, replace=False))
            vectors[name] = flat[torch.from_numpy(first[keep])]
            holders[name] = count[keep]
            owner[name] = image[first[keep]]
            bank_keys[name] = unique[keep]
        return cls(names, vectors, holders, owner, bank_keys)

    def sizes(self) -> dict[str, int]:
        return {c: int(len(v)) for c, v in self.vectors.items()}


def _keys(flat: torch.Tensor) -> np.ndarray:
    """(P, 9) patches in 0..1 -> (P,) int64, one per quantised patch."""
    levels = torch.round(flat.clamp(0, 1) * QUANT).to(torch.int64).numpy()
    weights = (QUANT + 1) ** np.arange(levels.shape[1], dtype=np.int64)
    return levels @ weights


def _nearest(queries: torch.Tensor, bank: torch.Tensor, k: int = 1
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 9) against (M, 9): (P, k) squared distances and indices of the k nearest, ascending."""
    k = min(k, len(bank))
    norms = (bank * bank).sum(1)
    dists, index = [], []
    for start in range(0, len(queries), QUERY_BLOCK):
        q = queries[start:start + QUERY_BLOCK]
        d = torch.addmm(norms[None], q, bank.T, alpha=-2.0).add_((q * q).sum(1, keepdim=True))
        if k == 1:
            value, where = d.min(dim=1, keepdim=True)
        else:
            value, where = torch.topk(d, k, dim=1, largest=False)
        dists.append(value.clamp_min(0))
        index.append(where)
    return torch.cat(dists), torch.cat(index)


def finepatch_maps(grey: torch.Tensor, groups: Sequence[str | None], bank: FinePatchBank,
                   exclude: Sequence[int] | None = None) -> np.ndarray:
    """(N, S, S) grey images -> (N, S - 2, S - 2) float32 distance of each patch to its nearest
    bank patch of the image's group (None: every category's bank at once).

    A patch whose quantised key the bank holds is given its distance to that entry (an upper
    bound within the quantisation step, 1 / QUANT per pixel) without a search: most normal
    patches are, and only the rest are searched. exclude: (N,) the index each image had when
    the bank was built (leave-one-out: entries only that image holds are skipped), or None.
    """
    side = grey.shape[-1] - PATCH + 1
    out = np.zeros((len(grey), side, side), np.float32)
    for i in range(len(grey)):
        names = bank.categories if groups[i] is None else [groups[i]]
        queries = patches(grey[i:i + 1])[0]
        keys = _keys(queries)
        best = torch.full((len(queries),), float("inf"))
        for name in names:
            best = torch.minimum(best, _distances(queries, keys, bank, name,
                                                  None if exclude is None else int(exclude[i])))
        out[i] = best.sqrt().reshape(side, side).numpy()
    return out


def _distances(queries: torch.Tensor, keys: np.ndarray, bank: FinePatchBank, name: str,
               exclude: int | None) -> torch.Tensor:
    """(P,) squared distance of each query to its nearest usable entry of one category."""
    vectors, bank_keys = bank.vectors[name], bank.keys[name]
    usable = np.ones(len(bank_keys), bool)
    if exclude is not None:
        usable = ~((bank.holders[name] == 1) & (bank.owner[name] == exclude))
    slot = np.clip(np.searchsorted(bank_keys, keys), 0, len(bank_keys) - 1)
    hit = (bank_keys[slot] == keys) & usable[slot]
    out = torch.empty(len(queries))
    if hit.any():
        h = torch.from_numpy(np.flatnonzero(hit))
        out[h] = ((queries[h] - vectors[torch.from_numpy(slot[hit])]) ** 2).sum(1)
    miss = torch.from_numpy(np.flatnonzero(~hit))
    if len(miss):
        if exclude is None:
            d, _ = _nearest(queries[miss], vectors)
            out[miss] = d[:, 0]
        else:
            d, index = _nearest(queries[miss], vectors, LOO_CANDIDATES)
            own = torch.from_numpy(~usable)[index]
            d = torch.where(own, d[:, -1:].expand_as(d), d)  # its own patches count as the farthest
            out[miss] = d.min(dim=1).values
    return out


def leave_one_out_finepatch(images: ImageSet, categories: Sequence[str], seed: int = 0
                            ) -> np.ndarray:
    """(N,) float64 each training normal's worst-patch distance to the bank of its category
    built from all of them, without the patches only it holds; NaN alone in its category and
    beyond LOO_MAX per category (a seeded sample is scored: enough to calibrate on)."""
    grey = fine_grey(images)
    bank = FinePatchBank.build(grey, categories, seed)
    cats = list(categories)
    counts = {c: cats.count(c) for c in set(cats)}
    out = np.full(len(cats), np.nan)
    rows = [int(i) for i in bank_rows(cats, LOO_MAX, seed) if counts[cats[i]] > 1]
    if rows:
        maps = finepatch_maps(grey[rows], [cats[i] for i in rows], bank, exclude=rows)
        out[rows] = maps.reshape(len(rows), -1).max(axis=1)
    return out


def to_size(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, s, s) fine maps -> (N, size, size) float32, padded to FINE_SIDE (the patch border)
    and max-pooled down (a 1 px defect stays visible) or nearest-upsampled."""
    x = torch.from_numpy(maps).unsqueeze(1)
    pad = (FINE_SIDE - x.shape[-1]) // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate") if pad else x
    if size < x.shape[-1]:
        x = F.adaptive_max_pool2d(x, size)
    elif size > x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x.squeeze(1).numpy().astype(np.float32)
