"""Training throughput of the default demo config against its compute ceiling.

The ceiling is the same model's forward+backward+step on one batch already in memory as a
tensor; the loop is core.train.run_epoch with decoding done once, augmentation in a prefetch
thread and per-layer gradient norms. Data handling must never be the bottleneck (>= 90%).

    python benchmarks/bench_train.py [--data data/demo] [--epochs 2] [--steps 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from core.data.dataset import load_training_data
from core.data.demo import DemoSpec, generate_demo_dataset
from core.jobs import demo_config
from core.losses import ReconstructionLoss
from core.model import UNetAutoencoder, resolve_device
from core.runs import Run
from core.tensors import to_tensor
from core.train import ValidationProbe, run_epoch


def ceiling(config, images, steps: int, device) -> float:
    model = UNetAutoencoder(config.model).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = ReconstructionLoss(config.loss)
    x = to_tensor(images[: config.batch_size], device)
    for _ in range(3):  # warm-up
        loss_fn(x, model(x)).mean().backward()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(x, model(x)).mean().backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - started)


def loop(config, data, epochs: int, device) -> float:
    model = UNetAutoencoder(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = ReconstructionLoss(config.loss)
    probe = ValidationProbe(data.val.images[:0], data.val.images[:0])
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        rates = [run_epoch(model, optimizer, loss_fn, data, probe, config, e, device, run, False)["images_per_s"]
                 for e in range(1, epochs + 2)]
    return sum(rates[1:]) / epochs  # the first epoch warms up oneDNN and is left out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        generate_demo_dataset(args.data, DemoSpec())
    config = demo_config(args.data).with_overrides({"device": args.device})
    device = resolve_device(config.device)
    data = load_training_data(config.data, config.image_size, val_fraction=config.val_fraction)
    print(f"device {device}, threads {torch.get_num_threads()}, {len(data.train)} images at "
          f"{config.image_size} px, batch {config.batch_size}, model {config.model}")
    top = ceiling(config, data.train.images, args.steps, device)
    real = loop(config, data, args.epochs, device)
    print(f"compute ceiling (batch in memory): {top:.1f} images/s")
    print(f"training loop (augment + prefetch + grad norms): {real:.1f} images/s = {100 * real / top:.0f}% of ceiling")


if __name__ == "__main__":
    main()
