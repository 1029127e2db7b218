"""Banks of normal features and the nearest-neighbour search over them.

Why a bank: on textures the reconstruction error of a U-Net carries little signal, while the
distance of an image's encoder features to those of normal training images separates normal
from defective. The same search over raw-pixel thumbnails is the no-learning floor (rawknn)
every learned score must beat.

(knn with patches uses core.scoring.patchbank, which searches image-first.)
A bank holds one set of vectors per training category; each is capped at `max_bank` entries by
a seeded subsample (seed and category name fix it), so banks are deterministic and a search
costs at most (queries x max_bank) distances. The search is one chunked `torch.cdist` plus
`topk`: no Python loop over bank entries.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DISTANCE_BUDGET_BYTES = 64 * 2**20  # per chunk of queries: its distance matrix, its refinement


def knn_search(
    queries: np.ndarray | torch.Tensor, bank: np.ndarray | torch.Tensor, k: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k nearest neighbours of each query in the bank.

    queries: (Q, D); bank: (M, D). Returns (distances (Q, k) float32 ascending, indices (Q, k)
    int64); k is clipped to M. Candidates are ranked by |b|^2 - 2 q.b, which orders the bank
    like the distance does and is a single matrix product (BLAS); the data are centred at
    the bank mean first, because that form loses precision with large norms (a raw-pixel
    thumbnail's distance to itself would read 0.02). The k chosen distances are then
    recomputed exactly. Queries are processed in chunks whose ranking matrix stays under
    DISTANCE_BUDGET_BYTES, so memory does not grow with Q.
    """
    q = torch.as_tensor(queries, dtype=torch.float32)
    b = torch.as_tensor(bank, dtype=torch.float32)
    if b.ndim != 2 or q.ndim != 2 or q.shape[1] != b.shape[1]:
        raise ValueError(
            f"knn_search: queries {tuple(q.shape)} and bank {tuple(b.shape)} must be (Q, D) and (M, D)"
        )
    if b.shape[0] == 0:
        raise ValueError(
            "knn_search: the bank is empty; there are no normal images to compare with"
        )
    k = min(int(k), b.shape[0])
    centre = b.mean(dim=0, keepdim=True)
    q, b = q - centre, b - centre
    bank_sq = (b * b).sum(dim=1)[None, :]  # (1, M)
    # per query row: M ranking values, then k exact differences of D values
    chunk = max(1, DISTANCE_BUDGET_BYTES // (4 * max(b.shape[0], k * b.shape[1])))
    dists, idxs = [], []
    for start in range(0, q.shape[0], chunk):
        part = q[start : start + chunk]
        ranking = torch.addmm(bank_sq, part, b.T, alpha=-2.0)  # distance^2 - |q|^2
        if k == 1:
            candidates = ranking.argmin(dim=1, keepdim=True)
        else:
            candidates = torch.topk(ranking, k, dim=1, largest=False, sorted=False).indices
        exact = (part[:, None, :] - b[candidates]).norm(dim=-1)  # (chunk, k)
        exact, order = torch.sort(exact, dim=1)
        dists.append(exact)
        idxs.append(torch.gather(candidates, 1, order))
    if not dists:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return torch.cat(dists).numpy(), torch.cat(idxs).numpy()


def category_seed(seed: int, category: str) -> list[int]:
    """A per-category seed independent of which other categories exist."""
    return [int(seed), zlib.crc32(category.encode())]


def cap_rows(vectors: np.ndarray, max_rows: int, seed: list[int]) -> np.ndarray:
    """At most max_rows rows, a seeded subsample in original order when there are more."""
    if len(vectors) <= max_rows:
        return vectors
    keep = np.sort(np.random.default_rng(seed).choice(len(vectors), size=max_rows, replace=False))
    return vectors[keep]


def bank_rows(categories: Sequence[str], max_per_category: int, seed: int) -> np.ndarray:
    """The images a bank keeps: per category (in sorted name order) at most max_per_category
    of its images, a seeded sample (cap_rows with category_seed) in original order. (N,)
    categories -> (M,) int64 indices. Chosen before anything is encoded, so a bank over
    100,000 training images encodes only the images it keeps."""
    cats = np.asarray(list(categories), dtype=object)
    parts = [cap_rows(np.flatnonzero(cats == name), int(max_per_category), category_seed(seed, name))
             for name in sorted(set(cats.tolist()))]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


@dataclass
class FeatureBank:
    """Vectors of normal training images, grouped by category.

    vectors: (M, D) float32; owner: (M,) int index into `categories`. `kind` and `info`
    describe what the vectors are (levels, patch grid, thumbnail size; "kept": each row's
    image index among the images it was built from, for one vector per image), so a bank
    built for one purpose is never used for another.
    """

    vectors: np.ndarray
    owner: np.ndarray
    categories: list[str]
    kind: str = "features"
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        categories: Sequence[str],
        max_per_category: int,
        seed: int,
        kind: str = "features",
        info: dict[str, Any] | None = None,
    ) -> FeatureBank:
        """vectors: (N, D) per image or (N, P, D) per patch; categories: (N,) per image.

        Every image's patches go to its category's bank; each category is capped separately.
        """
        cats = np.asarray(list(categories), dtype=object)
        if len(cats) != len(vectors):
            raise ValueError(f"bank: {len(vectors)} vector sets but {len(cats)} categories")
        names = sorted(set(cats.tolist()))
        parts, owners, kept = [], [], []
        for index, name in enumerate(names):
            rows = vectors[cats == name].reshape(-1, vectors.shape[-1])
            rows = cap_rows(rows, int(max_per_category), category_seed(seed, name))
            parts.append(rows.astype(np.float32, copy=False))
            owners.append(np.full(len(rows), index, np.int64))
            if vectors.ndim == 2:  # one row per image: which images the bank kept
                own = np.flatnonzero(cats == name)
                kept += cap_rows(own, int(max_per_category), category_seed(seed, name)).tolist()
        dim = vectors.shape[-1]
        stacked = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        described = {**(info or {}), **({"kept": kept} if vectors.ndim == 2 else {})}
        return cls(stacked, owner, names, kind, described)

    def rows_of(self, category: str | None) -> np.ndarray:
        """The vectors of one category, or all of them for None (the global bank)."""
        if category is None:
            return self.vectors
        if category not in self.categories:
            raise ValueError(
                f"bank has no category '{category}'; it holds {', '.join(self.categories)}"
            )
        return self.vectors[self.owner == self.categories.index(category)]

    def sizes(self) -> dict[str, int]:
        counts = np.bincount(self.owner, minlength=len(self.categories))
        return {name: int(n) for name, n in zip(self.categories, counts, strict=True)}

    def to_record(self) -> dict[str, Any]:
        """A dict core.runs.cache can store: arrays to .npz, the rest to JSON."""
        return {
            "vectors": self.vectors,
            "owner": self.owner,
            "categories": list(self.categories),
            "kind": self.kind,
            "info": self.info,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FeatureBank:
        return cls(
            np.asarray(record["vectors"], np.float32),
            np.asarray(record["owner"], np.int64),
            list(record["categories"]),
            str(record["kind"]),
            dict(record["info"]),
        )


def thumbnails(images: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 (N, 3 * t * t) in [0, 1], t = min(size, S).

    Area interpolation averages every source pixel, so a thumbnail is the image's low-pass
    content, not an aliased sample of it.
    """
    side = min(int(size), images.shape[1])
    out = np.empty((len(images), 3 * side * side), np.float32)
    for start in range(0, len(images), THUMBNAIL_CHUNK):  # memory: the thumbnails, not the images
        part = np.ascontiguousarray(images[start:start + THUMBNAIL_CHUNK])
        x = torch.from_numpy(part).permute(0, 3, 1, 2).float().div_(255.0)
        if side != images.shape[1]:
            x = F.interpolate(x, size=(side, side), mode="area")
        out[start:start + len(part)] = x.flatten(1).numpy()
    return out


THUMBNAIL_CHUNK = 256  # images converted to float at once


def grouped_knn(
    queries: np.ndarray, groups: Sequence[str | None], bank: FeatureBank, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Search each query set in the bank of its group (None = the whole bank).

    queries: (N, D) or (N, P, D); groups: (N,) bank category per image. Returns mean distance
    to the k nearest, (N,) or (N, P), and the bank row of the nearest, same shape. The loop
    runs over the few categories, each a single vectorised search.
    """
    lead = queries.shape[:-1]
    mean_dist = np.zeros(lead, np.float32)
    nearest = np.zeros(lead, np.int64)
    keys = np.asarray(["\0global" if g is None else g for g in groups], dtype=object)
    for key in sorted(set(keys.tolist())):
        sel = np.flatnonzero(keys == key)
        category = None if key == "\0global" else key
        if category is not None and category not in bank.categories:
            raise ValueError(
                f"bank has no category '{category}'; it holds {', '.join(bank.categories)}"
            )
        rows = (
            None
            if category is None
            else np.flatnonzero(bank.owner == bank.categories.index(category))
        )
        table = bank.vectors if rows is None else bank.vectors[rows]
        flat = queries[sel].reshape(-1, queries.shape[-1])
        dist, idx = knn_search(flat, table, k)
        mean_dist[sel] = dist.mean(axis=1).reshape((len(sel),) + lead[1:])
        global_idx = idx[:, 0] if rows is None else rows[idx[:, 0]]
        nearest[sel] = global_idx.reshape((len(sel),) + lead[1:])
    return mean_dist, nearest


def leave_one_out_knn(bank: FeatureBank, k: int = 1) -> np.ndarray:
    """Each bank entry's mean distance to its k nearest OTHER entries of its own category.

    Returns (M,) float64 in bank row order; NaN for an entry alone in its category. These are
    the scores the entries would get as test images of a bank without them (calibration's
    reference, core.scoring.reference).
    """
    out = np.full(len(bank.vectors), np.nan)
    for index in range(len(bank.categories)):
        rows = np.flatnonzero(bank.owner == index)
        if len(rows) < 2:
            continue
        table = bank.vectors[rows]
        dist, idx = knn_search(table, table, min(int(k), len(rows) - 1) + 1)
        others = idx != np.arange(len(rows))[:, None]
        # an entry is normally its own nearest; with exact duplicates it may come second
        keep = np.where(others.all(axis=1, keepdims=True), np.arange(dist.shape[1]) < dist.shape[1] - 1,
                        others)
        out[rows] = np.nanmean(np.where(keep, dist, np.nan), axis=1)
    return out
