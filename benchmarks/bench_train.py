"""Training throughput of the default demo config against its compute ceiling.

The ceiling is the same model's forward+backward+step on one batch already in memory as a
tensor; the loop is core.train.run_epoch with decoding done once, augmentation in a prefetch
thread and per-layer gradient norms. Data handling must never be the bottleneck (>= 90%).

    python benchmarks/bench_train.py [--data data/demo] [--rounds 3]
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


def ceiling(model, optimizer, loss_fn, x, steps: int) -> float:
    """Images/s of forward + backward + step on one batch already on the device."""
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(x, model(x)).mean().backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - started)


def measure(config, data, rounds: int, device) -> tuple[float, float]:
    """Alternates ceiling and full-loop epochs so both see the same machine load; best of each."""
    model = UNetAutoencoder(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = ReconstructionLoss(config.loss)
    probe = ValidationProbe(data.val.images[:0], data.val.images[:0])
    x = to_tensor(data.train.images[: config.batch_size], device)
    steps = max(1, len(data.train) // config.batch_size)
    ceilings, loops = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        for epoch in range(1, rounds + 2):
            ceilings.append(ceiling(model, optimizer, loss_fn, x, steps))
            record = run_epoch(model, optimizer, loss_fn, data, probe, config, epoch, device, run, False)
            loops.append(record["images_per_s"])
    return max(ceilings[1:]), max(loops[1:])  # round 1 warms up oneDNN and is left out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        generate_demo_dataset(args.data, DemoSpec())
    config = demo_config(args.data).with_overrides({"device": args.device})
    device = resolve_device(config.device)
    data = load_training_data(config.data, config.image_size, val_fraction=config.val_fraction)
    print(f"device {device}, threads {torch.get_num_threads()}, {len(data.train)} images at "
          f"{config.image_size} px, batch {config.batch_size}, model {config.model}")
    top, real = measure(config, data, args.rounds, device)
    print(f"compute ceiling (batch in memory): {top:.1f} images/s")
    print(f"training loop (augment + prefetch + grad norms): {real:.1f} images/s = {100 * real / top:.0f}% of ceiling")


if __name__ == "__main__":
    main()
