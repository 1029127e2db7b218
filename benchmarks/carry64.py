"""Write a copy of MVTec-layout sets decoded exactly as ReconScope reads them at one size, for a
machine that cannot reach ../shared (a lent GPU gets only the repo and 64 MiB of carried files).

    python benchmarks/carry64.py ../shared/realdata .gpu/rd64/realdata [--size 64]

Every image becomes the (size, size, 3) uint8 array core.data.images.read_image returns (EXIF
turned, resized as training does), every mask the {0, 255} array read_mask returns, saved as PNG;
reading the copy at the same size gives the same pixels (no second resize). ../shared/realdata
at 64 px: 11 MB; realdata_more: 6.7 MB. Used by benchmarks/gpu_reconstruction.sh.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from core.data.images import read_image, read_mask  # noqa: E402

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    src, dst, written = Path(args.source), Path(args.dest), 0
    for path in sorted(src.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        out = (dst / path.relative_to(src)).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        if "ground_truth" in path.relative_to(src).parts:
            with Image.open(path) as raw:
                hw = (raw.height, raw.width)
            Image.fromarray(read_mask(path, hw, args.size) * 255).save(out)
        else:
            Image.fromarray(read_image(path, args.size)).save(out)
        written += 1
    print(f"wrote {written} files under {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
