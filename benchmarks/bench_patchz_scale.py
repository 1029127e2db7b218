"""patchz at other scales: image AUROC per category of the per-location patch statistic with
the image read at SIDE px, PATCH-px patches every PATCH/2 px, and a std floor.

    python benchmarks/bench_patchz_scale.py ../shared/realdata,../shared/realdata_more
        [--max-train 60] [--variants 32:8:RGB:0.2,128:8:RGB:0.2,...]

No model: each category's training normals (a seeded sample of --max-train, default all) give
the mean and std of every patch value at every position, each image standardised by its own
mean and std first (core.scoring.patchz); a test image scores its worst patch's RMS z-score.
Every test image of every category is scored. 32:8:RGB:0.2 is patchz as it was before
2026-12-04 (32-px thumbnails); 128:8:RGB:0.2 is patchz now (core.scoring.patchz.SIDE, PATCH).
Prints one row per category and the mean per variant.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.data.layouts import discover_samples
from core.evaluation.metrics import image_auroc

DEFAULT_VARIANTS = "32:8:RGB:0.2,128:8:RGB:0.2,128:8:L:0.2,128:8:L:0.1,128:8:L:0.4,96:8:L:0.2,128:12:L:0.2,160:8:L:0.2"


def load(paths, side: int, mode: str) -> torch.Tensor:
    """(N, C, side, side) float32 in 0..1, C = 3 (RGB) or 1 (L)."""
    arrays = [np.asarray(Image.open(p).convert(mode).resize((side, side), Image.BILINEAR),
                         np.float32) / 255.0 for p in paths]
    x = torch.from_numpy(np.stack(arrays))
    return x.reshape(len(paths), side, side, -1).permute(0, 3, 1, 2)


def patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    x = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-3)
    return F.unfold(x, kernel_size=patch, stride=max(1, patch // 2)).transpose(1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources")
    parser.add_argument("--max-train", type=int, default=0, help="normals per category (0 = all)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="side:patch:mode:floor,...")
    args = parser.parse_args()
    variants = [(int(a), int(b), c, float(d))
                for a, b, c, d in (v.split(":") for v in args.variants.split(","))]
    rows: dict[str, list[float]] = {}
    for source in args.sources.split(","):
        samples = discover_samples(source)
        rng = np.random.default_rng(0)
        for category in sorted({s.category for s in samples}):
            train = [s.path for s in samples if s.category == category and s.split in ("train", "val")]
            if args.max_train:
                train = [train[i] for i in rng.permutation(len(train))[:args.max_train]]
            test = [s for s in samples if s.category == category and s.split == "test"]
            labels = np.array([int(s.label) for s in test])
            rows[category] = []
            for side, patch, mode, floor in variants:
                normal = patches(load(train, side, mode), patch)
                mean, std = normal.mean(dim=0), normal.std(dim=0, unbiased=False)
                del normal
                z = (patches(load([s.path for s in test], side, mode), patch) - mean) / (std + floor)
                rows[category].append(image_auroc(labels, z.pow(2).mean(dim=-1).sqrt().amax(dim=1).numpy()))
            print(f"{category:16s} {len(train):5d} normals {len(test):5d} test  "
                  + " ".join(f"{a:.3f}" for a in rows[category]), flush=True)
    print("variant (side:patch:mode:floor)   mean image AUROC")
    for i, (side, patch, mode, floor) in enumerate(variants):
        label = f"{side}:{patch}:{mode}:{floor}"
        print(f"{label:33s} {np.mean([r[i] for r in rows.values()]):.3f}")


if __name__ == "__main__":
    main()
