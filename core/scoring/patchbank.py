"""The memory bank of patch features, searched image-first (SPADE).

Why image-first: a bank that holds every patch of every normal image is too large to search
exhaustively on a CPU (0.25M patches of 3 categories at 64 px: minutes per epoch), and a
random subsample of it loses the rare normal patches a defect-free image needs to find its
match (on ../shared/realdata, magnetic_tile image AUROC fell from .83 with every patch to .71
with a 16k-patch sample). SPADE instead retrieves, for each test image, its few nearest normal
images by pooled features and searches only their patches, which is cheaper and -- on
roughly aligned images -- better: the patches compared are of the same kind of image.
Measured on ../shared/realdata (one model, 64 px): mean image AUROC .916 with the exhaustive
search, .947 with the 5 nearest images, .929 with 20 (docs/recipes.md). That holds for
large categories (magnetic_tile there has 770 normals); a small category has no near images to
spare, so neighbours "auto" searches every image of a category of at most EXHAUSTIVE_IMAGES:
on a flat set with 180 normals per category the ensemble's mean image AUROC was .888
exhaustive against .842 with 5 (magnetic_tile .823 against .710), with 54 .890 against .870.

Source: N. Cohen and Y. Hoshen, "Sub-Image Anomaly Detection with Deep Pyramid
Correspondences" (SPADE), arXiv:2005.02357, 2020.

Storage is compact: vectors are kept as float16 (half the bytes; distances are computed in
float32), and each category keeps at most `max_patches` patches by keeping whole images
(a seeded sample of images), so an image's patches are never split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.scoring.knn import DISTANCE_BUDGET_BYTES, bank_rows
from core.scoring.options import AUTO_NEIGHBOURS, EXHAUSTIVE_IMAGES

STORAGE_DTYPE = np.float16


def images_per_category(max_patches: int, patches_per_image: int) -> int:
    """How many whole images of one category a bank of at most max_patches patches keeps."""
    return max(1, int(max_patches) // max(1, int(patches_per_image)))


@dataclass
class PatchBank:
    """Patch features of normal images, kept per image.

    vectors: (I, P, D) float16, P patches of each of I images; pooled: (I, D) float32, each
    image's unit-length mean patch vector (the retrieval key); owner: (I,) int index into
    `categories`; info: what the vectors are (levels, grid, image size) and "kept", the index
    of each bank image among the images it was built from.
    """

    vectors: np.ndarray
    pooled: np.ndarray
    owner: np.ndarray
    categories: list[str]
    kind: str = "patches"
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        categories: Sequence[str],
        max_patches: int,
        seed: int,
        info: dict[str, Any] | None = None,
    ) -> PatchBank:
        """vectors: (N, P, D) patch vectors of N normal images; categories: (N,).

        Each category keeps at most max(1, max_patches // P) images, a seeded sample (seed
        and category name fix it) in original order.
        """
        cats = np.asarray(list(categories), dtype=object)
        if vectors.ndim != 3 or len(cats) != len(vectors):
            raise ValueError(
                f"patch bank: vectors {vectors.shape} must be (N, P, D) with N = {len(cats)}"
            )
        names = sorted(set(cats.tolist()))
        chosen = bank_rows(cats, images_per_category(max_patches, vectors.shape[1]), seed)
        owner = np.array([names.index(c) for c in cats[chosen]], np.int64)
        everything = np.array_equal(chosen, np.arange(len(vectors)))  # no copy of the usual case
        kept = torch.from_numpy(
            np.ascontiguousarray(vectors if everything else vectors[chosen], dtype=np.float32)
        )
        return cls(
            kept.numpy().astype(STORAGE_DTYPE),
            pooled_keys(kept).numpy(),
            owner,
            names,
            "patches",
            {**(info or {}), "kept": chosen.tolist()},
        )

    def sizes(self) -> dict[str, int]:
        """Patches per category."""
        counts = np.bincount(self.owner, minlength=len(self.categories)) * self.vectors.shape[1]
        return {name: int(n) for name, n in zip(self.categories, counts, strict=True)}

    def images_of(self, category: str | None) -> np.ndarray:
        """Indices of the bank images of one category, or of all for None (global bank)."""
        if category is None:
            return np.arange(len(self.owner))
        if category not in self.categories:
            raise ValueError(
                f"bank has no category '{category}'; it holds {', '.join(self.categories)}"
            )
        return np.flatnonzero(self.owner == self.categories.index(category))

    def to_record(self) -> dict[str, Any]:
        """A dict core.runs.cache can store: arrays to .npz, the rest to JSON."""
        return {
            "vectors": self.vectors,
            "pooled": self.pooled,
            "owner": self.owner,
            "categories": list(self.categories),
            "kind": self.kind,
            "info": self.info,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PatchBank:
        return cls(
            np.asarray(record["vectors"], STORAGE_DTYPE),
            np.asarray(record["pooled"], np.float32),
            np.asarray(record["owner"], np.int64),
            list(record["categories"]),
            str(record["kind"]),
            dict(record["info"]),
        )


def pooled_keys(vectors: torch.Tensor) -> torch.Tensor:
    """(N, P, D) patch vectors -> (N, D) unit-length means: the image retrieval keys."""
    return F.normalize(vectors.float().mean(dim=1), dim=1, eps=1e-6)


def patch_knn(
    queries: np.ndarray,
    groups: Sequence[str | None],
    bank: PatchBank,
    k: int = 1,
    neighbours: int = 0,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Distance of every query patch to its nearest patches among its nearest normal images.

    queries: (N, P, D) patch vectors; groups: (N,) the bank category each image is compared
    with (None = every bank image). For each image, the nearest bank images of its group by
    pooled vector are retrieved (how many: `searched_images`; neighbours 0 = auto); each of
    its patches then gets the mean Euclidean distance to its k nearest patches among theirs.
    exclude: (N,) a bank image index each query must not be compared with (its own entry,
    for leave-one-out scores of the bank's images), -1 for none. Returns (N, P) float32.
    """
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    keys = pooled_keys(q_all)
    out = torch.zeros(q_all.shape[:2])
    labels = np.asarray(["\0global" if g is None else g for g in groups], dtype=object)
    skip = np.full(len(labels), -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    for label in sorted(set(labels.tolist())):
        sel = np.flatnonzero(labels == label)
        members = bank.images_of(None if label == "\0global" else label)
        left_out = np.isin(members, skip[sel]).any()
        if len(members) <= int(left_out):
            raise ValueError(f"the bank of '{label}' is empty; there are no normals to compare")
        n = searched_images(len(members) - int(left_out), neighbours)
        if n >= len(members) - int(left_out):  # every image searched: no retrieval, one bank
            out[sel] = _search_all(q_all[sel], bank.vectors[members], members, skip[sel], int(k))
            continue
        distances = torch.cdist(keys[sel], torch.from_numpy(bank.pooled[members]))
        if left_out:  # a query never finds itself
            distances[torch.from_numpy(members[None, :] == skip[sel][:, None])] = float("inf")
        nearest = distances.topk(n, dim=1, largest=False).indices
        images = members[nearest.numpy()]  # (len(sel), n) bank image indices
        out[sel] = _search(q_all[sel], bank.vectors, images, int(k))
    return out.numpy()


def searched_images(bank_images: int, neighbours: int = 0) -> int:
    """How many of a category's `bank_images` normal images each query's patches are searched
    among: `neighbours` when given (>= 1), else (0, auto) all of them in a category of at most
    EXHAUSTIVE_IMAGES images and AUTO_NEIGHBOURS in a larger one (see EXHAUSTIVE_IMAGES)."""
    if neighbours >= 1:
        return min(int(neighbours), bank_images)
    return bank_images if bank_images <= EXHAUSTIVE_IMAGES else min(AUTO_NEIGHBOURS, bank_images)


def _search_all(queries: torch.Tensor, vectors: np.ndarray, members: np.ndarray,
                exclude: np.ndarray, k: int) -> torch.Tensor:
    """(B, P, D) queries against every patch of the (n, Pb, D) bank images `members` (their
    bank indices), converted once; exclude: (B,) the bank image each query leaves out, -1 none.
    The same result as _search over all the group's images, without a copy of the bank per
    query image."""
    b, p, d = queries.shape
    per_image = vectors.shape[1]
    bank = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).reshape(-1, d)
    bank_sq = (bank * bank).sum(1)
    column = {int(image): i for i, image in enumerate(members)}
    own = np.repeat([column.get(int(e), -1) for e in exclude], p)  # per query patch
    k = min(k, len(bank) - (per_image if (own >= 0).any() else 0))
    flat = queries.reshape(b * p, d)
    out = torch.empty(b * p)
    rows = max(1, DISTANCE_BUDGET_BYTES // (4 * len(bank)))
    span = np.arange(per_image)
    for r0 in range(0, b * p, rows):
        part = flat[r0 : r0 + rows]
        ranking = torch.addmm(bank_sq[None], part, bank.T, alpha=-2.0)  # (r, M)
        mine = own[r0 : r0 + rows]
        hit = np.flatnonzero(mine >= 0)
        if len(hit):  # a query never finds its own image's patches
            cols = mine[hit][:, None] * per_image + span[None]
            ranking[torch.from_numpy(hit)[:, None], torch.from_numpy(cols)] = float("inf")
        idx = (ranking.argmin(dim=1, keepdim=True) if k == 1
               else ranking.topk(k, dim=1, largest=False).indices)  # (r, k)
        exact = (part.unsqueeze(1) - bank[idx]).norm(dim=-1)  # (r, k), recomputed exactly
        out[r0 : r0 + len(part)] = exact.mean(dim=1)
    return out.reshape(b, p)


def _search(queries: torch.Tensor, vectors: np.ndarray, images: np.ndarray, k: int) -> torch.Tensor:
    """(B, P, D) queries, each image against the patches of its own bank images (B, n)."""
    b, p, _ = queries.shape
    candidates = images.shape[1] * vectors.shape[1]
    k = min(k, candidates)
    # per query image: its (P x candidates) ranking matrix; chunk images (and rows) to budget
    per_row = 4 * candidates
    rows = max(1, min(p, DISTANCE_BUDGET_BYTES // per_row))
    chunk = max(1, DISTANCE_BUDGET_BYTES // (per_row * p)) if rows == p else 1
    out = torch.empty(b, p)
    for start in range(0, b, chunk):
        stop = min(b, start + chunk)
        bank = torch.from_numpy(vectors[images[start:stop]].astype(np.float32))
        bank = bank.reshape(stop - start, candidates, -1)  # (c, M, D)
        bank_sq = (bank * bank).sum(-1).unsqueeze(1)  # (c, 1, M)
        for r0 in range(0, p, rows):
            part = queries[start:stop, r0 : r0 + rows]  # (c, r, D)
            ranking = torch.baddbmm(bank_sq, part, bank.transpose(1, 2), alpha=-2.0)
            idx = (  # (c, r, k); min is 4x faster than topk for the default k = 1
                ranking.argmin(dim=2, keepdim=True)
                if k == 1
                else ranking.topk(k, dim=2, largest=False).indices
            )
            chosen = torch.gather(
                bank.unsqueeze(1).expand(-1, part.shape[1], -1, -1),
                2,
                idx.unsqueeze(-1).expand(-1, -1, -1, bank.shape[-1]),
            )
            exact = (part.unsqueeze(2) - chosen).norm(dim=-1)  # (c, r, k), recomputed exactly
            out[start:stop, r0 : r0 + rows] = exact.mean(dim=2)
    return out
