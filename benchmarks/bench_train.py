"""Training throughput: augmentation images/s beside step images/s, and the whole loop.

- augmentation: images/s of the run's augmentation chain and of a heavier chain
  (RandomResizedCrop + CoarseDropout), in one thread (what `workers = 0` has: one prefetch
  thread) and in worker processes (`workers = k`: a torch DataLoader);
- step: forward + backward + Adam step on one batch already on the device (the compute
  ceiling), with bf16 / channels_last as the config resolves them for the device;
- loop: core.training.loop.run_epoch (decoding done once, augmentation as configured, grad norms).
When one thread augments fewer images/s than a step trains, the loop is data-bound: set
`workers` to the smallest k whose rate clears the step rate. (With `--set workers=k` the loop
pays the workers' start-up each epoch, which here includes re-importing this script: on tiny
epochs that, not augmentation, is what the loop figure shows.)

    python benchmarks/bench_train.py                      # the demo config (64 px)
    python benchmarks/bench_train.py --image-size 256 --base-width 32 --depth 4 --batch-size 32 \\
        --images 64 --workers 0,2,4                      # what a GPU user trains
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.config import AugmentConfig, TrainConfig, parse_set_items
from core.data.augment import build_augmentation
from core.data.batches import AugmentedBatches
from core.data.dataset import TrainingData, load_training_data
from core.data.demo import DemoSpec, generate_demo_dataset
from core.model.accel import Acceleration, device_memory
from core.model.losses import ReconstructionLoss
from core.model.tensors import to_tensor
from core.model.unet import UNetAutoencoder, count_parameters, resolve_device
from core.runs.folder import Run
from core.training.demo_job import demo_config
from core.training.loop import ValidationProbe, run_epoch

HEAVY = AugmentConfig(hflip_p=0.5, resized_crop_p=1.0, dropout_p=1.0)


@dataclass
class Throughput:
    augment: dict[str, float]  # "chain, workers" -> images/s
    step: float  # images/s, batch in memory
    loop: float  # images/s, run_epoch
    peak_mib: float | None


def augmentation_rate(images: np.ndarray, augment: AugmentConfig, size: int, batch: int, workers: int,
                      count: int) -> float:
    """Images/s of augmenting `count` images in batches; worker start-up is not counted."""
    pipeline = build_augmentation(augment, size, seed=0)
    order = np.arange(count) % len(images)
    batches = [order[i:i + batch] for i in range(0, count, batch)]
    with AugmentedBatches(images, batches, pipeline, workers, seed=0) as stream:
        iterator = iter(stream)
        next(iterator)  # the first batch pays for worker start-up
        started = time.perf_counter()
        done = sum(len(b) for b, _ in zip(batches[1:], iterator, strict=True))
    return done / max(time.perf_counter() - started, 1e-9)


def step_rate(model, optimizer, loss_fn, x, steps: int, accel: Acceleration) -> float:
    """Images/s of forward + backward + step on one batch already on the device."""
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(x, accel.forward(model, x)).mean().backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - started)


def measure(config: TrainConfig, data: TrainingData, rounds: int, device, workers: list[int],
            augment_images: int) -> Throughput:
    rates = {}
    for name, chain in (("config", config.augment), ("crop+dropout", HEAVY)):
        for k in workers:
            rates[f"{name}, workers={k}"] = augmentation_rate(
                data.train.images, chain, config.image_size, config.batch_size, k, augment_images)
    accel = Acceleration.for_run(config, device)
    model = accel.prepare(UNetAutoencoder(config.model).to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = ReconstructionLoss(config.loss)
    probe = ValidationProbe(data.val.images[:0], data.val.images[:0])
    x = to_tensor(data.train.images[: config.batch_size], device)
    steps = max(1, len(data.train) // config.batch_size)
    steps_seen, loops = [], []
    device_memory(device)  # resets the peak
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp))
        for epoch in range(1, rounds + 2):  # alternate, so both see the same machine load
            steps_seen.append(step_rate(model, optimizer, loss_fn, x, steps, accel))
            loops.append(run_epoch(model, optimizer, loss_fn, data, probe, config, epoch, device, run,
                                   False)["images_per_s"])
    peak = device_memory(device).get("gpu_peak_mib")
    return Throughput(rates, max(steps_seen[1:]), max(loops[1:]), peak)  # round 1 warms up


def forward_backward_gflop(model: torch.nn.Module, size: int) -> float:
    """GFLOP per image for forward + backward, counted by torch's FlopCounterMode on the CPU."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, size, size)).sum().backward()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/demo")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="default: the demo's")
    parser.add_argument("--base-width", type=int, default=None)
    parser.add_argument("--depth", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--images", type=int, default=0, help="train on this many images (0 = all)")
    parser.add_argument("--workers", default="0,2", help="worker counts to measure augmentation with")
    parser.add_argument("--augment-images", type=int, default=512, help="images per augmentation rate")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config field, e.g. --set precision=fp32")
    args = parser.parse_args()
    overrides = {"device": args.device}
    for flag, key in (("image_size", "image_size"), ("base_width", "model.base_width"),
                      ("depth", "model.depth"), ("batch_size", "batch_size")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    overrides.update(parse_set_items(args.set))
    config = demo_config(args.data).with_overrides(overrides)
    if not Path(args.data).is_dir():
        generate_demo_dataset(args.data, DemoSpec(size=max(config.image_size, 64)))
    device = resolve_device(config.device)
    data = load_training_data(config.data, config.image_size, val_fraction=config.val_fraction)
    if args.images:
        data = TrainingData(train=data.train.subset(np.arange(min(args.images, len(data.train)))), val=data.val)
    model = UNetAutoencoder(config.model)
    gflop = forward_backward_gflop(model, config.image_size)
    accel = Acceleration.for_run(config, device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {len(data.train)} images at "
          f"{config.image_size} px, batch {config.batch_size}, base width {config.model.base_width}, "
          f"depth {config.model.depth}, {count_parameters(model) / 1e6:.2f}M parameters, "
          f"{gflop:.1f} GFLOP/image forward+backward, bf16 {accel.bf16}, channels_last {accel.channels_last}")
    workers = [int(k) for k in args.workers.split(",") if k.strip()]
    result = measure(config, data, args.rounds, device, workers, args.augment_images)
    for name, rate in result.augment.items():
        print(f"augmentation ({name}): {rate:.0f} images/s")
    print(f"step (batch in memory, the compute ceiling): {result.step:.1f} images/s "
          f"= {result.step * gflop / 1e3:.2f} TFLOP/s")
    print(f"training loop (run_epoch, workers={config.workers}): {result.loop:.1f} images/s "
          f"= {100 * result.loop / result.step:.0f}% of the step rate")
    if result.peak_mib is not None:
        print(f"peak GPU memory: {result.peak_mib:.0f} MiB")
    one_thread = result.augment.get("config, workers=0")
    if one_thread is not None:
        verdict = "keeps up" if one_thread >= result.step else "cannot keep up: set workers"
        print(f"one augmentation thread ({one_thread:.0f} images/s) vs step ({result.step:.1f} images/s): "
              f"{verdict}")


if __name__ == "__main__":
    main()
