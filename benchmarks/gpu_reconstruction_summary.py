"""Print what benchmarks/gpu_reconstruction.sh measured: per run and scored epoch, the validation
loss and each method's mean image AUROC over categories (the "mean" evaluate prints), with the
per-category AUROC of ssimz and the floors.

    python benchmarks/gpu_reconstruction_summary.py OUT_DIR WORK_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.runs.folder import Run  # noqa: E402

POOLED = ("mean", "overall", "overall_calibrated")


def main(out: Path, work: Path) -> int:
    rows: dict[str, dict[int, dict]] = {}
    for path in sorted(out.glob("*-e*.json")):
        name, epoch = path.stem.rsplit("-e", 1)
        rows.setdefault(name, {})[int(epoch)] = json.loads(path.read_text())["image_auroc"]
    for name in sorted(rows):
        logged = {m["epoch"]: m for m in Run(work / name).metrics()}
        print(f"== {name}: {max(logged, default=0)} epochs, first epochs' seconds "
              f"{[round(m['seconds'], 1) for m in list(logged.values())[:3]]}")
        for epoch, aurocs in sorted(rows[name].items()):
            val = logged.get(epoch, {}).get("val_loss", float("nan"))
            means = " ".join(f"{m} {v['mean']:.3f}" for m, v in sorted(aurocs.items()) if v.get("mean") is not None)
            print(f"  epoch {epoch:>2} val_loss {val:.4f}  {means}")
            for method in ("ssimz", "patchz", "rawknn"):
                if method in aurocs:
                    per = " ".join(f"{c} {a:.3f}" for c, a in aurocs[method].items()
                                   if c not in POOLED and a is not None)
                    print(f"      {method}: {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
