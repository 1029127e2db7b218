"""Datasets of today's size: decode time, peak memory and throughput as the set grows.

For each synthetic MVTec-layout set (4 categories of `train/good` PNGs, made small -- 32 px --
so creating 100,000 of them is cheap; the decode upscales them) and each side:

- decode: core.data.store.decoded_set into an empty store (streamed, parallel threads);
- train: forward + backward + Adam on `--batches` batches of `--batch-size` images drawn at
  random from the whole set (read from the store as training reads it, augmented by the
  default chain through core.data.batches.AugmentedBatches; a small U-Net);
- score: core.scoring score_image_set_methods ("pixel") on the same number of images drawn
  from the whole set.

Each phase runs in a fresh process; its peak RSS is that process's VmHWM (/proc), so it
includes the pages of the memory-mapped store the phase touched. One more set holds
4000x3000 JPEG frames (decode only). Big sets are deleted after they are measured.

    nice -n 10 python benchmarks/bench_scale.py                       # 2k/20k/100k at 64, 256 px
    python benchmarks/bench_scale.py --counts 2000 --sizes 64 --frames 4  # a quick look
    python benchmarks/bench_scale.py --work W --keep --counts 20000,100000 --sizes 256 --frames 0
    python benchmarks/bench_scale.py --work W --keep ... --phases train,score   # again, no decode
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = ("alpha", "beta", "gamma", "delta")


def make_set(root: Path, count: int, side: int = 32, suffix: str = ".png", frame=None) -> None:
    """count images in <category>/train/good/ of 4 categories, each a smooth seeded pattern
    plus noise (`frame`: (width, height) of large JPEG frames instead of small PNGs)."""
    rng = np.random.default_rng(count)
    width, height = frame or (side, side)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for c, name in enumerate(CATEGORIES):
        (root / name / "train" / "good").mkdir(parents=True, exist_ok=True)
        base = (np.sin(xx / (width / (3 + c))) + np.cos(yy / (height / (2 + c)))) * 60 + 128
        for i in range(c, count, len(CATEGORIES)):
            if frame:
                noise = rng.integers(-20, 20, (1, 1, 3)).astype(np.float32)
            else:
                noise = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
            pixels = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / "train" / "good" / f"{i:06d}{suffix}",
                                         quality=90) if suffix == ".jpg" else \
                Image.fromarray(pixels).save(root / name / "train" / "good" / f"{i:06d}{suffix}")


def _samples(root: Path):
    from core.data.layouts import discover_samples

    return [s for s in discover_samples(root) if s.split == "train"]


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def phase_decode(root: Path, size: int, args) -> dict:
    from core.data.store import decoded_set, is_mapped

    samples = _samples(root)
    started = time.perf_counter()
    data = decoded_set(samples, size, progress=False)
    seconds = time.perf_counter() - started
    return {"images": len(data), "decode_s": seconds, "decode_img_s": len(data) / seconds,
            "mapped": is_mapped(data.images)}


def _model_and_set(root: Path, size: int):
    import torch

    from core.config import ModelConfig
    from core.data.store import decoded_set
    from core.model.unet import UNetAutoencoder

    torch.manual_seed(0)
    data = decoded_set(_samples(root), size, progress=False)
    return UNetAutoencoder(ModelConfig(base_width=8, depth=3)), data


def phase_train(root: Path, size: int, args) -> dict:
    import torch

    from core.config import AugmentConfig, TrainConfig
    from core.data.augment import build_augmentation
    from core.data.batches import AugmentedBatches
    from core.model.losses import ReconstructionLoss
    from core.model.tensors import to_tensor

    model, data = _model_and_set(root, size)
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(data), args.batch_size, replace=False))
               for _ in range(args.batches + 1)]  # the first batch warms up, untimed
    loss_fn = ReconstructionLoss(TrainConfig().loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pipeline = build_augmentation(AugmentConfig(), size, seed=0)
    model.train()
    started, seen = None, 0
    with AugmentedBatches(data.images, batches, pipeline) as stream:
        for step, images in enumerate(stream):
            x = to_tensor(images, "cpu")
            loss = loss_fn(x, model(x)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step == 0:
                started = time.perf_counter()
            else:
                seen += len(images)
    return {"train_img_s": seen / (time.perf_counter() - started)}


def phase_score(root: Path, size: int, args) -> dict:
    from core.scoring.methods import score_image_set_methods

    model, data = _model_and_set(root, size)
    n = args.batches * args.batch_size
    picked = data.subset(np.sort(np.random.default_rng(1).choice(len(data), n, replace=False)))
    score_image_set_methods(model, picked.subset(range(args.batch_size)), ("pixel",))  # warm-up
    started = time.perf_counter()
    score_image_set_methods(model, picked, ("pixel",), batch_size=args.batch_size)
    return {"score_img_s": n / (time.perf_counter() - started)}


PHASES = {"decode": phase_decode, "train": phase_train, "score": phase_score}


def _child(phase: str, root: Path, size: int, args) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--root", str(root), "--sizes", str(size),
               "--batches", str(args.batches), "--batch-size", str(args.batch_size)]
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise SystemExit(f"{phase} at {size} px on {root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str, root: Path, sizes, args, phases=("decode", "train", "score")) -> list[dict]:
    rows = []
    for size in sizes:
        row = {"set": name, "size": size, "load": os.getloadavg()[0]}
        for phase in phases:
            result = _child(phase, root, size, args)
            row[f"{phase}_rss_mb"] = result.pop("peak_rss_mb")
            row.update(result)
            print(f"  {name} {size}px {phase}: {result}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    head = ("| set | px | decode s | decode img/s | decode peak MB | train img/s | train peak MB "
            "| score img/s | score peak MB | mapped | load |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        def cell(key, fmt="{:.0f}", r=r):
            return fmt.format(r[key]) if r.get(key) is not None else "-"
        lines.append(f"| {r['set']} | {r['size']} | {cell('decode_s', '{:.1f}')} | {cell('decode_img_s')} "
                     f"| {cell('decode_rss_mb')} | {cell('train_img_s', '{:.1f}')} | {cell('train_rss_mb')} "
                     f"| {cell('score_img_s', '{:.1f}')} | {cell('score_rss_mb')} | {r.get('mapped', '-')} "
                     f"| {r['load']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="2000,20000,100000")
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--frames", type=int, default=8, help="4000x3000 JPEG frames (0: none)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", default="", help="folder for the sets (default: a temp folder)")
    parser.add_argument("--phases", default="decode,train,score",
                        help="train,score alone reuse a set and store kept by --keep")
    parser.add_argument("--keep", action="store_true", help="keep the sets and the store")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.phase:  # a child: one phase, one JSON line
        result = PHASES[args.phase](Path(args.root), sizes[0], args)
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="reconscope-scale-"))
    os.environ["RECONSCOPE_CACHE"] = str(work / "store")
    rows = []
    for count in [int(c) for c in args.counts.split(",") if c]:
        root = work / f"set{count}"
        started = time.perf_counter()
        if not root.is_dir():
            make_set(root, count)
        print(f"set of {count}: made in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        rows += measure(f"{count:,}", root, sizes, args, tuple(args.phases.split(",")))
        if not args.keep:
            shutil.rmtree(root)
            shutil.rmtree(work / "store", ignore_errors=True)
    if args.frames:
        root = work / "frames"
        make_set(root, args.frames, suffix=".jpg", frame=(4000, 3000))
        rows += measure(f"{args.frames} x 4000x3000 JPEG", root, sizes, args, ("decode",))
        shutil.rmtree(root)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(_table(rows))


if __name__ == "__main__":
    main()
